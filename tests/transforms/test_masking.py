"""Random block masking: exact block counts, the shared kernel, types, the dictionary twin and clear errors."""

import numpy as np
import pytest
import torch

from monai.data import MetaTensor
from monai.transforms import ConcatItemsd

from monai_genesis.transforms import RandBlockMask, RandBlockMaskd, RandBlockMaskD, RandBlockMaskDict
from monai_genesis.transforms.masking import draw_block_masks, num_masked_blocks, render_block_masks

from .helpers import smooth_cube

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _blocks(mask: np.ndarray, sizes) -> np.ndarray:
    """Per block of the grid: the fraction of its voxels that are masked."""
    shape = [s for g, b in zip(mask.shape, sizes) for s in (g // b, b)]
    return mask.reshape(shape).mean(axis=tuple(range(1, len(shape), 2)))


@pytest.mark.parametrize(
    "shape, block_size, ratio, grid",
    [((1, 32, 32, 16), 8, 0.75, (4, 4, 2)), ((3, 40, 30), (8, 10), 0.75, (5, 3)), ((2, 16, 16, 16), 4, 0.3, (4, 4, 4))],
)
def test_exactly_round_ratio_of_whole_blocks_masked_same_in_every_channel(shape, block_size, ratio, grid):
    x = smooth_cube(0, shape) + 1.0  # no voxel is 0 before masking
    t = RandBlockMask(block_size=block_size, mask_ratio=ratio)
    t.set_random_state(0)
    out = t(x)
    masked = out == 0.0
    for c in range(1, shape[0]):
        np.testing.assert_array_equal(masked[c], masked[0])
    sizes = (block_size,) * (len(shape) - 1) if isinstance(block_size, int) else block_size
    per_block = _blocks(masked[0], sizes)
    assert per_block.shape == grid
    assert set(np.unique(per_block)) <= {0.0, 1.0}  # whole blocks only
    assert int(per_block.sum()) == round(ratio * np.prod(grid))
    np.testing.assert_array_equal(out[~masked], x[~masked])
    mask = t.voxel_mask().numpy()
    np.testing.assert_array_equal(mask, masked[0])


def test_rounding_follows_python_round():
    assert num_masked_blocks(1000, 0.75) == 750
    assert num_masked_blocks(10, 0.75) == 8  # 7.5 rounds to the even 8
    assert num_masked_blocks(6, 0.75) == 4  # 4.5 rounds to the even 4
    assert num_masked_blocks(12, 0.0) == 0 and num_masked_blocks(12, 1.0) == 12


def test_blocks_drawn_without_replacement_and_uniformly():
    generator = torch.Generator().manual_seed(0)
    masks = draw_block_masks(generator, 400, (4, 4), 0.5).reshape(400, 16)
    assert (masks.sum(1) == 8).all()
    freq = masks.float().mean(0)
    assert (freq > 0.38).all() and (freq < 0.62).all()
    assert len({tuple(m.tolist()) for m in masks}) > 350


def test_render_repeats_each_block_to_voxel_size():
    block = torch.tensor([[[True, False], [False, True]]])
    voxels = render_block_masks(block, (2, 3))
    expected = torch.tensor([[1, 1, 1, 0, 0, 0], [1, 1, 1, 0, 0, 0], [0, 0, 0, 1, 1, 1], [0, 0, 0, 1, 1, 1]]).bool()
    assert torch.equal(voxels[0], expected)


def test_fill_value_and_randomize_then_apply():
    x = torch.as_tensor(smooth_cube(1, (2, 16, 16, 8)))
    t = RandBlockMask(block_size=(4, 4, 4), mask_ratio=0.5, fill=-3.0)
    t.set_random_state(5)
    t.randomize(x.shape[1:])
    a = t(x, randomize=False)
    b = t(x, randomize=False)
    assert torch.equal(a, b)
    mask = t.voxel_mask()
    assert torch.equal(a[:, mask], torch.full_like(a[:, mask], -3.0))
    assert torch.equal(a[:, ~mask], x[:, ~mask])
    assert int(mask.sum()) == 16 * 16 * 8 // 2
    c = t(x)  # a new draw
    assert not torch.equal(c, a)


def test_seed_repeats_and_seeds_differ():
    x = smooth_cube(2, (1, 32, 32, 16))
    a, b, c = RandBlockMask(8), RandBlockMask(8), RandBlockMask(8)
    a.set_random_state(3)
    b.set_random_state(3)
    c.set_random_state(4)
    ya, yb, yc = a(x), b(x), c(x)
    np.testing.assert_array_equal(ya, yb)
    assert not np.array_equal(ya, yc)


def test_numpy_in_numpy_out_input_untouched():
    x = smooth_cube(0, (2, 16, 16, 16))
    copy = x.copy()
    out = RandBlockMask(8)(x)
    assert isinstance(out, np.ndarray) and out.dtype == x.dtype and out.shape == x.shape
    assert not np.shares_memory(out, x)
    np.testing.assert_array_equal(x, copy)
    assert not np.array_equal(out, x)


@pytest.mark.parametrize("device", DEVICES)
def test_tensor_in_tensor_out_same_device(device):
    x = torch.as_tensor(smooth_cube(1, (2, 16, 16)) + 1, device=device)
    copy = x.clone()
    out = RandBlockMask(4)(x)
    assert isinstance(out, torch.Tensor) and not isinstance(out, MetaTensor)
    assert out.device == x.device and out.dtype == x.dtype
    assert torch.equal(x, copy)
    assert int((out[0] == 0).sum()) == 12 * 16


def test_metatensor_keeps_meta_and_affine():
    affine = torch.diag(torch.tensor([0.7, 0.8, 2.0, 1.0], dtype=torch.float64))
    cube = torch.as_tensor(smooth_cube(2, (1, 16, 16, 16)) + 1)
    x = MetaTensor(cube, affine=affine, meta={"filename_or_obj": "a.nii"})
    out = RandBlockMask(8)(x)
    assert isinstance(out, MetaTensor)
    assert torch.allclose(out.affine, affine) and out.meta["filename_or_obj"] == "a.nii"
    assert int((out.as_tensor() == 0).sum()) == 6 * 8**3


def test_mask_batch_draws_per_sample():
    x = torch.rand(6, 2, 16, 16, 8) + 1.0
    t = RandBlockMask(block_size=4, mask_ratio=0.75)
    t.set_random_state(0)
    masked, mask = t.mask_batch(x)
    assert mask.shape == (6, 1, 16, 16, 8) and mask.dtype == torch.float32
    assert (mask.sum(dim=(1, 2, 3, 4)) == 24 * 64).all()  # 24 of 32 blocks of 4³
    assert torch.equal(masked, torch.where(mask.bool(), 0.0, x))
    assert len({tuple(m.flatten().tolist()) for m in mask}) == 6


def test_sides_not_multiple_of_block_size_raise_with_fix():
    t = RandBlockMask(block_size=16)
    # the values, the bundle flags that fix it (#21), and the fix in a pipeline of one's own
    match = (
        r"spatial size \(40, 32, 32\) is not a multiple of block_size \(16, 16, 16\)\. In the mae_pretrain bundle .*"
        r"--patch_size \"\[48, 32, 32\]\".*--mask_block_size \"\[8, 16, 16\]\".*DivisiblePadd"
    )
    with pytest.raises(ValueError, match=match):
        t(np.zeros((1, 40, 32, 32), np.float32))
    with pytest.raises(ValueError, match="not a multiple"):
        t.mask_batch(torch.zeros(2, 1, 16, 24, 16))
    with pytest.raises(ValueError, match="3 sides but the image has 2 spatial axes"):
        RandBlockMask(block_size=(4, 4, 4))(np.zeros((1, 8, 8), np.float32))


def test_apply_without_matching_draw_raises():
    t = RandBlockMask(4)
    with pytest.raises(ValueError, match="call randomize"):
        t(np.zeros((1, 8, 8), np.float32), randomize=False)
    t.randomize((8, 8))
    with pytest.raises(ValueError, match=r"block grid \(2, 2\).*spatial size \(16, 8\)"):
        t(np.zeros((1, 16, 8), np.float32), randomize=False)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"block_size": 0}, "block_size must be a positive int"),
        ({"block_size": (4, 4, 4, 4)}, "block_size must be a positive int"),
        ({"block_size": 2.5}, "block_size must be a positive int"),
        ({"mask_ratio": 1.5}, r"mask_ratio must be a fraction in \[0, 1\]"),
        ({"mask_ratio": -0.1}, "mask_ratio"),
        ({"fill": float("nan")}, "fill must be a finite number"),
        ({"spatial_dims": 4}, "spatial_dims must be 2, 3 or None"),
        ({"block_size": (4, 4), "spatial_dims": 3}, "does not match spatial_dims=3"),
    ],
)
def test_bad_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        RandBlockMask(**kwargs)


def test_missing_channel_axis_raises():
    with pytest.raises(ValueError, match="channel-first"):
        RandBlockMask(4, spatial_dims=3)(np.zeros((8, 8, 8), np.float32))


def test_dictionary_one_draw_for_every_key_mask_and_clean_target():
    assert RandBlockMaskD is RandBlockMaskd and RandBlockMaskDict is RandBlockMaskd
    t1 = torch.as_tensor(smooth_cube(0, (1, 16, 16, 16))) + 1.0
    t2 = torch.as_tensor(smooth_cube(1, (2, 16, 16, 16))) + 1.0
    t = RandBlockMaskd(keys=("t1", "t2"), target_keys=("t1_clean", "t2_clean"), block_size=8)
    t.set_random_state(0)
    d = t({"t1": t1, "t2": t2, "other": 1})
    mask = d["mask"]
    assert mask.shape == (1, 16, 16, 16) and mask.dtype == torch.float32
    assert set(mask.unique().tolist()) == {0.0, 1.0} and int(mask.sum()) == 6 * 8**3
    for key, clean in (("t1", t1), ("t2", t2)):
        assert torch.equal(d[key], torch.where(mask.bool(), 0.0, clean))
        assert torch.equal(d[f"{key}_clean"], clean) and d[f"{key}_clean"] is not clean
    assert d["other"] == 1


def test_dictionary_seed_matches_array_transform():
    x = smooth_cube(3, (1, 16, 16, 16))
    a = RandBlockMask(8)
    a.set_random_state(7)
    b = RandBlockMaskd(block_size=8)
    b.set_random_state(7)
    np.testing.assert_array_equal(b({"image": x})["image"], a(x))


def test_mask_in_target_equals_concat_items():
    x = MetaTensor(torch.as_tensor(smooth_cube(2, (1, 16, 16, 16))), affine=torch.eye(4) * 2)
    a = RandBlockMaskd(block_size=8, mask_in_target=True)
    b = RandBlockMaskd(block_size=8)
    a.set_random_state(1)
    b.set_random_state(1)
    da = a({"image": x})
    db = ConcatItemsd(keys=["label", "mask"], name="label")(b({"image": x}))
    assert da["label"].shape == (2, 16, 16, 16)
    assert torch.equal(da["label"].as_tensor(), db["label"].as_tensor())
    assert torch.equal(da["label"][:1].as_tensor(), x.as_tensor())
    assert isinstance(da["mask"], MetaTensor) and torch.allclose(da["mask"].affine, x.affine)


def test_dictionary_numpy_mask_is_float():
    x = (smooth_cube(0, (1, 8, 8)) * 100).astype(np.int16)
    d = RandBlockMaskd(block_size=4, mask_in_target=True)({"image": x})
    assert isinstance(d["mask"], np.ndarray) and d["mask"].dtype == np.float32 and d["mask"].shape == (1, 8, 8)
    assert d["image"].dtype == np.int16 and d["label"].dtype == np.int16 and d["label"].shape == (2, 8, 8)
    assert int(d["mask"].sum()) == 3 * 16


def test_dictionary_errors():
    with pytest.raises(ValueError, match="one target key per key"):
        RandBlockMaskd(keys=("a", "b"), target_keys="label")
    with pytest.raises(ValueError, match="must all differ"):
        RandBlockMaskd(keys="image", mask_key="image")
    with pytest.raises(ValueError, match="needs target_keys"):
        RandBlockMaskd(target_keys=None, mask_in_target=True)
    t = RandBlockMaskd(keys=("a", "b"), target_keys=None, block_size=4)
    with pytest.raises(ValueError, match="must share their spatial shape"):
        t({"a": np.zeros((1, 8, 8), np.float32), "b": np.zeros((1, 8, 12), np.float32)})
    with pytest.raises(KeyError, match=r"key\(s\) \['b'\] not found"):
        t({"a": np.zeros((1, 8, 8), np.float32)})
