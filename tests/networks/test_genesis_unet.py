import io

import pytest
import torch

from monai_genesis.networks import GenesisBatchNorm, GenesisClassifier, GenesisUNet
from monai_genesis.weights import load_official_checkpoint

from tests.networks.official_format import random_official_state_dict, reference_forward, released_checkpoint


def _num_params(net):
    return sum(p.numel() for p in net.parameters())


def test_default_parameter_count_is_the_released_one():
    assert _num_params(GenesisUNet()) == 19_073_665
    assert len(GenesisUNet().state_dict()) == 106


@pytest.fixture(scope="module")
def released(tmp_path_factory):
    sd = random_official_state_dict(seed=3)
    path = tmp_path_factory.mktemp("released") / "Genesis_Chest_CT.pt"
    torch.save(released_checkpoint(sd), path)
    return sd, path


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_loaded_released_checkpoint_matches_reference_forward(released, mode):
    sd, path = released
    net = load_official_checkpoint(path)
    net.train(mode == "train")
    x = torch.rand(2, 1, 16, 16, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = reference_forward(sd, x)
        out = net(x)
    assert out.shape == (2, 1, 16, 16, 8)
    assert torch.allclose(out, expected, atol=1e-5, rtol=0)
    # the output is not saturated, so the comparison is informative
    assert 0.05 < out.std().item()


def test_released_batch_norm_uses_batch_statistics_in_eval_and_updates_running_stats():
    torch.manual_seed(0)
    bn = GenesisBatchNorm(4)
    assert set(bn.state_dict()) == set(torch.nn.BatchNorm3d(4).state_dict())
    x = torch.randn(3, 4, 5, 5, 5) * 2 + 7
    bn.eval()
    y = bn(x)
    assert torch.allclose(y.mean(dim=(0, 2, 3, 4)), torch.zeros(4), atol=1e-5)
    assert torch.allclose(y.var(dim=(0, 2, 3, 4), unbiased=False), torch.ones(4), atol=1e-3)
    # momentum 0.1 from zero running mean towards the batch mean of ~7
    assert torch.allclose(bn.running_mean, 0.1 * x.mean(dim=(0, 2, 3, 4)), atol=1e-5)
    with pytest.raises(ValueError, match="spatial"):
        bn(torch.randn(2, 4))


@pytest.mark.slow
def test_eval_output_of_one_input_depends_on_its_batch_only_with_the_released_norm():
    """Why the fine-tuning bundles use ``norm="batch"``: sliding-window inference groups windows into batches."""
    torch.manual_seed(0)
    x = torch.rand(1, 1, 16, 16, 16)
    others = torch.zeros(3, 1, 16, 16, 16)  # e.g. windows of background around the image
    outputs = {}
    for norm in ("genesis", "batch"):
        torch.manual_seed(1)
        net = GenesisUNet(features=2, norm=norm)
        net.train()
        with torch.no_grad():  # a few training batches move the running statistics
            for _ in range(5):
                net(torch.rand(4, 1, 16, 16, 16))
        net.eval()
        with torch.no_grad():
            alone, batched = net(x), net(torch.cat([x, others]))[:1]
        outputs[norm] = (alone, batched)
    assert torch.allclose(*outputs["batch"], atol=1e-6)
    assert (outputs["genesis"][0] - outputs["genesis"][1]).abs().max() > 1e-2
    # the same parameters: state dicts of both norms are exchangeable
    assert set(GenesisUNet(features=2, norm="genesis").state_dict()) == set(GenesisUNet(features=2, norm="batch").state_dict())


def test_batch_and_instance_norm_options():
    x = torch.rand(2, 1, 16, 16, 16)
    for norm, cls in (("batch", torch.nn.BatchNorm3d), ("instance", torch.nn.InstanceNorm3d)):
        net = GenesisUNet(features=2, norm=norm).eval()
        norms = [m for m in net.modules() if isinstance(m, cls)]
        assert len(norms) == 14
        assert all(m.affine for m in norms)
        assert net(x).shape == (2, 1, 16, 16, 16)
    with pytest.raises(ValueError, match="norm must be one of"):
        GenesisUNet(norm="group")


def test_shapes_2d_3d_channels_and_activation():
    x3 = torch.rand(2, 2, 16, 8, 24)
    out = GenesisUNet(in_channels=2, out_channels=3, features=2)(x3)
    assert out.shape == (2, 3, 16, 8, 24)
    assert out.min() >= 0 and out.max() <= 1
    logits = GenesisUNet(out_channels=3, features=2, out_activation=None)(torch.rand(2, 1, 8, 8, 8))
    assert logits.min() < 0 or logits.max() > 1
    x2 = torch.rand(2, 1, 32, 16)
    assert GenesisUNet(spatial_dims=2, features=2)(x2).shape == (2, 1, 32, 16)
    with pytest.raises(ValueError, match="spatial_dims"):
        GenesisUNet(spatial_dims=1)
    with pytest.raises(ValueError, match="output activation"):
        GenesisUNet(out_activation="no-such-activation")


def test_activation_does_not_change_parameter_names():
    assert list(GenesisUNet(features=2).state_dict()) == list(GenesisUNet(features=2, out_activation=None).state_dict())


@pytest.mark.parametrize("shape", [(1, 1, 12, 16, 16), (1, 1, 16, 16, 20), (1, 1, 16, 17)])
def test_sides_not_divisible_by_8_are_refused(shape):
    net = GenesisUNet(spatial_dims=len(shape) - 2, features=2)
    with pytest.raises(ValueError, match="divisible by 8"):
        net(torch.rand(shape))


def test_encoder_exposes_bottleneck_and_skips():
    net = GenesisUNet(features=2)
    bottleneck, skips = net.encoder(torch.rand(2, 1, 16, 16, 8))
    assert bottleneck.shape == (2, 32, 2, 2, 1)
    assert [tuple(s.shape) for s in skips] == [(2, 4, 16, 16, 8), (2, 8, 8, 8, 4), (2, 16, 4, 4, 2)]
    assert net.encoder.out_channels == 32 and net.encoder.skip_channels == (4, 8, 16)


def test_classifier_shape_and_encoder_names():
    clf = GenesisClassifier(num_classes=3, features=2)
    out = clf(torch.rand(2, 1, 16, 16, 8))
    assert out.shape == (2, 3)
    assert clf.head[0].in_features == 32 and clf.head[0].out_features == 1024
    unet_encoder = {k for k in GenesisUNet(features=2).state_dict() if k.startswith("encoder.")}
    clf_encoder = {k for k in clf.state_dict() if k.startswith("encoder.")}
    assert clf_encoder == unet_encoder and len(clf_encoder) == 56
    assert GenesisClassifier().head[0].in_features == 512


@pytest.mark.slow
@pytest.mark.parametrize("norm", ["genesis", "instance"])
def test_torchscript_export(norm):
    torch.manual_seed(0)
    x = torch.rand(2, 1, 16, 16, 8)
    for net in (GenesisUNet(features=2, norm=norm), GenesisClassifier(num_classes=2, features=2, norm=norm)):
        net.eval()
        scripted = torch.jit.script(net)
        buffer = io.BytesIO()
        torch.jit.save(scripted, buffer)
        buffer.seek(0)
        loaded = torch.jit.load(buffer)
        with torch.no_grad():
            assert torch.allclose(loaded(x), net(x), atol=1e-6)
    with pytest.raises(torch.jit.Error, match="divisible by 8"):
        torch.jit.script(GenesisUNet(features=2))(torch.rand(1, 1, 12, 16, 16))
