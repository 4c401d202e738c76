"""In-painting and out-painting of Models Genesis.

In-painting fills up to 5 boxes with uniform noise (``while count < 5 and rand() < 0.95``), each box of side
uniform in ``[side // 6, side // 3]``. Out-painting fills the whole item with uniform noise, then restores the
original inside one box and up to 4 more (``while count < 4 and rand() < 0.95``), each of side
``side - randint(3 side // 7, 4 side // 7)``. Box positions keep a 3-voxel margin to the border
(uniform in ``[3, side - size - 3]``). All bounds are inclusive, as in the original.

Why not ``monai.transforms.RandCoarseDropout`` (with ``fill_value=None`` for noise, ``dropout_holes=False`` for
out-painting): its holes may touch the border (no 3-voxel margin), its number of holes is fixed or uniform rather
than the geometric ``0.95`` chain, its noise spans the image's own min and max rather than the declared value range,
and one draw serves every channel, where Genesis draws boxes and noise per channel. It also works one image at a
time; these box masks paint a whole batch on the device in one pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .backend import backend_for

__all__ = [
    "BoxParams",
    "draw_inpaint_boxes",
    "draw_outpaint_boxes",
    "box_mask",
    "paint",
    "MARGIN",
    "INPAINT_MIN_SIZE",
    "OUTPAINT_MIN_SIZE",
]

MARGIN = 3
INPAINT_MIN_SIZE = 9  # side - side // 3 >= 2 * MARGIN
OUTPAINT_MIN_SIZE = 14  # 3 * side // 7 >= 2 * MARGIN


@dataclass
class BoxParams:
    """Box starts and ends (exclusive), ``(n, max_boxes, spatial_dims)`` int, and which boxes are used ``(n, max_boxes)``."""

    starts: np.ndarray
    stops: np.ndarray
    used: np.ndarray


def _count(R: np.random.RandomState, n: int, max_count: int, rate: float) -> np.ndarray:
    """Number of consecutive successes of ``rand() < rate``, capped at ``max_count``."""
    return np.cumprod(R.rand(n, max_count) < rate, axis=1).sum(axis=1)


def _place(R: np.random.RandomState, sizes: np.ndarray, shape: np.ndarray) -> np.ndarray:
    """Uniform integer starts in ``[MARGIN, side - size - MARGIN]`` for boxes of ``sizes``."""
    room = shape - sizes - 2 * MARGIN + 1
    return MARGIN + (R.rand(*sizes.shape) * room).astype(np.int64)


def draw_inpaint_boxes(
    R: np.random.RandomState, n: int, spatial_shape: Sequence[int], max_boxes: int = 5, rate: float = 0.95
) -> BoxParams:
    """Draw the noise-filled holes of ``n`` items.

    Args:
        R: the random state to draw from.
        n: number of items.
        spatial_shape: the items' spatial shape.
        max_boxes: at most this many holes.
        rate: probability of each further hole.
    """
    shape = np.asarray(spatial_shape)
    used = np.arange(max_boxes)[None] < _count(R, n, max_boxes, rate)[:, None]
    sizes = R.randint(shape // 6, shape // 3 + 1, size=(n, max_boxes, len(shape)))
    starts = _place(R, sizes, shape)
    return BoxParams(starts, starts + sizes, used)


def draw_outpaint_boxes(
    R: np.random.RandomState, n: int, spatial_shape: Sequence[int], max_boxes: int = 5, rate: float = 0.95
) -> BoxParams:
    """Draw the kept boxes of ``n`` out-painted items: one always, then up to ``max_boxes - 1`` more.

    Args:
        R: the random state to draw from.
        n: number of items.
        spatial_shape: the items' spatial shape.
        max_boxes: at most this many boxes.
        rate: probability of each further box.
    """
    shape = np.asarray(spatial_shape)
    used = np.arange(max_boxes)[None] < 1 + _count(R, n, max_boxes - 1, rate)[:, None]
    sizes = shape - R.randint(3 * shape // 7, 4 * shape // 7 + 1, size=(n, max_boxes, len(shape)))
    starts = _place(R, sizes, shape)
    return BoxParams(starts, starts + sizes, used)


def box_mask(spatial_shape: Sequence[int], boxes: BoxParams, device: torch.device | str = "cpu") -> torch.Tensor:
    """Boolean mask ``(n, *spatial)`` of the union of the used boxes of each item."""
    return backend_for(device).box_mask(tuple(spatial_shape), boxes.starts, boxes.stops, boxes.used)


def paint(
    items: torch.Tensor,
    boxes: BoxParams,
    keep_inside: bool,
    low: torch.Tensor | float = 0.0,
    high: torch.Tensor | float = 1.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Replace voxels of ``items`` (``(n, *spatial)``) by uniform noise in ``[low, high)``; returns a new tensor.

    Out-painting draws one noise value per voxel of the items and keeps the boxes; in-painting, whose holes cover
    a few percent of the voxels, draws one per voxel of the holes, in C order over the items.

    Args:
        items: the images.
        boxes: the boxes from :py:func:`draw_inpaint_boxes` or :py:func:`draw_outpaint_boxes`.
        keep_inside: False for in-painting (noise inside the boxes), True for out-painting (noise outside).
        low: noise low end, a number or per item ``(n,)``.
        high: noise high end, a number or per item ``(n,)``.
        generator: its seed draws the noise (torch's global generator when None).
    """
    backend = backend_for(items.device)
    seed = None if generator is None else generator.initial_seed()
    step = backend.outpaint if keep_inside else backend.inpaint
    return step(items, boxes.starts, boxes.stops, boxes.used, low, high, seed)
