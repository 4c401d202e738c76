"""Cube data sets: every epoch serves fresh random cubes of every volume (the Genesis recipe's "scale").

Why not ``monai.data.PatchDataset``: it applies a patch function to each volume and serves its samples in order,
with no control of where the cubes lie. The Genesis recipe keeps cubes away from the border and, on chest CT, keeps
lung-rich ones (``monai_genesis.transforms.RandCubeSamples``), and at scale the cubes are cut lazily from a store
on disk (``monai_genesis.data.StoreCubeDataset``) rather than from volumes held in memory.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

__all__ = ["CubeDataset"]


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
