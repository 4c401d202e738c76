"""What every transform promises: types, devices, meta, 2D/3D, channels, no in-place change, clear errors."""

import numpy as np
import pytest
import torch

from monai.data import MetaTensor
from monai.transforms import LoadImage

import monai_genesis.transforms as T

from .helpers import TRANSFORM_NAMES, smooth_cube

ALL_ARRAY = TRANSFORM_NAMES + ["RandGenesisFlip", "RandGenesisCorruption"]
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _make(name, **kwargs):
    cls = getattr(T, name)
    if name == "RandGenesisFlip":
        return cls(flip_rate=1.0, **kwargs)
    if name in ("RandInpaint", "RandOutpaint", "RandGenesisCorruption"):
        return cls(**kwargs)
    return cls(prob=1.0, **kwargs)


def _first(out):
    return out[0] if isinstance(out, tuple) else out


@pytest.mark.parametrize("name", ALL_ARRAY)
@pytest.mark.parametrize("shape", [(1, 32, 32, 16), (3, 40, 30)])
def test_numpy_in_numpy_out_and_input_untouched(name, shape):
    x = smooth_cube(0, shape)
    copy = x.copy()
    t = _make(name)
    t.set_random_state(0)
    out = t(x)
    for o in out if isinstance(out, tuple) else (out,):
        assert isinstance(o, np.ndarray) and o.dtype == x.dtype and o.shape == x.shape
        assert not np.shares_memory(o, x)
    np.testing.assert_array_equal(x, copy)
    assert not np.array_equal(_first(out), x)


@pytest.mark.parametrize("name", ALL_ARRAY)
@pytest.mark.parametrize("device", DEVICES)
def test_tensor_in_tensor_out_on_the_same_device(name, device):
    x = torch.as_tensor(smooth_cube(1, (2, 32, 32, 16)), device=device)
    copy = x.clone()
    t = _make(name)
    t.set_random_state(0)
    out = _first(t(x))
    assert isinstance(out, torch.Tensor) and out.device == x.device and out.dtype == x.dtype
    assert torch.equal(x, copy)
    # channels are corrupted independently
    if name in TRANSFORM_NAMES:
        assert not torch.equal(out[0] - x[0], out[1] - x[1])


@pytest.mark.parametrize("name", TRANSFORM_NAMES)
def test_metatensor_keeps_meta_and_affine(name):
    affine = torch.diag(torch.tensor([0.7, 0.8, 2.0, 1.0], dtype=torch.float64))
    x = MetaTensor(torch.as_tensor(smooth_cube(2)), affine=affine, meta={"filename_or_obj": "cube.nii.gz"})
    out = _first(_make(name)(x))
    assert isinstance(out, MetaTensor)
    assert torch.allclose(out.affine, affine)
    assert out.meta["filename_or_obj"] == "cube.nii.gz"


@pytest.mark.parametrize("name", ["RandGenesisFlip", "RandGenesisCorruption"])
def test_flips_move_the_affine_as_monai_flip(name):
    """A flip changes the geometry: the affine follows it exactly as ``monai.transforms.Flip`` moves it, and the
    flip is recorded, in the image and (for the pipeline) in its target."""
    from monai.transforms import Flip

    affine = torch.diag(torch.tensor([0.7, 0.8, 2.0, 1.0], dtype=torch.float64))
    x = MetaTensor(torch.as_tensor(smooth_cube(2)), affine=affine, meta={"filename_or_obj": "cube.nii.gz"})
    t = _make(name, flip_rate=1.0) if name == "RandGenesisCorruption" else _make(name)
    t.set_random_state(4)
    outputs = t(x)
    flips = (t.last_draw.flips if name == "RandGenesisCorruption" else t.flips)[0]
    axes = np.flatnonzero(flips).tolist()
    assert axes, "flip_rate 1.0 flips at least one axis"
    expected = Flip(spatial_axis=axes)(x)
    for out in outputs if isinstance(outputs, tuple) else (outputs,):
        assert isinstance(out, MetaTensor)
        assert torch.allclose(out.affine, expected.affine) and not torch.allclose(out.affine, affine)
        assert out.meta["filename_or_obj"] == "cube.nii.gz"
        assert [op["class"] for op in out.applied_operations] == ["Flip"]
    torch.testing.assert_close(outputs[1] if isinstance(outputs, tuple) else outputs, expected)


@pytest.mark.parametrize("name", ALL_ARRAY)
def test_seed_repeats(name):
    x = smooth_cube(3)
    a, b = _make(name), _make(name)
    a.set_random_state(11)
    b.set_random_state(11)
    np.testing.assert_array_equal(_first(a(x)), _first(b(x)))


@pytest.mark.parametrize("name", TRANSFORM_NAMES + ["RandGenesisCorruption"])
@pytest.mark.parametrize(
    "bad, message",
    [(np.nan, "NaN or infinite"), (np.inf, "NaN or infinite"), (1.5, "ScaleIntensityRanged"), (-0.2, "value_range")],
)
def test_bad_values_are_refused(name, bad, message):
    x = smooth_cube(0)
    x[0, 3, 4, 5] = bad
    with pytest.raises(ValueError, match=message):
        _make(name)(x)


@pytest.mark.parametrize("name", ALL_ARRAY)
def test_missing_channel_axis_is_refused(name):
    with pytest.raises(ValueError, match="channel"):
        _make(name)(np.random.rand(32, 32).astype(np.float32))
    with pytest.raises(ValueError, match="spatial_dims=3"):
        _make(name, spatial_dims=3)(np.random.rand(32, 32, 16).astype(np.float32))


def test_missing_channel_axis_of_a_loaded_volume_is_refused(tmp_path):
    import nibabel as nib

    path = tmp_path / "vol.nii.gz"
    nib.save(nib.Nifti1Image(smooth_cube(0)[0], np.eye(4)), str(path))
    volume = LoadImage(image_only=True)(str(path))
    with pytest.raises(ValueError, match="EnsureChannelFirstd"):
        T.RandGenesisCorruption()(volume)


@pytest.mark.parametrize("name, side", [("RandInpaint", 8), ("RandOutpaint", 13), ("RandGenesisCorruption", 13)])
def test_too_small_for_the_margins_is_refused(name, side):
    with pytest.raises(ValueError, match="too small"):
        _make(name)(np.random.rand(1, 32, 32, side).astype(np.float32))
    _make(name)(np.random.rand(1, 32, 32, side + 1).astype(np.float32))


def test_integer_images_are_refused():
    with pytest.raises(ValueError, match="floating-point"):
        T.RandNonlinearIntensity()(np.zeros((1, 16, 16, 16), dtype=np.int16))


DICT_NAMES = [
    "RandNonlinearIntensityd",
    "RandLocalPixelShuffled",
    "RandInpaintd",
    "RandOutpaintd",
    "RandGenesisCorruptiond",
    "RandGenesisFlipd",
]


@pytest.mark.parametrize("name", DICT_NAMES)
def test_unknown_key_is_refused(name):
    d = getattr(T, name)(keys="img")
    with pytest.raises(KeyError, match="'img'.*has keys \\['image'\\]"):
        d({"image": smooth_cube(0)})


def test_dictionary_aliases():
    assert T.RandGenesisCorruptionD is T.RandGenesisCorruptionDict is T.RandGenesisCorruptiond
    assert T.RandLocalPixelShuffleD is T.RandLocalPixelShuffled


def test_argument_checks():
    with pytest.raises(ValueError, match="probability"):
        T.RandNonlinearIntensity(prob=1.5)
    with pytest.raises(ValueError, match="value_range"):
        T.RandInpaint(value_range=(1, 0))
    with pytest.raises(ValueError, match="target_keys"):
        T.RandGenesisCorruptiond(keys="image", target_keys="image")
