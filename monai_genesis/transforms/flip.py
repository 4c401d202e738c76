"""Random flips of Models Genesis, on spatial axes only.

The original draws ``while rand() < flip_rate and count < 3`` flips, each along a random axis; it picks the axis
among the first three axes of a ``(C, H, W, D)`` array, so it flips the channel axis (a no-op) and never the depth.
Here the axis is drawn among the spatial axes. Flipping an axis twice cancels, so a draw reduces to one flag per axis.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["draw_flips", "flip_items"]


def draw_flips(R: np.random.RandomState, n: int, spatial_dims: int, flip_rate: float, max_flips: int = 3) -> np.ndarray:
    """Draw the flips of ``n`` samples; returns a boolean array ``(n, spatial_dims)``: flip this axis or not.

    Args:
        R: the random state to draw from.
        n: number of samples.
        spatial_dims: number of spatial axes.
        flip_rate: probability of each further flip.
        max_flips: at most this many flips.
    """
    go = R.rand(n, max_flips) < flip_rate
    used = np.logical_and.accumulate(go, axis=1)  # flips continue while each draw succeeds
    axes = R.randint(0, spatial_dims, size=(n, max_flips))
    flips = np.zeros((n, spatial_dims), dtype=bool)
    rows = np.arange(n)
    for k in range(max_flips):
        flips[rows, axes[:, k]] ^= used[:, k]
    return flips


def flip_items(x: torch.Tensor, flips: np.ndarray) -> torch.Tensor:
    """Flip each sample of ``x`` (``(n, C, *spatial)``) along the axes marked in ``flips`` (``(n, spatial_dims)``)."""
    if (flips == flips[0]).all():  # every sample flips alike (always so for one sample)
        dims = [2 + a for a in np.flatnonzero(flips[0])]
        return torch.flip(x, dims) if dims else x
    patterns = np.unique(flips, axis=0)
    out = x.clone()
    for pattern in patterns:
        dims = [2 + a for a in np.flatnonzero(pattern)]
        if dims:
            sel = torch.as_tensor(np.flatnonzero((flips == pattern).all(axis=1)), device=x.device)
            out[sel] = torch.flip(x[sel], dims)
    return out
