"""Data of the bundles: the volume store and its cube data set, datalists, dataset discovery and checks, readers and
synthetic phantoms. The transforms (cube sampling, intensity settings, loading) are in ``monai_genesis.transforms``.
"""

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
from monai_genesis.data.store import StoredVolume, StoreSettings, VolumeStore, ensure_store, store_key
from monai_genesis.data.store_cubes import StoreCubeDataset

__all__ = [
    "PHANTOM_LABELS",
    "VOLUME_SUFFIXES",
    "StoreCubeDataset",
    "StoreSettings",
    "StoredVolume",
    "VolumeStore",
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
    "nodule_patch_phantom",
    "pretrain_datalist",
    "read_spatial_shape",
    "segmentation_datalist",
    "split_datalist",
    "store_key",
    "synthetic_natural_images",
    "volume_datalist",
    "write_ct_phantoms",
    "write_nodule_patch_phantoms",
]
