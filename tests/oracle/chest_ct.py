"""Cubes of a chest CT cut as in section 2.7 of the Genesis reference, for the faithfulness comparison."""

from __future__ import annotations

import numpy as np

__all__ = ["cut_cubes"]


def cut_cubes(image: str, n: int, seed: int) -> np.ndarray:
    """``n`` cubes of 64×64×32 of the CT ``image`` in the window [-1000, 1000] HU scaled to [0, 1], 100 voxels from
    the in-plane borders, at seeded random positions."""
    from monai.transforms import LoadImage

    vol = np.asarray(LoadImage(image_only=True)(image), dtype=np.float32)
    vol = (np.clip(vol, -1000, 1000) + 1000) / 2000
    rng = np.random.RandomState(seed)
    cubes = []
    for _ in range(n):
        x = rng.randint(100, vol.shape[0] - 100 - 64 + 1)
        y = rng.randint(100, vol.shape[1] - 100 - 64 + 1)
        z = rng.randint(0, vol.shape[2] - 32 + 1)
        cubes.append(vol[x : x + 64, y : y + 64, z : z + 32][None])
    return np.stack(cubes)
