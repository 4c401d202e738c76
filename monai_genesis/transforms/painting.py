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

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from . import kernels
from .utils import uniform_noise

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
    if torch.device(device).type == "cpu" and len(boxes.used) <= _SLICE_MAX_ITEMS:
        # a few items on the CPU: one slice write per box beats the batched product
        mask = torch.zeros((len(boxes.used), *spatial_shape), dtype=torch.bool)
        for i, box in _boxes(boxes):
            mask[i][box] = True
        return mask
    starts = torch.as_tensor(boxes.starts, device=device)
    stops = torch.as_tensor(boxes.stops, device=device)
    n, k = starts.shape[:2]
    # a box is the outer product of one interval per axis, an unused box an empty one on the first axis
    axes = [
        ((pos >= starts[..., a, None]) & (pos < stops[..., a, None])).float()
        for a, pos in enumerate(_positions(tuple(spatial_shape), torch.device(device)))
    ]
    axes[0].mul_(torch.as_tensor(boxes.used, device=device, dtype=torch.float32)[..., None])
    # the union counts the boxes covering each voxel: one batched product over the boxes
    first = axes[0] if len(axes) == 2 else (axes[0][..., :, None] * axes[1][..., None, :]).reshape(n, k, -1)
    return torch.bmm(first.transpose(1, 2), axes[-1]).reshape(n, *spatial_shape) > 0


# up to this many items, CPU masks and out-painting are written box by box
_SLICE_MAX_ITEMS = 16


def _boxes(boxes: BoxParams):
    """``(item, slices)`` of every used box."""
    for i in range(len(boxes.used)):
        for start, stop in zip(boxes.starts[i][boxes.used[i]], boxes.stops[i][boxes.used[i]]):
            yield i, tuple(slice(int(a), int(b)) for a, b in zip(start, stop))


@functools.lru_cache(maxsize=16)
def _positions(spatial_shape: tuple[int, ...], device: torch.device) -> list[torch.Tensor]:
    return [torch.arange(side, device=device) for side in spatial_shape]


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
        generator: draws the noise.
    """
    scaled = not (isinstance(low, float) and low == 0.0 and high == 1.0)
    if keep_inside:
        return _outpaint(items, boxes, low, high, scaled, generator)
    device = items.device
    compiled = device.type == "cpu" and kernels.enabled() and items.dtype in (torch.float32, torch.float64)
    if compiled:
        # the same values as the masked path below, in one pass over the rows of the boxes
        per_item = torch.from_numpy(kernels.hole_voxels(items.shape, boxes.starts, boxes.stops, boxes.used))
    else:
        holes = box_mask(items.shape[1:], boxes, device)
        per_item = holes.reshape(items.shape[0], -1).sum(1)
    noise = uniform_noise((int(per_item.sum()),), generator, device)
    if scaled:
        if isinstance(low, torch.Tensor):
            # per item: one low and high per hole voxel
            low, high = (t.reshape(-1).to(device).repeat_interleave(per_item.to(device)) for t in (low, high))
        noise = noise.mul_(high - low).add_(low)
    noise = noise.to(items.dtype)
    if compiled:
        flat = items.detach().contiguous().numpy()
        return torch.from_numpy(kernels.inpaint(flat, noise.numpy(), boxes.starts, boxes.stops, boxes.used))
    return items.masked_scatter(holes, noise)


def _outpaint(items, boxes, low, high, scaled, generator):
    """Out-painting: noise over the whole items, the used boxes copied back."""
    nd = items.ndim - 1
    if isinstance(low, torch.Tensor):
        low, high = low.reshape(-1, *([1] * nd)), high.reshape(-1, *([1] * nd))
    # the noise is drawn in float32 and painted over in place, so that the result is its only new tensor
    noise = uniform_noise(items.shape, generator, items.device)
    if scaled:
        noise = noise.mul_(high - low).add_(low)
    noise = noise.to(items.dtype)
    if items.device.type == "cpu" and items.shape[0] <= _SLICE_MAX_ITEMS:
        # the same values as the masked path below
        for i, box in _boxes(boxes):
            noise[i][box] = items[i][box]
        return noise
    mask = box_mask(items.shape[1:], boxes, items.device)
    return torch.where(mask, items, noise, out=noise)
