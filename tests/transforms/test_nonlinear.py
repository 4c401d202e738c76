from math import comb

import numpy as np
import pytest
import torch

from monai_genesis.transforms import RandNonlinearIntensity, RandNonlinearIntensityd
from monai_genesis.transforms.nonlinear import NonlinearParams, apply_lut, bezier_lut, percentile_range


def _reference_map(x, points, increasing, n_times=100000):
    """The map as the original computes it: 100 000 curve points, then np.interp."""
    t = np.linspace(0.0, 1.0, n_times)
    basis = np.array([comb(3, i) * t ** (3 - i) * (1 - t) ** i for i in range(4)])
    xs = np.array([p[0] for p in points]) @ basis
    ys = np.array([p[1] for p in points]) @ basis
    xs = np.sort(xs)
    if increasing:
        ys = np.sort(ys)
    return np.interp(x, xs, ys)


@pytest.mark.parametrize("increasing", [True, False])
def test_map_matches_a_dense_interpolation(increasing):
    rng = np.random.RandomState(5)
    x = torch.rand(4, 20, 20, 10, generator=torch.Generator().manual_seed(0))
    cps = rng.rand(4, 2, 2)
    params = NonlinearParams(cps, np.full(4, increasing))
    out = apply_lut(x, bezier_lut(params))
    for i in range(4):
        points = [[0, 0], cps[i, 0].tolist(), cps[i, 1].tolist(), [1, 1]]
        ref = _reference_map(x[i].numpy().astype(np.float64), points, increasing)
        assert np.abs(out[i].numpy() - ref).max() < 4e-3  # less than one 8-bit grey level


def test_increasing_and_inverted_maps_hit_the_end_points():
    params = NonlinearParams(np.random.RandomState(0).rand(2, 2, 2), np.array([True, False]))
    ends = torch.tensor([[0.0, 1.0], [0.0, 1.0]])
    out = apply_lut(ends, bezier_lut(params))
    np.testing.assert_allclose(out.numpy(), [[0.0, 1.0], [1.0, 0.0]], atol=1e-6)
    grid = torch.linspace(0, 1, 101).expand(2, -1)
    mapped = apply_lut(grid, bezier_lut(params))
    assert (mapped[0].diff() >= -1e-6).all()
    assert mapped[1, 0] > mapped[1, -1]


def test_inversion_probability_and_per_channel_draws():
    t = RandNonlinearIntensity(prob=1.0)
    t.set_random_state(0)
    ramp = torch.linspace(0, 1, 32 * 32).reshape(1, 32, 32).repeat(400, 1, 1)
    out = t(ramp)
    inverted = (out[:, 0, 0] > out[:, -1, -1]).float().mean().item()
    assert 0.42 < inverted < 0.58
    # identical channels get different curves
    assert not torch.equal(out[0], out[1])


def test_probability_of_corruption():
    t = RandNonlinearIntensity(prob=0.3)
    t.set_random_state(1)
    x = torch.rand(1000, 12, 12)
    changed = (t(x) != x).flatten(1).any(1).float().mean().item()
    assert 0.25 < changed < 0.35


def test_zscore_mode_maps_between_percentiles():
    rng = np.random.RandomState(0)
    x = torch.as_tensor(rng.randn(2, 24, 24, 12).astype(np.float32))
    low, high = percentile_range(x.reshape(2, 24, 24, 12))
    np.testing.assert_allclose(low.numpy(), np.percentile(x.reshape(2, -1).numpy(), 0.1, axis=1), rtol=1e-5)
    np.testing.assert_allclose(high.numpy(), np.percentile(x.reshape(2, -1).numpy(), 99.9, axis=1), rtol=1e-5)
    t = RandNonlinearIntensity(prob=1.0, zscore=True)
    t.set_random_state(0)
    out = t(x)
    for c in range(2):
        assert out[c].min() >= low[c] - 1e-5 and out[c].max() <= high[c] + 1e-5
    assert (out != x).float().mean() > 0.9


def test_dictionary_version_shares_one_draw_across_keys():
    x = torch.rand(1, 16, 16, 16)
    d = RandNonlinearIntensityd(keys=["a", "b"], prob=1.0)
    d.set_random_state(3)
    out = d({"a": x, "b": x.clone(), "c": x})
    assert torch.equal(out["a"], out["b"])
    assert out["c"] is x
    assert not torch.equal(out["a"], x)
