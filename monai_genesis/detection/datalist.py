"""The detection bundle's datalist: images with boxes (given, or derived from label volumes), every box checked
against its image before training; blob phantoms when no data is given."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence

import nibabel as nib
import numpy as np

from monai_genesis.detection.boxes import boxes_from_label, check_box_mode, check_boxes, voxel_to_world_boxes
from monai_genesis.detection.phantoms import write_blob_phantoms
from monai_genesis.errors import GenesisInputError

__all__ = ["detection_datalist", "image_geometry", "inference_datalist", "read_box_datalist"]

logger = logging.getLogger(__name__)

_SPLITS = ("training", "validation", "test")


def image_geometry(path: str) -> tuple[np.ndarray, tuple[int, ...]]:
    """The affine (RAS, as MONAI's loaders give it) and the spatial shape of a volume, from its header where it is
    NIfTI, else by loading it with MONAI's ``LoadImage``."""
    if not os.path.exists(path):
        raise GenesisInputError(f"image {path} does not exist; fix the path in the datalist (relative paths are read from dataset_dir, else from the datalist's folder).")
    if path.endswith((".nii", ".nii.gz")):
        img = nib.load(path)
        return np.asarray(img.affine, dtype=np.float64), tuple(int(s) for s in img.shape[:3])
    from monai.transforms import LoadImage

    img = LoadImage(image_only=True, ensure_channel_first=True)(path)
    return np.asarray(img.affine, dtype=np.float64), tuple(int(s) for s in img.shape[1:4])


def _resolve(path: str, base: str) -> str:
    return path if os.path.isabs(path) else os.path.join(base, path)


def _entry_boxes(entry: dict, source: str, box_mode: str, label_classes, min_box_voxels: int) -> dict:
    """One checked entry ``{"image", "box", "label"}`` (world boxes in ``box_mode``) from a datalist entry."""
    image = entry["image"]
    affine, shape = image_geometry(image)
    if "box" in entry:
        boxes = entry["box"]
        labels = np.asarray(entry.get("label", [0] * len(np.asarray(boxes).reshape(-1, 6))), dtype=np.int64).reshape(-1)
        check_boxes(boxes, box_mode, affine, shape, source=f"{source}: image {image}")
        if len(labels) != len(np.asarray(boxes, dtype=np.float64).reshape(-1, 6)):
            raise GenesisInputError(
                f"{source}: image {image} has {len(np.asarray(boxes).reshape(-1, 6))} boxes but {len(labels)} labels; "
                "give one class label per box (or none: all boxes are then class 0)."
            )
        return {"image": image, "box": np.asarray(boxes, dtype=np.float32).reshape(-1, 6).tolist(), "label": labels.tolist()}
    if "label_volume" not in entry:
        raise GenesisInputError(
            f"{source}: entry of image {image} has neither 'box' (with 'label') nor 'label_volume'; give its boxes in "
            f"world coordinates (mode {box_mode}) or the label volume to derive them from."
        )
    label_path = entry["label_volume"]
    label_affine, label_shape = image_geometry(label_path)
    if label_shape != shape or not np.allclose(label_affine, affine, atol=1e-3):
        raise GenesisInputError(
            f"{source}: label volume {label_path} ({label_shape}) does not lie on the grid of its image {image} "
            f"({shape}); resample the label volume to the image (nearest neighbour) first."
        )
    voxel, labels = boxes_from_label(np.asanyarray(nib.load(label_path).dataobj) if label_path.endswith((".nii", ".nii.gz"))
                                     else _load_array(label_path), classes=label_classes, min_size=min_box_voxels,
                                     source=f"label volume {label_path}")
    return {"image": image, "box": voxel_to_world_boxes(voxel, affine, box_mode).tolist(), "label": labels.tolist()}


def _load_array(path: str) -> np.ndarray:
    from monai.transforms import LoadImage

    return np.asarray(LoadImage(image_only=True)(path))


def read_box_datalist(
    datalist: str,
    box_mode: str = "cccwhd",
    dataset_dir: str = "",
    label_classes: Sequence[int] | None = None,
    min_box_voxels: int = 8,
) -> dict[str, list[dict]]:
    """
    Read and check a detection datalist JSON: ``{"box_mode": MODE, "training": [...], "validation": [...]}``.

    An entry is ``{"image": PATH, "box": [[6 numbers], ...], "label": [class per box]}`` with world boxes (mm) in
    the declared mode, or ``{"image": PATH, "label_volume": PATH}``: one box per connected component of each class
    of the label volume (:py:func:`boxes_from_label`). Relative paths are read from ``dataset_dir``, else from the
    datalist's folder. Every box is checked against its image (:py:func:`check_boxes`).

    Args:
        datalist: the JSON file.
        box_mode: the declared mode of the boxes; the file's own ``"box_mode"``, when it has one, must be the same.
        dataset_dir: folder of relative paths.
        label_classes: label values of a label volume that are box classes (class ``i`` is ``label_classes[i]``);
            None: every nonzero value.
        min_box_voxels: components of a label volume with fewer voxels make no box.

    Returns:
        the splits present, each a list of ``{"image", "box", "label"}``.
    """
    check_box_mode(box_mode)
    if not os.path.isfile(datalist):
        raise GenesisInputError(f"datalist {datalist} does not exist; pass the path of a JSON file with a 'training' list.")
    try:
        with open(datalist) as f:
            content = json.load(f)
    except json.JSONDecodeError as e:
        raise GenesisInputError(f"datalist {datalist} is not valid JSON ({e}); fix the file.") from e
    if not isinstance(content, dict) or not content.get("training"):
        raise GenesisInputError(f"datalist {datalist} has no 'training' list; write {{\"box_mode\": ..., \"training\": [{{\"image\", \"box\", \"label\"}}]}}.")
    declared = content.get("box_mode")
    if declared is not None and declared != box_mode:
        raise GenesisInputError(
            f"datalist {datalist} declares box_mode {declared!r} but the bundle reads boxes as {box_mode!r}; pass "
            f"--box_mode {declared} (or rewrite the boxes in {box_mode})."
        )
    base = dataset_dir or os.path.dirname(os.path.abspath(datalist))
    out: dict[str, list[dict]] = {}
    for split in _SPLITS:
        entries = content.get(split) or []
        checked = []
        for i, entry in enumerate(entries):
            if not isinstance(entry, dict) or "image" not in entry:
                raise GenesisInputError(f"datalist {datalist}: {split}[{i}] is not an object with an 'image'; fix the entry.")
            entry = dict(entry, image=_resolve(entry["image"], base))
            if "label_volume" in entry:
                entry["label_volume"] = _resolve(entry["label_volume"], base)
            checked.append(_entry_boxes(entry, f"datalist {datalist} {split}[{i}]", box_mode, label_classes, min_box_voxels))
        if checked:
            out[split] = checked
    return out


def detection_datalist(
    datalist: str = "",
    output_dir: str = "eval",
    dataset_dir: str = "",
    box_mode: str = "cccwhd",
    label_classes: Sequence[int] | None = None,
    min_box_voxels: int = 8,
    val_fraction: float = 0.25,
    seed: int = 0,
    num_phantoms: int = 16,
    phantom_shape: Sequence[int] = (64, 64, 64),
) -> dict[str, list[dict]]:
    """
    The training, validation and test lists of the detection bundle, every box checked.

    From ``datalist`` (:py:func:`read_box_datalist`); without a validation list a seeded ``val_fraction`` of the
    training images is held out, and without a test list the validation images serve as test. Without a datalist,
    ``num_phantoms`` blob phantoms (:py:func:`monai_genesis.detection.phantoms.write_blob_phantoms`) are written under
    ``output_dir/blob_phantoms`` and split the same way.

    Returns:
        ``{"training", "validation", "test"}``, lists of ``{"image", "box", "label"}`` with world boxes in
        ``box_mode``.
    """
    check_box_mode(box_mode)
    if datalist:
        splits = read_box_datalist(datalist, box_mode, dataset_dir, label_classes, min_box_voxels)
    else:
        logger.warning(
            "no datalist given: training on synthetic blob phantoms; pass --datalist FILE.json (boxes or label "
            "volumes, see the bundle's docs/README.md) for your own data."
        )
        entries = write_blob_phantoms(os.path.join(output_dir, "blob_phantoms"), num_phantoms, phantom_shape, seed=seed, box_mode=box_mode)
        splits = {"training": [{k: e[k] for k in ("image", "box", "label")} for e in entries]}
    if "validation" not in splits:
        training = splits["training"]
        if len(training) < 2:
            raise GenesisInputError(f"{len(training)} training image(s): at least 2 are needed to hold one out for validation; add images or a 'validation' list.")
        order = np.random.default_rng(seed).permutation(len(training))
        n_val = min(max(1, int(round(val_fraction * len(training)))), len(training) - 1)
        splits["validation"] = [training[i] for i in sorted(order[:n_val])]
        splits["training"] = [training[i] for i in sorted(order[n_val:])]
    splits.setdefault("test", splits["validation"])
    return splits


def inference_datalist(
    images: str | Sequence[str] = "",
    datalist: str = "",
    output_dir: str = "eval",
    dataset_dir: str = "",
    **kwargs,
) -> list[dict]:
    """
    The images to detect boxes in: ``images`` (a path or a list of paths) when given, else the test images of
    :py:func:`detection_datalist` (its other arguments in ``kwargs``: the blob phantoms' test split without data).

    Returns:
        a list of ``{"image": PATH}``.
    """
    if images:
        paths = [images] if isinstance(images, (str, os.PathLike)) else list(images)
        missing = [str(p) for p in paths if not os.path.exists(_resolve(str(p), dataset_dir or "."))]
        if missing:
            raise GenesisInputError(f"image(s) {missing[:3]} do not exist; pass existing files with --images.")
        return [{"image": _resolve(str(p), dataset_dir or ".")} for p in paths]
    return [{"image": e["image"]} for e in detection_datalist(datalist, output_dir, dataset_dir, **kwargs)["test"]]
