"""Local pixel shuffling of Models Genesis.

``num_blocks`` boxes are drawn per item, each of size uniform in ``[1, max(1, side // 10)]`` per axis and placed
uniformly where it fits. Each block's voxels are read from the *unmodified* input, randomly permuted and written
back; blocks overlap and a later block overwrites an earlier one, so shuffling does not accumulate.

All blocks of all items are handled at once: every (block, voxel) pair gets the flat index of its voxel and of its
source, the same place in the block's permutation; a scatter of the pair numbers with ``amax`` keeps, for every
voxel, the pair of the last block covering it. A block's permutation is a rotation of one of a fixed set of base
permutations of its shape, both drawn per block: each voxel's source is uniform over the block, and a block of up
to 7 voxels gets every permutation with equal probability (larger ones one of 512 to 1 728). The cost is a dozen
passes over about 2.5 × 10⁵ pairs per 64×64×32 cube, with one random number per block, on the CPU or the GPU.
The blocks are drawn on the items' device, from a generator seeded by the transform's random state. On the CPU,
with Numba installed, one compiled loop writes the blocks in drawing order instead (``kernels.local_shuffle``):
the same draws, the same result, in one pass over the pairs.

Why not ``monai.transforms.RandCoarseShuffle``: it shuffles a handful of holes in place, at the same places in every
channel, and a later hole reads what an earlier one already shuffled. Genesis shuffles 10 000 small blocks per
channel, each read from the unmodified input, with the side bounded by a tenth of the image; and the same kernel
must shuffle a whole batch on the training device (``GenesisPrepareBatch``), which MONAI's per-image NumPy path
does not do.
"""

from __future__ import annotations

import functools
import itertools
import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from . import kernels
from .utils import workspace

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
    if device.type == "cpu" and kernels.enabled():
        placed = kernels.place_blocks(shape.numpy(), raw.numpy(), shapes.numpy(), rooms.numpy(), bits, num_blocks)
        return ShuffleParams(*(torch.from_numpy(t) for t in placed))
    fields = raw[:, None].bitwise_right_shift(shifts).bitwise_and_((1 << bits) - 1)
    origins = fields.mul_(rooms.index_select(0, shape)).bitwise_right_shift_(bits).to(torch.int32)
    sizes = shapes.index_select(0, shape)
    item = torch.arange(n, dtype=torch.int32, device=device).repeat_interleave(num_blocks)
    return ShuffleParams(sizes, origins, item)


def blocks_touching(params: ShuffleParams, starts: torch.Tensor, stops: torch.Tensor, used: torch.Tensor):
    """Which blocks overlap at least one used box of their item: the only blocks that matter where everything
    outside the boxes is replaced afterwards (out-painting).

    Args:
        params: the blocks.
        starts: box starts per item ``(n, boxes, spatial_dims)``; with ``n == 1`` they apply to every block.
        stops: box ends (exclusive), same shape.
        used: which boxes are used ``(n, boxes)``.
    """
    if params.origins.device.type == "cpu" and kernels.enabled():
        boxes = (np.asarray(t.cpu()) for t in (starts, stops, used))
        keep = kernels.blocks_touching(params.origins.numpy(), params.sizes.numpy(), params.item.numpy(), *boxes)
        return torch.from_numpy(keep)
    if params.origins.device.type == "cpu" and starts.shape[1] <= 63 and params.origins.shape[0] > 0:
        return _blocks_touching_tables(params, starts, stops, used)
    starts, stops = starts.to(torch.int32), stops.to(torch.int32)
    if starts.shape[0] > 1:
        item = params.item.long()
        starts, stops, ok = starts[item], stops[item], used[item]
    else:
        ok = used.expand(params.item.shape[0], -1).clone()
    lo, hi = params.origins, params.origins + params.sizes
    # one axis at a time: reductions over a trailing axis of 2 or 3 are slow
    for a in range(lo.shape[1]):
        ok &= (lo[:, a, None] < stops[..., a]) & (hi[:, a, None] > starts[..., a])
    return ok.any(-1)


def _blocks_touching_tables(params: ShuffleParams, starts: torch.Tensor, stops: torch.Tensor, used: torch.Tensor):
    """:py:func:`blocks_touching` on the CPU by tables: per axis, item, origin and size, a bit per box that the
    block's interval overlaps there; a block touches a box where the bits of all axes share one."""
    origins, sizes = params.origins.numpy(), params.sizes.numpy()
    starts, stops = starts.cpu().numpy().astype(np.int64), stops.cpu().numpy().astype(np.int64)
    used = used.cpu().numpy().astype(bool)
    rows = starts.shape[0]
    item = params.item.numpy().astype(np.int64) if rows > 1 else np.zeros(origins.shape[0], dtype=np.int64)
    bits = np.left_shift(np.uint64(1), np.arange(starts.shape[1], dtype=np.uint64))
    code = None
    for a in range(origins.shape[1]):
        o_max, s_max = int(origins[:, a].max()) + 1, int(sizes[:, a].max())
        lo = np.arange(o_max)[None, :, None, None]
        hi = lo + np.arange(1, s_max + 1)[None, None, :, None]
        overlap = (lo < stops[:, None, None, :, a]) & (hi > starts[:, None, None, :, a]) & used[:, None, None, :]
        table = np.bitwise_or.reduce(np.where(overlap, bits, np.uint64(0)), axis=-1).reshape(-1)
        axis_code = table[(item * o_max + origins[:, a]) * s_max + sizes[:, a] - 1]
        code = axis_code if code is None else code & axis_code
    return torch.from_numpy(code != 0)


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
    return _Tables(
        strides=as_long(strides),
        shape_strides=as_long(shape_strides),
        count=as_long(count),
        offset_start=as_long(starts(offsets)),
        offsets=torch.as_tensor(np.concatenate(offsets), dtype=_int_dtype(math.prod(spatial_shape)), device=device),
        perm_start=as_long(starts(permuted)),
        choices=as_long(choices),
        permuted=torch.as_tensor(np.concatenate(permuted), dtype=_int_dtype(math.prod(spatial_shape)), device=device),
    )


def _int_dtype(bound: int) -> torch.dtype:
    """The smaller integer dtype that holds values up to ``bound``."""
    return torch.int32 if bound < 2**31 else torch.int64


def _buffer(slot: str, numel: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor | None:
    """The shuffle's reusable temporaries (None off the CPU)."""
    return workspace(f"shuffle.{slot}", numel, dtype, device)


_RAMPS = threading.local()


def _ramp(length: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """``arange(length)``, sliced from a cached tensor on the CPU (elsewhere a new one: it would hold much memory)."""
    if device.type != "cpu":
        return torch.arange(length, dtype=dtype, device=device)
    ramps = _RAMPS.__dict__.setdefault("ramps", {})
    ramp = ramps.get(dtype)
    if ramp is None or ramp.numel() < length:
        ramp = ramps[dtype] = torch.arange(max(length + length // 4, 1 << 18), dtype=dtype)
    return ramp[:length]


# what the compiled shuffle writes directly; other dtypes (bfloat16, float16) are gathered by their sources
_NUMPY_DTYPES = (torch.float32, torch.float64, torch.uint8, torch.int16, torch.int32, torch.int64)


def local_shuffle(
    items: torch.Tensor, params: ShuffleParams, generator: torch.Generator | None = None, block_fraction: float = 0.1
) -> torch.Tensor:
    """Shuffle the blocks ``params`` inside each item of ``items`` (``(n, *spatial)``); returns a new tensor.

    Args:
        items: the images, one set of blocks per item.
        params: the blocks from :py:func:`draw_blocks`.
        generator: draws the permutations inside the blocks.
        block_fraction: the ``block_fraction`` the blocks were drawn with.
    """
    n, spatial = items.shape[0], tuple(items.shape[1:])
    nvox, device = math.prod(spatial), items.device
    tables = _tables(spatial, max_block_size(spatial, block_fraction), device)
    m = params.sizes.shape[0]
    if m == 0:
        return items.clone()
    # one random number per block picks its permutation: base permutation l rotated by k, j = l * count + k
    draw = torch.randint(2**31 - 1, (m,), generator=generator, device=device)
    if device.type == "cpu" and kernels.enabled():
        # one compiled pass over the blocks
        blocks = (params.sizes.numpy(), params.origins.numpy(), params.item.numpy(), draw.numpy(), tables, nvox)
        if items.dtype in _NUMPY_DTYPES:
            out = kernels.local_shuffle(items.detach().reshape(-1).contiguous().numpy(), *blocks)
            return torch.from_numpy(out).reshape(items.shape)
        source = kernels.local_shuffle(np.arange(n * nvox, dtype=np.int64), *blocks)
        return items.reshape(-1).index_select(0, torch.from_numpy(source)).reshape(items.shape)
    # per block: its shape, voxel count and flat origin (one axis at a time: reductions over a trailing axis of 2
    # or 3 are slow)
    sizes, origins = params.sizes.long(), params.origins.long()
    shape_id, origin = sizes[:, -1] - 1, origins[:, -1].clone()
    for a in range(sizes.shape[1] - 1):
        shape_id += (sizes[:, a] - 1) * int(tables.shape_strides[a])
        origin += origins[:, a] * int(tables.strides[a])
    count = tables.count.index_select(0, shape_id)
    if n > 1:
        origin += params.item.long() * nvox
    end = torch.cumsum(count, 0)
    start = end - count
    total = int(end[-1])
    size = n * nvox
    # a pair's key packs its block number (from 1) above its source voxel
    vox_bits = max(1, (size - 1).bit_length())
    # int32 wherever the values fit (int64 arithmetic is several times slower on the CPU)
    idt = _int_dtype(max(size, total, int(tables.permuted.numel())))
    kdt = torch.int64 if idt == torch.int64 else _int_dtype((m + 1) << vox_bits)
    offsets, permuted = (t if t.dtype == idt else t.to(idt) for t in (tables.offsets, tables.permuted))

    def buffer(slot, dtype=idt, numel=total):
        return _buffer(slot, numel, dtype, device)

    j = draw.remainder_(tables.choices.index_select(0, shape_id))
    perm_base = tables.perm_start.index_select(0, shape_id).add_(j).add_(j.div(count, rounding_mode="floor") * count)
    offset_base = tables.offset_start.index_select(0, shape_id)

    # block number of every (block, voxel) pair: a cumulative sum of ones at the block starts
    marker = torch.zeros(total, dtype=kdt, device=device, out=buffer("marker", kdt))
    marker.index_fill_(0, start[1:], 1)
    block = torch.cumsum(marker, 0, dtype=kdt, out=buffer("block", kdt))
    pair_origin = torch.index_select(origin.to(idt), 0, block, out=buffer("origin"))
    ramp = _ramp(max(size, total), idt, device)

    # target voxel of every pair: its block's origin plus the offset of its place in the block
    local = torch.index_select((offset_base - start).to(idt), 0, block, out=buffer("local")).add_(ramp[:total])
    dst = torch.index_select(offsets, 0, local, out=buffer("dst")).add_(pair_origin)
    scatter_index = buffer("index", torch.int64)
    scatter_index = dst.to(torch.int64, copy=True) if scatter_index is None else scatter_index.copy_(dst)
    # its source: the same place in the block's permutation
    local = torch.index_select((perm_base - start).to(idt), 0, block, out=local).add_(ramp[:total])
    src = torch.index_select(permuted, 0, local, out=dst).add_(pair_origin)
    key = block.add_(1).bitwise_left_shift_(vox_bits).bitwise_or_(src)

    # the last block covering a voxel wins: the largest key scattered onto it; a voxel no block covers keeps
    # (0, itself)
    winner = buffer("winner", kdt, size)
    winner = ramp[:size].to(kdt, copy=True) if winner is None else winner.copy_(ramp[:size])
    winner.scatter_reduce_(0, scatter_index, key, "amax")
    source = winner.bitwise_and_((1 << vox_bits) - 1)
    return items.reshape(-1).index_select(0, source).reshape(items.shape)
