"""MaskedPrepareBatch: per-sample block masks on the engine's device, the target with the mask, the network kwarg."""

import pytest
import torch

from monai.data import MetaTensor

from monai_genesis.engines import MaskedPrepareBatch
from monai_genesis.transforms import RandBlockMask

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
def test_masks_each_sample_on_the_device_and_appends_the_mask(device):
    batch = {"image": MetaTensor(torch.rand(4, 2, 32, 32, 16) + 1.0), "other": [0, 1, 2, 3]}
    clean = batch["image"].clone()
    masked, target = MaskedPrepareBatch(RandBlockMask(block_size=8), seed=0)(batch, torch.device(device))
    assert masked.device.type == device and target.device.type == device
    assert not isinstance(masked, MetaTensor)
    assert masked.shape == (4, 2, 32, 32, 16) and target.shape == (4, 3, 32, 32, 16)
    assert torch.equal(batch["image"], clean)
    assert torch.equal(target[:, :2].cpu(), clean.as_tensor())
    mask = target[:, 2:].cpu()
    assert set(mask.unique().tolist()) == {0.0, 1.0}
    assert (mask.sum(dim=(1, 2, 3, 4)) == 24 * 8**3).all()  # 24 of the 32 blocks of 8³
    assert torch.equal(masked.cpu(), torch.where(mask.bool(), 0.0, clean.as_tensor()))
    assert len({tuple(m.flatten().tolist()) for m in mask}) == 4


def test_seed_repeats_and_batches_differ():
    batch = {"image": torch.rand(3, 1, 32, 32, 32)}
    a, b = MaskedPrepareBatch(seed=5), MaskedPrepareBatch(seed=5)
    first = a(batch)
    assert torch.equal(first[1], b(batch)[1])
    assert not torch.equal(a(batch)[1], first[1])
    assert a.masking.block_size == (16,) and a.masking.mask_ratio == 0.75


def test_mask_kwarg_gives_the_four_tuple_of_supervised_trainer():
    images = torch.rand(2, 1, 16, 16)
    masked, target, args, kwargs = MaskedPrepareBatch(RandBlockMask(4), mask_kwarg="mask", seed=0)(images)
    assert args == () and list(kwargs) == ["mask"]
    assert kwargs["mask"].shape == (2, 1, 16, 16) and torch.equal(kwargs["mask"], target[:, 1:])


def test_missing_key_and_bad_size_raise():
    with pytest.raises(KeyError, match="key 'image' not in the batch, which has keys \\['img'\\]"):
        MaskedPrepareBatch(seed=0)({"img": torch.rand(1, 1, 16, 16, 16)})
    with pytest.raises(ValueError, match="not a multiple of block_size"):
        MaskedPrepareBatch(seed=0)({"image": torch.rand(1, 1, 24, 16, 16)})
