"""Cubes cut lazily from a volume store: each cube reads only its own voxels from the stored volume, so the memory of
a pretraining does not grow with the number of volumes.

``StoreCubeDataset`` serves ``cubes_per_volume`` cubes of every stored volume per epoch, at positions drawn by
``monai_genesis.transforms.RandCubeSamples`` (the border rule and the lung-rich filter of the in-memory path), or, with
``fixed=True``, the same cubes every epoch as ``FixedCubeSamplesd`` cuts them (seeded by the source's file name), for
validation.

Reading. A cube is read by :py:class:`monai_genesis.data.StoredVolume`, one ``pread`` per channel and row of its
first spatial axis (64 calls for a 64×64×32 cube), straight from the ``.npy`` file; where Numba is enabled the rows
are cut and scaled to float32 in the same compiled call (``StoredVolume.read_float``). Nothing is memory-mapped, so
the resident memory of a process never holds the pages of the volumes it read (a page-cache page touched through a
map counts in the RSS of every process that mapped it), and the volumes need no re-mapping when a loader jumps
between them. At most ``max_open`` files stay open per process (opening one again costs a few microseconds).

Loading batches fast. With ``collate_fn=collate_store_cubes`` (the bundles set it), ``DataLoader`` fetches a whole
batch in one call (``__getitems__``), read and scaled in one pass per cube straight into the batch. A loader worker
reads it into one of its reused shared-memory buffers (:py:mod:`monai_genesis.data.worker_batches`), and the
receiving process's batch is that buffer: nothing is copied or converted in the main process. Without that
``collate_fn`` the dataset works as any other, one float32 item at a time.
"""

from __future__ import annotations

import contextlib
import logging
import os
import zlib
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.data import MetaTensor
from monai.data.utils import list_data_collate, set_rnd
from monai.transforms import Compose, Randomizable
from monai.utils import MAX_SEED

from monai_genesis.data import worker_batches
from monai_genesis.data.store import StoredVolume, VolumeStore
from monai_genesis.data.worker_batches import batch_tensor, meta_tensor, release, shared_array, ship
from monai_genesis.errors import GenesisInputError
from monai_genesis.transforms.cubes import RandCubeSamples

__all__ = ["StoreCubeBatch", "StoreCubeDataset", "collate_store_cubes"]

logger = logging.getLogger(__name__)


class _CubeSource:
    """A stored volume as cubes are cut from it: padded with zeros on both sides where it is smaller than the cube
    (as ``SpatialPadd``; a cube reads only the voxels of the volume it covers, the rest is zeros), and remembering its
    last read until the next cube is read (so that it holds one region at most, whatever the number of volumes).

    ``__getitem__`` gives the float32 intensities of a region of the padded frame (what ``RandCubeSamples`` filters
    on); ``read_float_into`` writes those of a cube into a given array.
    """

    def __init__(self, volume: StoredVolume, cube_size: Sequence[int], fileno: Callable[[], int]) -> None:
        self.volume = volume
        self.fileno = fileno
        spatial = volume.shape[1:]
        self.pad_before = tuple(max(c - s, 0) // 2 for s, c in zip(spatial, cube_size))
        self.padded = any(s < c for s, c in zip(spatial, cube_size))
        self.shape = (volume.shape[0], *(max(s, c) for s, c in zip(spatial, cube_size)))
        self._last: tuple[tuple, np.ndarray] | None = None

    def _region(self, start: Sequence[int], size: Sequence[int]) -> tuple[slice, ...]:
        return (slice(None),) + tuple(slice(s, s + c) for s, c in zip(start, size))

    def _key(self, region) -> tuple:
        return tuple(r.indices(s)[:2] for r, s in zip(region, self.shape))

    def _read(self, key: tuple, out: np.ndarray) -> np.ndarray:
        """The float32 intensities of the padded frame's region ``key`` (``(lo, hi)`` per axis) into ``out``."""
        region = tuple(slice(lo, hi) for lo, hi in key)
        if not self.padded:
            return self.volume.read_float(region, out, fd=self.fileno())
        # the part of the region inside the volume, read; the padding, zeros
        inside = [(max(lo - b, 0), min(hi - b, n)) for (lo, hi), b, n in
                  zip(key[1:], self.pad_before, self.volume.shape[1:])]
        out[...] = 0
        if all(hi > lo for lo, hi in inside):
            target = (slice(None),) + tuple(slice(lo + b - first, hi + b - first) for (lo, hi), b, (first, _) in
                                            zip(inside, self.pad_before, key[1:]))
            out[target] = self.volume.read_float(region[:1] + tuple(slice(lo, hi) for lo, hi in inside),
                                                 fd=self.fileno())
        return out

    def __getitem__(self, region) -> np.ndarray:
        """Float32 intensities of ``region`` (a tuple of unit-step slices of the padded frame)."""
        region = tuple(region) + (slice(None),) * (len(self.shape) - len(region))
        key = self._key(region)
        floats = self._read(key, np.empty([hi - lo for lo, hi in key], dtype=np.float32))
        # the filter reads the cube it then keeps: remember the last read so the cube is not read twice
        self._last = (key, floats)
        return floats

    def read_float_into(self, start: Sequence[int], size: Sequence[int], out: np.ndarray) -> None:
        """Write the float32 intensities of the cube at ``start`` (in the padded frame) into ``out``."""
        key = self._key(self._region(start, size))
        last, self._last = self._last, None
        if last is not None and last[0] == key:
            out[...] = last[1]
        else:
            self._read(key, out)


class StoreCubeBatch(Sequence):
    """The cubes of one batch as read from the store: their float32 intensities ``(B, C, *cube)`` (in a loader
    worker, in one of its reused shared buffers), with the geometry of each.

    It is the sequence of the batch's items (``{"image": MetaTensor}``, made when asked for), so any ``collate_fn``
    takes it; ``collate_store_cubes`` makes the batch of the intensities as they are.
    """

    def __init__(self, images: np.ndarray, affines: np.ndarray, sources: list[str], slot: int | None = None) -> None:
        self.images, self.affines, self.sources = images, affines, sources
        # the worker's shared buffer that ``images`` lives in, until it is shipped to the receiving process
        self.slot = slot
        self._items: dict[int, dict] = {}

    def __del__(self) -> None:
        # collated by another collate_fn: the buffer was never shipped, so the worker takes it back
        if self.slot is not None and worker_batches._Pool.pid == os.getpid():
            release(self.slot)

    def __len__(self) -> int:
        return len(self.sources)

    def __getitem__(self, k):
        if isinstance(k, slice):
            return [self[i] for i in range(*k.indices(len(self)))]
        k = range(len(self))[k]
        if k not in self._items:
            # a copy: the batch's buffer is used again once the batch is gone
            image = torch.from_numpy(np.array(self.images[k]))
            self._items[k] = {"image": meta_tensor(image, self.affines[k], self.sources[k])}
        return self._items[k]

    def to_batch(self) -> dict[str, MetaTensor]:
        """``{"image": MetaTensor}`` float32 ``(B, C, *cube)``, as ``list_data_collate`` makes of the items; it
        takes the intensities without a copy, unless they are in a worker's buffer (used again once this batch is
        gone)."""
        images = self.images if self.slot is None else np.array(self.images)
        return {"image": batch_tensor(images, self.affines, self.sources)}


def collate_store_cubes(batch):
    """``collate_fn`` of a ``DataLoader`` over ``StoreCubeDataset``: the float32 ``{"image": MetaTensor}`` batch of
    the cubes as they were read, without a copy.

    In a loader worker the batch stays in the worker's reused shared-memory buffer: the receiving process's batch is
    a view of it, and the buffer is used again once that batch (and every view of it) is gone. Items of other data
    sets (or of a ``StoreCubeDataset`` with a ``transform``) are collated by ``monai.data.list_data_collate``.
    """
    if not isinstance(batch, StoreCubeBatch):
        return list_data_collate(batch)
    if torch.utils.data.get_worker_info() is None:
        return batch.to_batch()
    return {"image": ship(batch)}


def _is_identity(transform) -> bool:
    # a bundle's Compose whose only transform is disabled (corruption on the device) changes nothing
    return transform is None or (isinstance(transform, Compose) and not transform.transforms)


class StoreCubeDataset(Randomizable, torch.utils.data.Dataset):
    """Serve ``cubes_per_volume`` cubes of every volume of a store per epoch, read lazily from the stored files.

    Item ``i`` is a cube of volume ``i // cubes_per_volume``: ``{"image": MetaTensor}`` float32 ``(C, *cube_size)``,
    whose affine is moved to the cube's origin and whose ``filename_or_obj`` is the source volume. Random positions
    come from ``self.R`` (seeded per loader worker by ``monai.data.DataLoader``, and by ``set_determinism``).
    A ``DataLoader`` with ``collate_fn=collate_store_cubes`` reads whole batches (``__getitems__``) and moves them
    as stored values; the batches are the same as one item at a time with ``list_data_collate``.

    Args:
        store: the ``VolumeStore`` returned by ``ensure_store`` / ``VolumeStore.prepare``, or a store folder holding
            one preparation.
        data: the datalist entries (or paths) to serve, looked up in the store; ``None`` serves every stored volume.
            Entries that are not in the store (skipped as unreadable) are left out with a warning.
        cube_size: spatial size of each cube.
        cubes_per_volume: cubes per volume and epoch (the paper's "scale").
        border: margin in voxels per spatial axis (see ``RandCubeSamples``).
        min_fraction: fraction of a cube's first channel that must lie in ``intensity_range``; 0 keeps every cube.
        intensity_range: ``(low, high)`` intensity range of interest.
        max_tries: draws per cube when filtering.
        transform: optional transform of each cube dictionary (e.g. the per-sample corruption); batches of a
            data set with a transform (other than an empty ``Compose``) are made of float32 items.
        fixed: serve the same cubes every epoch (validation), seeded by ``seed`` and each source's file name.
        seed: seed of the fixed cubes.
        max_open: stored files open at once per process (as many volumes keep their geometry for cutting cubes).
    """

    def __init__(
        self,
        store: Mapping[str, Any] | str,
        data: Sequence | None = None,
        cube_size: Sequence[int] = (64, 64, 32),
        cubes_per_volume: int = 32,
        border: Sequence[int] | int = (100, 100, 30),
        min_fraction: float = 0.0,
        intensity_range: Sequence[float] = (0.0, 0.425),
        max_tries: int = 10,
        transform: Callable | None = None,
        fixed: bool = False,
        seed: int = 0,
        max_open: int = 64,
    ) -> None:
        if cubes_per_volume < 1:
            raise ValueError(f"cubes_per_volume must be at least 1, got {cubes_per_volume}.")
        if max_open < 1:
            raise ValueError(f"max_open must be at least 1, got {max_open}.")
        store = VolumeStore(store) if isinstance(store, (str, os.PathLike)) else store
        if not isinstance(store, VolumeStore):
            raise TypeError(
                f"store must be a VolumeStore (ensure_store gives one) or a store folder, got {type(store).__name__}."
            )
        self.store = store if data is None else store.subset(data)
        if not len(self.store):
            raise GenesisInputError(
                f"no volume to serve from the store {store.store_dir}; prepare it with the datalist "
                "(python -m monai_genesis prepare, or ensure_store)."
            )
        self.cubes_per_volume = int(cubes_per_volume)
        sampler_args = dict(
            cube_size=cube_size, border=border, min_fraction=min_fraction, intensity_range=intensity_range,
            max_tries=max_tries,
        )
        self.sampler = RandCubeSamples(num_samples=1, **sampler_args)
        self.fixed_sampler = RandCubeSamples(num_samples=self.cubes_per_volume, **sampler_args) if fixed else None
        self.seed = int(seed)
        self.transform = transform
        self.max_open = int(max_open)
        self._volumes: OrderedDict[int, _CubeSource] = OrderedDict()
        self._files: OrderedDict[int, int] = OrderedDict()
        self._fixed_starts: dict[int, list[tuple[int, ...]]] = {}

    def set_random_state(self, seed: int | None = None, state: np.random.RandomState | None = None):
        super().set_random_state(seed, state)
        self.sampler.set_random_state(state=self.R)
        if self.transform is not None:
            set_rnd(self.transform, seed=int(self.R.randint(MAX_SEED)))
        return self

    def randomize(self, data: Any = None) -> None:
        """Draw the position of one cube of the volume ``data`` into ``self.sampler.starts``."""
        self.sampler.randomize(data)

    def __len__(self) -> int:
        return len(self.store) * self.cubes_per_volume

    def __del__(self) -> None:
        for fd in getattr(self, "_files", {}).values():
            with contextlib.suppress(OSError):
                os.close(fd)

    def __getstate__(self):
        # a worker opens its own files: open files are never pickled into it
        state = dict(self.__dict__)
        state["_volumes"], state["_files"] = OrderedDict(), OrderedDict()
        return state

    def _fileno(self, i: int) -> int:
        """File descriptor of volume ``i``'s stored file, opened when needed (at most ``max_open`` kept open)."""
        if i in self._files:
            self._files.move_to_end(i)
            return self._files[i]
        self._files[i] = fd = self.store[i].open()
        while len(self._files) > self.max_open:
            os.close(self._files.popitem(last=False)[1])
        return fd

    def open_files(self) -> int:
        """How many stored files this process holds open for the data set."""
        return len(self._files)

    def volume(self, i: int) -> _CubeSource:
        """Volume ``i`` of the data set, as cubes are cut from it (the ``max_open`` used last are kept)."""
        if i in self._volumes:
            self._volumes.move_to_end(i)
            return self._volumes[i]
        source = self._volumes[i] = _CubeSource(self.store[i], self.sampler.cube_size, lambda: self._fileno(i))
        while len(self._volumes) > self.max_open:
            self._volumes.popitem(last=False)
        return source

    def _fixed_start(self, i: int, j: int, volume: _CubeSource) -> tuple[int, ...]:
        if i not in self._fixed_starts:
            name = os.path.basename(self.store[i].source)
            self.fixed_sampler.set_random_state(seed=(self.seed + zlib.crc32(name.encode())) % (2**32))
            self.fixed_sampler.randomize(volume)
            self._fixed_starts[i] = list(self.fixed_sampler.starts)
        return self._fixed_starts[i][j]

    def _position(self, index: int) -> tuple[int, tuple[int, ...]]:
        """Volume and cube start of item ``index`` (drawing the start of a random cube)."""
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} cubes.")
        i, j = divmod(int(index) % len(self), self.cubes_per_volume)
        volume = self.volume(i)
        if self.fixed_sampler is not None:
            return i, self._fixed_start(i, j, volume)
        self.randomize(volume)
        return i, self.sampler.starts[0]

    def _affine(self, i: int, start: Sequence[int]) -> np.ndarray:
        """The volume's affine moved to the cube's origin ``start`` (in the padded frame)."""
        affine = self.store[i].affine
        affine[:3, 3] += affine[:3, :3] @ np.subtract(start, self.volume(i).pad_before)
        return affine

    def __getitem__(self, index: int) -> dict[str, Any]:
        i, start = self._position(index)
        volume = self.volume(i)
        cube = np.empty((volume.shape[0], *self.sampler.cube_size), dtype=np.float32)
        volume.read_float_into(start, self.sampler.cube_size, cube)
        image = meta_tensor(torch.from_numpy(cube), self._affine(i, start), self.store[i].source)
        sample = {"image": image}
        return self.transform(sample) if self.transform is not None else sample

    def __getitems__(self, indices: Sequence[int]) -> StoreCubeBatch | list[dict[str, Any]]:
        """The items ``indices`` in one call: a ``StoreCubeBatch`` of their float32 intensities (a list of items
        with a ``transform``, which works on items)."""
        if not _is_identity(self.transform):
            return [self[i] for i in indices]
        positions = [self._position(index) for index in indices]
        volumes = [self.volume(i) for i, _ in positions]
        channels = {v.shape[0] for v in volumes}
        if len(channels) > 1:
            raise ValueError(f"the volumes of a batch have different channel counts {sorted(channels)}.")
        images, slot = shared_array(np.dtype(np.float32), (len(positions), channels.pop(), *self.sampler.cube_size))
        try:
            for k, ((_, start), volume) in enumerate(zip(positions, volumes)):
                volume.read_float_into(start, self.sampler.cube_size, images[k])
        except BaseException:
            if slot is not None:
                release(slot)
            raise
        affines = np.stack([self._affine(i, start) for i, start in positions])
        sources = [self.store[i].source for i, _ in positions]
        return StoreCubeBatch(images, affines, sources, slot)
