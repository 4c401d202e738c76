import pickle

import numpy as np
import pytest
import torch

from monai.data import DataLoader, Dataset
from monai.transforms import Compose, EnsureTyped
from monai.utils import set_determinism

from monai_genesis.transforms import RandGenesisCorruption, RandGenesisCorruptiond

from .helpers import smooth_cube


@pytest.mark.slow
def test_rates_of_each_corruption():
    c = RandGenesisCorruption()
    c.set_random_state(0)
    x = torch.rand(2000, 1, 16, 16, 16)
    corrupted, target = c.corrupt_batch(x)
    assert corrupted.shape == target.shape == x.shape
    assert abs(c.last_draw.shuffle.selected.mean() - 0.5) < 0.04
    assert abs(c.last_draw.nonlinear.selected.mean() - 0.9) < 0.02
    inpainted, outpainted = c.last_draw.inpaint.selected, c.last_draw.outpaint.selected
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
    assert c.last_draw.shuffle.selected.all() and not c.last_draw.nonlinear.selected.any()
    assert c.last_draw.inpaint.selected.all() and not c.last_draw.outpaint.selected.any()


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


def test_randomize_draws_everything_and_replays():
    from monai_genesis.transforms.array import GenesisDraw

    c = RandGenesisCorruption(flip_rate=1.0, local_rate=1.0, nonlinear_rate=1.0, paint_rate=1.0)
    c.set_random_state(3)
    x = torch.as_tensor(smooth_cube(0, (2, 32, 32, 16)))
    draw = c.randomize(x)
    assert isinstance(draw, GenesisDraw) and c.last_draw is draw
    assert draw.flips.shape == (1, 3) and draw.shuffle.selected.shape == (2,)
    assert draw.nonlinear.params is not None and draw.shuffle.params is not None
    first = c(x, randomize=False)
    again = c(x, randomize=False)
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not torch.equal(first[0], c(x)[0])  # a new draw corrupts differently
    with pytest.raises(RuntimeError, match="randomize"):
        RandGenesisCorruption()(x, randomize=False)


def test_dictionary_draws_once_for_every_key():
    d = RandGenesisCorruptiond(keys=("t1", "t2"), target_keys=("t1_clean", "t2_clean"), flip_rate=1.0)
    d.set_random_state(7)
    t1 = torch.as_tensor(smooth_cube(1, (1, 32, 32, 16)))
    t2 = torch.as_tensor(smooth_cube(2, (1, 32, 32, 16)))
    for _ in range(5):
        out = d({"t1": t1, "t2": t2})
        flips = d.corruption.last_draw.flips[0]
        dims = [1 + a for a in np.flatnonzero(flips)]
        # the same flips for both keys
        assert torch.equal(out["t1_clean"], torch.flip(t1, dims)) and torch.equal(out["t2_clean"], torch.flip(t2, dims))
        # the same boxes: voxels that out-painting or in-painting kept are the same places in both
        kept1 = out["t1"] == out["t1_clean"]
        kept2 = out["t2"] == out["t2_clean"]
        assert (kept1 == kept2).float().mean() > 0.95
    # the same image under two keys is corrupted identically (one draw, one noise seed)
    out = d({"t1": t1, "t2": t1.clone()})
    assert torch.equal(out["t1"], out["t2"])
    with pytest.raises(ValueError, match="one shape"):
        d({"t1": t1, "t2": t1[:, :16]})


def test_dictionary_twins_check_the_minimum_size():
    from monai_genesis.transforms import RandInpaintd, RandOutpaintd

    small = {"image": torch.rand(1, 32, 32, 6)}
    with pytest.raises(ValueError, match="too small"):
        RandInpaintd(keys="image")(small)
    with pytest.raises(ValueError, match="too small"):
        RandOutpaintd(keys="image")(small)


@pytest.mark.parametrize("value_range, channels", [((0.0, 1.0), 1), ((0.0, 1.0), 3), ((-1.0, 2.0), 2)])
def test_cpu_fast_path_gives_the_values_of_the_step_by_step_path(value_range, channels):
    """On the CPU, out-painted channels are mapped over the bounding box of their kept boxes only; the result is the
    same, voxel for voxel, as mapping everything, in-painting and then out-painting."""
    pytest.importorskip("numba")
    from monai_genesis.transforms.backend import CompiledCPUBackend

    t = RandGenesisCorruption(value_range=value_range)
    t.set_random_state(3)
    rng = np.random.default_rng(0)
    outpainted = 0
    calls = []
    map_regions = CompiledCPUBackend._map_regions
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(CompiledCPUBackend, "_map_regions", lambda *args: calls.append(1) or map_regions(*args))
        for _ in range(30):
            x = torch.from_numpy(rng.uniform(*value_range, (channels, 40, 40, 24)).astype(np.float32))
            before = len(calls)
            fast, _ = t(x)
            draw = t.last_draw
            # mapped over the kept region exactly when an out-painted channel is also mapped
            assert (len(calls) > before) == bool((draw.outpaint.selected & draw.nonlinear.selected).any())
            outpainted += int(draw.outpaint.active)
            with pytest.MonkeyPatch.context() as step_by_step:
                step_by_step.setattr(CompiledCPUBackend, "few_items", -1)
                slow, _ = t(x, randomize=False)
            assert torch.equal(fast, slow)
    assert outpainted >= 10 and len(calls) >= 8


def test_bezier_tables_of_the_host_and_of_other_devices_agree():
    """The NumPy tables of the CPU and the torch tables built for a batch on another device are the same curve."""
    from monai_genesis.transforms.backend import _curve_tables_torch
    from monai_genesis.transforms.nonlinear import bezier_lut, draw_nonlinear

    params = draw_nonlinear(np.random.RandomState(0), 40)
    many = _curve_tables_torch(params.control_points, params.increasing, 4096, 4097, torch.device("cpu"))
    assert many.shape == (40, 4097)
    for i in (0, 7, 39):
        few = bezier_lut(type(params)(params.control_points[i : i + 1], params.increasing[i : i + 1]))
        assert few.dtype == torch.float32 and few.shape == (1, 4097)
        assert torch.allclose(few[0], many[i], atol=2e-6)
