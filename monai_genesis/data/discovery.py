"""Find the volumes of a dataset folder and check that they can be read before any training starts."""

from __future__ import annotations

import gzip
import logging
import os
from collections.abc import Sequence

import numpy as np

from monai_genesis.errors import GenesisInputError
from monai_genesis.transforms.intensity import INTENSITY_KEY, check_intensity_setting

__all__ = ["VOLUME_SUFFIXES", "check_datalist", "find_volumes", "is_dicom_file", "read_spatial_shape"]

logger = logging.getLogger(__name__)

VOLUME_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd")


def is_dicom_file(path: str) -> bool:
    """Whether ``path`` is a DICOM file: a ``.dcm`` name or the ``DICM`` marker after the 128-byte preamble."""
    if path.lower().endswith(".dcm"):
        return True
    try:
        with open(path, "rb") as f:
            f.seek(128)
            return f.read(4) == b"DICM"
    except OSError:
        return False


def _is_dicom_series_dir(path: str) -> bool:
    names = [n for n in os.listdir(path) if not n.startswith(".")]
    files = [os.path.join(path, n) for n in names if os.path.isfile(os.path.join(path, n))]
    return bool(files) and any(is_dicom_file(f) for f in files[:8])


def find_volumes(dataset_dir: str) -> list[str]:
    """List the volumes under ``dataset_dir``: NIfTI, NRRD and MHA/MHD files, and DICOM series folders.

    Sub-folders are searched too; a folder holding DICOM files counts as one series and is not searched
    further. Hidden files and folders are skipped.

    Args:
        dataset_dir: folder to search.

    Returns:
        the sorted paths (files, and folders for DICOM series).

    Raises:
        ValueError: when ``dataset_dir`` does not exist or holds no volume.
    """
    if not dataset_dir or not os.path.isdir(dataset_dir):
        raise GenesisInputError(
            f"dataset_dir {dataset_dir!r} is not a folder; pass the folder that holds your NIfTI, NRRD, "
            "MHA files or DICOM series folders (--dataset_dir /path/to/volumes)."
        )
    found = []
    for root, dirs, files in os.walk(dataset_dir):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        if root != dataset_dir and _is_dicom_series_dir(root):
            found.append(root)
            dirs[:] = []
            continue
        for name in sorted(files):
            if not name.startswith(".") and name.lower().endswith(VOLUME_SUFFIXES):
                found.append(os.path.join(root, name))
        if root == dataset_dir and not found and _is_dicom_series_dir(root):
            found.append(root)
            dirs[:] = []
    if not found:
        raise GenesisInputError(
            f"dataset_dir {dataset_dir} holds no volume: expected files ending in {', '.join(VOLUME_SUFFIXES)} "
            "or folders of DICOM files (one series per folder)."
        )
    return sorted(found)


def read_spatial_shape(path: str) -> tuple[int, ...]:
    """Read the spatial shape of the volume at ``path`` from its header (the whole volume for DICOM).

    Args:
        path: a NIfTI, NRRD or MHA/MHD file, or a folder holding one DICOM series.

    Raises:
        ValueError: naming ``path`` when it is missing or cannot be read.
    """
    if not os.path.exists(path):
        raise GenesisInputError(f"volume {path} does not exist; fix the path in your datalist or dataset_dir.")
    try:
        if os.path.isdir(path):
            from monai.data import ITKReader

            reader = ITKReader()
            _, meta = reader.get_data(reader.read(path))
            return tuple(int(s) for s in meta["spatial_shape"])
        if path.lower().endswith((".nii", ".nii.gz")):
            import nibabel as nib

            image = nib.load(path)
            _check_nifti_complete(path, image)
            return tuple(int(s) for s in image.shape[:3])
        import itk

        image_io = itk.ImageIOFactory.CreateImageIO(path, itk.CommonEnums.IOFileMode_ReadMode)
        if image_io is None:
            raise OSError("no ITK reader understands this file")
        image_io.SetFileName(path)
        image_io.ReadImageInformation()
        return tuple(int(image_io.GetDimensions(i)) for i in range(min(3, image_io.GetNumberOfDimensions())))
    except Exception as e:
        raise GenesisInputError(
            f"volume {path} could not be read ({type(e).__name__}: {e}); the file is incomplete (e.g. an interrupted "
            "copy or download), corrupt or not in a supported format. Copy it again or leave it out of the data."
        ) from e


def _check_nifti_complete(path: str, image) -> None:
    """Raise an ``EOFError`` when a NIfTI file holds fewer bytes than its header promises, without reading its data.

    A ``.nii`` is compared by its size; a ``.nii.gz`` by the uncompressed size in its gzip trailer (modulo 2**32),
    and only when that differs (a truncated file, or a file of several gzip members) is it decompressed to count.
    """
    expected = int(image.dataobj.offset) + int(np.prod(image.shape)) * np.dtype(image.get_data_dtype()).itemsize
    if not path.lower().endswith(".gz"):
        if os.path.getsize(path) < expected:
            raise EOFError(f"the file holds {os.path.getsize(path)} bytes, its header describes {expected}")
        return
    with open(path, "rb") as f:
        f.seek(-4, os.SEEK_END)
        if int.from_bytes(f.read(4), "little") == expected % 2**32:
            return
    size = 0
    with gzip.open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 24), b""):
            size += len(chunk)
    if size < expected:
        raise EOFError(f"the file decompresses to {size} bytes, its header describes {expected}")


def check_datalist(
    items: Sequence[dict], image_key: str = "image", label_key: str | None = "label", min_shape: Sequence[int] | None = None
) -> list[dict]:
    """Check that every image (and label file) of a datalist can be read and that their shapes agree.

    In-memory arrays (e.g. from ``load_medmnist``) are checked for shape only.

    Args:
        items: datalist entries, each a dict with ``image_key`` (and optionally ``label_key``).
        image_key: key of the image path.
        label_key: key of a label volume path; non-path labels (class indices) are not checked.
        min_shape: when given, images smaller than this are reported in the log (they will be padded).

    Returns:
        ``items`` unchanged, so the call can wrap a datalist in a config.

    Raises:
        ValueError: naming the file when an image or label cannot be read, when a label's spatial
            shape differs from its image's, or when an entry's own ``"intensity"`` setting is unknown.
    """
    if len(items) == 0:
        raise GenesisInputError("the datalist is empty; give at least one image.")
    for item in items:
        if image_key not in item:
            raise GenesisInputError(f"datalist entry {item} has no {image_key!r} key.")
        image = item[image_key]
        if INTENSITY_KEY in item:
            check_intensity_setting(item[INTENSITY_KEY], where=f"the {INTENSITY_KEY!r} of datalist entry {image}")
        shape = tuple(np.shape(image)[1:]) if not isinstance(image, (str, os.PathLike)) else read_spatial_shape(image)
        label = item.get(label_key) if label_key else None
        if isinstance(label, (str, os.PathLike)):
            label_shape = read_spatial_shape(label)
            if label_shape != shape:
                raise GenesisInputError(
                    f"label {label} has spatial shape {label_shape} but its image {image} has {shape}; "
                    "each label map must have the shape of its image."
                )
        if min_shape is not None and any(s < m for s, m in zip(shape, min_shape)):
            logger.info(f"volume {image} of shape {shape} is smaller than {tuple(min_shape)}: it will be padded.")
    return list(items)
