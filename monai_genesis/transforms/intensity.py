"""Intensity settings of the bundles: the CT window, a per-volume percentile window inside the foreground for
MRI, a per-volume min-max scaling, or none for volumes already in [0, 1]; each maps a volume to [0, 1] as
Genesis expects; the "zscore" setting (masked image modelling) instead gives each volume zero mean and unit
variance. A datalist entry may name its own setting under ``"intensity"`` (mixed CT and MRI)."""

from __future__ import annotations

import logging
from collections.abc import Hashable, Mapping, Sequence

import torch
from monai.config import KeysCollection
from monai.config.type_definitions import NdarrayOrTensor
from monai.data.meta_obj import get_track_meta
from monai.transforms import MapTransform, NormalizeIntensityd, ScaleIntensityd, ScaleIntensityRanged, Transform
from monai.utils import TransformBackends, convert_to_tensor

from monai_genesis.errors import GenesisInputError

__all__ = [
    "INTENSITY_KEY",
    "INTENSITY_SETTINGS",
    "ForegroundPercentileWindow",
    "ForegroundPercentileWindowd",
    "ForegroundPercentileWindowD",
    "ForegroundPercentileWindowDict",
    "ApplyIntensitySettingd",
    "ApplyIntensitySettingD",
    "ApplyIntensitySettingDict",
    "check_intensity_setting",
    "intensity_transform",
]

logger = logging.getLogger(__name__)

INTENSITY_SETTINGS = ("ct", "mri", "minmax", "none", "zscore")
# key of a datalist entry that names the entry's own intensity setting
INTENSITY_KEY = "intensity"
# how far outside [0, 1] a volume of the "none" setting may reach (rounding of stored values)
_UNIT_TOLERANCE = 1e-3
# narrowest part of the CT window a CT volume covers: noise alone spreads any real scan over more HU than this
_MIN_HU_SPAN = 50.0
_SETTING_HINT = (
    "use --intensity mri (MRI: a percentile window), minmax (scaled per volume) or none (already in [0, 1]); "
    'a datalist entry may name its own setting ({"image": ..., "intensity": "mri"})'
)


def check_intensity_setting(setting, where: str = "intensity setting") -> str:
    """Return ``setting`` if it is one of ``INTENSITY_SETTINGS``; otherwise raise a ``ValueError`` naming ``where``."""
    if setting not in INTENSITY_SETTINGS:
        raise GenesisInputError(f"{where} must be one of {INTENSITY_SETTINGS}, got {setting!r}.")
    return setting


class ForegroundPercentileWindow(Transform):
    """Clip a volume to the ``lower``–``upper`` percentiles of its foreground and scale that window to [0, 1].

    The foreground is every voxel whose value differs from ``background``; when it covers less than 1%
    of the volume, all voxels are used. This is the MRI setting: MR intensities have no fixed unit.

    Args:
        lower: lower percentile in [0, 100).
        upper: upper percentile in (lower, 100].
        background: value of the voxels outside the body (0 for skull-stripped or z-scored MRI);
            ``None`` uses all voxels.
    """

    backend = [TransformBackends.TORCH]

    def __init__(self, lower: float = 0.5, upper: float = 99.5, background: float | None = 0.0) -> None:
        if not 0.0 <= lower < upper <= 100.0:
            raise ValueError(f"need 0 <= lower < upper <= 100, got lower={lower}, upper={upper}.")
        self.lower, self.upper, self.background = float(lower), float(upper), background

    def __call__(self, img: NdarrayOrTensor) -> torch.Tensor:
        img = convert_to_tensor(img, track_meta=get_track_meta(), dtype=torch.float32)
        values = img.as_tensor().ravel() if hasattr(img, "as_tensor") else img.ravel()
        if self.background is not None:
            foreground = values[values != self.background]
            if foreground.numel() >= 0.01 * values.numel():
                values = foreground
        # torch.quantile refuses very large inputs, so subsample evenly on big volumes
        step = max(1, values.numel() // 1_000_000)
        bounds = torch.quantile(values[::step], torch.tensor([self.lower, self.upper]) / 100.0)
        low, high = float(bounds[0]), float(bounds[1])
        return ((img.clamp(low, high) - low) / max(high - low, 1e-8)).to(torch.float32)


class ForegroundPercentileWindowd(MapTransform):
    """Dictionary version of ``ForegroundPercentileWindow``.

    Args:
        keys: keys of the volumes to scale.
        lower: lower percentile.
        upper: upper percentile.
        background: value of the voxels outside the body; ``None`` uses all voxels.
        allow_missing_keys: don't raise for missing keys.
    """

    backend = ForegroundPercentileWindow.backend

    def __init__(
        self,
        keys: KeysCollection,
        lower: float = 0.5,
        upper: float = 99.5,
        background: float | None = 0.0,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.window = ForegroundPercentileWindow(lower, upper, background)

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.window(d[key])
        return d


def _name(img, key: Hashable) -> str:
    """The file of ``img`` (from its meta data), else its key."""
    return getattr(img, "meta", {}).get("filename_or_obj", "") or str(key)


class _CTWindowd(MapTransform):
    """The ``"ct"`` setting: refuse a volume whose values cannot be Hounsfield units, then apply the HU window.

    A volume that covers less than ``_MIN_HU_SPAN`` of the window (MRI already in [0, 1], z-scored MRI)
    would become a uniform grey image; a volume without a single negative value (no air, no fat) is
    reported at WARNING level, as raw MRI is.
    """

    def __init__(self, keys: KeysCollection, window: Sequence[float], allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.window = (float(window[0]), float(window[1]))
        self.scale = ScaleIntensityRanged(
            keys, a_min=window[0], a_max=window[1], b_min=0.0, b_max=1.0, clip=True, allow_missing_keys=allow_missing_keys
        )

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        for key in self.key_iterator(dict(data)):
            img = data[key]
            low, high = (float(v) for v in torch.aminmax(torch.as_tensor(img).detach().float()))
            covered = min(high, self.window[1]) - max(low, self.window[0])
            if covered < _MIN_HU_SPAN:
                raise GenesisInputError(
                    f"volume {_name(img, key)} spans [{low:g}, {high:g}], which cannot be Hounsfield units: the CT "
                    f"window [{self.window[0]:g}, {self.window[1]:g}] of intensity setting 'ct' would turn it into a "
                    f"uniform grey image. If it is not CT, {_SETTING_HINT}."
                )
            if low >= 0.0:
                logger.warning(
                    f"volume {_name(img, key)} spans [{low:g}, {high:g}] without a negative value, unlike CT (air is "
                    f"-1000 HU, fat about -100 HU); it is windowed as CT. If it is not CT, {_SETTING_HINT}."
                )
        return self.scale(data)


class _CheckUnitRanged(MapTransform):
    """The ``"none"`` setting: keep the values, but refuse a volume that is not already in [0, 1]."""

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            low, high = float(d[key].min()), float(d[key].max())
            if low < -_UNIT_TOLERANCE or high > 1.0 + _UNIT_TOLERANCE:
                name = _name(d[key], key)
                raise GenesisInputError(
                    f"intensity setting 'none' needs images in [0, 1], but {name} spans [{low:g}, {high:g}]; "
                    "choose 'ct', 'mri' or 'minmax' for it."
                )
        return d


class ApplyIntensitySettingd(MapTransform):
    """Map ``keys`` to [0, 1] with the intensity setting of each data dictionary.

    An entry that holds ``entry_key`` (``"intensity"``, from the datalist) is scaled with that setting, the
    others with ``setting``: one pretraining can mix CT (HU window) and MRI (percentile window) volumes.
    The setting used is written back under ``entry_key`` in every entry.

    Args:
        setting: the default setting, one of ``INTENSITY_SETTINGS``:
            ``"ct"`` clips Hounsfield units to ``ct_window`` and scales linearly (Genesis Chest CT), refusing a
            volume that covers less than 50 HU of the window (e.g. MRI already in [0, 1] or z-scored);
            ``"mri"`` uses ``ForegroundPercentileWindowd`` with ``percentiles``; ``"minmax"`` scales each
            volume's own minimum and maximum (e.g. MedMNIST's 0–255 images); ``"none"`` keeps the values of
            images already in [0, 1] and refuses others; ``"zscore"`` subtracts the mean and divides by the standard
            deviation of the volume's non-zero voxels, keeping 0 outside (the MRI preprocessing of masked pretraining).
        keys: keys of the images.
        ct_window: ``(low, high)`` HU window of the CT setting.
        percentiles: ``(lower, upper)`` percentiles of the MRI setting.
        entry_key: key of an entry's own setting; ``None`` ignores it.
        allow_missing_keys: don't raise for missing keys.
    """

    def __init__(
        self,
        setting: str = "ct",
        keys: KeysCollection = "image",
        ct_window: Sequence[float] = (-1000.0, 1000.0),
        percentiles: Sequence[float] = (0.5, 99.5),
        entry_key: str | None = INTENSITY_KEY,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.setting = check_intensity_setting(setting)
        if len(ct_window) != 2 or ct_window[0] >= ct_window[1]:
            raise ValueError(f"ct_window must be (low, high) with low < high, got {ct_window}.")
        self.entry_key = entry_key
        self.transforms = {
            "ct": _CTWindowd(keys, ct_window, allow_missing_keys=allow_missing_keys),
            "mri": ForegroundPercentileWindowd(
                keys, lower=percentiles[0], upper=percentiles[1], allow_missing_keys=allow_missing_keys
            ),
            "minmax": ScaleIntensityd(keys, minv=0.0, maxv=1.0, allow_missing_keys=allow_missing_keys),
            "none": _CheckUnitRanged(keys, allow_missing_keys=allow_missing_keys),
            "zscore": NormalizeIntensityd(keys, nonzero=True, allow_missing_keys=allow_missing_keys),
        }

    def setting_of(self, data: Mapping[Hashable, object]) -> str:
        """The setting used for ``data``: its own entry, else the default."""
        own = data.get(self.entry_key) if self.entry_key is not None else None
        if own is None or own == "":
            return self.setting
        return check_intensity_setting(own, where=f"the {self.entry_key!r} of a datalist entry")

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        setting = self.setting_of(data)
        d = self.transforms[setting](data)
        if self.entry_key is not None:
            # every entry records its setting, so that a batch of entries with and without one collates
            d[self.entry_key] = setting
        return d


def intensity_transform(
    setting: str = "ct",
    keys: KeysCollection = "image",
    ct_window: Sequence[float] = (-1000.0, 1000.0),
    percentiles: Sequence[float] = (0.5, 99.5),
) -> MapTransform:
    """The dictionary transform that maps ``keys`` to [0, 1]: :py:class:`ApplyIntensitySettingd` with ``setting``
    as the default of the entries that name no setting of their own."""
    return ApplyIntensitySettingd(setting, keys, ct_window=ct_window, percentiles=percentiles)


ForegroundPercentileWindowD = ForegroundPercentileWindowDict = ForegroundPercentileWindowd
ApplyIntensitySettingD = ApplyIntensitySettingDict = ApplyIntensitySettingd
