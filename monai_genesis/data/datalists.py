"""Datalists of the bundles: a user's folder or datalist JSON, checked, or synthetic phantoms when none is given."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

import numpy as np
from monai.data import load_decathlon_datalist

from monai_genesis.data.discovery import check_datalist, find_volumes
from monai_genesis.transforms.intensity import INTENSITY_KEY
from monai_genesis.data.medmnist import load_medmnist
from monai_genesis.data.natural import load_image_folder, load_natural_npz, synthetic_natural_images
from monai_genesis.data.phantoms import write_ct_phantoms, write_nodule_patch_phantoms

__all__ = [
    "classification_datalist",
    "natural_datalist",
    "pretrain_datalist",
    "segmentation_datalist",
    "split_datalist",
    "volume_datalist",
]

logger = logging.getLogger(__name__)


def split_datalist(items: Sequence, val_fraction: float = 0.2, seed: int = 0) -> dict[str, list]:
    """Split ``items`` into fixed training and validation parts by a seeded shuffle.

    Args:
        items: datalist entries.
        val_fraction: fraction for validation, in (0, 1); at least one entry goes to each part
            when there are two or more.
        seed: seed of the shuffle, so the same folder always gives the same split.

    Returns:
        ``{"training": [...], "validation": [...]}``; a single entry is used for both (with a warning).
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}.")
    items = list(items)
    if len(items) == 1:
        logger.warning("only one volume: it is used for both training and validation.")
        return {"training": items, "validation": items}
    order = np.random.default_rng(seed).permutation(len(items))
    num_val = min(max(1, int(round(len(items) * val_fraction))), len(items) - 1)
    return {
        "training": [items[i] for i in sorted(order[num_val:])],
        "validation": [items[i] for i in sorted(order[:num_val])],
    }


def _image_entry(item: dict) -> dict:
    """An entry of an image-only datalist: its image and, when it names one, its own intensity setting."""
    return {k: item[k] for k in ("image", INTENSITY_KEY) if k in item}


def _named(value) -> bool:
    return value is not None and str(value) != ""


def _from_source(datalist, dataset_dir, from_datalist, from_folder, from_phantoms):
    """The bundles' one choice of data: a datalist JSON if named, else a folder if named, else synthetic phantoms."""
    if _named(datalist):
        return from_datalist(str(datalist))
    if _named(dataset_dir):
        return from_folder(str(dataset_dir))
    return from_phantoms()


def _phantoms(output_dir: str, what: str, flags: str, write, *args, **kwargs) -> list[dict]:
    """Write synthetic phantoms under ``output_dir/phantoms`` and say, as a warning, that no data was named."""
    phantom_dir = os.path.join(output_dir, "phantoms")
    items = write(phantom_dir, *args, **kwargs)
    logger.warning(
        f"no data named: running on {len(items)} {what} in {phantom_dir}, not on your scans. "
        f"Name your data with {flags}."
    )
    return items


def _load_datalist_file(datalist: str, dataset_dir: str | None, keys: Sequence[str]) -> dict[str, list]:
    if not os.path.isfile(datalist):
        raise ValueError(f"datalist {datalist} does not exist; pass the path of a JSON datalist file.")
    base_dir = dataset_dir if _named(dataset_dir) else os.path.dirname(os.path.abspath(datalist))
    parts = {}
    for key in keys:
        try:
            parts[key] = load_decathlon_datalist(datalist, is_segmentation=True, data_list_key=key, base_dir=base_dir)
        except ValueError:
            parts[key] = []
    if not parts.get("training"):
        raise ValueError(f"datalist {datalist} has no entries under 'training'.")
    return parts


def pretrain_datalist(
    dataset_dir: str | None,
    output_dir: str,
    datalist: str | None = None,
    val_fraction: float = 0.2,
    seed: int = 0,
    num_phantoms: int = 8,
    phantom_shape: Sequence[int] = (96, 96, 64),
    min_shape: Sequence[int] | None = None,
) -> dict[str, list]:
    """Training and validation volumes for pretraining, checked to be readable.

    Args:
        dataset_dir: folder of NIfTI/NRRD/MHA files or DICOM series folders, split by ``split_datalist``.
            Empty or ``None``: synthetic CT phantoms are written under ``output_dir/phantoms`` and used.
        output_dir: the bundle's output folder (for the phantoms).
        datalist: optional JSON file with ``"training"`` (and ``"validation"``) lists of ``{"image": path}``;
            relative paths are resolved against ``dataset_dir`` (or the JSON's folder). Takes precedence. An
            entry may add ``"intensity"`` (``"ct"``, ``"mri"``, ...) to be scaled with its own setting.
        val_fraction: validation fraction when the split is drawn.
        seed: seed of the split and of the phantoms.
        num_phantoms: number of phantoms when no data is named.
        phantom_shape: size of each phantom.
        min_shape: volumes smaller than this are reported (and later padded).

    Returns:
        ``{"training": [{"image": path[, "intensity": setting]}, ...], "validation": [...]}``.

    Raises:
        ValueError: for a named but missing or empty folder or datalist, or an unreadable file.
    """

    def from_datalist(path):
        parts = _load_datalist_file(path, dataset_dir, ("training", "validation"))
        if not parts["validation"]:
            parts = split_datalist(parts["training"], val_fraction, seed)
        return {k: [_image_entry(item) for item in v] for k, v in parts.items()}

    def from_folder(folder):
        parts = split_datalist([{"image": path} for path in find_volumes(folder)], val_fraction, seed)
        logger.info(f"dataset_dir {folder}: {len(parts['training'])} training and {len(parts['validation'])} validation volumes.")
        return parts

    def from_phantoms():
        items = _phantoms(output_dir, "synthetic CT phantoms", "--dataset_dir DIR or --datalist FILE",
                          write_ct_phantoms, num_phantoms, phantom_shape, seed=seed, with_labels=False)
        return split_datalist(items, val_fraction, seed)

    parts = _from_source(datalist, dataset_dir, from_datalist, from_folder, from_phantoms)
    for part in parts.values():
        check_datalist(part, label_key=None, min_shape=min_shape)
    return parts


def volume_datalist(
    dataset_dir: str | None,
    output_dir: str,
    datalist: str | None = None,
    data_key: str = "test",
    seed: int = 0,
    num_phantoms: int = 8,
    phantom_shape: Sequence[int] = (96, 96, 64),
    phantom_labels: bool = False,
) -> list[dict]:
    """All volumes to run inference on, checked to be readable.

    Args:
        dataset_dir: folder of NIfTI/NRRD/MHA files or DICOM series folders (all are used).
            Empty or ``None`` (and no ``datalist``): the synthetic CT phantoms under ``output_dir/phantoms``.
        output_dir: the bundle's output folder (for the phantoms).
        datalist: optional JSON datalist; its ``data_key`` list is used (entries are paths or ``{"image": path}``).
        data_key: the list of ``datalist`` to use.
        seed: seed of the phantoms.
        num_phantoms: number of phantoms when no data is named.
        phantom_shape: size of each phantom.
        phantom_labels: write the phantoms' label maps too (as the segmentation bundle's training does,
            so that both reuse the same files).

    Returns:
        ``[{"image": path}, ...]``.
    """

    def from_datalist(path):
        if not os.path.isfile(path):
            raise ValueError(f"datalist {path} does not exist; pass the path of a JSON datalist file.")
        base_dir = dataset_dir if _named(dataset_dir) else os.path.dirname(os.path.abspath(path))
        try:
            entries = load_decathlon_datalist(path, True, data_key, base_dir)
        except ValueError as e:
            raise ValueError(f"datalist {path} has no {data_key!r} list to run on ({e}); add one.") from e
        return [_image_entry(i) for i in entries]

    def from_phantoms():
        phantoms = _phantoms(output_dir, "synthetic CT phantoms", "--dataset_dir DIR or --datalist FILE",
                             write_ct_phantoms, num_phantoms, phantom_shape, seed=seed, with_labels=phantom_labels)
        return [{"image": item["image"]} for item in phantoms]

    items = _from_source(
        datalist, dataset_dir, from_datalist, lambda folder: [{"image": p} for p in find_volumes(folder)], from_phantoms
    )
    return check_datalist(items, label_key=None)


def segmentation_datalist(
    datalist: str | None,
    output_dir: str,
    dataset_dir: str | None = None,
    val_fraction: float = 0.2,
    seed: int = 0,
    num_phantoms: int = 8,
    phantom_shape: Sequence[int] = (96, 96, 64),
) -> dict[str, list]:
    """Training, validation and test lists of ``{"image", "label"}`` for segmentation, checked.

    Args:
        datalist: JSON datalist in the Medical Segmentation Decathlon format (``"training"``,
            optionally ``"validation"`` and ``"test"``), read with ``monai.data.load_decathlon_datalist``.
            Empty or ``None``: phantoms with lung and nodule label maps are written under
            ``output_dir/phantoms`` and used.
        output_dir: the bundle's output folder (for the phantoms).
        dataset_dir: base folder of the datalist's relative paths (default: the JSON's folder).
        val_fraction: validation fraction drawn from ``"training"`` when the datalist has no ``"validation"``.
        seed: seed of that split and of the phantoms.
        num_phantoms: number of phantoms when no datalist is named.
        phantom_shape: size of each phantom.

    Returns:
        ``{"training": [...], "validation": [...], "test": [...]}``; ``"test"`` falls back to
        ``"validation"`` when the datalist has none.

    Raises:
        ValueError: for a named but missing datalist, an unreadable file, or a label whose shape
            differs from its image's.
    """

    def from_datalist(path):
        parts = _load_datalist_file(path, dataset_dir, ("training", "validation", "test"))
        if not parts["validation"]:
            parts.update(split_datalist(parts["training"], val_fraction, seed))
        return parts

    def from_folder(folder):
        raise ValueError(
            f"dataset_dir {folder} is given without a datalist: segmentation needs a datalist JSON pairing "
            "images with labels (--datalist FILE); dataset_dir is the base folder of its relative paths."
        )

    def from_phantoms():
        items = _phantoms(output_dir, "synthetic CT phantoms with lung and nodule labels", "--datalist FILE",
                          write_ct_phantoms, num_phantoms, phantom_shape, seed=seed, with_labels=True)
        return dict(split_datalist(items, val_fraction, seed), test=[])

    parts = _from_source(datalist, dataset_dir, from_datalist, from_folder, from_phantoms)
    if not parts["test"]:
        parts["test"] = parts["validation"]
    for name in ("training", "validation"):
        if not parts[name]:
            raise ValueError(f"the segmentation datalist has no {name} entries.")
        if any("label" not in item for item in parts[name]):
            raise ValueError(f"every {name} entry of the segmentation datalist needs a 'label' path.")
        check_datalist(parts[name], label_key="label")
    check_datalist(parts["test"], label_key="label")
    return parts


def classification_datalist(
    datalist: str | None,
    output_dir: str,
    medmnist_npz: str | None = None,
    dataset_dir: str | None = None,
    val_fraction: float = 0.2,
    seed: int = 0,
    num_phantoms: int = 16,
    phantom_shape: Sequence[int] = (32, 32, 32),
) -> dict[str, list]:
    """Training, validation and test lists of ``{"image", "label": int}`` for classification, checked.

    Args:
        datalist: JSON datalist with ``"training"`` (optionally ``"validation"``, ``"test"``) entries
            ``{"image": path, "label": int}``.
        output_dir: the bundle's output folder (for the phantoms).
        medmnist_npz: a MedMNIST ``.npz`` file, read by ``load_medmnist`` (used when no datalist is named).
        dataset_dir: base folder of the datalist's relative paths (default: the JSON's folder).
        val_fraction: validation fraction drawn from ``"training"`` when there is no validation part.
        seed: seed of that split and of the phantoms.
        num_phantoms: number of lung patches (half with a nodule) when no data is named.
        phantom_shape: size of each patch.

    Returns:
        ``{"training": [...], "validation": [...], "test": [...]}``; ``"test"`` falls back to
        ``"validation"``.
    """

    def from_folder(folder):
        raise ValueError(
            f"dataset_dir {folder} is given without a datalist: classification needs a datalist JSON of "
            "{'image', 'label'} entries (--datalist FILE) or a MedMNIST file (--medmnist_npz FILE)."
        )

    def from_medmnist(path):
        # MedMNIST images are 0-255: each entry carries its own intensity setting
        parts = {
            name: [{**item, INTENSITY_KEY: "minmax"} for item in load_medmnist(path, split)]
            for name, split in (("training", "train"), ("validation", "val"), ("test", "test"))
        }
        logger.info(
            f"MedMNIST file {path}: {len(parts['training'])} training, {len(parts['validation'])} "
            f"validation, {len(parts['test'])} test samples."
        )
        return parts

    def from_phantoms():
        items = _phantoms(output_dir, "synthetic lung patches (half with a nodule)", "--datalist FILE or --medmnist_npz FILE",
                          write_nodule_patch_phantoms, num_phantoms, phantom_shape, seed=seed)
        return {"training": items, "validation": [], "test": []}

    def from_datalist(path):
        return _load_datalist_file(path, dataset_dir, ("training", "validation", "test"))

    if _named(medmnist_npz) and not _named(datalist):
        parts = from_medmnist(str(medmnist_npz))
    else:
        parts = _from_source(datalist, dataset_dir, from_datalist, from_folder, from_phantoms)
    if not parts["training"]:
        raise ValueError("the classification data has no training samples.")
    if not parts["validation"]:
        parts.update(_stratified_split(parts["training"], val_fraction, seed))
    if not parts["test"]:
        parts["test"] = parts["validation"]
    for part in parts.values():
        for item in part:
            if "label" not in item:
                raise ValueError(f"classification entry {item.get('image')} has no 'label'.")
        check_datalist(part, label_key=None)
    return parts


def _stratified_split(items: list, val_fraction: float, seed: int) -> dict[str, list]:
    """Split each class separately so both parts see every class."""
    by_class: dict = {}
    for item in items:
        by_class.setdefault(int(np.asarray(item["label"]).ravel()[0]), []).append(item)
    parts: dict[str, list] = {"training": [], "validation": []}
    for members in by_class.values():
        split = split_datalist(members, val_fraction, seed) if len(members) > 1 else {"training": members, "validation": []}
        parts["training"] += split["training"]
        parts["validation"] += split["validation"]
    return parts


def _named_photos(items: list[dict], source: str) -> list[dict]:
    """In-memory photos as ``MetaTensor`` whose ``filename_or_obj`` reads ``SOURCE[index]``, to trace outputs back."""
    import torch
    from monai.data import MetaTensor

    return [
        {"image": MetaTensor(torch.as_tensor(item["image"]), meta={"filename_or_obj": f"{source}[{i}]"}),
         "label": int(item["label"])}
        for i, item in enumerate(items)
    ]


def _check_class_count(parts: dict[str, list], num_classes: int, source: str) -> None:
    """Refuse labels outside ``[0, num_classes)``; warn when the data uses fewer classes than the network has."""
    labels = {int(item["label"]) for part in parts.values() for item in part}
    bad = sorted(lab for lab in labels if not 0 <= lab < num_classes)
    if bad:
        raise ValueError(
            f"{source}: label {bad[0]} is outside [0, {num_classes}) for num_classes={num_classes}; pass "
            f"--num_classes {max(labels) + 1} (the number of classes of the data)."
        )
    if len(labels) < num_classes:
        logger.warning(f"{source}: the labels use {len(labels)} of the network's num_classes={num_classes} classes.")


def natural_datalist(
    dataset_dir: str | None,
    natural_npz: str | None = None,
    num_classes: int = 4,
    val_fraction: float = 0.1,
    seed: int = 0,
    synthetic_per_class: int = 48,
    synthetic_size: int = 32,
) -> dict[str, list]:
    """Training, validation and test lists of labelled 2D photos ``{"image", "label": int}`` for CSPR pretraining.

    Args:
        dataset_dir: a folder of photos in the one-folder-per-class layout (``DIR/<class>/<image>``, PNG or JPEG),
            or holding ``train/`` (and optionally ``val/``, ``test/``) folders of that layout, as ImageNet is
            distributed. Class names are numbered in sorted order of the training folder. Images stay paths, read
            by :py:class:`monai_genesis.transforms.LoadPhotod`.
        natural_npz: a ``.npz`` file with ``train_images`` / ``train_labels`` (and ``val_*``, ``test_*``), as the
            CIFAR-10 and Tiny-ImageNet subsets; used when named (it takes precedence over ``dataset_dir``).
        num_classes: the network's number of classes; every label must be below it, and a class folder layout must
            have exactly this many classes.
        val_fraction: fraction of each class of the training images held out for validation when the data has no
            validation part.
        seed: seed of that split and of the synthetic images.
        synthetic_per_class: training images per class of the synthetic images used when no data is named
            (a quarter as many test images, ``num_classes`` from 2 to 6).
        synthetic_size: side of the synthetic images.

    Returns:
        ``{"training": [...], "validation": [...], "test": [...]}``; ``"test"`` falls back to ``"validation"``.
        In-memory photos are ``(H, W, 3)`` uint8 ``MetaTensor`` named ``FILE#split[index]``.

    Raises:
        ValueError: for a missing folder or file, a folder with fewer than 2 classes or another number of classes
            than ``num_classes``, an unreadable image (named), or a label outside ``[0, num_classes)``.
    """
    num_classes = int(num_classes)

    def from_npz(path):
        splits, _ = load_natural_npz(path, num_classes)
        parts = {
            name: _named_photos(splits.get(split, []), f"{path}#{split}")
            for name, split in (("training", "train"), ("validation", "val"), ("test", "test"))
        }
        return parts, f"natural image file {path}"

    def read_folder(folder, classes=None):
        items, names = load_image_folder(folder, classes)
        if classes is None and len(names) != num_classes:
            raise ValueError(
                f"image folder {folder} holds {len(names)} classes ({', '.join(names[:5])}"
                f"{' ...' if len(names) > 5 else ''}), the network num_classes={num_classes}; pass "
                f"--num_classes {len(names)}."
            )
        return items, names

    def from_folder(folder):
        train_dir = os.path.join(folder, "train")
        if not os.path.isdir(train_dir):
            return {"training": read_folder(folder)[0], "validation": [], "test": []}, f"image folder {folder}"
        training, names = read_folder(train_dir)
        parts = {"training": training}
        for name, sub in (("validation", "val"), ("test", "test")):
            sub_dir = os.path.join(folder, sub)
            parts[name] = read_folder(sub_dir, names)[0] if os.path.isdir(sub_dir) else []
        return parts, f"image folder {folder}"

    def from_synthetic():
        if not 2 <= num_classes <= 6:
            raise ValueError(
                f"no data named and num_classes={num_classes}: the synthetic images have 2 to 6 classes. Name your "
                "photos with --dataset_dir DIR or --natural_npz FILE, or pass --num_classes 4."
            )
        splits, _ = synthetic_natural_images(
            num_classes, synthetic_per_class, max(1, synthetic_per_class // 4), synthetic_size, seed=seed
        )
        parts = {"training": _named_photos(splits["train"], "synthetic#train"), "validation": [],
                 "test": _named_photos(splits["test"], "synthetic#test")}
        logger.warning(
            f"no data named: running on {len(parts['training'])} synthetic labelled images of {num_classes} "
            f"classes ({synthetic_size}x{synthetic_size}), not on your photos. Name your data with "
            "--dataset_dir DIR or --natural_npz FILE."
        )
        return parts, "the synthetic images"

    parts, source = _from_source(natural_npz, dataset_dir, from_npz, from_folder, from_synthetic)
    if not parts["training"]:
        raise ValueError(f"{source} has no training images.")
    _check_class_count(parts, num_classes, source)
    if not parts["validation"]:
        parts.update(_stratified_split(parts["training"], val_fraction, seed))
    if not parts["test"]:
        parts["test"] = parts["validation"]
    logger.info(
        f"{source}: {len(parts['training'])} training, {len(parts['validation'])} validation and "
        f"{len(parts['test'])} test images of {num_classes} classes."
    )
    return parts
