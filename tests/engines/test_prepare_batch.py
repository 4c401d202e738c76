import numpy as np
import pytest
import torch

from monai.data import DataLoader, Dataset, MetaTensor
from ignite.engine import Events
from monai.engines import SupervisedTrainer
from monai.utils import set_determinism

from monai_genesis.engines import GenesisPrepareBatch
from monai_genesis.transforms import RandGenesisCorruption

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
def test_corrupts_on_the_engine_device(device):
    batch = {"image": MetaTensor(torch.rand(4, 1, 32, 32, 16)), "other": [0, 1, 2, 3]}
    clean = batch["image"].clone()
    prepare = GenesisPrepareBatch(seed=0)
    corrupted, target = prepare(batch, torch.device(device))
    assert corrupted.device.type == device and target.device.type == device
    assert corrupted.shape == target.shape == (4, 1, 32, 32, 16)
    assert torch.equal(batch["image"], clean)  # the batch itself is not changed
    assert not torch.equal(corrupted.cpu(), target.cpu())


def test_seed_repeats_and_uses_the_given_corruption():
    batch = {"image": torch.rand(3, 2, 24, 24, 16)}
    a = GenesisPrepareBatch(RandGenesisCorruption(paint_rate=0.0, local_rate=0.0, nonlinear_rate=1.0), seed=5)
    b = GenesisPrepareBatch(RandGenesisCorruption(paint_rate=0.0, local_rate=0.0, nonlinear_rate=1.0), seed=5)
    for _ in range(2):
        ca, ta = a(batch)
        cb, tb = b(batch)
        assert torch.equal(ca, cb) and torch.equal(ta, tb)
    assert not a.last_draw.inpaint.selected.any() and not a.last_draw.outpaint.selected.any()


def test_set_determinism_seeds_the_default_state():
    batch = {"image": torch.rand(2, 1, 24, 24, 16)}
    set_determinism(seed=3)
    first = GenesisPrepareBatch()(batch)[0]
    set_determinism(seed=3)
    second = GenesisPrepareBatch()(batch)[0]
    set_determinism(seed=None)
    assert torch.equal(first, second)


def test_missing_key_is_refused():
    with pytest.raises(KeyError, match="'img' not in the batch"):
        GenesisPrepareBatch(image_key="img")({"image": torch.rand(1, 1, 16, 16, 16)})


def test_bad_batch_is_refused():
    with pytest.raises(ValueError, match="value_range"):
        GenesisPrepareBatch()({"image": torch.rand(1, 1, 16, 16, 16) * 1000})
    with pytest.raises(ValueError, match="expected a batch"):
        GenesisPrepareBatch()({"image": torch.rand(16, 16, 16)})


def test_supervised_trainer_gets_corrupted_inputs_and_clean_targets():
    torch.manual_seed(0)
    data = [{"image": torch.rand(1, 16, 16, 16) * 0.5 + 0.25} for _ in range(8)]
    net = torch.nn.Sequential(torch.nn.Conv3d(1, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv3d(4, 1, 1))
    trainer = SupervisedTrainer(
        device=torch.device("cpu"),
        max_epochs=2,
        train_data_loader=DataLoader(Dataset(data), batch_size=4),
        network=net,
        optimizer=torch.optim.Adam(net.parameters(), 1e-2),
        loss_function=torch.nn.MSELoss(),
        prepare_batch=GenesisPrepareBatch(seed=0),
    )
    seen = []
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: seen.append(e.state.output))
    trainer.run()
    assert trainer.state.iteration == 4 and len(seen) == 4
    for output in seen:
        assert np.isfinite(output[0]["loss"])
        labels = torch.stack([o["label"] for o in output])
        # targets are the clean cubes (values in [0.25, 0.75]); inputs carry noise outside that range
        assert labels.min() >= 0.25 and labels.max() <= 0.75
    assert any(torch.stack([o["image"] for o in out]).max() > 0.75 for out in seen)
