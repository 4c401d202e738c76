"""Geometry of outputs at another resolution than their input, such as encoder features."""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform, Transform

__all__ = [
    "FeatureGridAffine",
    "FeatureGridAffined",
    "FeatureGridAffineD",
    "FeatureGridAffineDict",
]


class FeatureGridAffine(Transform):
    """Give an output computed at ``1 / factor`` of its input's resolution the affine of that coarser grid.

    A network that downsamples by ``factor`` (e.g. the Genesis encoder, 8) maps input voxels
    ``[factor * j, factor * (j + 1))`` to output voxel ``j``; with the input's affine ``A`` the output's affine is
    ``A`` scaled by ``factor`` and shifted to the centre of those voxels, so the features overlay the scan.

    Args:
        factor: the downsampling factor, an int or one per spatial axis.
    """

    def __init__(self, factor: int | tuple[int, ...] = 8) -> None:
        self.factor = factor

    def __call__(self, out: torch.Tensor, name: str = "the output") -> MetaTensor:
        if not isinstance(out, MetaTensor):
            raise ValueError(f"FeatureGridAffine: {name} has no affine (got {type(out).__name__}, not MetaTensor).")
        nd = out.affine.shape[0] - 1
        factors = torch.as_tensor(self.factor, dtype=torch.float64).expand(nd)
        scale = torch.eye(nd + 1, dtype=torch.float64)
        scale[:nd, :nd] = torch.diag(factors)
        scale[:nd, nd] = (factors - 1) / 2
        out = out.clone()
        out.affine = out.affine.to(torch.float64) @ scale
        return out


class FeatureGridAffined(MapTransform):
    """Dictionary version of ``FeatureGridAffine``.

    Args:
        keys: keys of the outputs (``MetaTensor`` carrying the input's affine, as MONAI's inferers return them).
        factor: the downsampling factor, an int or one per spatial axis.
        allow_missing_keys: don't raise an error when a key is missing.
    """

    def __init__(self, keys: KeysCollection, factor: int | tuple[int, ...] = 8, allow_missing_keys: bool = False):
        super().__init__(keys, allow_missing_keys)
        self.grid = FeatureGridAffine(factor)

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.grid(d[key], name=repr(key))
        return d


FeatureGridAffineD = FeatureGridAffineDict = FeatureGridAffined
