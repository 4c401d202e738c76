"""Local pixel shuffling of Models Genesis.

``num_blocks`` boxes are drawn per item, each of size uniform in ``[1, max(1, side // 10)]`` per axis and placed
uniformly where it fits. Each block's voxels are read from the *unmodified* input, randomly permuted and written
back; blocks overlap and a later block overwrites an earlier one, so shuffling does not accumulate.

All blocks of all items are handled at once: every (block, voxel) pair gets a flat index; sorting the pairs by
``(block, random key)`` gives an independent uniform permutation inside each block; a scatter of
``(block number, source)`` with ``amax`` keeps, for every voxel, the source chosen by the last block covering it.
The cost is a few passes over about 2.5 × 10⁵ pairs per 64×64×32 cube, on the CPU or the GPU. The blocks are drawn
on the items' device, from a generator seeded by the transform's random state.
"""

from __future__ import annotations

import functools
import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

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
        return ShuffleParams(self.sizes[keep], self.origins[keep], self.item[keep])


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
    m = n * num_blocks
    sizes = torch.stack(
        [
            torch.randint(1, s + 1, (m,), generator=generator, device=device, dtype=torch.int32)
            for s in max_block_size(spatial_shape, block_fraction)
        ],
        dim=1,
    )
    room = torch.as_tensor(tuple(spatial_shape), dtype=torch.int32, device=device) - sizes + 1
    origins = (torch.rand(room.shape, generator=generator, device=device) * room).to(torch.int32)
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


@functools.lru_cache(maxsize=16)
def _offset_table(spatial_shape: tuple[int, ...], max_sizes: tuple[int, ...], device: torch.device):
    """Flat offsets of the voxels of every block shape (concatenated), where each shape starts, and the strides."""
    strides = np.cumprod((1,) + spatial_shape[:0:-1])[::-1].copy()
    offsets, starts, pos = [], [], 0
    for size in np.ndindex(*max_sizes):
        grids = np.meshgrid(*[np.arange(s + 1) * st for s, st in zip(size, strides)], indexing="ij")
        offsets.append(np.sum(grids, axis=0).ravel())
        starts.append(pos)
        pos += offsets[-1].size
    shape_strides = np.cumprod((1,) + max_sizes[:0:-1])[::-1].copy()
    as_int = functools.partial(torch.as_tensor, dtype=torch.int32, device=device)
    return as_int(np.concatenate(offsets)), as_int(starts), as_int(strides), as_int(shape_strides)


def _int_dtype(bits: int) -> torch.dtype:
    return torch.int32 if bits <= 31 else torch.int64


_WORKSPACE = threading.local()


def _buffer(slot: str, numel: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor | None:
    """A reusable CPU tensor of ``numel`` elements for temporaries (None on other devices, whose allocators cache).

    Allocating and freeing the megabytes of temporaries on every call makes the C allocator shrink and regrow the
    heap, and the page faults cost as much as the work itself.
    """
    if device.type != "cpu":
        return None
    buffers = _WORKSPACE.__dict__.setdefault("buffers", {})
    buf = buffers.get((slot, dtype))
    if buf is None or buf.numel() < numel:
        buf = buffers[(slot, dtype)] = torch.empty(numel + numel // 4, dtype=dtype)
    return buf[:numel]


def _ramp(length: int, device: torch.device) -> torch.Tensor:
    """``arange(length)`` as int32, sliced from a cached tensor."""
    ramps = _WORKSPACE.__dict__.setdefault("ramps", {})
    ramp = ramps.get(device)
    if ramp is None or ramp.numel() < length:
        ramp = ramps[device] = torch.arange(max(length, 1 << 18), dtype=torch.int32, device=device)
    return ramp[:length]


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
    table, table_start, strides, shape_strides = _offset_table(
        spatial, max_block_size(spatial, block_fraction), device
    )
    if params.sizes.shape[0] == 0:
        return items.clone()
    count = params.sizes.prod(1, dtype=torch.int32)
    shape_id = ((params.sizes - 1) * shape_strides).sum(1, dtype=torch.int32)
    origin = (params.origins * strides).sum(1, dtype=torch.int32)
    start = torch.cumsum(count, 0, dtype=torch.int32) - count
    total = int(start[-1] + count[-1])

    def buffer(slot, dtype=torch.int32, numel=total):
        return _buffer(slot, numel, dtype, device)

    # block number of every (block, voxel) pair: a cumulative sum of ones at the block starts
    marker = torch.zeros(total, dtype=torch.int32, device=device, out=buffer("marker"))
    marker.index_fill_(0, start[1:].long(), 1)
    block = torch.cumsum(marker, 0, out=buffer("block"))
    item_offset = params.item.index_select(0, block).long().mul_(nvox) if n > 1 else None

    # target voxel of every pair, in the item's own flat index
    local = torch.index_select(table_start.index_select(0, shape_id) - start, 0, block, out=buffer("local"))
    local.add_(_ramp(total, device))
    dst = torch.index_select(origin, 0, block, out=buffer("dst"))
    dst.add_(torch.index_select(table, 0, local, out=buffer("offset")))

    # a uniform permutation inside every block: sort by (block, random key); at least 16 random bits keep
    # ties (whose pair keeps its order) rare in blocks of up to ~100 voxels
    vox_bits = max(1, (nvox - 1).bit_length())
    block_bits = max(1, len(count)).bit_length()
    key_bits = max(vox_bits, 16)
    kdt = _int_dtype(block_bits + key_bits)
    keys = torch.empty(total, dtype=kdt, device=device, out=buffer("keys", kdt))
    keys.random_(0, 2**key_bits, generator=generator)
    numbers = block if kdt == torch.int32 else block.to(kdt)
    keys.bitwise_or_(numbers.add_(1).bitwise_left_shift_(key_bits))  # block numbers from 1
    sorted_out = (buffer("sorted", kdt), buffer("order", torch.int64))
    # the stable sort of int32 is a radix sort, the fastest
    sorted_keys, order = torch.sort(keys, stable=True, out=sorted_out if sorted_out[0] is not None else None)
    src = torch.index_select(dst, 0, order, out=buffer("src"))

    # the last block covering a voxel wins: scatter (block number, source) with amax; a voxel no block
    # covers keeps (0, itself)
    sorted_keys.bitwise_right_shift_(key_bits).bitwise_left_shift_(vox_bits).bitwise_or_(src)
    ramp, winner = _ramp(nvox, device), buffer("winner", kdt, n * nvox)
    winner = ramp.to(kdt).repeat(n) if winner is None else winner.view(n, nvox).copy_(ramp).view(-1)
    scatter_index = buffer("index", torch.int64)
    scatter_index = dst.long() if scatter_index is None else scatter_index.copy_(dst)
    if item_offset is not None:
        scatter_index += item_offset
    winner.scatter_reduce_(0, scatter_index, sorted_keys, "amax")
    source = winner.bitwise_and_((1 << vox_bits) - 1)
    if n > 1:
        source = source.long().add_(torch.arange(0, n * nvox, nvox, device=device).repeat_interleave(nvox))
    return items.reshape(-1).index_select(0, source).reshape(items.shape)
