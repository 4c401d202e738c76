"""Warm-up + polynomial decay and the sawtooth schedule: learning rates at chosen steps against the formulas."""

import pytest
import torch
from monai.bundle import ConfigParser

from monai_genesis.networks import ResEncUNet
from monai_genesis.optimizers import SawtoothWarmupPolySchedule, WarmupPolySchedule, encoder_param_groups

TINY = {"spatial_dims": 2, "features": [2, 4], "blocks_per_stage": [1, 1], "strides": [1, 2]}


def _lrs(scheduler, steps):
    """The learning rates of every group at each step ``0 .. steps - 1``, stepping like an epoch-level handler."""
    out = []
    for _ in range(steps):
        out.append([g["lr"] for g in scheduler.optimizer.param_groups])
        scheduler.optimizer.step()
        scheduler.step()
    return out


def test_warmup_then_poly_decay_in_epochs():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1e-3, momentum=0.99, nesterov=True)
    lrs = [lr[0] for lr in _lrs(WarmupPolySchedule(opt, total_steps=1000, warmup_steps=50), 1001)]
    assert lrs[0] == pytest.approx(1e-3 / 50)
    assert lrs[24] == pytest.approx(1e-3 * 25 / 50)
    assert lrs[49] == pytest.approx(1e-3)
    assert lrs[50] == pytest.approx(1e-3)
    assert lrs[525] == pytest.approx(1e-3 * (1 - 475 / 950) ** 0.9)
    assert lrs[999] == pytest.approx(1e-3 * (1 / 950) ** 0.9)
    assert lrs[1000] == 0.0
    assert all(a >= b for a, b in zip(lrs[50:], lrs[51:]))


def test_counted_in_iterations_and_without_warmup():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1e-2)
    lrs = [lr[0] for lr in _lrs(WarmupPolySchedule(opt, total_steps=250 * 4, warmup_steps=0), 1000)]
    assert lrs[0] == pytest.approx(1e-2)
    assert lrs[500] == pytest.approx(1e-2 * 0.5**0.9)
    assert lrs[750] == pytest.approx(1e-2 * 0.25**0.9)


def test_sawtooth_phases():
    net = ResEncUNet(**TINY)
    opt = torch.optim.SGD(encoder_param_groups(net), lr=1e-3, momentum=0.99, nesterov=True)
    lrs = _lrs(SawtoothWarmupPolySchedule(opt, total_steps=1000), 1000)
    encoder, decoder = [lr[0] for lr in lrs], [lr[1] for lr in lrs]
    # phase 1: the decoder alone, warm-up 0-25 then decay to 0 at 50; the encoder frozen by lr 0
    assert all(lr == 0.0 for lr in encoder[:50])
    assert decoder[0] == pytest.approx(1e-3 / 25)
    assert decoder[24] == pytest.approx(1e-3)
    assert decoder[25] == pytest.approx(1e-3)
    assert decoder[37] == pytest.approx(1e-3 * (1 - 12 / 25) ** 0.9)
    assert decoder[49] == pytest.approx(1e-3 * (1 / 25) ** 0.9)
    # phase 2: the whole network, warm-up 50-100 then decay to 0 at 1000
    for step, factor in [(50, 1 / 50), (74, 25 / 50), (99, 1.0), (100, 1.0), (550, 0.5**0.9), (999, (1 / 900) ** 0.9)]:
        assert encoder[step] == pytest.approx(1e-3 * factor)
        assert decoder[step] == pytest.approx(1e-3 * factor)


def test_sawtooth_leaves_the_encoder_untouched_in_phase_one():
    torch.manual_seed(0)
    net = ResEncUNet(**TINY)
    opt = torch.optim.SGD(encoder_param_groups(net), lr=0.1)
    scheduler = SawtoothWarmupPolySchedule(opt, total_steps=20, decoder_warmup_steps=1, decoder_steps=2, warmup_steps=1)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    opt.zero_grad()
    net(torch.randn(2, 1, 8, 8)).square().mean().backward()
    opt.step()
    scheduler.step()
    changed = {k for k, v in net.state_dict().items() if not torch.equal(v, before[k])}
    assert changed and all(not k.startswith("encoder.") for k in changed)


def test_param_groups_split_by_name():
    net = ResEncUNet(**TINY)
    groups = encoder_param_groups(net)
    assert [g["name"] for g in groups] == ["encoder", "decoder"]
    names = {id(p): k for k, p in net.named_parameters()}
    assert all(names[id(p)].startswith("encoder.") for p in groups[0]["params"])
    assert not any(names[id(p)].startswith("encoder.") for p in groups[1]["params"])
    assert len(groups[0]["params"]) + len(groups[1]["params"]) == len(list(net.parameters()))
    with pytest.raises(ValueError, match=r"select 0 of the .*top-level modules are \['decoder', 'encoder', 'out'\]"):
        encoder_param_groups(net, "net.encoder.")


def test_usable_from_a_bundle_config():
    parser = ConfigParser(
        {
            "epochs": 200,
            "network": {"_target_": "monai_genesis.networks.ResEncUNet", **TINY},
            "optimizer": {
                "_target_": "torch.optim.SGD",
                "params": "$monai_genesis.optimizers.encoder_param_groups(@network)",
                "lr": 1e-3,
                "momentum": 0.99,
                "nesterov": True,
            },
            "lr_scheduler": {
                "_target_": "monai_genesis.optimizers.SawtoothWarmupPolySchedule",
                "optimizer": "@optimizer",
                "total_steps": "@epochs",
            },
        },
        globals={"monai_genesis": "monai_genesis"},
    )
    scheduler = parser.get_parsed_content("lr_scheduler")
    assert isinstance(scheduler, SawtoothWarmupPolySchedule)
    assert [g["lr"] for g in scheduler.optimizer.param_groups] == [0.0, pytest.approx(1e-3 / 25)]


def test_bad_arguments_raise():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    with pytest.raises(ValueError, match="need 0 <= warmup_steps < total_steps"):
        WarmupPolySchedule(opt, total_steps=50, warmup_steps=50)
    with pytest.raises(ValueError, match="exponent must be positive"):
        WarmupPolySchedule(opt, total_steps=50, warmup_steps=5, exponent=0)
    with pytest.raises(ValueError, match=r"parameter groups named 'encoder'.*got group names \[None\]"):
        SawtoothWarmupPolySchedule(opt, total_steps=1000)
    groups = encoder_param_groups(ResEncUNet(**TINY))
    with pytest.raises(ValueError, match="need 0 <= warmup_steps < total_steps"):
        SawtoothWarmupPolySchedule(torch.optim.SGD(groups, lr=1.0), total_steps=100)
