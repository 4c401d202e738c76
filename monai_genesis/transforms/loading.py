"""Loading transforms shared by the bundles: files or in-memory arrays, and class targets."""

from __future__ import annotations

import os
from collections.abc import Hashable, Mapping

import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import LoadImage, MapTransform, Transform

__all__ = ["ClassTarget", "ClassTargetd", "LoadVolume", "LoadVolumed"]


class LoadVolume(Transform):
    """Load a volume given as a file path (or DICOM series folder) channel-first; pass an in-memory one through.

    Paths go through ``monai.transforms.LoadImage`` (ITK and nibabel readers); arrays and tensors,
    already channel-first (e.g. from ``load_medmnist``), become float32 ``MetaTensor``.

    Args:
        reader: reader for ``LoadImage`` (``None`` picks one by file type).
    """

    def __init__(self, reader=None) -> None:
        self.loader = LoadImage(reader=reader, image_only=True, ensure_channel_first=True)

    def __call__(self, value) -> MetaTensor:
        if isinstance(value, (str, os.PathLike)):
            return self.loader(value)
        if isinstance(value, MetaTensor):
            return value.float()
        return MetaTensor(torch.as_tensor(value, dtype=torch.float32))


class ClassTarget(Transform):
    """Turn an integer class label into a loss target: ``[y]`` (float) for one output, one-hot (float) for several.

    One output channel goes with ``BCEWithLogitsLoss``; several with ``CrossEntropyLoss``, which takes
    one-hot targets as class probabilities.

    Args:
        num_classes: number of network outputs (1 for a binary task).
    """

    def __init__(self, num_classes: int = 1) -> None:
        if num_classes < 1:
            raise ValueError(f"num_classes must be at least 1, got {num_classes}.")
        self.num_classes = int(num_classes)

    def __call__(self, label) -> torch.Tensor:
        label = int(torch.as_tensor(label).reshape(-1)[0])
        upper = max(self.num_classes, 2)
        if not 0 <= label < upper:
            raise ValueError(f"class label {label} is outside [0, {upper - 1}]; set num_classes to the number of classes.")
        if self.num_classes == 1:
            return torch.tensor([float(label)])
        return torch.nn.functional.one_hot(torch.tensor(label), self.num_classes).float()


class LoadVolumed(MapTransform):
    """Dictionary version of ``LoadVolume``.

    Args:
        keys: keys of the volumes.
        reader: reader for ``LoadImage`` (``None`` picks one by file type).
        allow_missing_keys: don't raise for missing keys.
    """

    def __init__(self, keys: KeysCollection, reader=None, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.loader = LoadVolume(reader)

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.loader(d[key])
        return d


class ClassTargetd(MapTransform):
    """Dictionary version of ``ClassTarget``.

    Args:
        keys: keys of the labels.
        num_classes: number of network outputs (1 for a binary task).
        allow_missing_keys: don't raise for missing keys.
    """

    def __init__(self, keys: KeysCollection, num_classes: int = 1, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.target = ClassTarget(num_classes)

    @property
    def num_classes(self) -> int:
        return self.target.num_classes

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.target(d[key])
        return d
