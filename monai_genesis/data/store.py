"""The volume store: every volume loaded, oriented, optionally resampled and scaled once, then kept on disk as a
``.npy`` of a compact dtype, so pretraining reads only the voxels of its cubes.

Two objects: :py:class:`StoreSettings` (how a volume is prepared) and :py:class:`VolumeStore` (the prepared
volumes of one datalist under one setting; ``store[i]`` is a :py:class:`StoredVolume` with ``shape``, ``spacing``,
``affine`` and ``read(region)``). ``VolumeStore.prepare`` (and :py:func:`ensure_store`, the same from every rank of a
``torchrun``) writes what is missing; ``VolumeStore(store_dir, settings)`` opens what is there and writes nothing.

Layout of a store folder (format 2)::

    <store_dir>/<settings digest>/settings.json        the settings of this preparation
    <store_dir>/<settings digest>/index.json           one record per volume (a cache of the records below)
    <store_dir>/<settings digest>/<stem>-<id>.npy      one volume, channel-first, uint16 (or float16 / float32)
    <store_dir>/<settings digest>/<stem>-<id>.json     its record, written right after the volume

What the store promises (the README repeats it):

- **Settings are kept apart.** Each setting (intensity, CT window, percentiles, spacing, orientation, dtype) has a
  folder of its own, named by the digest of the settings, so a preparation with other settings never replaces a
  volume of this one; a run with other settings than a preparation in the same ``store_dir`` prepares beside it and
  says which settings differ and the flags that would reuse it.
- **A file and its record agree by construction.** A volume's file name holds the digest of its source path, of the
  source's content (SHA-256) and of the volume's settings: a new source content or setting is a new file, never a file
  rewritten in place, so a running reader is never served other values under a name it opened, and an interrupted
  preparation cannot leave a file whose name says other than what it holds.
- **What is reused is verified.** The header of every reused file is checked against its record (shape, dtype) and
  its size against the header; a file that fails is named in a warning and prepared again. ``verify=True`` also
  hashes every source and checks the CRC-32 of every stored file (about a second per GB).
- **Paths stay inside.** A record names a file of its own folder only; anything else is refused, naming the entry.
- **Concurrent preparations are safe.** Files are written under temporary names and renamed when complete, and the
  index is merged, not overwritten, under a lock: two preparations of the same or of other datalists into one store
  keep every volume. Temporary files of killed preparations are removed by the next one.
- **Nothing is deleted.** Volumes of other settings or of earlier source contents stay on disk until the user removes
  their folder.

Format, measured on the shared chest CT (512×512×141) after the CT setting, 300 random 64×64×32 cubes read back
as float32 from a warm page cache on this project's 2-core machine (``blosc2`` 4.1, chunks of one cube):

======================== ========= ============= ==============
format                   disk      of float32    cubes/s read
======================== ========= ============= ==============
float32 ``.npy``          141 MiB   1.00          9 400
uint16 ``.npy`` (chosen)  70.5 MiB  0.50          7 600
float16 ``.npy``          70.5 MiB  0.50          1 800
uint8 ``.npy``            35.3 MiB  0.25          7 800
uint16 blosc2 LZ4         53.5 MiB  0.38          2 200
uint16 blosc2 ZSTD        39.2 MiB  0.28            800
======================== ========= ============= ==============

uint16 halves the bytes, needs no library to read and cuts cubes 3–9 times faster than the compressed chunks; uint8
is too coarse for CT (a step of 7.8 HU). The values are quantised as ``value = stored * scale + offset`` with
``offset`` and ``scale`` from the volume's own minimum and maximum, so for the [0, 1] settings a uint16 step is
1/65535 of the range.

Source fingerprint: a rerun first compares each source's size and modification time (``os.stat``, instant); only when
they differ is the content hashed, so a file that was copied or touched but not changed is not redone, while a real
change always is. A content change that keeps the size and the modification time is seen only with ``verify=True``.

Unreadable sources are named in a WARNING with the reason and skipped (``on_error="skip"``, the default: one bad file
among thousands should not stop a preparation that takes hours); ``on_error="raise"`` refuses instead.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import hashlib
import json
import logging
import os
import re
import threading
import time
import zlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from monai_genesis.errors import GenesisInputError
from monai_genesis.transforms import kernels
from monai_genesis.utils import file_digest, pid_alive

__all__ = [
    "STORE_DTYPES",
    "STORE_FORMAT",
    "StoreSettings",
    "StoredVolume",
    "VolumeStore",
    "ensure_store",
    "prepare_command",
    "store_key",
]

logger = logging.getLogger(__name__)

STORE_FORMAT = 2
STORE_DTYPES = ("uint16", "float16", "float32")
_INDEX = "index.json"
_SETTINGS = "settings.json"
_LOCK = ".lock"
# the bundles' Orientationd: explicit axis labels, so the result never depends on a global default
_LABELS = (("L", "R"), ("P", "A"), ("I", "S"))
# seconds between index merges during a preparation (the per-volume records are written at once anyway)
_INDEX_EVERY_S = 10.0
# a stored file's name: a stem of the source's name, then 16 hex digits of (source, content, settings)
_FILE_NAME = re.compile(r"^[A-Za-z0-9_.-]+-[0-9a-f]{16}\.npy$")
_TMP_NAME = re.compile(r"^\..+\.(\d+)\.tmp$")


# -- settings --------------------------------------------------------------------------------------------------------


def _floats(values, name: str, count: int | None = None) -> tuple[float, ...]:
    try:
        out = tuple(
            float(v)
            for v in (
                values if isinstance(values, (Sequence, np.ndarray)) and not isinstance(values, str) else [values]
            )
        )
    except (TypeError, ValueError):
        raise GenesisInputError(f"store setting {name} must be numbers, got {values!r}.") from None
    if count is not None and len(out) != count:
        raise GenesisInputError(f"store setting {name} must be {count} numbers, got {values!r}.")
    return out


@dataclasses.dataclass(frozen=True)
class StoreSettings:
    """How the volumes of a store are prepared: one object for the ``prepare`` command and the bundles.

    Args:
        intensity: the default intensity setting (``"ct"``, ``"mri"``, ``"minmax"``, ``"none"``); an entry's own
            ``"intensity"`` takes precedence for that entry.
        pixdim: target voxel spacing in mm (bilinear ``Spacingd``); ``None`` keeps each volume's spacing. One number
            is used for the three axes.
        ct_window: HU window of the CT setting.
        percentiles: percentiles of the MRI setting.
        dtype: stored dtype, one of ``STORE_DTYPES``.
        orientation: axis codes of ``Orientationd`` (with the labels L/R, P/A, I/S).
    """

    intensity: str = "ct"
    pixdim: tuple[float, float, float] | None = None
    ct_window: tuple[float, float] = (-1000.0, 1000.0)
    percentiles: tuple[float, float] = (0.5, 99.5)
    dtype: str = "uint16"
    orientation: str = "RAS"

    def __post_init__(self) -> None:
        from monai_genesis.transforms.intensity import check_intensity_setting

        check_intensity_setting(self.intensity)
        if self.dtype not in STORE_DTYPES:
            raise GenesisInputError(f"store dtype must be one of {STORE_DTYPES}, got {self.dtype!r}.")
        pixdim = self.pixdim
        if pixdim is not None:
            pixdim = _floats(pixdim, "pixdim")
            pixdim = pixdim * 3 if len(pixdim) == 1 else pixdim
            if len(pixdim) != 3 or any(p <= 0 for p in pixdim):
                raise GenesisInputError(
                    f"store setting pixdim must be three positive spacings in mm, got {self.pixdim!r}."
                )
        window = _floats(self.ct_window, "ct_window", 2)
        if window[0] >= window[1]:
            raise GenesisInputError(
                f"store setting ct_window must be (low, high) with low < high, got {self.ct_window!r}."
            )
        percentiles = _floats(self.percentiles, "percentiles", 2)
        if not 0 <= percentiles[0] < percentiles[1] <= 100:
            raise GenesisInputError(
                f"store setting percentiles must be (low, high) with 0 <= low < high <= 100, got {self.percentiles!r}."
            )
        orientation = str(self.orientation).upper()
        if not _valid_axcodes(orientation):
            raise GenesisInputError(
                f"store setting orientation must be three axis codes such as 'RAS', got {self.orientation!r}."
            )
        object.__setattr__(self, "pixdim", pixdim)
        object.__setattr__(self, "ct_window", window)
        object.__setattr__(self, "percentiles", percentiles)
        object.__setattr__(self, "orientation", orientation)

    def to_dict(self) -> dict[str, Any]:
        """The settings as JSON-ready values, with the store format (so a new format never reads an old file)."""
        out = {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}
        out["format"] = STORE_FORMAT
        return out

    @property
    def digest(self) -> str:
        """16 hex digits naming these settings (the folder of their preparation)."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:16]

    def for_entry(self, entry: Mapping[str, Any]) -> StoreSettings:
        """The settings an entry is prepared with: these, with the entry's own intensity setting if it names one."""
        own = entry.get("intensity")
        return self if own in (None, "", self.intensity) else dataclasses.replace(self, intensity=own)

    def flags(self) -> str:
        """The ``prepare`` flags (and bundle overrides) that give these settings."""
        parts = [f"--intensity {self.intensity}"]
        if self.pixdim is not None:
            parts.append("--pixdim " + ",".join(f"{p:g}" for p in self.pixdim))
        parts.append("--ct_window " + ",".join(f"{v:g}" for v in self.ct_window))
        parts.append("--percentiles " + ",".join(f"{v:g}" for v in self.percentiles))
        parts.append(f"--store_dtype {self.dtype}")
        if self.orientation != "RAS":
            parts.append(f"--orientation {self.orientation}")
        return " ".join(parts)

    def differences(self, other: StoreSettings) -> list[str]:
        """``name: ours vs other`` for each setting that differs."""
        ours, theirs = dataclasses.asdict(self), dataclasses.asdict(other)
        return [f"{k}: {ours[k]} vs {theirs[k]}" for k in ours if ours[k] != theirs[k]]

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> StoreSettings:
        fields = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in fields})

    @classmethod
    def from_config(cls, config_file: str | Sequence[str], overrides: Mapping[str, Any] | None = None) -> StoreSettings:
        """The ``store_settings`` node of a bundle config (one file or a list merged in order), with ``overrides``
        (e.g. ``{"intensity": "mri"}``) applied as ``--key value`` would be."""
        from monai.bundle import ConfigParser

        parser = ConfigParser()
        parser.read_config(list(config_file) if not isinstance(config_file, str) else config_file)
        if "store_settings" not in parser:
            raise GenesisInputError(
                f"the config {config_file} has no 'store_settings' node; pass the train.json of a pretraining bundle."
            )
        for key, value in (overrides or {}).items():
            parser[key] = value
        settings = parser.get_parsed_content("store_settings")
        if not isinstance(settings, StoreSettings):
            raise GenesisInputError(f"'store_settings' of {config_file} is not a monai_genesis.data.StoreSettings.")
        return settings


def _valid_axcodes(codes: str) -> bool:
    """Three axis codes, one of each pair L/R, P/A, I/S."""
    return len(codes) == 3 and sorted("RLAPSI".index(c) // 2 for c in codes if c in "RLAPSI") == [0, 1, 2]


def _as_settings(settings: StoreSettings | Mapping[str, Any] | None, legacy: Mapping[str, Any]) -> StoreSettings:
    if legacy:
        if settings is not None:
            raise GenesisInputError(f"give the store settings either as settings= or as {sorted(legacy)}, not both.")
        return StoreSettings(**legacy)
    if settings is None:
        return StoreSettings()
    if isinstance(settings, Mapping):
        return StoreSettings.from_dict(settings)
    if not isinstance(settings, StoreSettings):
        raise GenesisInputError(f"settings must be a monai_genesis.data.StoreSettings, got {type(settings).__name__}.")
    return settings


# -- sources and names -----------------------------------------------------------------------------------------------

# the source name of an in-memory volume (an array in a datalist entry, e.g. MedMNIST): its content hash
_ARRAY_PREFIX = "array:"


def _is_array(image) -> bool:
    return isinstance(image, (np.ndarray, torch.Tensor))


def _array_hash(image) -> str:
    """SHA-256 of an in-memory volume: shape, dtype, values and, for a ``MetaTensor``, its affine."""
    values = image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    digest = hashlib.sha256(json.dumps([list(values.shape), values.dtype.str]).encode())
    digest.update(np.ascontiguousarray(values).tobytes())
    if getattr(image, "affine", None) is not None:
        digest.update(np.asarray(image.affine, dtype=np.float64).tobytes())
    return digest.hexdigest()


def _source(entry: Mapping[str, Any]) -> str:
    """The source of an entry: its file path, or ``array:<hash>`` for an in-memory volume."""
    return entry["_source"] if "_source" in entry else entry["image"]


def _source_files(path: str) -> list[str]:
    if os.path.isdir(path):
        return sorted(os.path.join(path, n) for n in os.listdir(path) if not n.startswith("."))
    return [path]


def _fingerprint(path: str) -> dict[str, int]:
    """Total size and latest modification time (ns) of a file or of the files of a series folder."""
    if path.startswith(_ARRAY_PREFIX):
        return {"size": 0, "mtime_ns": 0}
    stats = [os.stat(f) for f in _source_files(path)]
    return {"size": sum(s.st_size for s in stats), "mtime_ns": max((s.st_mtime_ns for s in stats), default=0)}


def _content_hash(path: str) -> str:
    """SHA-256 of a source file (of the SHA-256 of every file of a series folder, in name order)."""
    if path.startswith(_ARRAY_PREFIX):
        return path[len(_ARRAY_PREFIX) :]
    if not os.path.isdir(path):
        return file_digest(path)
    return hashlib.sha256("".join(file_digest(name) for name in _source_files(path)).encode()).hexdigest()


def _file_crc32(path: str) -> int:
    crc = 0
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            crc = zlib.crc32(block, crc)
    return crc


def _file_name(key: str, content: str, settings: StoreSettings) -> str:
    """The stored file of ``key`` with source content ``content`` under ``settings``: one name per triple."""
    base = os.path.basename(os.path.normpath(key.split("::")[0]))
    for suffix in (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd"):
        if base.lower().endswith(suffix):
            base = base[: -len(suffix)]
            break
    stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in base).lstrip(".")[:80] or "volume"
    digest = hashlib.sha256(json.dumps([key, content, settings.digest]).encode()).hexdigest()[:16]
    return f"{stem}-{digest}.npy"


def store_key(entry) -> str:
    """The index key of a datalist entry (or path): its absolute path, plus its own intensity setting if it names
    one."""
    entry = dict(entry) if isinstance(entry, Mapping) else {"image": entry}
    if "_source" in entry:
        source = entry["_source"]
    elif _is_array(entry["image"]):
        source = _ARRAY_PREFIX + _array_hash(entry["image"])
    else:
        source = os.path.abspath(str(entry["image"]))
    return source if entry.get("intensity") in (None, "") else f"{source}::{entry['intensity']}"


# -- files -----------------------------------------------------------------------------------------------------------


def _tmp_name(path: str) -> str:
    folder, name = os.path.split(path)
    return os.path.join(folder, f".{name}.{os.getpid()}.tmp")


def _write_atomic(path: str, write) -> None:
    tmp = _tmp_name(path)
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _write_json(path: str, payload: Any) -> None:
    _write_atomic(path, lambda f: f.write(json.dumps(payload, indent=1).encode()))


def _remove_stale_tmp(folder: str) -> None:
    """Remove the temporary files that killed preparations left (their process is gone)."""
    for name in os.listdir(folder):
        found = _TMP_NAME.match(name)
        if found and int(found.group(1)) != os.getpid() and not pid_alive(int(found.group(1))):
            with contextlib.suppress(OSError):
                os.remove(os.path.join(folder, name))
                logger.info(f"volume store: removed {name}, left by an interrupted preparation.")


@contextlib.contextmanager
def _locked(folder: str):
    """An exclusive lock of the preparation folder (index merges)."""
    with open(os.path.join(folder, _LOCK), "a") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def _read_npy_header(f) -> tuple[tuple[int, ...], np.dtype, int]:
    """Shape, dtype and data offset of the ``.npy`` file ``f`` (a C-ordered array, as the store writes)."""
    version = np.lib.format.read_magic(f)
    reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, fortran_order, dtype = reader(f)
    if fortran_order:
        raise ValueError("the array is stored in Fortran order; the store writes C order")
    return tuple(shape), np.dtype(dtype), f.tell()


def _check_file_name(folder: str, record: Mapping[str, Any], key: str) -> str:
    """The path of ``record``'s file, refused unless it is a stored-volume name of ``folder`` itself."""
    name = record.get("file") if isinstance(record, Mapping) else None
    if not isinstance(name, str) or not _FILE_NAME.match(name) or os.path.basename(name) != name:
        raise GenesisInputError(
            f"the volume store index {os.path.join(folder, _INDEX)} names the file {name!r} for {key}, which is not a "
            "volume of that folder (a store only reads its own files); delete that index (it is rebuilt from the "
            "volume records beside it) or prepare into a new store folder."
        )
    return os.path.join(folder, name)


def _check_header(f, shape: Sequence[int], dtype: np.dtype) -> tuple[str | None, int]:
    """``(problem, data offset)`` of the open ``.npy`` file ``f`` against the recorded shape and dtype: the problem is
    None when the file holds them and has the size its header needs."""
    f.seek(0)
    try:
        found, found_dtype, offset = _read_npy_header(f)
    except (OSError, ValueError) as e:
        return f"its header cannot be read ({e})", 0
    if list(found) != list(shape) or found_dtype != dtype:
        return f"it holds {found_dtype} {list(found)}, its record says {dtype} {list(shape)}", offset
    expected = offset + int(np.prod(found, dtype=np.int64)) * found_dtype.itemsize
    size = os.fstat(f.fileno()).st_size
    if size != expected:
        return f"it has {size} bytes, its header needs {expected} (cut short or written over)", offset
    return None, offset


def _header_problem(path: str, record: Mapping[str, Any]) -> str | None:
    """Why the stored file ``path`` does not hold what ``record`` says (None when it does)."""
    try:
        with open(path, "rb") as f:
            return _check_header(f, record["shape"], np.dtype(record["dtype"]))[0]
    except FileNotFoundError:
        return "the file is missing"
    except OSError as e:
        return f"it cannot be opened ({e.strerror})"


# -- one stored volume -----------------------------------------------------------------------------------------------


# stored dtypes the compiled reads take
_COMPILED_DTYPES = (np.dtype(np.uint16), np.dtype(np.float32))


class StoredVolume:
    """One volume of a store: its geometry, its scaling and reads of its regions.

    Reads use ``pread``, one contiguous range of the file per row of the first spatial axis (one per channel when
    the region is whole along the last axes): where Numba is enabled, the rows of a region are read, cut along the
    last axis and, for ``read_float``, scaled to float32 in one compiled call (``kernels.read_region``); else with
    ``os.preadv``, straight into the output when the region is whole along the last axes, or into a reused buffer
    that is then cut. Nothing is memory-mapped, so the resident memory of a process never holds the pages of the
    volumes it read. The header is checked against the record the first time the volume is read.

    Args:
        record: the volume's record.
        path: its file (inside its store folder).
    """

    def __init__(self, record: Mapping[str, Any], path: str) -> None:
        self.record = record
        self.path = path
        self.dtype = np.dtype(record["dtype"])
        self.shape = tuple(int(s) for s in record["shape"])
        self.scale = np.float32(record["scale"]) if record["dtype"] == "uint16" else None
        self.offset = np.float32(record["offset"])
        self._affine = np.asarray(record["affine"], dtype=np.float64)
        self._data_offset: int | None = None

    @property
    def source(self) -> str:
        return self.record["source"]

    @property
    def spacing(self) -> list[float]:
        return list(self.record["spacing"])

    @property
    def affine(self) -> np.ndarray:
        return self._affine.copy()

    def _fail(self, problem: str) -> GenesisInputError:
        return GenesisInputError(
            f"{self.path} of the volume store (source {self.source}) is damaged: {problem}; run the preparation again "
            "(python -m monai_genesis prepare, or the bundle) and it is redone."
        )

    def data_offset(self, fd: int) -> int:
        """Byte offset of the values in the file open as ``fd``, its header checked against the record once."""
        if self._data_offset is None:
            with os.fdopen(os.dup(fd), "rb") as f:
                problem, offset = _check_header(f, self.shape, self.dtype)
            if problem is not None:
                raise self._fail(problem)
            self._data_offset = offset
        return self._data_offset

    def open(self) -> int:
        """A new read-only file descriptor of the volume (the caller closes it)."""
        try:
            return os.open(self.path, os.O_RDONLY)
        except OSError as e:
            raise self._fail(f"it cannot be opened ({e.strerror})") from None

    def read_raw(self, region: Sequence[slice] | None = None, out: np.ndarray | None = None, fd: int | None = None):
        """The stored values of ``region`` (unit-step slices, channel first) into ``out``; ``fd`` an open descriptor."""
        own = fd is None
        fd = self.open() if own else fd
        try:
            return self._read(fd, region, out)
        finally:
            if own:
                os.close(fd)

    def read(self, region: Sequence[slice] | None = None) -> np.ndarray:
        """Float32 intensities of ``region`` (a tuple of unit-step slices, channel first), or of the whole volume."""
        return self.read_float(region)

    def read_float(self, region: Sequence[slice] | None = None, out: np.ndarray | None = None, fd: int | None = None):
        """Float32 intensities of ``region`` into ``out``: read and scaled in one compiled pass where Numba is
        enabled (the floats of ``to_float``), else the stored values read and then scaled."""
        bounds = self._bounds(region)
        if out is None:
            out = np.empty([hi - lo for lo, hi in bounds], dtype=np.float32)
        own = fd is None
        fd = self.open() if own else fd
        try:
            if not self._compiled(fd, bounds, out, scaled=self.scale is not None):
                self.to_float(self._read(fd, region, None), out)
            return out
        finally:
            if own:
                os.close(fd)

    def to_float(self, values: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Float32 intensities of stored ``values`` of this volume (into ``out`` when given)."""
        values = np.asarray(values)[None]
        out = None if out is None else out[None]
        if self.scale is None:
            return to_float32(values, None, None, out)[0]
        return to_float32(np.ascontiguousarray(values), [self.scale], [self.offset], out)[0]

    def _bounds(self, region) -> list[tuple[int, int]]:
        region = tuple(region or ()) + (slice(None),) * (len(self.shape) - len(region or ()))
        return [r.indices(s)[:2] for r, s in zip(region, self.shape)]

    def _compiled(self, fd: int, bounds, out: np.ndarray, scaled: bool) -> bool:
        """Read ``bounds`` into ``out`` in one compiled call (``kernels.read_region``): the stored values, or with
        ``scaled`` the float32 intensities; False where it does not apply or a read failed (nothing raised)."""
        if len(self.shape) != 4 or self.dtype not in _COMPILED_DTYPES or not out.flags.c_contiguous:
            return False
        if not kernels.enabled():
            return False
        if out.dtype != (np.float32 if scaled else self.dtype) or out.shape != tuple(hi - lo for lo, hi in bounds):
            return False
        start = self.data_offset(fd)
        scale = self.scale if scaled else None
        return kernels.read_region(fd, start, self.shape, self.dtype, [lo for lo, _ in bounds], out, scale, self.offset)

    def _read(self, fd: int, region, out):
        bounds = self._bounds(region)
        if out is None:
            out = np.empty([hi - lo for lo, hi in bounds], dtype=self.dtype)
        start = self.data_offset(fd)
        (c0, c1), (x0, x1), *rest = bounds
        inner = self.shape[2:]
        row = int(np.prod(inner, dtype=np.int64))
        size = self.dtype.itemsize
        if not rest or (all(lo == 0 and hi == s for (lo, hi), s in zip(rest, inner)) and out.flags.c_contiguous):
            # whole rows: one read per channel, straight into the output
            for c in range(c0, c1):
                self._pread(fd, out[c - c0], start + (c * self.shape[1] + x0) * row * size)
            return out
        if self._compiled(fd, bounds, out, scaled=False):
            return out
        (y0, y1) = rest[0]
        tail = int(np.prod(inner[1:], dtype=np.int64))
        if all(lo == 0 and hi == s for (lo, hi), s in zip(rest[1:], inner[1:])) and out.flags.c_contiguous:
            # whole along the last axes: each (channel, x) is one contiguous range of the file, read in place
            step = inner[0] * tail * size
            for c in range(c0, c1):
                position = start + ((c * self.shape[1] + x0) * inner[0] + y0) * tail * size
                for plane in out[c - c0]:
                    self._pread(fd, plane, position)
                    position += step
            return out
        # a region cut along the last axes: rows y0..y1 of every x read whole (one read per channel and x) into a
        # reused buffer, then one cut of the whole region
        buffer, rows = _scratch((x1 - x0, y1 - y0) + tuple(inner[1:]), self.dtype)
        cut = (slice(None), slice(None)) + tuple(slice(lo, hi) for lo, hi in rest[1:])
        step, nbytes = inner[0] * tail * size, buffer[0].nbytes
        for c in range(c0, c1):
            position = start + ((c * self.shape[1] + x0) * inner[0] + y0) * tail * size
            for views in rows:
                if os.preadv(fd, views, position) != nbytes:
                    raise self._fail("it is shorter than its record says")
                position += step
            out[c - c0] = buffer[cut]
        return out

    def _pread(self, fd: int, out: np.ndarray, position: int) -> None:
        if os.preadv(fd, [out.reshape(-1).view(np.uint8)], position) != out.nbytes:
            raise self._fail("it is shorter than its record says")


def to_float32(values: np.ndarray, scales, offsets, out: np.ndarray | None = None) -> np.ndarray:
    """Float32 intensities of stored ``values``: ``values[k] * scales[k] + offsets[k]`` for each item ``k`` of the first
    axis, or a plain cast when ``scales`` is None (float stores). The one scaling of stored values, so every path gives
    the same floats: one compiled pass where Numba is enabled (``monai_genesis.transforms.kernels``), else NumPy's cast
    and in-place multiply and add, which give the same values.
    """
    if out is None:
        out = np.empty(values.shape, dtype=np.float32)
    if scales is None:
        np.copyto(out, values, casting="unsafe")
        return out
    scales = np.asarray(scales, dtype=np.float32).reshape(-1)
    offsets = np.asarray(offsets, dtype=np.float32).reshape(-1)
    n = len(values)
    if n and kernels.enabled() and values.flags.c_contiguous and out.flags.c_contiguous and values.dtype == np.uint16:
        kernels.scale_stored(values.reshape(n, -1), scales[:n], offsets[:n], out.reshape(n, -1))
        return out
    np.copyto(out, values, casting="unsafe")
    for k in range(n):
        out[k] *= scales[k]
        if offsets[k]:
            out[k] += offsets[k]
    return out


# read buffers of each thread, by shape and dtype (a few, whatever the number of volumes)
_SCRATCH = threading.local()


def _scratch(shape: tuple[int, ...], dtype: np.dtype) -> tuple[np.ndarray, list[list[memoryview]]]:
    """A reused buffer of ``shape`` and, per row of its first axis, the ``preadv`` argument that fills the row."""
    buffers = _SCRATCH.__dict__.setdefault("buffers", {})
    key = (shape, dtype.str)
    if key not in buffers:
        buffer = np.empty(shape, dtype=dtype)
        buffers[key] = (buffer, [[memoryview(row.reshape(-1).view(np.uint8))] for row in buffer])
        while len(buffers) > 4:
            buffers.pop(next(iter(buffers)))
    else:
        buffers[key] = buffers.pop(key)
    return buffers[key]


# -- the store -------------------------------------------------------------------------------------------------------


def _check_store_dir(store_dir: str) -> str:
    store_dir = os.path.abspath(os.fspath(store_dir))
    if os.path.exists(store_dir) and not os.path.isdir(store_dir):
        raise GenesisInputError(
            f"the store folder {store_dir} is a file, not a folder; pass a folder path (--store_dir) that is absent "
            "or a folder."
        )
    return store_dir


def _preparations(store_dir: str) -> dict[str, StoreSettings]:
    """The preparations in ``store_dir``: folder name → settings."""
    found = {}
    if not os.path.isdir(store_dir):
        return found
    for name in sorted(os.listdir(store_dir)):
        path = os.path.join(store_dir, name, _SETTINGS)
        if os.path.isfile(path):
            try:
                with open(path) as f:
                    found[name] = StoreSettings.from_dict(json.load(f))
            except (OSError, ValueError, TypeError):
                continue
    return found


def _load_records(folder: str, strict: bool) -> dict[str, dict]:
    """The records of a preparation folder: its index or, when the index is missing or damaged, the per-volume
    records beside the volumes.

    A damaged index is named and, unless ``strict``, rebuilt from the per-volume records.
    """
    records: dict[str, dict] = {}
    path = os.path.join(folder, _INDEX)
    damage = None
    if os.path.isfile(path):
        try:
            with open(path) as f:
                index = json.load(f)
            if (
                not isinstance(index, dict)
                or index.get("format") != STORE_FORMAT
                or not isinstance(index.get("volumes"), dict)
            ):
                damage = f"not an index of format {STORE_FORMAT}"
            else:
                records = index["volumes"]
        except (OSError, ValueError) as e:
            damage = str(e)
    if damage is not None:
        if strict:
            raise GenesisInputError(
                f"the volume store index {path} is damaged ({damage}); run the preparation again "
                "(python -m monai_genesis prepare, or the bundle), which rebuilds it from the volume records."
            )
        logger.warning(f"volume store: the index {path} is damaged ({damage}); rebuilding it from the volume records.")
    if damage is not None or not os.path.isfile(path):
        # only without a sound index are the records read one by one (a merge reads the index alone, whatever the
        # number of volumes; a preparation finds a finished volume's record by its file name)
        for name in os.listdir(folder):
            if name.endswith(".json") and _FILE_NAME.match(name[:-5] + ".npy"):
                try:
                    with open(os.path.join(folder, name)) as f:
                        record = json.load(f)
                    records.setdefault(record["key"], record)
                except (OSError, ValueError, KeyError, TypeError):
                    continue
    return records


class VolumeStore(Sequence):
    """The prepared volumes of a datalist under one :py:class:`StoreSettings`; ``store[i]`` is a
    :py:class:`StoredVolume`.

    ``VolumeStore(store_dir, settings)`` opens what is there (reading only); :py:meth:`prepare` writes what is
    missing. Index ``i`` runs over the volumes in datalist order; a key (``store_key(entry)``, a source path) works too.

    Args:
        store_dir: the store folder.
        settings: the settings of the preparation to open; ``None`` opens the only preparation in the folder.
        data: the datalist entries (or paths) to serve; ``None`` serves every stored volume. Entries not in the store
            are left out with a warning.
    """

    def __init__(self, store_dir: str, settings: StoreSettings | None = None, data: Sequence | None = None) -> None:
        self.store_dir = _check_store_dir(store_dir)
        if settings is None:
            found = _preparations(self.store_dir)
            if len(found) != 1:
                listed = "; ".join(f"{k}: {s.flags()}" for k, s in found.items()) or "none"
                raise GenesisInputError(
                    f"the volume store {self.store_dir} holds {len(found)} preparations ({listed}); name the settings "
                    "of the one to open (StoreSettings, or the prepare flags)."
                )
            settings = next(iter(found.values()))
        self.settings = settings
        self.folder = os.path.join(self.store_dir, settings.digest)
        if not os.path.isfile(os.path.join(self.folder, _SETTINGS)):
            raise GenesisInputError(
                f"the volume store {self.store_dir} holds no preparation with the settings {settings.flags()}; "
                "prepare it (python -m monai_genesis prepare, or ensure_store)."
            )
        self.records = _load_records(self.folder, strict=True)
        self._select(data)

    @classmethod
    def _from_records(cls, store_dir: str, settings: StoreSettings, records: dict, keys: list[str]) -> VolumeStore:
        store = cls.__new__(cls)
        store.store_dir, store.settings = store_dir, settings
        store.folder = os.path.join(store_dir, settings.digest)
        store.records, store.keys = records, keys
        store._volumes = {}
        return store

    def _select(self, data) -> None:
        if data is None:
            keys = sorted(self.records)
        else:
            wanted = [store_key(entry) for entry in _entries(data)]
            keys = [k for k in wanted if k in self.records]
            if len(keys) < len(wanted):
                missing = [k for k in wanted if k not in self.records]
                logger.warning(f"{len(missing)} volumes are not in the store and are left out: {missing[:5]}")
        for key in keys:
            _check_file_name(self.folder, self.records[key], key)
        self.keys = keys
        self._volumes: dict[str, StoredVolume] = {}

    def subset(self, data: Sequence) -> VolumeStore:
        """The volumes of ``data`` (entries or paths) of this store, in that order."""
        store = VolumeStore._from_records(self.store_dir, self.settings, self.records, [])
        store._select(data)
        return store

    def __len__(self) -> int:
        return len(self.keys)

    def key(self, item) -> str:
        """The key of ``item``: a position, a key, a source path or a datalist entry."""
        if isinstance(item, (int, np.integer)):
            return self.keys[item]
        if isinstance(item, str) and item in self.records:
            return item
        key = store_key(item)
        if key not in self.records:
            raise KeyError(
                f"{item} is not in the volume store {self.folder}; prepare it first "
                "(python -m monai_genesis prepare, or ensure_store)."
            )
        return key

    def __getitem__(self, item) -> StoredVolume:
        if isinstance(item, slice):
            return [self[i] for i in range(*item.indices(len(self)))]
        key = self.key(item)
        if key not in self._volumes:
            record = self.records[key]
            self._volumes[key] = StoredVolume(record, _check_file_name(self.folder, record, key))
        return self._volumes[key]

    def nbytes(self) -> int:
        """Bytes on disk of this store's volumes."""
        return sum(os.path.getsize(self[k].path) for k in self.keys)

    def check_channels(self, channels: int) -> None:
        """Refuse, naming the file, a volume whose channel count is not ``channels`` (what the network takes)."""
        for key in self.keys:
            found = int(self.records[key]["shape"][0])
            if found != channels:
                raise GenesisInputError(
                    f"{self.records[key]['source']} has {found} channels, the network takes {channels}; pass "
                    f"--in_channels {found} --out_channels {found} (multi-channel pretraining: the network restores "
                    "every channel) or give volumes of one channel."
                )

    @classmethod
    def prepare(
        cls,
        datalist,
        store_dir: str,
        settings: StoreSettings | None = None,
        on_error: str = "skip",
        verify: bool = False,
        progress: bool = True,
    ) -> VolumeStore:
        """Write every volume of ``datalist`` into the store once; reuse (after checking) the ones already there.

        Args:
            datalist: entries ``{"image": path[, "intensity": setting]}`` (or paths), or a split
                ``{"training": [...], "validation": [...]}`` as ``pretrain_datalist`` returns. An entry's image may
                also be an in-memory channel-first array or ``MetaTensor`` (e.g. MedMNIST): it is stored under the
                source name ``array:<SHA-256 of its values>``, so the same array is found again.
            store_dir: the store folder (made when absent).
            settings: the preparation settings (``StoreSettings()`` when ``None``).
            on_error: ``"skip"`` an unreadable source with a WARNING naming it and the reason, or ``"raise"``.
            verify: hash every source and check the CRC-32 of every reused file, not only their size and header.
            progress: show a progress bar (tqdm).

        Returns:
            the store of the datalist's volumes (those that could be prepared), in datalist order.

        Raises:
            GenesisInputError: for bad settings or folders, an unreadable source with ``on_error="raise"``, or when no
                volume at all could be prepared.
        """
        if on_error not in ("skip", "raise"):
            raise GenesisInputError(f"on_error must be 'skip' or 'raise', got {on_error!r}.")
        settings = _as_settings(settings, {})
        entries = _entries(datalist)
        if not entries:
            raise GenesisInputError(
                "the datalist of the volume store is empty; give at least one {'image': path} entry."
            )
        return _Preparation(_check_store_dir(store_dir), settings, on_error, verify).run(entries, progress)


def _entries(datalist) -> list[dict]:
    """Datalist entries from a list of entries or paths, or from ``{"training": [...], "validation": [...]}``.

    An entry listed twice is kept once, with a warning; an entry in two parts of a split is named in a warning too.
    """
    if isinstance(datalist, Mapping) and "image" not in datalist:
        parts = {name: list(part) for name, part in datalist.items()}
    else:
        parts = {"": list(datalist) if not isinstance(datalist, (str, os.PathLike, Mapping)) else [datalist]}
    entries, seen, twice = [], {}, []
    for part, items in parts.items():
        for item in items:
            entry = dict(item) if isinstance(item, Mapping) else {"image": item}
            if _is_array(entry.get("image")):
                entry["_source"] = _ARRAY_PREFIX + _array_hash(entry["image"])
            elif isinstance(entry.get("image"), (str, os.PathLike)):
                entry["image"] = os.path.abspath(os.fspath(entry["image"]))
            else:
                raise GenesisInputError(f"a store entry needs an 'image' file path or array, got {item!r}.")
            key = (_source(entry), entry.get("intensity"))
            if key in seen:
                twice.append((key[0], seen[key], part))
                continue
            seen[key] = part
            entries.append(entry)
    same = [(s, a) for s, a, b in twice if a == b]
    across = [(s, a, b) for s, a, b in twice if a != b]
    if same:
        logger.warning(f"the datalist lists {len(same)} volumes more than once (kept once): {[s for s, _ in same[:5]]}")
    if across:
        pairs = {f"{a} and {b}" for _, a, b in across}
        logger.warning(
            f"{len(across)} volumes are in two parts of the datalist ({', '.join(sorted(pairs))}), "
            f"so they are trained on and validated on: {[s for s, _, _ in across[:5]]}; fix the split."
        )
    return entries


def _preprocess(entry: Mapping[str, Any], settings: StoreSettings) -> tuple[np.ndarray, dict[str, Any]]:
    """Load, orient, resample and scale one volume as the bundles do; the float32 array and its geometry."""
    from monai.transforms import Compose, Orientationd, Spacingd

    from monai_genesis.transforms.intensity import ApplyIntensitySettingd
    from monai_genesis.transforms.loading import LoadVolumed

    image = LoadVolumed("image")({"image": entry["image"]})["image"]
    if image.ndim != 4:
        raise GenesisInputError(
            f"{_source(entry)} is a {image.ndim - 1}-D image of shape {tuple(image.shape[1:])}; the volume store holds "
            "3-D volumes (for 2-D photos use the cspr_pretrain bundle); remove it from the datalist."
        )
    transforms = [Orientationd("image", axcodes=settings.orientation, labels=_LABELS)]
    if settings.pixdim is not None:
        transforms.append(Spacingd("image", pixdim=settings.pixdim, mode="bilinear"))
    transforms.append(
        ApplyIntensitySettingd(
            settings.intensity, "image", ct_window=settings.ct_window, percentiles=settings.percentiles, entry_key=None
        )
    )
    image = Compose(transforms)({"image": image})["image"]
    array = np.asarray(image.detach().cpu().numpy(), dtype=np.float32)
    geometry = {"spacing": [float(v) for v in image.pixdim], "affine": np.asarray(image.affine, np.float64).tolist()}
    return array, geometry


def _quantise(array: np.ndarray, dtype: str) -> tuple[np.ndarray, float, float]:
    """``array`` as ``dtype`` with ``array ≈ stored * scale + offset``."""
    if dtype != "uint16":
        return array.astype(dtype), 1.0, 0.0
    low, high = float(array.min()), float(array.max())
    scale = (high - low) / 65535.0 if high > low else 1.0
    stored = np.empty(array.shape, dtype=np.uint16)
    np.rint((array - low) / scale, out=array)
    np.clip(array, 0, 65535, out=array)
    stored[...] = array
    return stored, scale, low


class _ReadOnly(GenesisInputError):
    """A preparation that must write into a store it cannot write."""


class _Preparation:
    """One run of ``VolumeStore.prepare`` over one preparation folder."""

    def __init__(self, store_dir: str, settings: StoreSettings, on_error: str, verify: bool) -> None:
        self.store_dir, self.settings, self.on_error, self.verify = store_dir, settings, on_error, verify
        self.folder = os.path.join(store_dir, settings.digest)
        self.written = False

    @contextlib.contextmanager
    def _writing(self):
        """Make the folder (once); a write refused by the file system ends in an error saying what to do."""
        try:
            if not self.written:
                os.makedirs(self.folder, exist_ok=True)
                if not os.path.isfile(os.path.join(self.folder, _SETTINGS)):
                    _write_json(os.path.join(self.folder, _SETTINGS), self.settings.to_dict())
                _remove_stale_tmp(self.folder)
                self.written = True
            yield
        except OSError as e:
            if e.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
                raise
            raise _ReadOnly(
                f"the volume store {self.store_dir} must be written ({e.filename or self.folder}: {e.strerror}): pass "
                "a writable --store_dir, or prepare the store where it can be written and give this one read access."
            ) from None

    def _announce_other_settings(self) -> None:
        """Say, when this preparation is new, which other preparations the folder holds and how to reuse them."""
        if os.path.isdir(self.folder):
            return
        for digest, other in _preparations(self.store_dir).items():
            logger.warning(
                f"volume store {self.store_dir}: it holds a preparation with other settings ({digest}: "
                f"{'; '.join(self.settings.differences(other))}); this run prepares its own beside it and leaves that "
                f"one as it is. To use that one instead, run with {other.flags()}."
            )
        if os.path.isfile(os.path.join(self.store_dir, "store.json")):
            logger.warning(
                f"volume store {self.store_dir}: its store.json is of an earlier format, which is not read; the "
                "volumes "
                "are prepared again beside it. Delete the earlier files (store.json and the .npy files next to it) to "
                "free their space."
            )

    def _reusable(self, key: str, record: Mapping | None, source: str):
        """``(record, content)``: the record to reuse (None to prepare), and the content hash if it was computed."""
        vol_settings = self.settings.for_entry(_entry_of(key))
        damaged = None
        if record is not None and record.get("settings") == vol_settings.to_dict():
            if not self.verify and _fingerprint(source) == record.get("source_fingerprint"):
                if self._intact(key, record):
                    return record, None
                damaged = record.get("file")
        content = _content_hash(source)
        name = _file_name(key, content, vol_settings)
        if name == damaged:
            return None, content
        for candidate in (record, self._sidecar(name)):
            if candidate and candidate.get("file") == name and candidate.get("source_sha256") == content:
                if self._intact(key, candidate):
                    return dict(candidate, source_fingerprint=_fingerprint(source)), content
                return None, content
        return None, content

    def _sidecar(self, name: str) -> dict | None:
        path = os.path.join(self.folder, name[:-4] + ".json")
        try:
            with open(path) as f:
                return json.load(f)
        except (OSError, ValueError):
            return None

    def _intact(self, key: str, record: Mapping) -> bool:
        path = _check_file_name(self.folder, record, key)
        problem = _header_problem(path, record)
        if problem is None and self.verify and record.get("crc32") is not None and _file_crc32(path) != record["crc32"]:
            problem = "its CRC-32 differs from its record (the values were changed on disk)"
        if problem is not None:
            logger.warning(
                f"volume store: {path} (source {record.get('source')}) is damaged: {problem}; preparing it again."
            )
        return problem is None

    def _write(self, key: str, entry: Mapping, content: str) -> dict:
        vol_settings = self.settings.for_entry(entry)
        source = _source(entry)
        fingerprint = _fingerprint(source)
        array, geometry = _preprocess(entry, vol_settings)
        stored, scale, offset = _quantise(array, vol_settings.dtype)
        name = _file_name(key, content, vol_settings)
        path = os.path.join(self.folder, name)
        with self._writing():
            _write_atomic(path, lambda f: np.save(f, stored))
        record = {
            "key": key,
            "file": name,
            "shape": list(stored.shape),
            "dtype": vol_settings.dtype,
            "scale": scale,
            "offset": offset,
            **geometry,
            "source": source,
            "source_fingerprint": fingerprint,
            "source_sha256": content,
            "crc32": _file_crc32(path),
            "settings": vol_settings.to_dict(),
        }
        with self._writing():
            _write_json(path[:-4] + ".json", record)
        return record

    def _merge_index(self, records: Mapping[str, dict]) -> None:
        """Merge ``records`` into the index on disk, under the folder's lock (other preparations may merge too)."""
        with self._writing(), _locked(self.folder):
            current = _load_records(self.folder, strict=False)
            current.update(records)
            _write_json(os.path.join(self.folder, _INDEX), {"format": STORE_FORMAT, "volumes": current})

    def run(self, entries: list[dict], progress: bool) -> VolumeStore:
        self._announce_other_settings()
        existing, stale_index = {}, False
        if os.path.isdir(self.folder):
            try:
                existing = _load_records(self.folder, strict=True)
            except GenesisInputError:
                existing, stale_index = _load_records(self.folder, strict=False), True
        changed: dict[str, dict] = {}
        done, skipped, last_write = [], [], time.monotonic()
        bar = entries
        if progress:
            from monai.utils import optional_import

            tqdm, has_tqdm = optional_import("tqdm", name="tqdm")
            if has_tqdm:
                bar = tqdm(entries, desc=f"preparing the volume store {self.store_dir}", unit="volume")
        wrote = False
        for entry in bar:
            source, key = _source(entry), store_key(entry)
            try:
                record, content = self._reusable(key, existing.get(key), source)
                if record is None:
                    record, wrote = self._write(key, entry, content or _content_hash(source)), True
            except _ReadOnly:
                raise
            except Exception as e:  # noqa: BLE001 - any reader error names the file, then skips or raises
                if self.on_error == "raise":
                    if isinstance(e, GenesisInputError):
                        raise
                    raise GenesisInputError(f"volume store: cannot prepare {source}: {_reason(e)}") from e
                record, reason = None, _reason(e)
            if record is None:
                # logged once the error is handled, so that the record is not taken for one of an error on its way out
                logger.warning(f"volume store: skipping {source}, it cannot be read or prepared: {reason}")
                skipped.append(source)
                continue
            if record is not existing.get(key):
                existing[key] = changed[key] = record
            done.append(key)
            if wrote and time.monotonic() - last_write > _INDEX_EVERY_S:
                self._merge_index(changed)
                changed, last_write = {}, time.monotonic()
        if changed or stale_index or (done and not os.path.isfile(os.path.join(self.folder, _INDEX))):
            try:
                self._merge_index(changed)
            except _ReadOnly:
                if wrote:
                    raise
                # a read-only store whose sources were only touched: its records stand, nothing needs writing
                logger.info(f"volume store {self.store_dir} is read-only; its index keeps the earlier fingerprints.")
        if not done:
            raise GenesisInputError(
                f"no volume of the datalist could be prepared into {self.store_dir} (all {len(skipped)} skipped, see "
                "the "
                "warnings above); check that the paths are readable NIfTI, NRRD, MHA files or DICOM series folders."
            )
        if skipped:
            logger.warning(
                f"volume store {self.store_dir}: {len(skipped)} of {len(entries)} volumes skipped: {skipped[:5]}"
            )
        return VolumeStore._from_records(self.store_dir, self.settings, existing, done)


def _reason(exc: BaseException) -> str:
    """The innermost cause of ``exc`` (MONAI wraps a transform's error in ``RuntimeError: applying transform``)."""
    while exc.__cause__ is not None and "applying transform" in str(exc):
        exc = exc.__cause__
    return str(exc) if isinstance(exc, GenesisInputError) else f"{type(exc).__name__}: {exc}"


def _entry_of(key: str) -> dict:
    source, _, intensity = key.partition("::")
    return {"image": source, **({"intensity": intensity} if intensity else {})}


def ensure_store(
    datalist,
    store_dir: str,
    settings: StoreSettings | None = None,
    on_error: str = "skip",
    verify: bool = False,
    channels: int | None = None,
    progress: bool = True,
    **legacy: Any,
) -> VolumeStore:
    """The store of ``datalist`` in ``store_dir``, prepared when missing or stale, safe to call from every rank.

    Under ``torch.distributed`` rank 0 prepares first (``monai_genesis.distributed.rank_zero_first``) and the other
    ranks then open what it wrote, writing nothing. Without a process group every process may prepare: the
    preparation is safe under concurrency (see the module's promises). The store folder must be on a file system all
    ranks see.

    Args:
        datalist: the entries, or the split of ``pretrain_datalist``.
        store_dir: the store folder.
        settings: the preparation settings (``StoreSettings``); the same object the ``prepare`` command builds.
        on_error: ``"skip"`` or ``"raise"`` for unreadable sources (see :py:meth:`VolumeStore.prepare`).
        verify: hash every source and check every reused file's CRC-32.
        channels: the channel count the network takes; a volume with another is refused, naming its file.
        progress: show a progress bar on the preparing rank.
        legacy: ``intensity=``, ``pixdim=``, ... as separate arguments instead of ``settings``.
    """
    from monai_genesis.distributed import is_rank_zero, rank_zero_first

    settings = _as_settings(settings, legacy)

    def prepare_or_open() -> VolumeStore:
        if is_rank_zero():
            return VolumeStore.prepare(
                datalist, store_dir, settings, on_error=on_error, verify=verify, progress=progress
            )
        # rank 0 put every volume in place: the others only read
        return VolumeStore(store_dir, settings, data=datalist)

    store = rank_zero_first(prepare_or_open)
    if channels is not None:
        store.check_channels(int(channels))
    return store


def prepare_command(
    store: str,
    datalist: str | None = None,
    dataset_dir: str | None = None,
    config_file: str | Sequence[str] | None = None,
    intensity: str | None = None,
    pixdim: Sequence[float] | None = None,
    ct_window: Sequence[float] | None = None,
    percentiles: Sequence[float] | None = None,
    store_dtype: str | None = None,
    on_error: str = "skip",
    verify: bool = False,
) -> str:
    """Prepare the volume store ``store`` from a datalist JSON or a folder: ``python -m monai_genesis prepare``.

    Args:
        store: the store folder (pass the same to the bundle as ``--store_dir``).
        datalist: JSON datalist; every entry of its ``"training"``, ``"validation"`` and ``"test"`` lists is
            prepared, relative paths resolved against ``dataset_dir`` (or the JSON's folder).
        dataset_dir: folder of volumes (NIfTI, NRRD, MHA, DICOM series folders), when no datalist is given.
        config_file: a pretraining bundle's ``train.json`` (or a list of configs merged in order): its
            ``store_settings`` are used, so that the bundle reuses the store as it is; the flags below override them.
        intensity: default intensity setting (``ct``, ``mri``, ``minmax``, ``none``); ``ct`` when neither given
            nor in ``config_file``.
        pixdim: target spacing in mm, e.g. ``--pixdim 1,1,2``; none keeps each volume's spacing.
        ct_window: HU window of the CT setting.
        percentiles: percentiles of the MRI setting.
        store_dtype: stored dtype (``uint16``, ``float16``, ``float32``), as the bundles' ``--store_dtype``.
        on_error: ``skip`` unreadable volumes with a warning, or ``raise``.
        verify: hash every source's content and check every stored file's CRC-32.

    Returns:
        a line saying how many volumes the store holds, where, and the bundle flags that reuse it.
    """
    from monai.data import load_decathlon_datalist

    from monai_genesis.data.discovery import find_volumes

    given = {
        k: v
        for k, v in dict(
            intensity=intensity, pixdim=pixdim, ct_window=ct_window, percentiles=percentiles, dtype=store_dtype
        ).items()
        if v is not None
    }
    if config_file:
        settings = dataclasses.replace(StoreSettings.from_config(config_file), **given)
    else:
        settings = StoreSettings(**given)
    if datalist:
        if not os.path.isfile(str(datalist)):
            raise GenesisInputError(f"datalist {datalist} does not exist; pass the path of a JSON datalist file.")
        base_dir = str(dataset_dir) if dataset_dir else os.path.dirname(os.path.abspath(str(datalist)))
        entries = []
        for key in ("training", "validation", "test"):
            try:
                entries += load_decathlon_datalist(str(datalist), True, key, base_dir)
            except ValueError:
                continue
        entries = [{k: e[k] for k in ("image", "intensity") if k in e} for e in entries]
    elif dataset_dir:
        entries = [{"image": path} for path in find_volumes(str(dataset_dir))]
    else:
        raise GenesisInputError("give the volumes to prepare: --datalist FILE.json or --dataset_dir FOLDER.")
    prepared = VolumeStore.prepare(entries, store, settings, on_error=on_error, verify=verify)
    return (
        f"volume store {prepared.folder}: {len(prepared)} volumes, {prepared.nbytes() / 2**30:.2f} GiB; "
        f"a bundle reuses it with --store_dir {prepared.store_dir} and the settings {settings.flags()}"
    )
