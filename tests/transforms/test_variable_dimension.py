"""The variable dimension transform and the colour shuffle of CSPR."""

import itertools

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import Compose, LoadImage
from PIL import Image

from monai_genesis.transforms import (
    RandChannelShuffle,
    RandChannelShuffled,
    RandChannelShuffleD,
    RandChannelShuffleDict,
    VariableDimension,
    VariableDimensiond,
    VariableDimensionD,
    VariableDimensionDict,
)

MEAN, STD = 114.495, 57.63


def photo(seed=0, shape=(12, 10, 3)):
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def test_channel_last_uint8_becomes_normalised_float32_volume():
    x = photo()
    copy = x.copy()
    out = VariableDimension()(x)
    assert isinstance(out, np.ndarray) and out.dtype == np.float32 and out.shape == (1, 3, 12, 10)
    for c in range(3):
        np.testing.assert_allclose(out[0, c], (x[..., c].astype(np.float32) - MEAN) / STD, rtol=1e-6)
    np.testing.assert_array_equal(x, copy)


def test_one_mean_and_std_for_all_colours():
    z = np.random.default_rng(1).standard_normal((3, 16, 16))
    z = (z - z.mean(axis=(1, 2), keepdims=True)) / z.std(axis=(1, 2), keepdims=True)
    # the colours differ in mean; one normalisation keeps those differences
    z[0] += 0.5
    z[2] -= 0.5
    x = torch.as_tensor(MEAN + STD * z, dtype=torch.float64)
    copy = x.clone()
    out = VariableDimension()(x)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32 and out.shape == (1, 3, 16, 16)
    assert out.mean().item() == pytest.approx(0.0, abs=1e-5)
    means = out[0].mean(dim=(1, 2))
    np.testing.assert_allclose(means.numpy(), [0.5, 0.0, -0.5], atol=1e-5)
    np.testing.assert_allclose(out[0].std(dim=(1, 2), unbiased=False).numpy(), [1.0, 1.0, 1.0], rtol=1e-5)
    assert out.std(unbiased=False).item() == pytest.approx((1 + 0.5 / 3) ** 0.5, rel=1e-5)
    assert torch.equal(x, copy)


def test_custom_mean_std_and_k_channels():
    x = torch.full((5, 4, 6), 3.0)
    out = VariableDimension(channel_dim=0, mean=1.0, std=0.5)(x)
    assert out.shape == (1, 5, 4, 6)
    assert torch.all(out == 4.0)
    x_last = np.full((4, 6, 5), 3.0)
    assert VariableDimension(channel_dim=-1, mean=1.0, std=0.5)(x_last).shape == (1, 5, 4, 6)


def test_metatensor_from_load_image_keeps_meta_and_gains_a_depth_axis(tmp_path):
    path = tmp_path / "photo.png"
    x = photo(2, (20, 30, 3))
    Image.fromarray(x).save(path)
    img = LoadImage(image_only=True)(str(path))
    assert tuple(img.shape) == (30, 20, 3)
    img.affine = torch.diag(torch.tensor([0.5, 0.25, 1.0, 1.0], dtype=torch.float64))
    out = VariableDimension()(img)
    assert isinstance(out, MetaTensor) and tuple(out.shape) == (1, 3, 30, 20)
    assert out.meta["filename_or_obj"] == str(path)
    assert tuple(out.meta["spatial_shape"]) == (3, 30, 20)
    np.testing.assert_allclose(out.affine.numpy()[:3, :3], [[0, 0.5, 0], [0, 0, 0.25], [1, 0, 0]])
    np.testing.assert_allclose(out[0, 1].numpy(), (x[..., 1].T.astype(np.float32) - MEAN) / STD, rtol=1e-6)
    assert img.affine[0, 0] == 0.5


def test_grey_images_raise_or_repeat():
    grey = photo(3, (8, 8, 1))[..., 0]
    for x in (grey, grey[None], grey[..., None]):
        with pytest.raises(ValueError, match=r"is grey .*repeat_grey=True.*RepeatChannel"):
            VariableDimension()(x)
        out = VariableDimension(repeat_grey=True)(x)
        assert out.shape == (1, 3, 8, 8)
        for c in range(3):
            np.testing.assert_allclose(out[0, c], (grey.astype(np.float32) - MEAN) / STD, rtol=1e-6)


@pytest.mark.parametrize(
    "shape, kwargs, match",
    [
        ((3, 8, 3), {}, r"cannot tell the colour axis of the image of shape \(3, 8, 3\); pass channel_dim=0"),
        ((5, 8, 8), {}, r"shape \(5, 8, 8\).*channel_dim=-1 for a channel-last"),
        ((8, 8, 3), {"channel_dim": 0}, r"shape \(8, 8, 3\) as 8 colours.*channel-last; pass channel_dim=-1"),
        ((3, 8, 8), {"channel_dim": -1}, r"looks channel-first; pass channel_dim=0"),
        ((1, 3, 8, 8), {}, r"expected a 2D photo .* got shape \(1, 3, 8, 8\)"),
    ],
)
def test_wrong_or_ambiguous_layouts_are_refused(shape, kwargs, match):
    with pytest.raises(ValueError, match=match):
        VariableDimension(**kwargs)(np.zeros(shape, dtype=np.uint8))


def test_invalid_arguments():
    with pytest.raises(ValueError, match="channel_dim must be 0"):
        VariableDimension(channel_dim=1)
    with pytest.raises(ValueError, match="std must be a positive"):
        VariableDimension(std=0.0)
    with pytest.raises(ValueError, match="prob must be a probability"):
        RandChannelShuffle(prob=1.5)


def test_shuffle_draws_from_its_random_state():
    volume = VariableDimension()(photo(4))
    t = RandChannelShuffle()
    t.set_random_state(7)
    reference = np.random.RandomState(7)
    for _ in range(5):
        out = t(volume)
        reference.rand()
        perm = reference.permutation(3)
        np.testing.assert_array_equal(t.permutation, perm)
        np.testing.assert_array_equal(out, volume[:, perm])
        assert out.dtype == np.float32 and not np.shares_memory(out, volume)


def test_shuffle_draws_every_order_including_the_original():
    t = RandChannelShuffle()
    t.set_random_state(0)
    seen = set()
    for _ in range(100):
        t.randomize(3)
        seen.add(tuple(int(i) for i in t.permutation))
    assert seen == set(itertools.permutations(range(3)))


def test_shuffle_prob_zero_copies_and_randomize_false_reuses():
    x = torch.as_tensor(VariableDimension()(photo(5)))
    t = RandChannelShuffle(prob=0.0)
    out = t(x)
    assert torch.equal(out, x) and out is not x and t.permutation is None
    t = RandChannelShuffle()
    t.set_random_state(3)
    t.randomize(3)
    perm = t.permutation.copy()
    for _ in range(3):
        assert torch.equal(t(x, randomize=False), x[:, perm])
    with pytest.raises(ValueError, match="drew for 3 channels"):
        t(torch.zeros(1, 4, 8, 8), randomize=False)


def test_shuffle_finds_the_colour_axis_and_keeps_the_kind():
    x = photo(6, (9, 7, 3))
    t = RandChannelShuffle()
    t.set_random_state(1)
    out = t(x)
    assert out.dtype == np.uint8 and out.shape == x.shape
    np.testing.assert_array_equal(out, x[..., t.permutation])
    chw = torch.as_tensor(x).permute(2, 0, 1).contiguous()
    assert torch.equal(t(chw, randomize=False), chw[t.permutation])
    meta = MetaTensor(torch.as_tensor(VariableDimension()(x)), meta={"filename_or_obj": "a.png"})
    out = t(meta)
    assert isinstance(out, MetaTensor) and out.meta["filename_or_obj"] == "a.png"
    assert torch.equal(out.as_tensor(), meta.as_tensor()[:, t.permutation])
    with pytest.raises(ValueError, match=r"cannot tell the colour axis of the image of shape \(2, 3, 8, 8\)"):
        t(np.zeros((2, 3, 8, 8)))
    five = np.arange(5 * 4 * 4, dtype=np.float32).reshape(1, 5, 4, 4)
    t5 = RandChannelShuffle(channel_dim=1)
    t5.set_random_state(2)
    np.testing.assert_array_equal(t5(five), five[:, t5.permutation])


def test_dictionary_twins_share_one_permutation_and_names():
    assert VariableDimensionD is VariableDimensiond and VariableDimensionDict is VariableDimensiond
    assert RandChannelShuffleD is RandChannelShuffled and RandChannelShuffleDict is RandChannelShuffled
    data = {"image": photo(7), "second": photo(8), "label": 3}
    shuffle = RandChannelShuffled(keys=["image", "second"])
    # Compose reseeds its random members when it is built: seed the shuffle after
    pipeline = Compose([VariableDimensiond(keys=["image", "second"]), shuffle])
    shuffle.set_random_state(11)
    out = pipeline(data)
    assert out["label"] == 3 and set(out) == {"image", "second", "label"}
    volume, second = VariableDimension()(data["image"]), VariableDimension()(data["second"])
    perm = shuffle.shuffle.permutation
    reference = np.random.RandomState(11)
    reference.rand()
    np.testing.assert_array_equal(perm, reference.permutation(3))
    np.testing.assert_array_equal(out["image"], volume[:, perm])
    np.testing.assert_array_equal(out["second"], second[:, perm])
    assert data["image"].dtype == np.uint8 and data["image"].shape == (12, 10, 3)


def test_dictionary_shuffle_prob_missing_keys_and_channel_mismatch():
    x = np.zeros((1, 3, 4, 4), dtype=np.float32)
    untouched = RandChannelShuffled(keys="image", prob=0.0)({"image": x})
    assert untouched["image"] is x
    with pytest.raises(KeyError, match="image"):
        RandChannelShuffled(keys="image")({"other": x})
    assert RandChannelShuffled(keys="image", allow_missing_keys=True)({"other": x})["other"] is x
    with pytest.raises(ValueError, match="one number of colours"):
        RandChannelShuffled(keys=["a", "b"])({"a": x, "b": np.zeros((1, 4, 4, 4))})
    with pytest.raises(ValueError, match="is grey"):
        VariableDimensiond(keys="image")({"image": np.zeros((8, 8))})
