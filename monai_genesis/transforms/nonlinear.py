"""Non-linear intensity transformation of Models Genesis: a random cubic Bézier curve applied to every voxel.

With end points ``P0 = (0, 0)``, ``P3 = (1, 1)`` and control points ``P1, P2`` uniform in ``[0, 1)²``, the curve

    B(t) = t³ P0 + 3 t² (1 - t) P1 + 3 t (1 - t)² P2 + (1 - t)³ P3,   t ∈ [0, 1]

is sampled at ``num_points`` values of ``t``; its x values are sorted, and its y values too unless the map is
inverted (probability 0.5): the k-th smallest x is then paired with the k-th point along the curve from ``P3``,
which maps 0 to 1 and 1 to 0. Voxels are mapped by linear interpolation through (x → y), tabulated on a uniform
grid of ``lut_size`` entries so that applying the map costs one gather per voxel. With the defaults the map
differs from a 100 000-point interpolation by less than 0.004 (one 8-bit grey level) at any voxel. In z-score
mode the curve is stretched from ``[0, 1]`` to the input's 0.1st–99.9th percentiles.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["NonlinearParams", "draw_nonlinear", "bezier_lut", "apply_lut", "percentile_range"]


@dataclass
class NonlinearParams:
    """Control points ``(n, 2, 2)`` (``[P1, P2]`` as ``(x, y)``) and whether each map is increasing ``(n,)``."""

    control_points: np.ndarray
    increasing: np.ndarray


def draw_nonlinear(R: np.random.RandomState, n: int, invert_prob: float = 0.5) -> NonlinearParams:
    """Draw the Bézier control points of ``n`` items.

    Args:
        R: the random state to draw from.
        n: number of items.
        invert_prob: probability that a map is decreasing (an intensity inversion).
    """
    control_points = R.rand(n, 2, 2)
    increasing = R.rand(n) >= invert_prob
    return NonlinearParams(control_points, increasing)


@functools.lru_cache(maxsize=8)
def _basis(num_points: int, lut_size: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Bernstein weights of ``P0..P3`` at ``num_points`` values of ``t`` (from P3 to P0), and the table's grid."""
    t = torch.linspace(0.0, 1.0, num_points, device=device)
    weights = torch.stack([t**3, 3 * t**2 * (1 - t), 3 * t * (1 - t) ** 2, (1 - t) ** 3])
    return weights, torch.linspace(0.0, 1.0, lut_size, device=device)[None]


def bezier_lut(
    params: NonlinearParams, device: torch.device | str = "cpu", num_points: int = 4096, lut_size: int = 4097
) -> torch.Tensor:
    """Tabulate the intensity maps of ``params`` on a uniform grid of ``[0, 1]``; returns ``(n, lut_size)`` float32.

    Args:
        params: control points and directions from :py:func:`draw_nonlinear`.
        device: where to build the table.
        num_points: number of ``t`` values at which the curve is sampled.
        lut_size: number of entries of the table over ``[0, 1]``.
    """
    weights, grid = _basis(num_points, lut_size, torch.device(device))
    cp = torch.as_tensor(params.control_points, dtype=torch.float32, device=device)
    n = cp.shape[0]
    points = torch.cat([cp.new_zeros(n, 1, 2), cp, cp.new_ones(n, 1, 2)], dim=1)  # (n, 4, 2)
    curve = torch.einsum("npc,pk->nck", points, weights)  # (n, 2, num_points)
    xs = curve[:, 0].sort(dim=1).values
    ys = curve[:, 1]
    if params.increasing.all():
        ys = ys.sort(dim=1).values
    elif params.increasing.any():
        increasing = torch.as_tensor(params.increasing, device=device)[:, None]
        ys = torch.where(increasing, ys.sort(dim=1).values, ys)
    grid = grid.expand(n, -1).contiguous()
    j = torch.searchsorted(xs, grid).clamp_(1, num_points - 1)
    x0, x1 = xs.gather(1, j - 1), xs.gather(1, j)
    y0, y1 = ys.gather(1, j - 1), ys.gather(1, j)
    w = ((grid - x0) / (x1 - x0).clamp_min(1e-12)).clamp_(0.0, 1.0)
    return y0 + w * (y1 - y0)


def apply_lut(
    items: torch.Tensor, lut: torch.Tensor, low: torch.Tensor | None = None, high: torch.Tensor | None = None
) -> torch.Tensor:
    """Map every voxel of ``items`` (``(n, *spatial)``) through its item's table (``(n, lut_size)``).

    Args:
        items: the images, one map per item.
        lut: the tables from :py:func:`bezier_lut`.
        low: per-item value mapped to the table's start (``(n,)``); None for 0.
        high: per-item value mapped to the table's end (``(n,)``); None for 1.
    """
    n, size = lut.shape
    flat = items.reshape(n, -1).float()
    scaled = low is not None
    if scaled:
        low, span = low[:, None].float(), (high - low).clamp_min(1e-12)[:, None].float()
        flat = (flat - low) / span
    pos = flat.clamp(0.0, 1.0).mul_(size - 1)
    idx = pos.to(torch.int32).clamp_(max=size - 2)
    frac = pos.sub_(idx).reshape(-1)
    if n > 1:
        idx += torch.arange(0, n * size, size, dtype=torch.int32, device=idx.device)[:, None]
    table = lut.reshape(-1)
    idx = idx.reshape(-1)
    below = table.index_select(0, idx)
    out = table.index_select(0, idx.add_(1)).sub_(below).mul_(frac).add_(below).reshape(n, -1)
    if scaled:
        out = out.mul_(span).add_(low)
    return out.reshape(items.shape).to(items.dtype)


def percentile_range(items: torch.Tensor, lower: float = 0.1, upper: float = 99.9) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-item ``lower`` and ``upper`` percentiles of ``items`` (``(n, *spatial)``), linear as ``numpy.percentile``."""
    flat = items.reshape(items.shape[0], -1).float()
    m = flat.shape[1]

    def pct(q: float) -> torch.Tensor:
        pos = q / 100.0 * (m - 1)
        k = int(np.floor(pos))
        below = torch.kthvalue(flat, k + 1, dim=1).values
        above = torch.kthvalue(flat, min(k + 2, m), dim=1).values
        return below + (pos - k) * (above - below)

    return pct(lower), pct(upper)
