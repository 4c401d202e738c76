"""Cutting the pretraining cubes out of a volume, away from its border, optionally keeping only cubes rich in an
intensity range (the Genesis Chest CT recipe keeps lung-rich cubes)."""

from __future__ import annotations

import os
import zlib
from collections.abc import Callable, Hashable, Mapping, Sequence

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform, Randomizable, SpatialCrop
from monai.transforms.traits import MultiSampleTrait

__all__ = ["CubeDataset", "FixedCubeSamplesd", "RandCubeSamplesd"]


class RandCubeSamplesd(Randomizable, MapTransform, MultiSampleTrait):
    """Cut ``num_samples`` cubes of ``cube_size`` at random positions, the same position for every key.

    Positions keep ``border`` voxels from each side of the volume; on a volume too small for that
    margin, the margin shrinks to a quarter of the free room (volume size minus cube size) so the
    cubes still move. The volume must be at least ``cube_size`` (pad it first, e.g. ``SpatialPadd``).
    With ``min_fraction > 0`` a cube is kept only when at least that fraction of its voxels of the
    first key lies in ``intensity_range``; after ``max_tries`` draws the best one is kept.

    Args:
        keys: keys of the channel-first volumes to cut.
        cube_size: spatial size of each cube (the paper's 64×64×32).
        num_samples: number of cubes per call (the paper's "scale", 32).
        border: margin in voxels per spatial axis (the paper's 100, 100, 30 on chest CT).
        min_fraction: fraction of voxels that must lie in ``intensity_range``; 0 keeps every cube.
        intensity_range: ``(low, high)`` intensity range of interest, after intensity scaling
            (e.g. lung at HU [−1000, −150] is [0, 0.425] in the CT window [−1000, 1000]).
        max_tries: number of draws per cube when filtering.
        allow_missing_keys: don't raise for missing keys.
    """

    def __init__(
        self,
        keys: KeysCollection,
        cube_size: Sequence[int] = (64, 64, 32),
        num_samples: int = 32,
        border: Sequence[int] | int = (100, 100, 30),
        min_fraction: float = 0.0,
        intensity_range: Sequence[float] = (0.0, 0.425),
        max_tries: int = 10,
        allow_missing_keys: bool = False,
    ) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        self.cube_size = tuple(int(s) for s in cube_size)
        if any(s < 1 for s in self.cube_size):
            raise ValueError(f"cube_size must be positive, got {cube_size}.")
        if num_samples < 1:
            raise ValueError(f"num_samples must be at least 1, got {num_samples}.")
        border = (border,) * len(self.cube_size) if isinstance(border, int) else tuple(border)
        if len(border) != len(self.cube_size) or any(b < 0 for b in border):
            raise ValueError(f"border needs {len(self.cube_size)} non-negative values, got {border}.")
        if not 0.0 <= min_fraction <= 1.0:
            raise ValueError(f"min_fraction must be in [0, 1], got {min_fraction}.")
        if len(intensity_range) != 2 or intensity_range[0] > intensity_range[1]:
            raise ValueError(f"intensity_range must be (low, high) with low <= high, got {intensity_range}.")
        if max_tries < 1:
            raise ValueError(f"max_tries must be at least 1, got {max_tries}.")
        self.num_samples = int(num_samples)
        self.border = tuple(int(b) for b in border)
        self.min_fraction = float(min_fraction)
        self.intensity_range = (float(intensity_range[0]), float(intensity_range[1]))
        self.max_tries = int(max_tries)

    def _position_bounds(self, spatial_shape: Sequence[int]) -> list[tuple[int, int]]:
        bounds = []
        for dim, size, margin in zip(spatial_shape, self.cube_size, self.border):
            room = int(dim) - size
            if room < 0:
                raise ValueError(
                    f"volume of spatial shape {tuple(spatial_shape)} is smaller than the cube {self.cube_size}; "
                    "pad it first (SpatialPadd to the cube size)."
                )
            margin = min(margin, room // 4)
            bounds.append((margin, room - margin))
        return bounds

    def randomize(self, data=None) -> None:
        """Not used: positions are drawn in ``__call__`` because they depend on the volume."""

    def _draw_start(self, bounds) -> tuple[int, ...]:
        return tuple(int(self.R.randint(low, high + 1)) for low, high in bounds)

    def _in_range_fraction(self, image, start) -> float:
        region = image[(slice(None),) + tuple(slice(s, s + c) for s, c in zip(start, self.cube_size))]
        low, high = self.intensity_range
        inside = (region >= low) & (region <= high)
        return float(inside.float().mean()) if isinstance(inside, torch.Tensor) else float(np.mean(inside))

    def _cube_starts(self, image) -> list[tuple[int, ...]]:
        bounds = self._position_bounds(image.shape[1:])
        starts = []
        for _ in range(self.num_samples):
            start = self._draw_start(bounds)
            if self.min_fraction > 0.0:
                best, best_fraction = start, self._in_range_fraction(image, start)
                for _ in range(self.max_tries - 1):
                    if best_fraction >= self.min_fraction:
                        break
                    start = self._draw_start(bounds)
                    fraction = self._in_range_fraction(image, start)
                    if fraction > best_fraction:
                        best, best_fraction = start, fraction
                start = best
            starts.append(start)
        return starts

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> list[dict[Hashable, torch.Tensor]]:
        d = dict(data)
        keys = list(self.key_iterator(d))
        if not keys:
            return [dict(d) for _ in range(self.num_samples)]
        starts = self._cube_starts(d[keys[0]])
        samples = []
        for start in starts:
            crop = SpatialCrop(roi_start=start, roi_end=[s + c for s, c in zip(start, self.cube_size)])
            sample = dict(d)
            for key in keys:
                # a copy, so that in-place corruption of a cube never reaches a cached volume
                sample[key] = crop(d[key]).clone()
            samples.append(sample)
        return samples


class FixedCubeSamplesd(MapTransform, MultiSampleTrait):
    """Cut the same cubes from a volume on every call, as ``RandCubeSamplesd`` seeded per volume.

    The positions are drawn from ``seed`` and the volume's file name (without its folder), so a validation
    set cut with it is fixed across epochs and runs, and can be cached (this transform is deterministic).

    Args:
        keys: keys of the channel-first volumes to cut.
        seed: seed combined with the file name of the first key's ``filename_or_obj``.
        kwargs: the other arguments of ``RandCubeSamplesd``.
    """

    def __init__(self, keys: KeysCollection, seed: int = 0, **kwargs) -> None:
        super().__init__(keys, kwargs.get("allow_missing_keys", False))
        self.sampler = RandCubeSamplesd(keys, **kwargs)
        self.seed = int(seed)

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> list[dict[Hashable, torch.Tensor]]:
        keys = list(self.key_iterator(dict(data)))
        name = ""
        if keys and hasattr(data[keys[0]], "meta"):
            # the file name without its folder, so the cubes do not change when the data moves
            name = os.path.basename(str(data[keys[0]].meta.get("filename_or_obj", "")))
        self.sampler.set_random_state(seed=(self.seed + zlib.crc32(name.encode())) % (2**32))
        return self.sampler(data)


class CubeDataset(torch.utils.data.Dataset):
    """Serve ``cubes_per_volume`` cubes of every volume per epoch, each drawn afresh when it is read.

    With the volumes in a ``CacheDataset`` (loaded and scaled once) and a shuffling loader, every epoch
    sees new cube positions, mixed across volumes, as in the Genesis recipe.

    Args:
        volumes: dataset of dictionaries holding whole volumes (e.g. a ``monai.data.CacheDataset``).
        cube_sampler: callable returning a list of cube dictionaries for one volume (e.g.
            ``RandCubeSamplesd(num_samples=1)``); the first one is served.
        cubes_per_volume: cubes per volume and epoch (the paper's "scale").
        transform: optional transform applied to each cube (e.g. the per-sample corruption).
    """

    def __init__(
        self, volumes: Sequence, cube_sampler: Callable, cubes_per_volume: int = 32, transform: Callable | None = None
    ) -> None:
        if cubes_per_volume < 1:
            raise ValueError(f"cubes_per_volume must be at least 1, got {cubes_per_volume}.")
        self.volumes = volumes
        self.cube_sampler = cube_sampler
        self.cubes_per_volume = int(cubes_per_volume)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.volumes) * self.cubes_per_volume

    def __getitem__(self, index: int):
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} cubes.")
        cube = self.cube_sampler(self.volumes[(index % len(self)) // self.cubes_per_volume])[0]
        return self.transform(cube) if self.transform is not None else cube
