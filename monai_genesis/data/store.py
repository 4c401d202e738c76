"""A preprocessed volume store: every volume loaded, oriented, optionally resampled and scaled once, then kept on
disk as a memory-mappable ``.npy`` of a compact dtype, so pretraining reads only the voxels of its cubes.

Layout of a store folder::

    store.json                         the index (format, settings, one record per volume)
    <stem>-<8 hex digits>.npy          one volume, channel-first, uint16 (or float16 / float32)

Each volume is what the bundles' deterministic transforms make of it (``LoadVolumed``, ``Orientationd`` to RAS with
the bundles' axis labels, ``Spacingd`` when ``pixdim`` is given, the intensity setting), before any padding: the
padding to the cube size belongs to the run, not to the volume. The values are quantised as
``value = stored * scale + offset`` with ``offset`` and ``scale`` from the volume's own minimum and maximum, so for the
[0, 1] settings a uint16 step is 1/65535 of the range and the reader returns float32 within half a step.

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

uint16 ``.npy`` halves the bytes, needs no library to read (``open_store_volume`` memory-maps it with NumPy;
``StoreCubeDataset`` reads a cube's rows with ``os.preadv``, one contiguous range per row of its first axis) and cuts
cubes 3–9 times faster than the compressed chunks, which would make a 2-core loader the bottleneck; uint8 is too
coarse for CT (a step of 7.8 HU). So no compression library is needed. ``dtype="float16"`` and ``"float32"`` are kept for data that need them.

Source fingerprint: a rerun first compares each source's size and modification time (``os.stat``, instant); only when
they differ is the content hashed (SHA-256 of the file, or of every file of a DICOM series folder), so a file that was
copied or touched but not changed is not redone, while a real change always is. A content change that keeps the size
and the modification time is not seen; pass ``verify=True`` to hash every source on every run (a few seconds per
gigabyte). The settings (intensity setting of the entry, CT window, percentiles, spacing, orientation, dtype, format)
are hashed per volume: a volume recorded with other settings is redone, never reused.

In-memory volumes (an array or ``MetaTensor`` as an entry's image, as ``load_medmnist`` gives) are stored too, named
by the hash of their values (and affine): hashing is the price of finding them again (about a second per GB).

Unreadable sources are named in a WARNING with the reason and skipped (``on_error="skip"``, the default: one bad file
among thousands should not stop a preparation that takes hours); ``on_error="raise"`` refuses instead. Nothing
half-written is read: a volume and the index are written under a temporary name in the store folder and renamed
(``os.replace``) when complete, and a volume enters the index only after its file is in place.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

__all__ = [
    "STORE_DTYPES",
    "STORE_FORMAT",
    "STORE_INDEX",
    "ensure_store",
    "load_store_index",
    "open_store_volume",
    "prepare_command",
    "prepare_store",
    "read_store_volume",
    "store_key",
    "store_settings",
]

logger = logging.getLogger(__name__)

STORE_INDEX = "store.json"
STORE_FORMAT = 1
STORE_DTYPES = ("uint16", "float16", "float32")
# the bundles' Orientationd: RAS with explicit axis labels, so the result never depends on a global default
_AXCODES = "RAS"
_LABELS = (("L", "R"), ("P", "A"), ("I", "S"))
# seconds between index writes during a preparation, so an interrupted run keeps what it finished
_INDEX_EVERY_S = 10.0


def store_settings(
    intensity: str = "ct",
    pixdim: Sequence[float] | None = None,
    ct_window: Sequence[float] = (-1000.0, 1000.0),
    percentiles: Sequence[float] = (0.5, 99.5),
    dtype: str = "uint16",
) -> dict[str, Any]:
    """The preprocessing settings of a store, checked, as a JSON-ready dictionary.

    Args:
        intensity: the default intensity setting (``"ct"``, ``"mri"``, ``"minmax"``, ``"none"``); an entry's own
            ``"intensity"`` takes precedence for that entry.
        pixdim: target voxel spacing in mm for ``Spacingd`` (bilinear); ``None`` keeps each volume's spacing.
        ct_window: HU window of the CT setting.
        percentiles: percentiles of the MRI setting.
        dtype: stored dtype, one of ``STORE_DTYPES``.
    """
    from monai_genesis.transforms.intensity import check_intensity_setting

    check_intensity_setting(intensity)
    if dtype not in STORE_DTYPES:
        raise ValueError(f"store dtype must be one of {STORE_DTYPES}, got {dtype!r}.")
    if pixdim is not None:
        pixdim = [float(p) for p in (pixdim if isinstance(pixdim, Sequence) else [pixdim] * 3)]
        if any(p <= 0 for p in pixdim):
            raise ValueError(f"pixdim must be positive spacings in mm, got {pixdim}.")
    return {
        "format": STORE_FORMAT,
        "intensity": intensity,
        "pixdim": pixdim,
        "ct_window": [float(v) for v in ct_window],
        "percentiles": [float(v) for v in percentiles],
        "dtype": dtype,
        "axcodes": _AXCODES,
        "labels": [list(pair) for pair in _LABELS],
    }


def _volume_settings(settings: Mapping[str, Any], entry: Mapping[str, Any]) -> dict[str, Any]:
    """The settings one entry is prepared with: the store's, with the entry's own intensity setting if it names one."""
    own = entry.get("intensity")
    return dict(settings, intensity=own if own not in (None, "") else settings["intensity"])


def _hash_settings(settings: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


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
    if path.startswith(_ARRAY_PREFIX):
        return path[len(_ARRAY_PREFIX):]
    digest = hashlib.sha256()
    for name in _source_files(path):
        with open(name, "rb") as f:
            for block in iter(lambda: f.read(1 << 22), b""):
                digest.update(block)
    return digest.hexdigest()


def _store_name(source: str) -> str:
    base = os.path.basename(os.path.normpath(source))
    for suffix in (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd"):
        if base.lower().endswith(suffix):
            base = base[: -len(suffix)]
            break
    stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in base)[:80] or "volume"
    return f"{stem}-{hashlib.sha1(source.encode()).hexdigest()[:8]}.npy"


def _tmp_name(path: str) -> str:
    folder, name = os.path.split(path)
    return os.path.join(folder, f".{name}.{os.getpid()}.tmp")


def _write_atomic_json(path: str, payload: Any) -> None:
    tmp = _tmp_name(path)
    with open(tmp, "w") as f:
        json.dump(payload, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _write_atomic_npy(path: str, array: np.ndarray) -> None:
    tmp = _tmp_name(path)
    try:
        with open(tmp, "wb") as f:
            np.save(f, array)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def load_store_index(store_dir: str) -> dict[str, Any]:
    """The index of the store in ``store_dir``: ``{"format", "volumes": {source path: record}}``.

    An absent index gives an empty store; an index of another format is refused.
    """
    path = os.path.join(store_dir, STORE_INDEX)
    if not os.path.isfile(path):
        return {"format": STORE_FORMAT, "store_dir": os.path.abspath(store_dir), "volumes": {}}
    with open(path) as f:
        index = json.load(f)
    if index.get("format") != STORE_FORMAT:
        raise ValueError(
            f"the volume store {store_dir} has format {index.get('format')!r}, this version reads {STORE_FORMAT}; "
            "delete the folder (or pass another store folder) to prepare it again."
        )
    index["store_dir"] = os.path.abspath(store_dir)
    return index


def _entries(datalist) -> list[dict]:
    """Datalist entries from a list of entries or paths, or from ``{"training": [...], "validation": [...]}``."""
    if isinstance(datalist, Mapping) and "image" not in datalist:
        items = [item for part in datalist.values() for item in part]
    else:
        items = list(datalist) if not isinstance(datalist, (str, os.PathLike, Mapping)) else [datalist]
    entries, seen = [], set()
    for item in items:
        entry = dict(item) if isinstance(item, Mapping) else {"image": item}
        if _is_array(entry.get("image")):
            entry["_source"] = _ARRAY_PREFIX + _array_hash(entry["image"])
        elif isinstance(entry.get("image"), (str, os.PathLike)):
            entry["image"] = os.path.abspath(str(entry["image"]))
        else:
            raise ValueError(f"a store entry needs an 'image' file path or array, got {item!r}.")
        key = (_source(entry), entry.get("intensity"))
        if key not in seen:
            seen.add(key)
            entries.append(entry)
    return entries


def _preprocess(entry: Mapping[str, Any], settings: Mapping[str, Any]) -> tuple[np.ndarray, dict[str, Any]]:
    """Load, orient, resample and scale one volume as the bundles do; the float32 array and its geometry."""
    from monai.transforms import Compose, Orientationd, Spacingd

    from monai_genesis.transforms.intensity import ApplyIntensitySettingd
    from monai_genesis.transforms.loading import LoadVolumed

    transforms = [LoadVolumed("image"), Orientationd("image", axcodes=settings["axcodes"], labels=_LABELS)]
    if settings["pixdim"] is not None:
        transforms.append(Spacingd("image", pixdim=settings["pixdim"], mode="bilinear"))
    transforms.append(
        ApplyIntensitySettingd(
            settings["intensity"], "image", ct_window=settings["ct_window"], percentiles=settings["percentiles"],
            entry_key=None,
        )
    )
    image = Compose(transforms)({"image": entry["image"]})["image"]
    geometry = {
        "spacing": [float(v) for v in image.pixdim],
        "affine": np.asarray(image.affine, dtype=np.float64).tolist(),
    }
    return np.asarray(image.detach().cpu().numpy(), dtype=np.float32), geometry


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


def _up_to_date(record: Mapping[str, Any] | None, store_dir: str, settings_hash: str, source: str, verify: bool):
    """``(reusable, record)``: whether ``record`` still holds ``source`` under ``settings_hash`` (a record whose
    fingerprint changed but whose content did not comes back with the new fingerprint)."""
    if not record or record.get("settings_hash") != settings_hash:
        return False, record
    if not os.path.isfile(os.path.join(store_dir, record["file"])):
        return False, record
    fingerprint = _fingerprint(source)
    same_stat = fingerprint == record["source_fingerprint"]
    if same_stat and not verify:
        return True, record
    if _content_hash(source) != record["source_sha256"]:
        return False, record
    return True, dict(record, source_fingerprint=fingerprint) if not same_stat else record


def prepare_store(
    datalist,
    store_dir: str,
    intensity: str = "ct",
    pixdim: Sequence[float] | None = None,
    ct_window: Sequence[float] = (-1000.0, 1000.0),
    percentiles: Sequence[float] = (0.5, 99.5),
    dtype: str = "uint16",
    on_error: str = "skip",
    verify: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Write every volume of ``datalist`` into the store ``store_dir`` once; skip the ones already there.

    Args:
        datalist: entries ``{"image": path[, "intensity": setting]}`` (or paths), or a split
            ``{"training": [...], "validation": [...]}`` as ``pretrain_datalist`` returns. An entry's image may
            also be an in-memory channel-first array or ``MetaTensor`` (e.g. MedMNIST): it is stored under the
            source name ``array:<SHA-256 of its values>``, so the same array is found again.
        store_dir: the store folder (made when absent).
        intensity: default intensity setting of the entries that name none.
        pixdim: target spacing in mm (bilinear resampling); ``None`` keeps each volume's spacing.
        ct_window: HU window of the CT setting.
        percentiles: percentiles of the MRI setting.
        dtype: stored dtype, one of ``STORE_DTYPES`` (uint16, the default, is half of float32).
        on_error: ``"skip"`` an unreadable source with a WARNING naming it and the reason, or ``"raise"``.
        verify: hash the content of every source, not only of those whose size or modification time changed.
        progress: show a progress bar (tqdm).

    Returns:
        the index: ``{"format", "store_dir", "volumes": {source path: record}}``, restricted to the entries of
        ``datalist`` that are in the store. A record holds ``file``, ``shape`` (channel-first), ``dtype``,
        ``scale``, ``offset``, ``spacing``, ``affine``, ``source``, ``source_fingerprint``, ``source_sha256``,
        ``settings`` and ``settings_hash``.

    Raises:
        ValueError: for bad settings, an unreadable source with ``on_error="raise"``, or when no volume at all
            could be prepared.
    """
    if on_error not in ("skip", "raise"):
        raise ValueError(f"on_error must be 'skip' or 'raise', got {on_error!r}.")
    settings = store_settings(intensity, pixdim, ct_window, percentiles, dtype)
    entries = _entries(datalist)
    if not entries:
        raise ValueError("the datalist of the volume store is empty; give at least one {'image': path} entry.")
    os.makedirs(store_dir, exist_ok=True)
    index = load_store_index(store_dir)
    volumes: dict[str, Any] = index["volumes"]
    index_path = os.path.join(store_dir, STORE_INDEX)
    changed, done, skipped, last_write = False, [], [], time.monotonic()

    bar = entries
    if progress:
        from monai.utils import optional_import

        tqdm, has_tqdm = optional_import("tqdm", name="tqdm")
        if has_tqdm:
            bar = tqdm(entries, desc=f"preparing the volume store {store_dir}", unit="volume")
    for entry in bar:
        source, key = _source(entry), store_key(entry)
        vol_settings = _volume_settings(settings, entry)
        settings_hash = _hash_settings(vol_settings)
        try:
            reusable, record = _up_to_date(volumes.get(key), store_dir, settings_hash, source, verify)
            if reusable:
                if record is not volumes.get(key):
                    volumes[key], changed = record, True
                done.append(key)
                continue
            old = volumes.get(key)
            if old is not None and old.get("settings_hash") != settings_hash:
                logger.info(f"volume store: {source} was prepared with other settings; preparing it again.")
            fingerprint, content = _fingerprint(source), _content_hash(source)
            array, geometry = _preprocess(entry, vol_settings)
        except Exception as e:  # noqa: BLE001 - any reader error names the file, then skips or raises
            if on_error == "raise":
                raise ValueError(f"volume store: cannot prepare {source}: {type(e).__name__}: {e}") from e
            logger.warning(f"volume store: skipping {source}, it cannot be read or prepared: {type(e).__name__}: {e}")
            skipped.append(source)
            continue
        stored, scale, offset = _quantise(array, dtype)
        name = _store_name(key)
        _write_atomic_npy(os.path.join(store_dir, name), stored)
        volumes[key] = {
            "file": name,
            "shape": list(stored.shape),
            "dtype": dtype,
            "scale": scale,
            "offset": offset,
            **geometry,
            "source": source,
            "source_fingerprint": fingerprint,
            "source_sha256": content,
            "settings": vol_settings,
            "settings_hash": settings_hash,
        }
        done.append(key)
        changed = True
        if time.monotonic() - last_write > _INDEX_EVERY_S:
            _write_atomic_json(index_path, {"format": STORE_FORMAT, "volumes": volumes})
            changed, last_write = False, time.monotonic()
    if changed or not os.path.isfile(index_path):
        _write_atomic_json(index_path, {"format": STORE_FORMAT, "volumes": volumes})
    if not done:
        raise ValueError(
            f"no volume of the datalist could be prepared into {store_dir} (all {len(skipped)} skipped, see the "
            "warnings above); check that the paths are readable NIfTI, NRRD, MHA files or DICOM series folders."
        )
    if skipped:
        logger.warning(f"volume store {store_dir}: {len(skipped)} of {len(entries)} volumes skipped: {skipped[:5]}")
    return {"format": STORE_FORMAT, "store_dir": os.path.abspath(store_dir), "volumes": {k: volumes[k] for k in done}}


def store_key(entry) -> str:
    """The index key of a datalist entry (or path): its absolute path, plus its own intensity setting if it names one."""
    entry = dict(entry) if isinstance(entry, Mapping) else {"image": entry}
    if "_source" in entry:
        source = entry["_source"]
    elif _is_array(entry["image"]):
        source = _ARRAY_PREFIX + _array_hash(entry["image"])
    else:
        source = os.path.abspath(str(entry["image"]))
    return source if entry.get("intensity") in (None, "") else f"{source}::{entry['intensity']}"


def _record(index: Mapping[str, Any], source) -> dict[str, Any]:
    volumes = index["volumes"]
    key = str(source) if not _is_array(source) and str(source) in volumes else store_key(source)
    if key not in volumes:
        raise KeyError(
            f"{source} is not in the volume store {index.get('store_dir')}; prepare it first "
            "(python -m monai_genesis prepare, or ensure_store)."
        )
    return volumes[key]


def open_store_volume(index: Mapping[str, Any], source) -> np.memmap:
    """The stored array of ``source`` (a source path or index key), memory-mapped read-only (nothing is read yet).

    Map it to intensities with the record's ``scale`` and ``offset``, or use :py:func:`read_store_volume`.
    """
    record = _record(index, source)
    return np.load(os.path.join(index["store_dir"], record["file"]), mmap_mode="r")


def read_store_volume(index: Mapping[str, Any], source, region: tuple | None = None) -> np.ndarray:
    """The intensities of ``source`` (or of ``region``, a tuple of slices, of it) as float32, read from the store."""
    record = _record(index, source)
    stored = open_store_volume(index, source)
    values = np.asarray(stored if region is None else stored[region], dtype=np.float32)
    if record["dtype"] == "uint16":
        values = values * np.float32(record["scale"]) + np.float32(record["offset"])
    return values


def _datalist_token(entries: list[dict], settings: Mapping[str, Any]) -> str:
    """A name for one preparation: the entries, their fingerprints and the settings."""
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    for entry in entries:
        try:
            fingerprint = _fingerprint(_source(entry))
        except OSError:
            fingerprint = None
        digest.update(json.dumps([_source(entry), entry.get("intensity"), fingerprint]).encode())
    return digest.hexdigest()[:16]


def ensure_store(
    datalist,
    store_dir: str,
    intensity: str = "ct",
    pixdim: Sequence[float] | None = None,
    ct_window: Sequence[float] = (-1000.0, 1000.0),
    percentiles: Sequence[float] = (0.5, 99.5),
    dtype: str = "uint16",
    on_error: str = "skip",
    timeout: float = 24 * 3600.0,
    progress: bool = True,
) -> dict[str, Any]:
    """The store of ``datalist`` in ``store_dir``, prepared when missing or stale, safe to call from every rank.

    Under ``torch.distributed`` (initialised process group) rank 0 prepares and the others wait on a barrier; under
    ``torchrun`` before the group exists (``RANK``/``WORLD_SIZE`` set), the others wait for a marker file rank 0
    writes when done. Then every rank reads the index. The store folder must be on a file system all ranks see.

    Args:
        datalist: the entries, or the split of ``pretrain_datalist``.
        store_dir: the store folder.
        intensity: default intensity setting.
        pixdim: target spacing in mm; ``None`` keeps each volume's spacing.
        ct_window: HU window of the CT setting.
        percentiles: percentiles of the MRI setting.
        dtype: stored dtype.
        on_error: ``"skip"`` or ``"raise"`` for unreadable sources (see :py:func:`prepare_store`).
        timeout: seconds the other ranks wait for the marker file.
        progress: show a progress bar on the preparing rank.

    Returns:
        the index of the datalist's volumes, as :py:func:`prepare_store` returns it.
    """
    import torch.distributed as dist

    kwargs = dict(intensity=intensity, pixdim=pixdim, ct_window=ct_window, percentiles=percentiles, dtype=dtype)
    grouped = dist.is_available() and dist.is_initialized()
    rank = dist.get_rank() if grouped else int(os.environ.get("RANK", "0"))
    world = dist.get_world_size() if grouped else int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return prepare_store(datalist, store_dir, on_error=on_error, progress=progress, **kwargs)
    entries = _entries(datalist)
    marker = os.path.join(store_dir, f".ready-{_datalist_token(entries, store_settings(**kwargs))}")
    if rank == 0:
        index = prepare_store(entries, store_dir, on_error=on_error, progress=progress, **kwargs)
        if not grouped:
            _write_atomic_json(marker, {"volumes": len(index["volumes"])})
    if grouped:
        dist.barrier()
    elif rank != 0:
        deadline = time.monotonic() + timeout
        while not os.path.isfile(marker):
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"rank {rank} waited {timeout:.0f} s for rank 0 to prepare the volume store {store_dir} "
                    f"(marker {marker}); check rank 0's log, or prepare the store first with python -m monai_genesis prepare."
                )
            time.sleep(0.5)
    if rank != 0:
        # a reader only: rank 0 put every volume in place, so nothing is written here
        index = _read_prepared(entries, store_dir, store_settings(**kwargs))
    return index


def _read_prepared(entries: list[dict], store_dir: str, settings: Mapping[str, Any]) -> dict[str, Any]:
    """The index of ``entries`` as rank 0 left it, checked against ``settings``, without writing anything."""
    volumes = load_store_index(store_dir)["volumes"]
    found = {}
    for entry in entries:
        source, key = _source(entry), store_key(entry)
        record = volumes.get(key)
        if record is None:
            continue
        if record["settings_hash"] != _hash_settings(_volume_settings(settings, entry)):
            raise ValueError(
                f"the volume store {store_dir} holds {source} with other settings than this run's; "
                "let rank 0 prepare it again (it redoes stale volumes) or use another store folder."
            )
        found[key] = record
    if not found:
        raise ValueError(f"the volume store {store_dir} holds none of the datalist's volumes after rank 0 prepared it.")
    return {"format": STORE_FORMAT, "store_dir": os.path.abspath(store_dir), "volumes": found}


def prepare_command(
    store: str,
    datalist: str | None = None,
    dataset_dir: str | None = None,
    intensity: str = "ct",
    pixdim: Sequence[float] | None = None,
    ct_window: Sequence[float] = (-1000.0, 1000.0),
    percentiles: Sequence[float] = (0.5, 99.5),
    dtype: str = "uint16",
    on_error: str = "skip",
    verify: bool = False,
) -> str:
    """Prepare the volume store ``store`` from a datalist JSON or a folder: ``python -m monai_genesis prepare``.

    Args:
        store: the store folder (pass the same to the bundle as ``--store_dir``).
        datalist: JSON datalist; every entry of its ``"training"``, ``"validation"`` and ``"test"`` lists is
            prepared, relative paths resolved against ``dataset_dir`` (or the JSON's folder).
        dataset_dir: folder of volumes (NIfTI, NRRD, MHA, DICOM series folders), when no datalist is given.
        intensity: default intensity setting (``ct``, ``mri``, ``minmax``, ``none``).
        pixdim: target spacing in mm, e.g. ``--pixdim 1,1,2``; none keeps each volume's spacing.
        ct_window: HU window of the CT setting.
        percentiles: percentiles of the MRI setting.
        dtype: stored dtype (``uint16``, ``float16``, ``float32``).
        on_error: ``skip`` unreadable volumes with a warning, or ``raise``.
        verify: hash every source's content, not only of the sources whose size or time changed.

    Returns:
        a line saying how many volumes the store holds and where.
    """
    from monai.data import load_decathlon_datalist

    from monai_genesis.data.discovery import find_volumes

    if datalist:
        if not os.path.isfile(str(datalist)):
            raise ValueError(f"datalist {datalist} does not exist; pass the path of a JSON datalist file.")
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
        raise ValueError("give the volumes to prepare: --datalist FILE.json or --dataset_dir FOLDER.")
    index = prepare_store(
        entries, store, intensity=intensity, pixdim=pixdim, ct_window=ct_window, percentiles=percentiles,
        dtype=dtype, on_error=on_error, verify=verify,
    )
    stored = sum(os.path.getsize(os.path.join(index["store_dir"], r["file"])) for r in index["volumes"].values())
    return f"volume store {index['store_dir']}: {len(index['volumes'])} volumes, {stored / 2**30:.2f} GiB"
