"""Shared inputs of the transform tests."""

from __future__ import annotations

import numpy as np
import torch

TRANSFORM_NAMES = ["RandNonlinearIntensity", "RandLocalPixelShuffle", "RandInpaint", "RandOutpaint"]


def smooth_cube(seed: int = 0, shape=(1, 32, 32, 16)) -> np.ndarray:
    """A smooth, textured cube in [0, 1]: blurred noise plus a gradient, like CT tissue after windowing."""
    rng = np.random.RandomState(seed)
    noise = rng.rand(*shape)
    for axis in range(1, len(shape)):
        noise = (noise + np.roll(noise, 1, axis) + np.roll(noise, -1, axis)) / 3
    ramp = np.linspace(0, 1, shape[1]).reshape(1, -1, *([1] * (len(shape) - 2)))
    cube = 0.6 * noise + 0.4 * ramp
    return ((cube - cube.min()) / (cube.max() - cube.min())).astype(np.float32)


def chest_ct_cubes(path, n: int = 64, seed: int = 0) -> np.ndarray:
    """Cubes of 64×64×32 cut at random from a chest CT as in section 2.7 of the reference."""
    from tests.oracle.chest_ct import cut_cubes

    return cut_cubes(str(path), n, seed)


def changed_stats(before: np.ndarray, after: np.ndarray) -> tuple[float, float]:
    """Fraction of voxels changed and mean absolute change."""
    before, after = np.asarray(before, dtype=np.float64), np.asarray(after, dtype=np.float64)
    return float(np.mean(before != after)), float(np.mean(np.abs(before - after)))


def as_numpy(x) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
