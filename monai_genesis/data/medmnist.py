"""Reader of MedMNIST 3D ``.npz`` files (keys ``train_images``, ``train_labels``, ``val_images``, ...)."""

from __future__ import annotations

import os

import numpy as np
import torch
from monai.data import MetaTensor

__all__ = ["load_medmnist"]

SPLITS = ("train", "val", "test")


def load_medmnist(path: str, split: str = "train") -> list[dict]:
    """Read one split of a MedMNIST 3D file into a datalist of in-memory samples.

    Images (``N×D×H×W`` uint8, 28³ or 64³) become channel-first float32 ``MetaTensor`` of shape
    ``(1, D, H, W)`` with their 0–255 values kept (scale them with the bundle's intensity setting),
    whose ``filename_or_obj`` reads ``FILE#split[index]`` so per-sample outputs can be traced back.

    Args:
        path: the ``.npz`` file.
        split: ``"train"``, ``"val"`` or ``"test"``; a split absent from the file gives an empty list.

    Returns:
        ``[{"image": MetaTensor, "label": int}, ...]`` (multi-label rows keep their first label).

    Raises:
        ValueError: when the file is missing or unreadable, ``split`` is unknown, or images and
            labels disagree in number.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}.")
    if not os.path.isfile(path):
        raise ValueError(f"MedMNIST file {path} does not exist; pass the path of a .npz file.")
    try:
        with np.load(path) as npz:
            if f"{split}_images" not in npz:
                return []
            images, labels = npz[f"{split}_images"], npz[f"{split}_labels"]
    except (OSError, ValueError, KeyError) as e:
        raise ValueError(f"cannot read MedMNIST file {path}: {e}.") from e
    if images.ndim != 4:
        raise ValueError(f"{path}: {split}_images must be N×D×H×W (a 3D MedMNIST set), got shape {images.shape}.")
    labels = labels.reshape(len(labels), -1)
    if len(labels) != len(images):
        raise ValueError(f"{path}: {len(images)} {split} images but {len(labels)} labels.")
    name = os.path.basename(path)
    return [
        {
            "image": MetaTensor(
                torch.as_tensor(images[i][None], dtype=torch.float32), meta={"filename_or_obj": f"{name}#{split}[{i}]"}
            ),
            "label": int(labels[i, 0]),
        }
        for i in range(len(images))
    ]
