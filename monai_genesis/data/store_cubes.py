"""Cubes cut lazily from a volume store: each cube reads only its own voxels from the memory-mapped volume, so the
memory of a pretraining does not grow with the number of volumes.

``StoreCubeDataset`` serves ``cubes_per_volume`` cubes of every stored volume per epoch, at positions drawn by
``monai_genesis.transforms.RandCubeSamples`` (the border rule and the lung-rich filter of the in-memory path), or, with
``fixed=True``, the same cubes every epoch as ``FixedCubeSamplesd`` cuts them (seeded by the source's file name), for
validation. At most ``max_open`` volumes are mapped at a time per process: a mapped volume's pages that cubes touched
count in the resident memory of the process until it is unmapped.
"""

from __future__ import annotations

import logging
import os
import zlib
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.data import MetaTensor
from monai.data.utils import set_rnd
from monai.transforms import Randomizable
from monai.utils import MAX_SEED

from monai_genesis.data.store import load_store_index, open_store_volume, store_key
from monai_genesis.transforms.cubes import RandCubeSamples

__all__ = ["StoreCubeDataset"]

logger = logging.getLogger(__name__)


class _ScaledVolume:
    """A stored volume seen as float32 intensities: indexing reads and scales only the indexed voxels.

    A volume smaller than the cube along an axis is padded with zeros on both sides (as ``SpatialPadd``), in memory:
    such a volume is small.
    """

    def __init__(self, stored: np.ndarray, record: Mapping[str, Any], cube_size: Sequence[int]) -> None:
        self.scale = np.float32(record["scale"]) if record["dtype"] == "uint16" else None
        self.offset = np.float32(record["offset"])
        spatial = stored.shape[1:]
        self.pad_before = tuple(max(c - s, 0) // 2 for s, c in zip(spatial, cube_size))
        if any(s < c for s, c in zip(spatial, cube_size)):
            widths = [(0, 0)] + [(b, max(c - s, 0) - b) for s, c, b in zip(spatial, cube_size, self.pad_before)]
            stored = np.pad(self._scaled(np.asarray(stored)), widths)
            self.scale, self.offset = None, np.float32(0.0)
        self.stored = stored
        self.shape = stored.shape

    def _scaled(self, values: np.ndarray) -> np.ndarray:
        if self.scale is None:
            return np.array(values, dtype=np.float32)
        # one pass over the mapped voxels: read, convert and scale together
        out = np.multiply(values, self.scale, dtype=np.float32)
        if self.offset:
            out += self.offset
        return out

    def __getitem__(self, region) -> np.ndarray:
        return self._scaled(self.stored[region])


class StoreCubeDataset(Randomizable, torch.utils.data.Dataset):
    """Serve ``cubes_per_volume`` cubes of every volume of a store per epoch, read lazily from the memory map.

    Item ``i`` is a cube of volume ``i // cubes_per_volume``: ``{"image": MetaTensor}`` float32 ``(C, *cube_size)``,
    whose affine is moved to the cube's origin and whose ``filename_or_obj`` is the source volume. Random positions
    come from ``self.R`` (seeded per loader worker by ``monai.data.DataLoader``, and by ``set_determinism``).

    Args:
        store: the index returned by ``ensure_store``/``prepare_store``, or a store folder.
        data: the datalist entries (or paths) to serve, looked up in the store; ``None`` serves every stored volume.
            Entries that are not in the store (skipped as unreadable) are left out with a warning.
        cube_size: spatial size of each cube.
        cubes_per_volume: cubes per volume and epoch (the paper's "scale").
        border: margin in voxels per spatial axis (see ``RandCubeSamples``).
        min_fraction: fraction of a cube's first channel that must lie in ``intensity_range``; 0 keeps every cube.
        intensity_range: ``(low, high)`` intensity range of interest.
        max_tries: draws per cube when filtering.
        transform: optional transform of each cube dictionary (e.g. the per-sample corruption).
        fixed: serve the same cubes every epoch (validation), seeded by ``seed`` and each source's file name.
        seed: seed of the fixed cubes.
        max_open: volumes mapped at once per process.
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
        max_open: int = 8,
    ) -> None:
        if cubes_per_volume < 1:
            raise ValueError(f"cubes_per_volume must be at least 1, got {cubes_per_volume}.")
        if max_open < 1:
            raise ValueError(f"max_open must be at least 1, got {max_open}.")
        self.index = load_store_index(store) if isinstance(store, (str, os.PathLike)) else dict(store)
        volumes = self.index["volumes"]
        if data is None:
            keys = sorted(volumes)
        else:
            wanted = [store_key(entry) for entry in data]
            keys = [k for k in wanted if k in volumes]
            if len(keys) < len(wanted):
                missing = [k for k in wanted if k not in volumes]
                logger.warning(f"{len(missing)} volumes are not in the store and are left out: {missing[:5]}")
        if not keys:
            raise ValueError(
                f"no volume to serve from the store {self.index.get('store_dir')}; prepare it with the datalist "
                "(python -m monai_genesis prepare, or ensure_store)."
            )
        self.keys = keys
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
        self._open: OrderedDict[int, _ScaledVolume] = OrderedDict()
        self._fixed_starts: dict[int, list[tuple[int, ...]]] = {}

    def set_random_state(self, seed: int | None = None, state: np.random.RandomState | None = None):
        super().set_random_state(seed, state)
        self.sampler.set_random_state(state=self.R)
        if self.transform is not None:
            set_rnd(self.transform, seed=int(self.R.randint(MAX_SEED)))
        return self

    def randomize(self, data: Any = None) -> None:
        """Draw the position of one cube of the volume ``data`` (a ``_ScaledVolume``) into ``self.sampler.starts``."""
        self.sampler.randomize(data)

    def __len__(self) -> int:
        return len(self.keys) * self.cubes_per_volume

    def __getstate__(self):
        # a worker maps its own volumes: open maps are never pickled into it
        state = dict(self.__dict__)
        state["_open"] = OrderedDict()
        return state

    def volume(self, i: int) -> _ScaledVolume:
        """Volume ``i`` of the data set, mapped (and kept among the ``max_open`` most recent ones)."""
        if i in self._open:
            self._open.move_to_end(i)
            return self._open[i]
        key = self.keys[i]
        record = self.index["volumes"][key]
        try:
            stored = open_store_volume(self.index, key)
        except (OSError, ValueError) as e:
            raise RuntimeError(
                f"cannot read {record['file']} of the volume store {self.index['store_dir']} (source {key}): {e}; "
                "prepare the store again."
            ) from e
        if list(stored.shape) != list(record["shape"]):
            raise RuntimeError(
                f"{record['file']} of the volume store {self.index['store_dir']} has shape {stored.shape}, its index "
                f"says {record['shape']}; prepare the store again."
            )
        self._open[i] = volume = _ScaledVolume(stored, record, self.sampler.cube_size)
        while len(self._open) > self.max_open:
            self._open.popitem(last=False)
        return volume

    def _fixed_start(self, i: int, j: int, volume: _ScaledVolume) -> tuple[int, ...]:
        if i not in self._fixed_starts:
            name = os.path.basename(self.index["volumes"][self.keys[i]]["source"])
            self.fixed_sampler.set_random_state(seed=(self.seed + zlib.crc32(name.encode())) % (2**32))
            self.fixed_sampler.randomize(volume)
            self._fixed_starts[i] = list(self.fixed_sampler.starts)
        return self._fixed_starts[i][j]

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} cubes.")
        index %= len(self)
        i, j = divmod(index, self.cubes_per_volume)
        volume = self.volume(i)
        if self.fixed_sampler is not None:
            start = self._fixed_start(i, j, volume)
        else:
            self.randomize(volume)
            start = self.sampler.starts[0]
        cube = volume[(slice(None),) + tuple(slice(s, s + c) for s, c in zip(start, self.sampler.cube_size))]
        record = self.index["volumes"][self.keys[i]]
        shift = np.eye(4)
        shift[:3, 3] = np.subtract(start, volume.pad_before)
        image = MetaTensor(
            torch.from_numpy(cube),
            affine=torch.as_tensor(np.asarray(record["affine"]) @ shift),
            meta={"filename_or_obj": record["source"]},
        )
        sample = {"image": image}
        return self.transform(sample) if self.transform is not None else sample
