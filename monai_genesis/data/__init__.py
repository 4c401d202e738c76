"""Data for Genesis bundles: synthetic phantoms, dataset discovery and checks, readers, cube sampling, intensity."""

from monai_genesis.data.cubes import CubeDataset, FixedCubeSamplesd, RandCubeSamplesd
from monai_genesis.data.datalists import (
    classification_datalist,
    pretrain_datalist,
    segmentation_datalist,
    split_datalist,
    volume_datalist,
)
from monai_genesis.data.geometry import FeatureGridAffined
from monai_genesis.data.discovery import VOLUME_SUFFIXES, check_datalist, find_volumes, read_spatial_shape
from monai_genesis.data.intensity import (
    INTENSITY_KEY,
    INTENSITY_SETTINGS,
    ForegroundPercentileWindow,
    ForegroundPercentileWindowd,
    Intensityd,
    check_intensity_setting,
    intensity_transform,
)
from monai_genesis.data.loading import ClassTargetd, LoadVolumed
from monai_genesis.data.medmnist import load_medmnist
from monai_genesis.data.phantoms import (
    PHANTOM_LABELS,
    ct_phantom,
    nodule_patch_phantom,
    write_ct_phantoms,
    write_nodule_patch_phantoms,
)

__all__ = [
    "FeatureGridAffined",
    "INTENSITY_KEY",
    "INTENSITY_SETTINGS",
    "PHANTOM_LABELS",
    "VOLUME_SUFFIXES",
    "ClassTargetd",
    "CubeDataset",
    "FixedCubeSamplesd",
    "ForegroundPercentileWindow",
    "ForegroundPercentileWindowd",
    "Intensityd",
    "LoadVolumed",
    "RandCubeSamplesd",
    "check_datalist",
    "check_intensity_setting",
    "classification_datalist",
    "ct_phantom",
    "find_volumes",
    "intensity_transform",
    "load_medmnist",
    "nodule_patch_phantom",
    "pretrain_datalist",
    "read_spatial_shape",
    "segmentation_datalist",
    "split_datalist",
    "volume_datalist",
    "write_ct_phantoms",
    "write_nodule_patch_phantoms",
]
