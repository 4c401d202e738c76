import numpy as np
import torch

from monai_genesis.transforms import RandGenesisFlip, RandGenesisFlipd
from monai_genesis.transforms.flip import draw_flips


def test_number_of_flips_and_axes():
    R = np.random.RandomState(0)
    flips = draw_flips(R, 20000, 3, flip_rate=0.4)
    # no flip drawn (0.6), or two flips of the same axis (0.4² · 0.6 · 1/3); three flips never cancel
    assert abs((~flips.any(1)).mean() - (0.6 + 0.4**2 * 0.6 / 3)) < 0.015
    # every spatial axis is flipped, and equally often
    per_axis = flips.mean(0)
    assert per_axis.min() > 0.1 and per_axis.max() - per_axis.min() < 0.02


def test_flip_applies_to_spatial_axes_and_to_image_and_label_alike():
    x = torch.arange(2 * 4 * 5 * 6, dtype=torch.float32).reshape(2, 4, 5, 6) / 240
    d = RandGenesisFlipd(keys=("image", "label"), flip_rate=1.0)
    d.set_random_state(0)
    seen = set()
    for _ in range(30):
        out = d({"image": x, "label": x.clone()})
        assert torch.equal(out["image"], out["label"])
        # channels never swap
        assert torch.equal(torch.sort(out["image"][0].reshape(-1)).values, torch.sort(x[0].reshape(-1)).values)
        for dims in ([], [1], [2], [3], [1, 2], [1, 3], [2, 3], [1, 2, 3]):
            if torch.equal(out["image"], torch.flip(x, dims) if dims else x):
                seen.add(tuple(dims))
    assert {(1,), (2,), (3,)} <= seen


def test_array_flip_returns_a_new_image():
    x = np.random.rand(1, 8, 8).astype(np.float32)
    copy = x.copy()
    t = RandGenesisFlip(flip_rate=0.0)
    out = t(x)
    assert isinstance(out, np.ndarray) and out is not x
    np.testing.assert_array_equal(out, copy)
    np.testing.assert_array_equal(x, copy)
