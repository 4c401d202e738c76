"""Loading transforms shared by the bundles: files or in-memory arrays, and class targets."""

from __future__ import annotations

import os
from collections.abc import Hashable, Mapping

import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import LoadImage, MapTransform, Transform

from monai_genesis.errors import GenesisInputError

__all__ = [
    "CheckLabelValues",
    "CheckLabelValuesd",
    "CheckLabelValuesD",
    "CheckLabelValuesDict",
    "ClassTarget",
    "ClassTargetd",
    "ClassTargetD",
    "ClassTargetDict",
    "LoadVolume",
    "LoadVolumed",
    "LoadVolumeD",
    "LoadVolumeDict",
]


class LoadVolume(Transform):
    """Load a volume given as a file path (or DICOM series folder) channel-first; pass an in-memory one through.

    Paths go through ``monai.transforms.LoadImage`` (ITK and nibabel readers); a file that cannot be read
    (truncated, corrupt, unknown format) raises a ``GenesisInputError`` naming it, with the reader's error as
    its ``__cause__``. Arrays and tensors become float32 ``MetaTensor``; they must already be channel-first
    (e.g. from ``load_medmnist``): an array with ``spatial_dims`` axes has no channel axis and is refused. A
    volume holding NaN or infinite voxels is refused with their count.

    Args:
        reader: reader for ``LoadImage`` (``None`` picks one by file type).
        spatial_dims: number of spatial axes of the volumes; an in-memory array must have one axis more.
            ``None`` accepts any number of axes.
    """

    def __init__(self, reader=None, spatial_dims: int | None = 3) -> None:
        if spatial_dims is not None and spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2, 3 or None, got {spatial_dims}.")
        self.loader = LoadImage(reader=reader, image_only=True, ensure_channel_first=True)
        self.spatial_dims = spatial_dims

    def __call__(self, value) -> MetaTensor:
        if isinstance(value, (str, os.PathLike)):
            name = f"volume {value}"
            try:
                img = self.loader(value)
            except Exception as e:  # readers raise EOFError, OSError, RuntimeError... for incomplete or foreign files
                first_line = (str(e).strip().splitlines() or [""])[0]
                raise GenesisInputError(
                    f"{name} could not be read ({type(e).__name__}: {first_line}); the file is incomplete "
                    "(e.g. an interrupted copy or download), corrupt or not a NIfTI, NRRD, MHA or DICOM volume. "
                    "Copy it again or leave it out of the data."
                ) from e
        else:
            source = value.meta.get("filename_or_obj", "") if isinstance(value, MetaTensor) else ""
            name = f"volume {source}" if source else f"the in-memory {type(value).__name__}"
            self._check_channel_axis(value, name)
            img = value.float() if isinstance(value, MetaTensor) else MetaTensor(torch.as_tensor(value, dtype=torch.float32))
        _check_finite(img, name)
        return img

    def _check_channel_axis(self, value, name: str) -> None:
        """Refuse an in-memory array whose number of axes is not ``spatial_dims + 1``."""
        shape = tuple(value.shape)
        if self.spatial_dims is None or len(shape) == self.spatial_dims + 1:
            return
        if len(shape) == self.spatial_dims:
            raise GenesisInputError(
                f"{name} of shape {shape} has no channel axis: in-memory volumes are channel-first "
                f"(C, {', '.join('HWD'[: self.spatial_dims])}); add the axis with x[None] (numpy.expand_dims(x, 0))."
            )
        raise GenesisInputError(
            f"{name} has shape {shape}, but an in-memory volume must be channel-first with "
            f"{self.spatial_dims} spatial axes, (C, {', '.join('HWD'[: self.spatial_dims])})."
        )


def _check_finite(img: torch.Tensor, name: str) -> None:
    """Raise a ``GenesisInputError`` naming ``name`` and the counts when ``img`` holds NaN or infinite voxels."""
    if torch.isfinite(img).all():
        return
    num_nan = int(torch.isnan(img).sum())
    num_inf = int(torch.isinf(img).sum())
    raise GenesisInputError(
        f"{name} holds {num_nan + num_inf} NaN or infinite voxel(s) of {img.numel()} ({num_nan} NaN, "
        f"{num_inf} infinite); replace them in the file or array (e.g. numpy.nan_to_num(x, nan=background, posinf=..., "
        "neginf=...) with the background value, -1000 for CT) or leave the volume out of the data."
    )


class CheckLabelValues(Transform):
    """Refuse a label map whose values are not the class indices 0 … ``num_classes`` − 1.

    Raw label maps (FreeSurfer's 0–255, TotalSegmentator's 117 organs) used with fewer network outputs
    would otherwise stop the first training step with an index error that names no file.

    Args:
        num_classes: number of classes, background included (the segmentation network's ``out_channels``);
            1 (a single sigmoid output) allows the labels 0 and 1.
    """

    def __init__(self, num_classes: int) -> None:
        if int(num_classes) < 1:
            raise ValueError(f"num_classes must be at least 1, got {num_classes}.")
        self.num_classes = int(num_classes)

    def __call__(self, label):
        values = torch.as_tensor(label.as_tensor() if isinstance(label, MetaTensor) else label)
        upper = max(self.num_classes, 2) - 1
        low, high = (float(v) for v in torch.aminmax(values.detach().float()))
        if low >= 0 and high <= upper and bool((values == values.round()).all()):
            return label
        name = label.meta.get("filename_or_obj", "") if isinstance(label, MetaTensor) else ""
        found = torch.unique(values)
        unexpected = found[(found < 0) | (found > upper) | (found != found.round())]
        shown = ", ".join(f"{float(v):g}" for v in unexpected[:10]) + (" ..." if len(unexpected) > 10 else "")
        classes = f"{int(high) + 1} if the labels are the classes 0 … {int(high)}" if low >= 0 else "the number of classes"
        raise GenesisInputError(
            f"label {name or 'map'} holds {len(unexpected)} value(s) that are not classes 0 … {upper} of "
            f"out_channels={self.num_classes}: {shown} (range [{low:g}, {high:g}]). Set --out_channels to the number "
            f"of classes ({classes}), or map the labels to 0 … {upper} first, e.g. with "
            "monai.transforms.MapLabelValued(keys='label', orig_labels=[...], target_labels=[...])."
        )


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
        spatial_dims: number of spatial axes of the volumes; ``None`` accepts in-memory arrays of any shape.
        allow_missing_keys: don't raise for missing keys.
    """

    def __init__(
        self, keys: KeysCollection, reader=None, spatial_dims: int | None = 3, allow_missing_keys: bool = False
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.loader = LoadVolume(reader, spatial_dims)

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.loader(d[key])
        return d


class CheckLabelValuesd(MapTransform):
    """Dictionary version of ``CheckLabelValues``.

    Args:
        keys: keys of the label maps.
        num_classes: number of classes, background included (the network's ``out_channels``).
        allow_missing_keys: don't raise for missing keys.
    """

    def __init__(self, keys: KeysCollection, num_classes: int, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.check = CheckLabelValues(num_classes)

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        d = dict(data)
        for key in self.key_iterator(d):
            self.check(d[key])
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


LoadVolumeD = LoadVolumeDict = LoadVolumed
CheckLabelValuesD = CheckLabelValuesDict = CheckLabelValuesd
ClassTargetD = ClassTargetDict = ClassTargetd
