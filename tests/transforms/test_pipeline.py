import pickle

import numpy as np
import pytest
import torch

from monai.data import DataLoader, Dataset
from monai.transforms import Compose, EnsureTyped
from monai.utils import set_determinism

from monai_genesis.transforms import RandGenesisCorruption, RandGenesisCorruptiond

from .helpers import smooth_cube


def test_rates_of_each_corruption():
    c = RandGenesisCorruption()
    c.set_random_state(0)
    x = torch.rand(2000, 1, 16, 16, 16)
    corrupted, target = c.corrupt_batch(x)
    assert corrupted.shape == target.shape == x.shape
    assert abs(c.shuffle._selected.mean() - 0.5) < 0.04
    assert abs(c.nonlinear._selected.mean() - 0.9) < 0.02
    inpainted, outpainted = c.inpaint._selected, c.outpaint._selected
    assert not (inpainted & outpainted).any()
    assert abs(inpainted.mean() - 0.18) < 0.025
    assert abs(outpainted.mean() - 0.72) < 0.025
    flipped = (target != x).flatten(1).any(1).float().mean().item()
    assert abs(flipped - (0.4 - 0.4**2 * 0.6 / 3)) < 0.04


def test_rates_are_parameters():
    c = RandGenesisCorruption(flip_rate=0, local_rate=1, nonlinear_rate=0, paint_rate=1, inpaint_rate=1)
    c.set_random_state(0)
    x = torch.rand(50, 1, 16, 16, 16)
    _, target = c.corrupt_batch(x)
    assert torch.equal(target, x)
    assert c.shuffle._selected.all() and not c.nonlinear._selected.any()
    assert c.inpaint._selected.all() and not c.outpaint._selected.any()


def test_target_is_the_flipped_clean_image():
    c = RandGenesisCorruption(flip_rate=1.0)
    c.set_random_state(0)
    x = torch.as_tensor(smooth_cube(0))
    corrupted, target = c(x)
    flips = [dims for dims in ([1], [2], [3], [1, 2], [1, 3], [2, 3], [1, 2, 3]) if torch.equal(target, x.flip(dims))]
    assert flips, "the target is not a flip of the input"
    assert not torch.equal(corrupted, target)


def test_dictionary_copies_the_clean_image_to_label():
    x = smooth_cube(1)
    d = RandGenesisCorruptiond(keys="image", target_keys="label", flip_rate=0.0)
    d.set_random_state(0)
    out = d({"image": x, "other": 1})
    np.testing.assert_array_equal(out["label"], x)
    assert out["label"] is not x and out["other"] == 1
    assert not np.array_equal(out["image"], x)


def test_seeded_runs_repeat_and_differ_between_seeds():
    x = torch.as_tensor(smooth_cube(2, shape=(2, 32, 32, 16)))
    outs = []
    for seed in (7, 7, 8):
        c = RandGenesisCorruption()
        c.set_random_state(seed)
        outs.append([c(x)[0] for _ in range(3)])
    for a, b in zip(outs[0], outs[1]):
        assert torch.equal(a, b)
    assert any(not torch.equal(a, b) for a, b in zip(outs[0], outs[2]))


def _loader_outputs(num_workers):
    data = [{"image": smooth_cube(i)} for i in range(4)]
    transform = Compose([EnsureTyped(keys="image"), RandGenesisCorruptiond(keys="image")])
    loader = DataLoader(Dataset(data, transform), batch_size=2, num_workers=num_workers)
    return [batch["image"].clone() for batch in loader]


@pytest.mark.parametrize("num_workers", [0, 2])
def test_set_determinism_makes_data_loading_repeatable(num_workers):
    set_determinism(seed=0)
    first = _loader_outputs(num_workers)
    set_determinism(seed=0)
    second = _loader_outputs(num_workers)
    set_determinism(seed=1)
    third = _loader_outputs(num_workers)
    set_determinism(seed=None)
    assert all(torch.equal(a, b) for a, b in zip(first, second))
    assert not all(torch.equal(a, b) for a, b in zip(first, third))


def test_picklable():
    d = RandGenesisCorruptiond(keys="image")
    d.set_random_state(3)
    clone = pickle.loads(pickle.dumps(d))
    x = smooth_cube(0)
    np.testing.assert_array_equal(d({"image": x})["image"], clone({"image": x})["image"])
