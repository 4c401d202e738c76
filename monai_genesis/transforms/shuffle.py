"""Local pixel shuffling of Models Genesis.

``num_blocks`` boxes are drawn per item, each of size uniform in ``[1, max(1, side // 10)]`` per axis and placed
uniformly where it fits. Each block's voxels are read from the *unmodified* input, randomly permuted and written
back; blocks overlap and a later block overwrites an earlier one, so shuffling does not accumulate.

A block's permutation is a rotation of one of a fixed set of base permutations of its shape, both drawn per block:
each voxel's source is uniform over the block, and a block of up to 7 voxels gets every permutation with equal
probability (larger ones one of 512 to 1 728). The blocks are drawn on the items' device, from a generator seeded
by the transform's random state, with one random number per block; the backend
(:py:mod:`monai_genesis.transforms.backend`) writes them: a compiled loop over the blocks in drawing order on the
CPU, a scatter of all (block, voxel) pairs at once with torch elsewhere (about 2.5 × 10⁵ pairs per 64×64×32 cube).

Why not ``monai.transforms.RandCoarseShuffle``: it shuffles a handful of holes in place, at the same places in every
channel, and a later hole reads what an earlier one already shuffled. Genesis shuffles 10 000 small blocks per
channel, each read from the unmodified input, with the side bounded by a tenth of the image; and the same kernel
must shuffle a whole batch on the training device (``PretextPrepareBatch``), which MONAI's per-image NumPy path
does not do.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .backend import TorchBackend, backend_for

__all__ = ["ShuffleParams", "blocks_touching", "draw_blocks", "local_shuffle", "max_block_size"]


@dataclass
class ShuffleParams:
    """Blocks of one or more items: ``sizes`` and ``origins`` ``(m, spatial_dims)`` and ``item`` ``(m,)``, the item
    each block belongs to, all int32 tensors. Blocks are in drawing order, an item's blocks one after the other."""

    sizes: torch.Tensor
    origins: torch.Tensor
    item: torch.Tensor

    def select(self, keep: torch.Tensor) -> ShuffleParams:
        """The blocks where ``keep`` is True, in the same order."""
        index = keep.nonzero().squeeze(1)
        return ShuffleParams(*(t.index_select(0, index) for t in (self.sizes, self.origins, self.item)))


@functools.lru_cache(maxsize=16)
def _block_shapes(spatial_shape: tuple[int, ...], max_sizes: tuple[int, ...], device: torch.device):
    """The sizes of every block shape ``(shapes, spatial_dims)`` in C order, the room each leaves on each axis
    (the number of origins where it fits) and the bit shifts of the axes' fields, for :py:func:`draw_blocks`."""
    sizes = np.stack(np.unravel_index(np.arange(math.prod(max_sizes)), max_sizes), axis=1) + 1
    bits = 63 // len(spatial_shape)
    shifts = torch.arange(len(spatial_shape), dtype=torch.int64, device=device) * bits
    rooms = torch.as_tensor(np.asarray(spatial_shape) - sizes + 1, dtype=torch.int64, device=device)
    return torch.as_tensor(sizes, dtype=torch.int32, device=device), rooms, shifts


def max_block_size(spatial_shape: Sequence[int], block_fraction: float = 0.1) -> tuple[int, ...]:
    """The largest block side per axis: ``side // 10`` for the default fraction, at least 1."""
    return tuple(max(1, int(s * block_fraction)) for s in spatial_shape)


def draw_blocks(
    generator: torch.Generator,
    n: int,
    spatial_shape: Sequence[int],
    num_blocks: int = 10000,
    block_fraction: float = 0.1,
    device: torch.device | str = "cpu",
) -> ShuffleParams:
    """Draw the shuffled blocks of ``n`` items on ``device``.

    Args:
        generator: a torch generator on ``device``.
        n: number of items.
        spatial_shape: the items' spatial shape.
        num_blocks: blocks per item.
        block_fraction: the largest block side as a fraction of the image side.
        device: where to draw.
    """
    device = torch.device(device)
    shapes, rooms, shifts = _block_shapes(tuple(spatial_shape), max_block_size(spatial_shape, block_fraction), device)
    m = n * num_blocks
    # every block shape is equally likely, so each side is uniform and independent of the others
    shape = torch.randint(shapes.shape[0], (m,), generator=generator, device=device)
    # one 63-bit random number per block: a uniform field of 63 // spatial_dims bits per axis, scaled to the room
    # the block leaves there (relative bias below 1e-4)
    bits = 63 // len(spatial_shape)
    raw = torch.empty(m, dtype=torch.int64, device=device).random_(generator=generator)
    placed = backend_for(device).place_blocks(shape, raw, shapes, rooms, shifts, bits, n, num_blocks)
    return ShuffleParams(*placed)


def blocks_touching(params: ShuffleParams, starts: torch.Tensor, stops: torch.Tensor, used: torch.Tensor):
    """Which blocks overlap at least one used box of their item: the only blocks that matter where everything
    outside the boxes is replaced afterwards (out-painting).

    Args:
        params: the blocks.
        starts: box starts per item ``(n, boxes, spatial_dims)``; with ``n == 1`` they apply to every block.
        stops: box ends (exclusive), same shape.
        used: which boxes are used ``(n, boxes)``.
    """
    backend = backend_for(params.origins.device)
    return backend.blocks_touching(params.origins, params.sizes, params.item, starts, stops, used)


# blocks of up to this many voxels may get every permutation; larger ones one of base permutations × voxels
_ALL_PERMUTATIONS_UP_TO = 7
# base permutations of a larger shape: about PERMUTATIONS_PER_BLOCK / voxels, within these bounds; every block
# then draws from at least 512 permutations, and the tables of a 64×64×32 image take 0.5 MB instead of 1.4 MB
PERMUTATIONS_PER_SHAPE = 64
MIN_PERMUTATIONS_PER_SHAPE = 16
PERMUTATIONS_PER_BLOCK = 512


@dataclass(frozen=True)
class _Tables:
    """Per-shape tables of the blocks of one image shape, on one device.

    ``count`` (voxels), ``offset_start`` and ``perm_start`` (where the shape starts in ``offsets`` and
    ``permuted``) and ``choices`` (permutations it can draw) are per block shape; ``offsets`` holds the flat
    offsets of every shape's voxels, ``permuted`` those of every shape's base permutations, each written twice
    so that a rotation of a base permutation is a contiguous slice.
    """

    strides: torch.Tensor
    shape_strides: torch.Tensor
    count: torch.Tensor
    offset_start: torch.Tensor
    offsets: torch.Tensor
    perm_start: torch.Tensor
    choices: torch.Tensor
    permuted: torch.Tensor


def _base_permutations(count: int, rng: np.random.RandomState) -> np.ndarray:
    """Permutations ``(L, count)`` whose rotations give the permutations a block of ``count`` voxels draws from.

    Those fixing voxel 0 are one per coset of the rotations, so with the rotations they give every permutation
    once; above ``_ALL_PERMUTATIONS_UP_TO`` voxels, random ones (their rotations still send every voxel
    anywhere in the block with equal probability).
    """
    if count <= _ALL_PERMUTATIONS_UP_TO:
        return np.array([(0, *p) for p in itertools.permutations(range(1, count))], dtype=np.int64)
    bases = min(PERMUTATIONS_PER_SHAPE, max(MIN_PERMUTATIONS_PER_SHAPE, -(-PERMUTATIONS_PER_BLOCK // count)))
    return np.argsort(rng.rand(bases, count), axis=1)


@functools.lru_cache(maxsize=16)
def _tables(spatial_shape: tuple[int, ...], max_sizes: tuple[int, ...], device: torch.device) -> _Tables:
    """The tables of ``spatial_shape`` with blocks up to ``max_sizes``, built once per shape and device."""
    strides = np.cumprod((1,) + spatial_shape[:0:-1])[::-1].copy()
    rng = np.random.RandomState(0)  # a fixed set of base permutations; which one a block uses is drawn per call
    offsets, permuted, count, choices = [], [], [], []
    for size in np.ndindex(*max_sizes):
        grids = np.meshgrid(*[np.arange(s + 1) * st for s, st in zip(size, strides)], indexing="ij")
        flat = np.sum(grids, axis=0).ravel()
        base = flat[_base_permutations(flat.size, rng)]
        offsets.append(flat)
        permuted.append(np.concatenate([base, base], axis=1).ravel())
        count.append(flat.size)
        choices.append(base.size)

    def starts(parts):
        return np.cumsum([0] + [p.size for p in parts[:-1]])

    shape_strides = np.cumprod((1,) + max_sizes[:0:-1])[::-1].copy()
    as_long = functools.partial(torch.as_tensor, dtype=torch.int64, device=device)
    index_dtype = torch.int32 if math.prod(spatial_shape) < 2**31 else torch.int64
    return _Tables(
        strides=as_long(strides),
        shape_strides=as_long(shape_strides),
        count=as_long(count),
        offset_start=as_long(starts(offsets)),
        offsets=torch.as_tensor(np.concatenate(offsets), dtype=index_dtype, device=device),
        perm_start=as_long(starts(permuted)),
        choices=as_long(choices),
        permuted=torch.as_tensor(np.concatenate(permuted), dtype=index_dtype, device=device),
    )


def local_shuffle(
    items: torch.Tensor,
    params: ShuffleParams,
    generator: torch.Generator | None = None,
    block_fraction: float = 0.1,
    backend: TorchBackend | None = None,
) -> torch.Tensor:
    """Shuffle the blocks ``params`` inside each item of ``items`` (``(n, *spatial)``); returns a new tensor.

    Args:
        items: the images, one set of blocks per item.
        params: the blocks from :py:func:`draw_blocks`.
        generator: draws the permutations inside the blocks.
        block_fraction: the ``block_fraction`` the blocks were drawn with.
        backend: how to compute; None for the backend of the items' device.
    """
    spatial, device = tuple(items.shape[1:]), items.device
    tables = _tables(spatial, max_block_size(spatial, block_fraction), device)
    m = params.sizes.shape[0]
    if m == 0:
        return items.clone()
    # one random number per block picks its permutation
    keys = torch.randint(2**31 - 1, (m,), generator=generator, device=device)
    backend = backend_for(device) if backend is None else backend
    return backend.shuffle(items, params.sizes, params.origins, params.item, keys, tables)
