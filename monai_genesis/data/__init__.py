"""Data of the bundles: data sets, datalists, dataset discovery and checks, readers and synthetic phantoms.

The transforms that once lived here (cube sampling, intensity settings, loading) are in ``monai_genesis.transforms``;
their old names still import from here, with a ``DeprecationWarning``.
"""

import importlib
import warnings


from monai_genesis.data.cubes import CubeDataset
from monai_genesis.data.datalists import (
    classification_datalist,
    natural_datalist,
    pretrain_datalist,
    segmentation_datalist,
    split_datalist,
    volume_datalist,
)
from monai_genesis.data.discovery import VOLUME_SUFFIXES, check_datalist, find_volumes, read_spatial_shape
from monai_genesis.data.medmnist import load_medmnist
from monai_genesis.data.natural import (
    IMAGE_SUFFIXES,
    SYNTHETIC_CLASSES,
    load_image_folder,
    load_natural_npz,
    synthetic_natural_images,
)
from monai_genesis.data.phantoms import (
    PHANTOM_LABELS,
    ct_phantom,
    nodule_patch_phantom,
    write_ct_phantoms,
    write_nodule_patch_phantoms,
)
from monai_genesis.data.store import (
    STORE_INDEX,
    ensure_store,
    load_store_index,
    open_store_volume,
    prepare_store,
    read_store_volume,
    store_settings,
)
from monai_genesis.data.store_cubes import StoreCubeDataset

__all__ = [
    "PHANTOM_LABELS",
    "STORE_INDEX",
    "VOLUME_SUFFIXES",
    "CubeDataset",
    "StoreCubeDataset",
    "check_datalist",
    "classification_datalist",
    "ct_phantom",
    "ensure_store",
    "find_volumes",
    "IMAGE_SUFFIXES",
    "SYNTHETIC_CLASSES",
    "load_image_folder",
    "load_medmnist",
    "load_natural_npz",
    "natural_datalist",
    "load_store_index",
    "nodule_patch_phantom",
    "open_store_volume",
    "prepare_store",
    "read_store_volume",
    "pretrain_datalist",
    "read_spatial_shape",
    "segmentation_datalist",
    "split_datalist",
    "store_settings",
    "synthetic_natural_images",
    "volume_datalist",
    "write_ct_phantoms",
    "write_nodule_patch_phantoms",
]

# names that moved to monai_genesis.transforms, kept importable from here for existing code and configs
_MOVED = {
    "ClassTargetd": "monai_genesis.transforms.loading",
    "FeatureGridAffined": "monai_genesis.transforms.geometry",
    "FixedCubeSamplesd": "monai_genesis.transforms.cubes",
    "ForegroundPercentileWindow": "monai_genesis.transforms.intensity",
    "ForegroundPercentileWindowd": "monai_genesis.transforms.intensity",
    "INTENSITY_KEY": "monai_genesis.transforms.intensity",
    "INTENSITY_SETTINGS": "monai_genesis.transforms.intensity",
    "Intensityd": "monai_genesis.transforms.intensity",
    "LoadVolumed": "monai_genesis.transforms.loading",
    "RandCubeSamplesd": "monai_genesis.transforms.cubes",
    "check_intensity_setting": "monai_genesis.transforms.intensity",
    "intensity_transform": "monai_genesis.transforms.intensity",
}


def __getattr__(name):
    if name in _MOVED:
        warnings.warn(
            f"monai_genesis.data.{name} moved to monai_genesis.transforms.{name}; import it from there.",
            DeprecationWarning,
            stacklevel=2,
        )
        return getattr(importlib.import_module(_MOVED[name]), name)
    raise AttributeError(f"module 'monai_genesis.data' has no attribute {name!r}")
