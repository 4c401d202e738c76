"""Cutting the pretraining cubes out of a volume, away from its border, optionally keeping only cubes rich in an
intensity range (the Genesis Chest CT recipe keeps lung-rich cubes).

``RandCubeSamples`` draws the cube positions (``randomize``) and cuts them (``__call__``); it reads only the
voxels of the candidate cubes, so it works on a memory-mapped volume without loading it whole.
``RandCubeSamplesd`` cuts the same cubes from every key; ``FixedCubeSamplesd`` cuts the same cubes on every
call, for validation.

Why not ``monai.transforms.RandSpatialCropSamples``: it has no border margin and no intensity-range filter, and
the lung-rich filter must see the candidate cube before it is kept.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Hashable, Mapping, Sequence

import numpy as np
import torch
from monai.config import KeysCollection
from monai.config.type_definitions import NdarrayOrTensor
from monai.transforms import MapTransform, Randomizable
from monai.transforms.traits import MultiSampleTrait
from monai.utils import TransformBackends

__all__ = [
    "FixedCubeSamplesd",
    "FixedCubeSamplesD",
    "FixedCubeSamplesDict",
    "RandCubeSamples",
    "RandCubeSamplesd",
    "RandCubeSamplesD",
    "RandCubeSamplesDict",
]


class RandCubeSamples(Randomizable, MultiSampleTrait):
    """Cut ``num_samples`` cubes of ``cube_size`` at random positions of a channel-first volume.

    Positions keep ``border`` voxels from each side of the volume; on a volume too small for that
    margin, the margin shrinks to a quarter of the free room (volume size minus cube size) so the
    cubes still move. The volume must be at least ``cube_size`` (pad it first, e.g. ``SpatialPadd``).
    With ``min_fraction > 0`` a cube is kept only when at least that fraction of its voxels of the
    first channel lies in ``intensity_range``; after ``max_tries`` draws the best one is kept.

    Args:
        cube_size: spatial size of each cube (the paper's 64×64×32).
        num_samples: number of cubes per call (the paper's "scale", 32).
        border: margin in voxels per spatial axis (the paper's 100, 100, 30 on chest CT).
        min_fraction: fraction of voxels that must lie in ``intensity_range``; 0 keeps every cube.
        intensity_range: ``(low, high)`` intensity range of interest, after intensity scaling
            (e.g. lung at HU [−1000, −150] is [0, 0.425] in the CT window [−1000, 1000]).
        max_tries: number of draws per cube when filtering.
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(
        self,
        cube_size: Sequence[int] = (64, 64, 32),
        num_samples: int = 32,
        border: Sequence[int] | int = (100, 100, 30),
        min_fraction: float = 0.0,
        intensity_range: Sequence[float] = (0.0, 0.425),
        max_tries: int = 10,
    ) -> None:
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
        self.starts: list[tuple[int, ...]] = []

    def position_bounds(self, spatial_shape: Sequence[int]) -> list[tuple[int, int]]:
        """The lowest and highest start of a cube along each spatial axis of a volume of ``spatial_shape``."""
        if len(spatial_shape) != len(self.cube_size):
            raise ValueError(
                f"volume of spatial shape {tuple(spatial_shape)} has {len(spatial_shape)} spatial axes, "
                f"the cube {self.cube_size} has {len(self.cube_size)}; give a channel-first volume."
            )
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

    def _draw_start(self, bounds) -> tuple[int, ...]:
        return tuple(int(self.R.randint(low, high + 1)) for low, high in bounds)

    def _region(self, img, start):
        return img[(slice(None),) + tuple(slice(s, s + c) for s, c in zip(start, self.cube_size))]

    def _in_range_fraction(self, img, start) -> float:
        region = self._region(img, start)[:1]
        low, high = self.intensity_range
        if isinstance(region, torch.Tensor):
            return float(((region >= low) & (region <= high)).float().mean())
        region = np.asarray(region)
        return float(np.mean((region >= low) & (region <= high)))

    def randomize(self, img: NdarrayOrTensor) -> None:
        """Draw the cube starts for ``img`` (channel-first; only candidate cubes are read when filtering)."""
        bounds = self.position_bounds(img.shape[1:])
        starts = []
        for _ in range(self.num_samples):
            start = self._draw_start(bounds)
            if self.min_fraction > 0.0:
                best, best_fraction = start, self._in_range_fraction(img, start)
                for _ in range(self.max_tries - 1):
                    if best_fraction >= self.min_fraction:
                        break
                    start = self._draw_start(bounds)
                    fraction = self._in_range_fraction(img, start)
                    if fraction > best_fraction:
                        best, best_fraction = start, fraction
                start = best
            starts.append(start)
        self.starts = starts

    def crop(self, img: NdarrayOrTensor, start: Sequence[int]) -> NdarrayOrTensor:
        """The cube of ``img`` at ``start``, as a copy (in-place corruption never reaches a cached volume).

        A ``MetaTensor`` keeps its meta data, with the affine moved to the cube's origin.
        """
        region = self._region(img, start)
        if isinstance(region, torch.Tensor):
            cube = region.clone()
            if hasattr(cube, "affine"):
                shift = torch.eye(cube.affine.shape[0], dtype=torch.float64)
                shift[:-1, -1] = torch.as_tensor(start, dtype=torch.float64)
                cube.affine = cube.affine.to(torch.float64) @ shift
            return cube
        return np.array(region)

    def __call__(self, img: NdarrayOrTensor, randomize: bool = True) -> list[NdarrayOrTensor]:
        """Cut the cubes of the drawn starts (drawn afresh unless ``randomize=False``)."""
        if randomize:
            self.randomize(img)
        if not self.starts:
            raise RuntimeError("RandCubeSamples: call randomize(img) before __call__(img, randomize=False).")
        return [self.crop(img, start) for start in self.starts]


class RandCubeSamplesd(Randomizable, MapTransform, MultiSampleTrait):
    """Dictionary version of ``RandCubeSamples``: the same cube positions, drawn on the first key, for every key.

    Args:
        keys: keys of the channel-first volumes to cut.
        cube_size: spatial size of each cube.
        num_samples: number of cubes per call.
        border: margin in voxels per spatial axis.
        min_fraction: fraction of the first key's voxels that must lie in ``intensity_range``; 0 keeps every cube.
        intensity_range: ``(low, high)`` intensity range of interest, after intensity scaling.
        max_tries: number of draws per cube when filtering.
        allow_missing_keys: don't raise for missing keys.
    """

    backend = RandCubeSamples.backend

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
        self.sampler = RandCubeSamples(cube_size, num_samples, border, min_fraction, intensity_range, max_tries)

    @property
    def cube_size(self) -> tuple[int, ...]:
        return self.sampler.cube_size

    @property
    def num_samples(self) -> int:
        return self.sampler.num_samples

    def set_random_state(self, seed: int | None = None, state: np.random.RandomState | None = None):
        super().set_random_state(seed, state)
        self.sampler.set_random_state(seed, state)
        return self

    def randomize(self, data: NdarrayOrTensor) -> None:
        """Draw the cube starts on the volume ``data`` (the first key's)."""
        self.sampler.randomize(data)

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor], randomize: bool = True) -> list[dict]:
        d = dict(data)
        keys = list(self.key_iterator(d))
        if not keys:
            return [dict(d) for _ in range(self.sampler.num_samples)]
        if randomize:
            self.randomize(d[keys[0]])
        samples = []
        for start in self.sampler.starts:
            sample = dict(d)
            for key in keys:
                sample[key] = self.sampler.crop(d[key], start)
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

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> list[dict]:
        keys = list(self.key_iterator(dict(data)))
        name = ""
        if keys and hasattr(data[keys[0]], "meta"):
            # the file name without its folder, so the cubes do not change when the data moves
            name = os.path.basename(str(data[keys[0]].meta.get("filename_or_obj", "")))
        self.sampler.set_random_state(seed=(self.seed + zlib.crc32(name.encode())) % (2**32))
        return self.sampler(data)


RandCubeSamplesD = RandCubeSamplesDict = RandCubeSamplesd
FixedCubeSamplesD = FixedCubeSamplesDict = FixedCubeSamplesd
