"""Compiled CPU kernels of the per-sample corruptions (and the reads and scaling of the volume store's values),
through Numba when it is installed.

The vectorised torch code of each corruption runs on any device, but on the CPU it makes a dozen passes over
arrays larger than the image (the local shuffle's 2.5 × 10⁵ (block, voxel) pairs per 64×64×32 cube). A loop
compiled by Numba does each in one pass and returns exactly the same values from the same draws. They are called
by one backend only, :py:class:`monai_genesis.transforms.backend.CompiledCPUBackend`, which ``backend_for`` chooses
on the CPU when ``numba`` can be imported and ``MONAI_GENESIS_NUMBA`` is not ``0``; otherwise the torch code runs.
Each kernel is compiled on its first call (a few seconds for all of them, once) and cached on disk where Numba can
write its cache, so a later process loads them all with its first call in about a second (Numba's import
included).
"""

from __future__ import annotations

import functools
import logging
import os
import threading

import numpy as np

__all__ = [
    "blocks_touching",
    "enabled",
    "hole_voxels",
    "inpaint",
    "local_shuffle",
    "map_lut",
    "place_blocks",
    "read_region",
    "scale_stored",
    "uniform_float32",
]

logger = logging.getLogger(__name__)


@functools.lru_cache(maxsize=1)
def _numba():
    """The ``numba`` module, imported on first use (about half a second); None where it cannot be imported."""
    try:
        import numba
    except ImportError as err:  # not installed, or built for another NumPy
        if not isinstance(err, ModuleNotFoundError):
            logger.warning("numba cannot be imported (%s); the corruptions run as torch code on the CPU.", err)
        return None
    return numba


def enabled() -> bool:
    """Whether the compiled kernels are used: Numba importable and ``MONAI_GENESIS_NUMBA`` not set to ``0``."""
    return os.environ.get("MONAI_GENESIS_NUMBA", "1") != "0" and _numba() is not None


class _Kernel:
    """``fn`` compiled by Numba on its first call (nopython, releasing the GIL, cached on disk where it can be)."""

    def __init__(self, fn):
        self.fn = fn
        self.compiled = None
        functools.update_wrapper(self, fn)

    def __call__(self, *args):
        if self.compiled is None:
            numba = _numba()
            if numba is None:
                raise RuntimeError(f"{self.fn.__name__} needs Numba: `pip install numba`, or use the torch code.")
            try:
                self.compiled = numba.njit(cache=True, nogil=True)(self.fn)
            except RuntimeError:  # no writable cache location: compile in memory only
                self.compiled = numba.njit(nogil=True)(self.fn)
        return self.compiled(*args)


@_Kernel
def _shuffle(out, image, sizes, origins, item, draw, strides, shape_strides, count, offset_start, offsets, perm_start,
             choices, permuted, nvox):  # fmt: skip
    # ``out`` starts as ``image`` (voxels no block covers keep their value); the blocks are written in drawing
    # order, each over what an earlier one wrote, so the last block covering a voxel wins
    dims = sizes.shape[1]
    for b in range(sizes.shape[0]):
        shape_id = 0
        origin = item[b] * nvox
        for a in range(dims):
            shape_id += (sizes[b, a] - 1) * shape_strides[a]
            origin += origins[b, a] * strides[a]
        c = count[shape_id]
        # base permutation l rotated by k, from one draw j = l * c + k
        j = draw[b] % choices[shape_id]
        # unsigned indices: no check for negative ones in the inner loop (about 2× faster)
        perm = np.uint64(perm_start[shape_id] + j + (j // c) * c)
        first = np.uint64(offset_start[shape_id])
        at = np.uint64(origin)
        for k in range(np.uint64(c)):
            out[at + np.uint64(offsets[first + k])] = image[at + np.uint64(permuted[perm + k])]


def local_shuffle(image: np.ndarray, sizes, origins, item, draw, tables, nvox: int) -> np.ndarray:
    """The flat items ``image`` after the local shuffle: the same values as the scatter of
    :py:func:`monai_genesis.transforms.shuffle.local_shuffle`, in one pass over the blocks.

    Args:
        image: the flat items, C-contiguous, of a dtype NumPy knows (for others, ``np.arange`` of their size: the
            result is then each voxel's source).
        sizes: block sizes ``(m, spatial_dims)``.
        origins: block origins ``(m, spatial_dims)``.
        item: each block's item ``(m,)``.
        draw: each block's random number in ``[0, 2**31 - 1)`` ``(m,)``, which picks its permutation.
        tables: the ``_Tables`` of the image shape, on the CPU.
        nvox: voxels per item.
    """
    out = image.copy()
    t = tables
    _shuffle(
        out,
        image,
        np.ascontiguousarray(sizes, dtype=np.int64),
        np.ascontiguousarray(origins, dtype=np.int64),
        np.ascontiguousarray(item, dtype=np.int64),
        np.ascontiguousarray(draw, dtype=np.int64),
        *(x.numpy() for x in (t.strides, t.shape_strides, t.count, t.offset_start, t.offsets, t.perm_start)),
        t.choices.numpy(),
        t.permuted.numpy(),
        nvox,
    )
    return out


@_Kernel
def _blocks_touching(keep, lo, size, item, starts, stops, used):
    # one box at a time over all blocks, axis by axis: branch-free loops over contiguous arrays (``lo`` and
    # ``size`` are ``(spatial_dims, m)``)
    m = lo.shape[1]
    broadcast = starts.shape[0] == 1
    hit = np.empty(m, dtype=np.bool_)
    keep[:] = False
    for q in range(starts.shape[1]):
        for b in range(m):
            hit[b] = used[0 if broadcast else item[b], q]
        for a in range(lo.shape[0]):
            for b in range(m):
                row = 0 if broadcast else item[b]
                hit[b] &= (lo[a, b] < stops[row, q, a]) & (lo[a, b] + size[a, b] > starts[row, q, a])
        for b in range(m):
            keep[b] |= hit[b]


def blocks_touching(origins, sizes, item, starts, stops, used) -> np.ndarray:
    """Which blocks overlap at least one used box of their item, as
    :py:func:`monai_genesis.transforms.shuffle.blocks_touching` (boxes ``(1 or n, boxes, spatial_dims)``)."""
    keep = np.empty(origins.shape[0], dtype=np.bool_)
    _blocks_touching(
        keep,
        np.ascontiguousarray(origins.T),
        np.ascontiguousarray(sizes.T),
        np.ascontiguousarray(item),
        np.ascontiguousarray(starts, dtype=np.int64),
        np.ascontiguousarray(stops, dtype=np.int64),
        np.ascontiguousarray(used, dtype=np.bool_),
    )
    return keep


@_Kernel
def _map_lut(out, flat, lut, low, span, scaled):
    size = lut.shape[1]
    scale = np.float32(size - 1)
    zero, one = np.float32(0.0), np.float32(1.0)
    for i in range(flat.shape[0]):
        lo, sp = low[i], span[i]
        for v in range(flat.shape[1]):
            x = flat[i, v]
            if scaled:
                x = (x - lo) / sp
            pos = min(max(x, zero), one) * scale
            k = int(pos)
            frac = pos - np.float32(k)
            below = lut[i, k]
            step = lut[i, k + 1] - below if k + 1 < size else zero
            # a fused multiply-add, as torch.addcmul: the float32 product is exact in float64
            y = np.float32(np.float64(below) + np.float64(step) * np.float64(frac))
            if scaled:
                y = y * sp + lo
            out[i, v] = y


def map_lut(flat: np.ndarray, lut: np.ndarray, low: np.ndarray | None, span: np.ndarray | None) -> np.ndarray:
    """Every voxel of ``flat`` (``(n, voxels)`` float32) through its item's table (``(n, lut_size)`` float32), as
    :py:func:`monai_genesis.transforms.nonlinear.apply_lut`: scaled by ``(x - low) / span`` first and back after
    when ``low`` is given."""
    n = flat.shape[0]
    scaled = low is not None
    if not scaled:
        low = span = np.zeros(n, dtype=np.float32)
    out = np.empty(flat.shape, dtype=np.float32)
    _map_lut(out, flat, lut, low.astype(np.float32), span.astype(np.float32), scaled)
    return out


@_Kernel
def _place_blocks(sizes, origins, item, shape, raw, shapes, rooms, bits, per_item):
    mask = (1 << bits) - 1
    for b in range(shape.shape[0]):
        s = shape[b]
        field = raw[b]
        for a in range(shapes.shape[1]):
            sizes[b, a] = shapes[s, a]
            origins[b, a] = ((field & mask) * rooms[s, a]) >> bits
            field >>= bits
        item[b] = b // per_item


def place_blocks(shape: np.ndarray, raw: np.ndarray, shapes: np.ndarray, rooms: np.ndarray, bits: int, per_item: int):
    """Sizes, origins and items of the shuffled blocks from their drawn shape indices and 63-bit numbers, as
    :py:func:`monai_genesis.transforms.shuffle.draw_blocks` computes them: the field of ``bits`` bits of each axis
    scaled to the room the block leaves there."""
    m, dims = shape.shape[0], shapes.shape[1]
    sizes, origins = np.empty((m, dims), dtype=np.int32), np.empty((m, dims), dtype=np.int32)
    item = np.empty(m, dtype=np.int32)
    _place_blocks(sizes, origins, item, shape, raw, shapes, rooms, bits, per_item)
    return sizes, origins, item


@_Kernel
def _raw_to_float32(raw, out):
    # NumPy's float32 from a 64-bit output: its low 32 bits first, then its high 32, each keeping its top 24 bits
    scale = np.float32(1.0 / 16777216.0)
    low = np.uint64(0xFFFFFFFF)
    for i in range(out.shape[0]):
        r = raw[i >> 1]
        half = (r >> np.uint64(32)) if i & 1 else (r & low)
        out[i] = np.float32(half >> np.uint64(8)) * scale


def uniform_float32(seed: int, shape) -> np.ndarray:
    """``numpy.random.Generator(PCG64(seed)).random(shape, dtype=np.float32)``, the same numbers, converted from the
    bit generator's raw output in one compiled pass (NumPy converts them one call at a time)."""
    out = np.empty(shape, dtype=np.float32)
    _raw_to_float32(np.random.PCG64(seed).random_raw((out.size + 1) // 2), out.reshape(-1))
    return out


@_Kernel
def _scale_stored(raw, scales, offsets, out):
    # float32 of each stored value, then times its item's scale, then plus its offset: NumPy's three passes in one
    for b in range(raw.shape[0]):
        s = scales[b]
        o = offsets[b]
        for i in range(raw.shape[1]):
            out[b, i] = np.float32(raw[b, i]) * s + o


def scale_stored(raw: np.ndarray, scales: np.ndarray, offsets: np.ndarray, out: np.ndarray) -> None:
    """``out[b] = float32(raw[b]) * scales[b] + offsets[b]`` in one compiled pass, the same floats as NumPy's cast,
    in-place multiply and in-place add (no fused multiply-add).

    Args:
        raw: stored values ``(B, N)``, C-contiguous (uint16 for the volume store).
        scales: float32 ``(B,)``.
        offsets: float32 ``(B,)``.
        out: float32 ``(B, N)``, C-contiguous.
    """
    _scale_stored(raw, scales, offsets, out)


# ``pread(2)`` of the C library as compiled code calls it (the buffer's address passed as an integer); set when Numba
# is first needed
_PREAD = None


@_Kernel
def _read_region(fd, data_offset, dims, c0, x0, y0, z0, buf, scale, offset, scaled, out):
    # out (c, x, y, z) from the file's (C, X, Y, Z) values at ``data_offset``: per (channel, x) one pread of the rows
    # y0..y0+y (whole along z) into ``buf`` (or straight into ``out`` when the region is whole along z and copied),
    # then the cut along z copied (or scaled) into ``out``
    nc, nx, ny, nz = out.shape
    item = buf.itemsize
    nbytes = ny * dims[3] * item
    direct = not scaled and z0 == 0 and nz == dims[3]
    for c in range(nc):
        for x in range(nx):
            position = data_offset + (((c0 + c) * dims[1] + x0 + x) * dims[2] + y0) * dims[3] * item
            target = out[c, x].ctypes.data if direct else buf.ctypes.data
            if _PREAD(fd, target, nbytes, position) != nbytes:
                return 1
            if direct:
                continue
            for y in range(ny):
                src = buf[y, z0 : z0 + nz]
                dst = out[c, x, y]
                if scaled:
                    for z in range(nz):
                        dst[z] = np.float32(src[z]) * scale + offset
                else:
                    for z in range(nz):
                        dst[z] = src[z]
    return 0


# per thread: the row buffer of the last region shape read
_ROWS = threading.local()


def read_region(fd: int, data_offset: int, dims, dtype, start, out: np.ndarray, scale=None, offset=0.0) -> bool:
    """Read the region of ``out``'s shape at ``start`` of a stored ``(C, X, Y, Z)`` C-order array into ``out``, in
    one compiled call: one ``pread`` per channel and row of the first spatial axis (whole along the last axis, as
    ``StoredVolume`` reads), cut along the last axis; with ``scale``, the float32 intensities
    ``float32(value) * scale + offset`` (the floats of :py:func:`scale_stored`) are written instead of the values.

    Args:
        fd: open file descriptor of the stored array.
        data_offset: byte offset of its values in the file.
        dims: its shape ``(C, X, Y, Z)``.
        dtype: its dtype.
        start: the region's first index ``(c, x, y, z)``.
        out: C-contiguous ``(c, x, y, z)``: of ``dtype``, or float32 with ``scale``.
        scale: scale of the stored values; ``None`` copies them.
        offset: offset added after the scale.

    Returns:
        False when a read came short or failed (``out`` then holds partial values): the caller reads again the
        Python way, which raises the error.
    """
    global _PREAD
    if _PREAD is None:
        types = _numba().types
        _PREAD = types.ExternalFunction("pread", types.int64(types.int32, types.uintp, types.uintp, types.int64))
    key = (int(out.shape[2]), int(dims[3]), np.dtype(dtype).str)
    if getattr(_ROWS, "key", None) != key:
        _ROWS.key, _ROWS.buffer = key, np.empty(key[:2], dtype=key[2])
    buf = _ROWS.buffer
    scaled = scale is not None
    code = _read_region(
        int(fd), int(data_offset), np.asarray(dims, dtype=np.int64), *(int(s) for s in start), buf,
        np.float32(scale if scaled else 1.0), np.float32(offset), scaled, out,
    )
    return code == 0


@_Kernel
def _inpaint_rows(out, noise, per_item, n, nx, ny, nz, starts, stops, used, write):
    # items (n, nx, ny, nz): per (x, y) row, the z ranges of the used boxes over it; the holes' voxels are taken in
    # C order and counted per item (and ``noise`` written onto them in ``out`` when ``write``)
    mark = np.zeros(nz, dtype=np.bool_)
    taken = np.uint64(0)
    for i in range(n):
        before = taken
        for x in range(nx):
            for y in range(ny):
                covered = False
                for q in range(starts.shape[1]):
                    if used[i, q] and starts[i, q, 0] <= x < stops[i, q, 0] and starts[i, q, 1] <= y < stops[i, q, 1]:
                        if not covered:
                            mark[:] = False
                            covered = True
                        mark[starts[i, q, 2] : stops[i, q, 2]] = True
                if covered:
                    for z in range(np.uint64(nz)):
                        if mark[z]:
                            if write:
                                out[i, x, y, z] = noise[taken]
                            taken += np.uint64(1)
        per_item[i] = taken - before


def _as_3d(shape, starts, stops, used):
    """Items and boxes of 2-D images as 3-D ones with a first axis of 1."""
    starts, stops = np.asarray(starts, dtype=np.int64), np.asarray(stops, dtype=np.int64)
    if len(shape) == 3:
        ones = np.ones(starts.shape[:2] + (1,), dtype=np.int64)
        starts, stops = np.concatenate([ones * 0, starts], axis=2), np.concatenate([ones, stops], axis=2)
        shape = (shape[0], 1, *shape[1:])
    return shape, np.ascontiguousarray(starts), np.ascontiguousarray(stops), np.ascontiguousarray(used, dtype=np.bool_)


def hole_voxels(shape, starts, stops, used) -> np.ndarray:
    """How many voxels of each item of ``shape`` (``(n, *spatial)``, 2 or 3 spatial axes) the union of its used
    boxes covers: the voxels in-painting replaces."""
    shape, starts, stops, used = _as_3d(shape, starts, stops, used)
    none = np.empty((0, 0, 0, 0), dtype=np.float32)
    per_item = np.empty(shape[0], dtype=np.int64)
    _inpaint_rows(none, none.reshape(-1), per_item, *shape, starts, stops, used, False)
    return per_item


def inpaint(items: np.ndarray, noise: np.ndarray, starts, stops, used) -> np.ndarray:
    """A copy of ``items`` (``(n, *spatial)``, C-contiguous) with the voxels of its holes (see
    :py:func:`hole_voxels`) replaced by ``noise``, one value per voxel in C order: the values of
    ``items.masked_scatter(holes, noise)``."""
    out = items.copy()
    shape, starts, stops, used = _as_3d(items.shape, starts, stops, used)
    per_item = np.empty(shape[0], dtype=np.int64)
    _inpaint_rows(out.reshape(shape), noise.astype(out.dtype, copy=False), per_item, *shape, starts, stops, used, True)
    return out
