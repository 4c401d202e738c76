"""How the Genesis corruptions compute: one small interface, a backend per device, chosen once per draw or apply.

Each corruption is a batch-first functional core, a draw of its parameters and an apply of them to items
``(n, *spatial)`` (every channel of every sample is an item). The computations behind them are the methods of a
backend:

==================  ==============================================================================
``noise``           uniform ``[0, 1)`` float32 noise from a seed (in- and out-painting)
``place_blocks``    sizes, origins and items of the shuffled blocks from their random numbers
``blocks_touching`` which blocks overlap a box of their item (the shuffle skips what out-painting erases)
``curve_tables``    the tabulated Bézier maps of the non-linear transformation
``shuffle``         the local pixel shuffle of drawn blocks and permutation numbers
``map_lut``         every voxel through its item's table; ``regions`` may bound what is needed
``inpaint``         noise inside the boxes
``outpaint``        noise outside the boxes
==================  ==============================================================================

- :py:class:`TorchBackend`: torch code, on any device (a GPU): whole batches at once, vectorised masks.
- :py:class:`TorchCPUBackend`: the same torch code on the CPU, where the noise comes from NumPy's PCG64 and the
  tables from ``np.interp`` (faster there than torch's), the temporaries of the shuffle and the map are reused
  between calls (allocating and freeing megabytes on every call makes the C allocator shrink and regrow the heap,
  and the page faults cost as much as the work), and a few items take shorter paths with the same values: boxes
  written one by one, and the curve mapped only over the region out-painting keeps. Those size thresholds live
  here and nowhere else.
- :py:class:`CompiledCPUBackend`: the CPU backend with the Numba loops of
  :py:mod:`monai_genesis.transforms.kernels`, each computation in one pass over the data.

:py:func:`backend_for` is the one choice: the compiled backend on the CPU when Numba can be imported and
``MONAI_GENESIS_NUMBA`` is not ``0``, else the torch code on the CPU, and the torch code on any other device. The
two CPU backends return the same values from the same draws (``tests/transforms/test_kernels.py``).
"""

from __future__ import annotations

import functools
import math
import threading
from collections.abc import Sequence

import numpy as np
import torch

from . import kernels

__all__ = ["TorchBackend", "TorchCPUBackend", "CompiledCPUBackend", "backend_for"]


def backend_for(device: torch.device | str) -> TorchBackend:
    """The backend of data on ``device``: the compiled loops on the CPU when Numba is usable, else torch code."""
    device = torch.device(device)
    if device.type != "cpu":
        return _torch(device)
    return _cpu(CompiledCPUBackend if kernels.enabled() else TorchCPUBackend)


@functools.lru_cache(maxsize=None)
def _torch(device: torch.device) -> TorchBackend:
    return TorchBackend(device)


@functools.lru_cache(maxsize=None)
def _cpu(cls: type) -> TorchBackend:
    return cls()


def _int_dtype(bound: int) -> torch.dtype:
    """The smaller integer dtype that holds values up to ``bound``."""
    return torch.int32 if bound < 2**31 else torch.int64


class TorchBackend:
    """The corruptions' computations as torch code on ``device`` (see the module)."""

    name = "torch"

    def __init__(self, device: torch.device | str = "cuda") -> None:
        self.device = torch.device(device)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.device)!r})"

    # -- temporaries -------------------------------------------------------------------------------------------

    def buffer(self, slot: str, numel: int, dtype: torch.dtype) -> torch.Tensor | None:
        """A reusable tensor of ``numel`` elements for the temporaries of ``slot``, or None for a new one (a GPU's
        caching allocator reuses memory anyway)."""
        return None

    def ramp(self, length: int, dtype: torch.dtype) -> torch.Tensor:
        """``arange(length)`` on the device."""
        return torch.arange(length, dtype=dtype, device=self.device)

    # -- noise -------------------------------------------------------------------------------------------------

    def noise(self, shape: Sequence[int], seed: int | None) -> torch.Tensor:
        """Float32 noise uniform in ``[0, 1)`` of ``shape``, the same for the same seed (torch's global generator
        when ``seed`` is None), from a torch generator of the device."""
        shape = tuple(int(s) for s in shape)
        if seed is None:
            return torch.empty(shape, device=self.device).uniform_()
        generator = torch.Generator(device=self.device).manual_seed(int(seed))
        return torch.empty(shape, device=self.device).uniform_(generator=generator)

    # -- local pixel shuffle -----------------------------------------------------------------------------------

    def place_blocks(self, shape_index, raw, shapes, rooms, shifts, bits: int, n: int, per_item: int):
        """Sizes, origins and items (int32) of the blocks whose shape indices are ``shape_index`` and whose 63-bit
        numbers are ``raw``: the field of ``bits`` bits of each axis scaled to the room the block leaves there."""
        fields = raw[:, None].bitwise_right_shift(shifts).bitwise_and_((1 << bits) - 1)
        origins = fields.mul_(rooms.index_select(0, shape_index)).bitwise_right_shift_(bits).to(torch.int32)
        sizes = shapes.index_select(0, shape_index)
        item = torch.arange(n, dtype=torch.int32, device=raw.device).repeat_interleave(per_item)
        return sizes, origins, item

    def blocks_touching(self, origins, sizes, item, starts, stops, used) -> torch.Tensor:
        """Which blocks overlap at least one used box of their item; boxes ``(n or 1, boxes, spatial_dims)``."""
        starts, stops = starts.to(torch.int32), stops.to(torch.int32)
        if starts.shape[0] > 1:
            index = item.long()
            starts, stops, ok = starts[index], stops[index], used[index]
        else:
            ok = used.expand(item.shape[0], -1).clone()
        lo, hi = origins, origins + sizes
        # one axis at a time: reductions over a trailing axis of 2 or 3 are slow
        for a in range(lo.shape[1]):
            ok &= (lo[:, a, None] < stops[..., a]) & (hi[:, a, None] > starts[..., a])
        return ok.any(-1)

    def shuffle(self, items, sizes, origins, item, keys, tables) -> torch.Tensor:
        """The items after shuffling the blocks (``keys``: one number per block, which picks its permutation).

        Every (block, voxel) pair gets the flat index of its voxel and of its source, the same place in the block's
        permutation; a scatter of the pair numbers with ``amax`` keeps, for every voxel, the pair of the last block
        covering it.
        """
        n, nvox, device = items.shape[0], math.prod(items.shape[1:]), items.device
        m = sizes.shape[0]
        # per block: its shape, voxel count and flat origin (one axis at a time: reductions over a trailing axis of
        # 2 or 3 are slow)
        sizes, origins = sizes.long(), origins.long()
        shape_id, origin = sizes[:, -1] - 1, origins[:, -1].clone()
        for a in range(sizes.shape[1] - 1):
            shape_id += (sizes[:, a] - 1) * int(tables.shape_strides[a])
            origin += origins[:, a] * int(tables.strides[a])
        count = tables.count.index_select(0, shape_id)
        if n > 1:
            origin += item.long() * nvox
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
            return self.buffer(f"shuffle.{slot}", numel, dtype)

        # one random number per block picks its permutation: base permutation l rotated by k, j = l * count + k
        j = keys.remainder_(tables.choices.index_select(0, shape_id))
        perm_base = tables.perm_start.index_select(0, shape_id).add_(j)
        perm_base.add_(j.div(count, rounding_mode="floor") * count)
        offset_base = tables.offset_start.index_select(0, shape_id)

        # block number of every (block, voxel) pair: a cumulative sum of ones at the block starts
        marker = torch.zeros(total, dtype=kdt, device=device, out=buffer("marker", kdt))
        marker.index_fill_(0, start[1:], 1)
        block = torch.cumsum(marker, 0, dtype=kdt, out=buffer("block", kdt))
        pair_origin = torch.index_select(origin.to(idt), 0, block, out=buffer("origin"))
        ramp = self.ramp(max(size, total), idt)

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

    # -- non-linear intensity ----------------------------------------------------------------------------------

    def curve_tables(self, control_points: np.ndarray, increasing: np.ndarray, num_points: int, lut_size: int):
        """The maps of ``n`` curves tabulated on a uniform grid of ``[0, 1]``: ``(n, lut_size)`` float32.

        The curve is sampled at ``num_points`` values of t, its x values sorted, and its y values too when the map
        is increasing (otherwise the k-th smallest x is paired with the k-th point from ``P3``).
        """
        return _curve_tables_torch(control_points, increasing, num_points, lut_size, self.device)

    def map_lut(self, items, lut, low=None, high=None, regions=None) -> torch.Tensor:
        """Every voxel of ``items`` ``(n, *spatial)`` through its item's table ``(n, lut_size)``, scaled by
        ``(x - low) / (high - low)`` first and back after when ``low`` and ``high`` (per item ``(n,)``) are given.

        ``regions`` (per item a ``(start, stop)`` box or None) bounds the voxels whose values are needed: a
        backend may leave the others as they are. This one maps everything.
        """
        n, size = lut.shape
        flat = items.reshape(n, -1).float()
        scaled = low is not None
        if scaled:
            low, span = low[:, None].float(), (high - low).clamp_min(1e-12)[:, None].float()
            flat = (flat - low) / span
        # each entry's slope to the next (0 after the last), so that a voxel costs two gathers and one fused step
        slope = torch.cat([lut.diff(dim=1), lut.new_zeros(n, 1)], dim=1).reshape(-1)
        numel, shape = flat.numel(), flat.shape

        def buffer(slot, dtype):
            buf = self.buffer(f"nonlinear.{slot}", numel, dtype)
            return None if buf is None else buf.view(shape)

        pos = torch.clamp(flat, 0.0, 1.0, out=buffer("pos", torch.float32)).mul_(size - 1)
        idx = buffer("idx", torch.int32)
        idx = pos.to(torch.int32) if idx is None else idx.copy_(pos)
        frac = pos.sub_(idx)
        if n > 1:
            idx += torch.arange(0, n * size, size, dtype=torch.int32, device=idx.device)[:, None]
        idx = idx.reshape(-1)
        below = torch.index_select(lut.reshape(-1), 0, idx, out=self.buffer("nonlinear.below", numel, torch.float32))
        step = torch.index_select(slope, 0, idx, out=self.buffer("nonlinear.step", numel, torch.float32))
        out = torch.addcmul(below, step, frac.reshape(-1)).reshape(n, -1)
        if scaled:
            out = out.mul_(span).add_(low)
        return out.reshape(items.shape).to(items.dtype)

    # -- painting ----------------------------------------------------------------------------------------------

    def box_mask(self, spatial_shape: Sequence[int], starts, stops, used) -> torch.Tensor:
        """Boolean mask ``(n, *spatial)`` of the union of the used boxes of each item (boxes as NumPy arrays)."""
        device = self.device
        starts_t, stops_t = torch.as_tensor(starts, device=device), torch.as_tensor(stops, device=device)
        n, k = starts_t.shape[:2]
        # a box is the outer product of one interval per axis, an unused box an empty one on the first axis
        axes = [
            ((pos >= starts_t[..., a, None]) & (pos < stops_t[..., a, None])).float()
            for a, pos in enumerate(_positions(tuple(spatial_shape), device))
        ]
        axes[0].mul_(torch.as_tensor(used, device=device, dtype=torch.float32)[..., None])
        # the union counts the boxes covering each voxel: one batched product over the boxes
        first = axes[0] if len(axes) == 2 else (axes[0][..., :, None] * axes[1][..., None, :]).reshape(n, k, -1)
        return torch.bmm(first.transpose(1, 2), axes[-1]).reshape(n, *spatial_shape) > 0

    def inpaint(self, items, starts, stops, used, low, high, seed) -> torch.Tensor:
        """A copy of ``items`` with the voxels of the used boxes replaced by noise in ``[low, high)`` (numbers or
        per item ``(n,)``), one value per hole voxel, in C order over the items."""
        holes = self.box_mask(items.shape[1:], starts, stops, used)
        noise = self._scaled_noise((int(holes.sum()),), seed, low, high, holes.reshape(items.shape[0], -1).sum(1))
        return items.masked_scatter(holes, noise.to(items.dtype))

    def outpaint(self, items, starts, stops, used, low, high, seed) -> torch.Tensor:
        """Noise in ``[low, high)`` over the whole items, the used boxes copied back."""
        noise = self._outpaint_noise(items, low, high, seed)
        mask = self.box_mask(items.shape[1:], starts, stops, used)
        return torch.where(mask, items, noise, out=noise)

    def _outpaint_noise(self, items, low, high, seed) -> torch.Tensor:
        # drawn in float32 and painted over in place, so that the result is its only new tensor
        if isinstance(low, torch.Tensor):
            nd = items.ndim - 1
            low, high = low.reshape(-1, *([1] * nd)), high.reshape(-1, *([1] * nd))
        noise = self.noise(items.shape, seed)
        if not _unit(low, high):
            noise = noise.mul_(high - low).add_(low)
        return noise.to(items.dtype)

    def _scaled_noise(self, shape, seed, low, high, per_item) -> torch.Tensor:
        """In-painting's noise, in ``[low, high)``; per-item bounds are repeated over each item's ``per_item``
        hole voxels."""
        noise = self.noise(shape, seed)
        if _unit(low, high):
            return noise
        if isinstance(low, torch.Tensor):
            per_item = per_item.to(noise.device)
            low, high = (t.reshape(-1).to(noise.device).repeat_interleave(per_item) for t in (low, high))
        return noise.mul_(high - low).add_(low)


def _unit(low, high) -> bool:
    """Whether the range is the plain ``[0, 1)`` of the noise (no scaling)."""
    return isinstance(low, float) and low == 0.0 and high == 1.0


@functools.lru_cache(maxsize=16)
def _positions(spatial_shape: tuple[int, ...], device: torch.device) -> list[torch.Tensor]:
    return [torch.arange(side, device=device) for side in spatial_shape]


@functools.lru_cache(maxsize=8)
def _basis_numpy(num_points: int) -> tuple[np.ndarray, np.ndarray]:
    """Bernstein weights of ``P1, P2`` ``(2, num_points)`` and of ``P3`` ``(num_points,)``, t from P3 to P0."""
    t = np.linspace(0.0, 1.0, num_points)
    return np.stack([3 * t**2 * (1 - t), 3 * t * (1 - t) ** 2]), (1 - t) ** 3


@functools.lru_cache(maxsize=8)
def _grid_numpy(lut_size: int) -> np.ndarray:
    grid = np.linspace(0.0, 1.0, lut_size)
    grid.flags.writeable = False
    return grid


def _curve_tables_numpy(control_points, increasing, num_points: int, lut_size: int) -> torch.Tensor:
    """The tables with ``np.interp`` on the host, in float64."""
    weights, last = _basis_numpy(num_points)
    grid = _grid_numpy(lut_size)
    # P0 = (0, 0) adds nothing and P3 = (1, 1) adds its weight to x and y alike
    curve = np.matmul(np.asarray(control_points, dtype=np.float64).transpose(0, 2, 1), weights) + last
    out = np.empty((curve.shape[0], lut_size), dtype=np.float32)
    for i, (xs, ys) in enumerate(curve):
        out[i] = np.interp(grid, np.sort(xs), np.sort(ys) if increasing[i] else ys)
    return torch.from_numpy(out)


@functools.lru_cache(maxsize=8)
def _basis(num_points: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    t = torch.linspace(0.0, 1.0, num_points, device=device)
    return torch.stack([3 * t**2 * (1 - t), 3 * t * (1 - t) ** 2]), (1 - t) ** 3


@functools.lru_cache(maxsize=8)
def _grid(lut_size: int, device: torch.device) -> torch.Tensor:
    return torch.linspace(0.0, 1.0, lut_size, device=device)


def _curve_tables_torch(control_points, increasing, num_points: int, lut_size: int, device: torch.device):
    """The tables in float32 torch code on ``device``, all curves at once (within 2e-6 of the NumPy tables)."""
    weights, last = _basis(num_points, device)
    cp = torch.as_tensor(control_points, dtype=torch.float32, device=device)
    n = cp.shape[0]
    curve = torch.matmul(cp.transpose(1, 2), weights).add_(last)  # (n, 2, num_points): x and y
    ordered = curve.sort(dim=2).values
    xs = ordered[:, 0]
    if increasing.all():
        ys = ordered[:, 1]
    elif not increasing.any():
        ys = curve[:, 1]
    else:
        ys = torch.where(torch.as_tensor(increasing, device=device)[:, None], ordered[:, 1], curve[:, 1])
    # the searchsorted of a uniform grid by counting: the curve points left of grid point i / (lut_size - 1)
    # are those whose cell floor(x * (lut_size - 1)) is below i
    cell = xs.mul(lut_size - 1).floor_().clamp_(0, lut_size - 1).long().add_(1)
    if n > 1:
        cell += torch.arange(0, n * (lut_size + 1), lut_size + 1, device=device)[:, None]
    left = torch.bincount(cell.reshape(-1), minlength=n * (lut_size + 1)).reshape(n, lut_size + 1)
    j = left.cumsum_(1)[:, :lut_size].clamp_(1, num_points - 1)
    x0, x1 = xs.gather(1, j - 1), xs.gather(1, j)
    w = (_grid(lut_size, device) - x0).div_((x1 - x0).clamp_min_(1e-12)).clamp_(0.0, 1.0)
    return torch.lerp(ys.gather(1, j - 1), ys.gather(1, j), w)


class TorchCPUBackend(TorchBackend):
    """The torch code on the CPU, with NumPy's noise and tables and reused temporaries (see the module)."""

    name = "torch-cpu"
    # up to this many items, boxes are written one by one (masks, out-painting) and the curve is mapped over the
    # region out-painting keeps, item by item: a Python loop over a few items beats a pass over every voxel
    few_items = 16

    def __init__(self) -> None:
        super().__init__("cpu")
        self._local = threading.local()

    def buffer(self, slot, numel, dtype):
        """A reusable tensor of ``numel`` elements, one per ``slot``, dtype and thread."""
        buffers = self._local.__dict__.setdefault("buffers", {})
        buf = buffers.get((slot, dtype))
        if buf is None or buf.numel() < numel:
            buf = buffers[(slot, dtype)] = torch.empty(numel + numel // 4, dtype=dtype)
        return buf[:numel]

    def ramp(self, length, dtype):
        """``arange(length)``, sliced from a cached tensor."""
        ramps = self._local.__dict__.setdefault("ramps", {})
        ramp = ramps.get(dtype)
        if ramp is None or ramp.numel() < length:
            ramp = ramps[dtype] = torch.arange(max(length + length // 4, 1 << 18), dtype=dtype)
        return ramp[:length]

    def noise(self, shape, seed):
        """NumPy's PCG64 from the seed (about 1.4× faster than torch's CPU generator for a 64×64×32 cube)."""
        if seed is None:
            return super().noise(shape, seed)
        shape = tuple(int(s) for s in shape)
        return torch.from_numpy(np.random.Generator(np.random.PCG64(seed)).random(shape, dtype=np.float32))

    def curve_tables(self, control_points, increasing, num_points, lut_size):
        """``np.interp`` per curve, in float64 (about 1.5× faster than the torch code on the CPU, any batch)."""
        return _curve_tables_numpy(control_points, increasing, num_points, lut_size)

    def blocks_touching(self, origins, sizes, item, starts, stops, used):
        """By tables: per axis, item, origin and size, a bit per box that the block's interval overlaps there; a
        block touches a box where the bits of all axes share one (up to 63 boxes)."""
        if starts.shape[1] > 63 or origins.shape[0] == 0:
            return super().blocks_touching(origins, sizes, item, starts, stops, used)
        origins, sizes = origins.numpy(), sizes.numpy()
        starts, stops = starts.cpu().numpy().astype(np.int64), stops.cpu().numpy().astype(np.int64)
        used = used.cpu().numpy().astype(bool)
        rows = starts.shape[0]
        item = item.numpy().astype(np.int64) if rows > 1 else np.zeros(origins.shape[0], dtype=np.int64)
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

    def map_lut(self, items, lut, low=None, high=None, regions=None):
        cropped = [] if regions is None else [i for i, r in enumerate(regions) if r is not None]
        if cropped and len(cropped) <= self.few_items:
            return self._map_regions(items, lut, low, high, regions, cropped)
        return self._map(items, lut, low, high)

    def _map(self, items, lut, low, high):
        return TorchBackend.map_lut(self, items, lut, low, high)

    def _map_regions(self, items, lut, low, high, regions, cropped):
        """The items mapped where needed: whole items at once, then each bounded item over its region only (the
        same per-voxel map, so the same values there)."""
        out = items.clone()
        whole = [i for i, r in enumerate(regions) if r is None]

        def bounds(rows):
            return (None, None) if low is None else (low[rows], high[rows])

        if whole:
            rows = torch.as_tensor(whole)
            out[rows] = self._map(items.index_select(0, rows), lut.index_select(0, rows), *bounds(rows))
        for i in cropped:
            start, stop = regions[i]
            box = (i, *(slice(int(a), int(b)) for a, b in zip(start, stop)))
            rows = torch.as_tensor([i])
            out[box] = self._map(items[box][None], lut[i : i + 1], *bounds(rows))[0]
        return out

    def box_mask(self, spatial_shape, starts, stops, used):
        if len(used) > self.few_items:
            return super().box_mask(spatial_shape, starts, stops, used)
        mask = torch.zeros((len(used), *spatial_shape), dtype=torch.bool)
        for i, box in _boxes(starts, stops, used):
            mask[i][box] = True
        return mask

    def outpaint(self, items, starts, stops, used, low, high, seed):
        if items.shape[0] > self.few_items:
            return super().outpaint(items, starts, stops, used, low, high, seed)
        noise = self._outpaint_noise(items, low, high, seed)
        for i, box in _boxes(starts, stops, used):
            noise[i][box] = items[i][box]
        return noise


def _boxes(starts, stops, used):
    """``(item, slices)`` of every used box."""
    for i in range(len(used)):
        for start, stop in zip(starts[i][used[i]], stops[i][used[i]]):
            yield i, tuple(slice(int(a), int(b)) for a, b in zip(start, stop))


# what the compiled shuffle writes directly; other dtypes (bfloat16, float16) are gathered by their sources
_NUMPY_DTYPES = (torch.float32, torch.float64, torch.uint8, torch.int16, torch.int32, torch.int64)


class CompiledCPUBackend(TorchCPUBackend):
    """The corruptions' computations as Numba loops on the CPU (see the module); torch code only where no loop
    applies (a dtype NumPy does not know)."""

    name = "numba"

    def noise(self, shape, seed):
        if seed is None:
            return super().noise(shape, seed)
        # the same numbers as NumPy's, converted from PCG64's raw output in one pass (about 2× faster)
        return torch.from_numpy(kernels.uniform_float32(seed, tuple(int(s) for s in shape)))

    def place_blocks(self, shape_index, raw, shapes, rooms, shifts, bits, n, per_item):
        placed = kernels.place_blocks(shape_index.numpy(), raw.numpy(), shapes.numpy(), rooms.numpy(), bits, per_item)
        return tuple(torch.from_numpy(t) for t in placed)

    def blocks_touching(self, origins, sizes, item, starts, stops, used):
        boxes = (np.asarray(t.cpu()) for t in (starts, stops, used))
        return torch.from_numpy(kernels.blocks_touching(origins.numpy(), sizes.numpy(), item.numpy(), *boxes))

    def shuffle(self, items, sizes, origins, item, keys, tables):
        n, nvox = items.shape[0], math.prod(items.shape[1:])
        blocks = (sizes.numpy(), origins.numpy(), item.numpy(), keys.numpy(), tables, nvox)
        if items.dtype in _NUMPY_DTYPES:
            out = kernels.local_shuffle(items.detach().reshape(-1).contiguous().numpy(), *blocks)
            return torch.from_numpy(out).reshape(items.shape)
        source = kernels.local_shuffle(np.arange(n * nvox, dtype=np.int64), *blocks)
        return items.reshape(-1).index_select(0, torch.from_numpy(source)).reshape(items.shape)

    def _map(self, items, lut, low, high):
        flat = items.reshape(lut.shape[0], -1).float()
        scaled = low is not None
        if scaled:
            low, span = low[:, None].float(), (high - low).clamp_min(1e-12)[:, None].float()
        out = kernels.map_lut(
            flat.detach().contiguous().numpy(),
            lut.detach().float().contiguous().numpy(),
            low.detach().reshape(-1).numpy() if scaled else None,
            span.detach().reshape(-1).numpy() if scaled else None,
        )
        return torch.from_numpy(out).reshape(items.shape).to(items.dtype)

    def inpaint(self, items, starts, stops, used, low, high, seed):
        if items.dtype not in (torch.float32, torch.float64):
            return super().inpaint(items, starts, stops, used, low, high, seed)
        # the same values as the masked scatter, in one pass over the rows of the boxes
        per_item = torch.from_numpy(kernels.hole_voxels(items.shape, starts, stops, used))
        noise = self._scaled_noise((int(per_item.sum()),), seed, low, high, per_item).to(items.dtype)
        flat = items.detach().contiguous().numpy()
        return torch.from_numpy(kernels.inpaint(flat, noise.numpy(), starts, stops, used))
