"""Labelled 2D natural images for CSPR pretraining: class folders, ``.npz`` files, and a synthetic default.

Each reader returns MONAI datalists, lists of ``{"image": array or path, "label": int}``. Arrays are photos as
stored, ``(H, W, 3)`` uint8 on the 0–255 scale, ready for :py:class:`monai_genesis.transforms.VariableDimensiond`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

import numpy as np
from PIL import Image

__all__ = ["IMAGE_SUFFIXES", "SYNTHETIC_CLASSES", "load_image_folder", "load_natural_npz", "synthetic_natural_images"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
SPLITS = ("train", "val", "test")
logger = logging.getLogger(__name__)
# the classes of the synthetic images differ in shape only, never in colour, so a colour permutation keeps them apart
SYNTHETIC_CLASSES = ("horizontal stripes", "vertical stripes", "disc", "checkerboard", "diagonal stripes", "ring")


def _read_rgb(path: str) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


# the bytes a complete file of these formats ends with (a JPEG's end-of-image marker, a PNG's IEND chunk); a file cut
# short (an interrupted copy or download) lacks them, which PIL's verify() does not see for JPEG
_ENDINGS = {"JPEG": (b"\xff\xd9",), "PNG": (b"IEND\xaeB`\x82",)}


def _checked(path: str) -> str:
    """``path``, once PIL has opened and verified the image in it and its file is seen to be complete."""
    with Image.open(path) as im:
        kind = im.format
        im.verify()
    endings = _ENDINGS.get(kind)
    if endings:
        with open(path, "rb") as f:
            f.seek(max(os.path.getsize(path) - 64, 0))
            tail = f.read().rstrip(b"\x00\r\n ")
        if not tail.endswith(endings):
            raise ValueError(f"the {kind} file is cut short (it does not end as a complete {kind} does)")
    return path


def load_image_folder(
    folder: str,
    classes: Sequence[str] | None = None,
    load: bool = False,
    suffixes: Sequence[str] = IMAGE_SUFFIXES,
) -> tuple[list[dict], list[str]]:
    """Read a folder of labelled photos in the one-folder-per-class layout (``folder/<class>/<image>``).

    Class names are sorted and numbered from 0. Every image is opened and checked, so that an unreadable file
    stops the listing rather than the training.

    Args:
        folder: the folder holding one subfolder per class.
        classes: the class names to number, in order (e.g. those of the training folder, for a test folder);
            None takes the sorted subfolder names. Every subfolder must be one of them.
        load: read the images into ``(H, W, 3)`` uint8 arrays (grey and palette images converted to RGB);
            False (default) keeps their paths, for ``LoadImaged``.
        suffixes: file name endings of the images, compared case-insensitively. Defaults to PNG and JPEG.

    Returns:
        the datalist ``[{"image": path or array, "label": int}, ...]`` (classes in order, files sorted) and the
        class names.

    Raises:
        ValueError: when the folder does not exist, holds fewer than 2 classes (or a class not in ``classes``),
            a class folder holds no image, or an image cannot be read (its path is named).
    """
    if not os.path.isdir(folder):
        raise ValueError(f"image folder {folder} does not exist; pass a folder with one subfolder per class.")
    found = sorted(e.name for e in os.scandir(folder) if e.is_dir() and not e.name.startswith("."))
    names = found if classes is None else [str(c) for c in classes]
    unknown = sorted(set(found) - set(names))
    if unknown:
        raise ValueError(f"image folder {folder}: class folder(s) {unknown} are not among the classes {names}.")
    if len(names) < 2:
        raise ValueError(
            f"image folder {folder} holds {len(names)} class folder(s) {names}; classification needs at least 2, "
            "one subfolder per class (folder/<class>/<image>)."
        )
    endings = tuple(s.lower() for s in suffixes)
    datalist = []
    for label, name in enumerate(names):
        class_dir = os.path.join(folder, name)
        files = os.listdir(class_dir) if os.path.isdir(class_dir) else []
        files = sorted(f for f in files if f.lower().endswith(endings))
        if not files:
            raise ValueError(
                f"image folder {folder}: class folder {class_dir} is missing or holds no image ending in "
                f"{list(endings)}."
            )
        for f in files:
            path = os.path.join(class_dir, f)
            try:
                image = _read_rgb(path) if load else _checked(path)
            except Exception as e:
                raise ValueError(
                    f"image folder {folder}: cannot read image {path}: {e}. The file is incomplete, corrupt or not an "
                    "image: copy it again or remove it."
                ) from e
            datalist.append({"image": image, "label": label})
    return datalist, names


def load_natural_npz(path: str, num_classes: int | None = None) -> tuple[dict[str, list[dict]], int]:
    """Read a ``.npz`` file of labelled photos: ``train_images`` / ``train_labels``, ``test_*`` and ``val_*``.

    The images stay as stored (``(N, H, W, 3)`` uint8 for the CIFAR-10 and Tiny-ImageNet subsets); each datalist
    item holds one of them, a view into the file's array.

    Args:
        path: the ``.npz`` file.
        num_classes: the number of classes; None takes the length of the file's ``classes`` array when it has one,
            else the largest label plus one.

    Returns:
        ``{split: [{"image": array, "label": int}, ...]}`` for each of ``"train"``, ``"val"``, ``"test"`` present
        in the file, and the number of classes.

    Raises:
        ValueError: when the file is missing or unreadable, has no ``train_images``, images and labels disagree in
            number, or a label is outside ``[0, num_classes)`` (the file and the value are named).
    """
    if not os.path.isfile(path):
        raise ValueError(f"natural image file {path} does not exist; pass the path of a .npz file.")
    arrays: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    try:
        with np.load(path) as npz:
            if "train_images" not in npz:
                raise ValueError(f"it has no train_images (keys: {sorted(npz.files)})")
            for split in SPLITS:
                if f"{split}_images" in npz:
                    arrays[split] = (npz[f"{split}_images"], npz[f"{split}_labels"])
            file_classes = len(npz["classes"]) if "classes" in npz else None
    except (OSError, ValueError, KeyError) as e:
        raise ValueError(f"cannot read natural image file {path}: {e}.") from e
    labels_of = {}
    for split, (images, labels) in list(arrays.items()):
        if images.ndim not in (3, 4):
            raise ValueError(f"{path}: {split}_images must be N×H×W×C or N×H×W, got shape {images.shape}.")
        arrays[split] = (_as_rgb_uint8(images, f"{path}: {split}_images"), labels)
        labels = np.asarray(labels).reshape(len(labels), -1)
        if labels.shape[1] != 1 or len(labels) != len(images):
            raise ValueError(
                f"{path}: {len(images)} {split} images need {len(images)} single labels, got labels of shape "
                f"{np.shape(arrays[split][1])}."
            )
        labels_of[split] = labels[:, 0]
    if num_classes is None:
        largest = max(int(lab.max(initial=0)) for lab in labels_of.values())
        num_classes = file_classes if file_classes is not None else largest + 1
    for split, labels in labels_of.items():
        bad = labels[(labels < 0) | (labels >= num_classes)]
        if bad.size:
            raise ValueError(
                f"{path}: {split}_labels holds the label {bad[0]}, outside [0, {num_classes}) for {num_classes} "
                "classes."
            )
    splits = {
        split: [{"image": arrays[split][0][i], "label": int(labels[i])} for i in range(len(labels))]
        for split, labels in labels_of.items()
    }
    return splits, int(num_classes)


def _as_rgb_uint8(images: np.ndarray, name: str) -> np.ndarray:
    """Photos ``(N, H, W[, C])`` as ``(N, H, W, 3)`` uint8 on the 0–255 scale the CSPR statistics are of.

    Grey photos (no channel axis, or one channel) are repeated to 3 colours, as :py:func:`load_image_folder` converts
    grey files; float photos in [0, 1] are scaled to 0–255 and floats in [0, 255] rounded, each with a warning.
    """
    if images.ndim == 4 and images.shape[-1] not in (1, 3):
        raise ValueError(f"{name} has {images.shape[-1]} colour channels (shape {images.shape}); give RGB or grey photos.")
    if images.dtype != np.uint8:
        if not np.issubdtype(images.dtype, np.number):
            raise ValueError(f"{name} are of dtype {images.dtype}; give uint8 photos on the 0–255 scale.")
        low, high = float(images.min(initial=0)), float(images.max(initial=0))
        if low < 0 or high > 255:
            raise ValueError(
                f"{name} span [{low:g}, {high:g}]; give uint8 photos on the 0–255 scale (or floats in [0, 1] or [0, 255])."
            )
        scale = 255.0 if high <= 1.0 and np.issubdtype(images.dtype, np.floating) else 1.0
        logger.warning(
            f"{name} are {images.dtype} in [{low:g}, {high:g}]; "
            + ("scaled by 255 to the 0–255 scale of the CSPR statistics." if scale != 1 else "rounded to uint8.")
        )
        images = np.clip(np.rint(images.astype(np.float32) * scale), 0, 255).astype(np.uint8)
    if images.ndim == 3 or images.shape[-1] == 1:
        logger.info(f"{name} are grey; each is repeated to 3 colours.")
        images = np.repeat(images.reshape(*images.shape[:3], 1), 3, axis=-1)
    return images


def _pattern(kind: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """A boolean foreground mask of the class ``kind``, with random period, phase or position."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    period = rng.uniform(size / 8, size / 4)
    phase = rng.uniform(0, period)
    centre = rng.uniform(0.35 * size, 0.65 * size, 2)
    radius = rng.uniform(0.2 * size, 0.35 * size)
    r = np.hypot(yy - centre[0], xx - centre[1])
    if kind == 0:
        return ((yy + phase) % period) < period / 2
    if kind == 1:
        return ((xx + phase) % period) < period / 2
    if kind == 2:
        return r <= radius
    if kind == 3:
        return (((yy + phase) % period) < period / 2) ^ (((xx + phase) % period) < period / 2)
    if kind == 4:
        return ((yy + xx + phase) % period) < period / 2
    return (r <= radius) & (r >= 0.6 * radius)


def _colour_pair(rng: np.random.Generator, min_distance: float = 120.0) -> tuple[np.ndarray, np.ndarray]:
    """Two random RGB colours far enough apart that the pattern is visible under any channel order."""
    while True:
        fg, bg = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
        if np.linalg.norm(fg - bg) >= min_distance:
            return fg, bg


def synthetic_natural_images(
    num_classes: int = 4,
    num_train_per_class: int = 64,
    num_test_per_class: int = 16,
    size: int = 32,
    seed: int = 0,
    noise: float = 12.0,
) -> tuple[dict[str, list[dict]], int]:
    """Generate labelled RGB photos whose classes a small network learns in about a minute on a CPU.

    The classes are patterns (:py:data:`SYNTHETIC_CLASSES`: horizontal and vertical stripes, a disc, a
    checkerboard, diagonal stripes, a ring) with random period, phase, position and size, drawn in two random
    colours over Gaussian noise. The colours carry no class information, so CSPR's colour permutation neither
    merges nor reveals classes: what the network learns is the shape. Everything is drawn from
    ``numpy.random.default_rng(seed)``.

    Args:
        num_classes: number of classes, 2 to 6. Defaults to 4.
        num_train_per_class: training images per class. Defaults to 64.
        num_test_per_class: test images per class. Defaults to 16.
        size: side of the square images, at least 16. Defaults to 32 (as CIFAR-10).
        seed: seed of the generator; the same seed gives the same images.
        noise: standard deviation of the Gaussian noise on the 0–255 scale. Defaults to 12.

    Returns:
        ``{"train": [...], "test": [...]}`` of ``{"image": (size, size, 3) uint8 array, "label": int}`` (classes
        interleaved), and the number of classes.
    """
    if not 2 <= num_classes <= len(SYNTHETIC_CLASSES):
        raise ValueError(f"num_classes must be 2 to {len(SYNTHETIC_CLASSES)}, got {num_classes}.")
    if size < 16:
        raise ValueError(f"size must be at least 16, got {size}.")
    if num_train_per_class < 1 or num_test_per_class < 0:
        raise ValueError(
            f"num_train_per_class must be positive and num_test_per_class non-negative, got {num_train_per_class} "
            f"and {num_test_per_class}."
        )
    rng = np.random.default_rng(seed)
    splits = {}
    for split, count in (("train", num_train_per_class), ("test", num_test_per_class)):
        items = []
        for _ in range(count):
            for label in range(num_classes):
                mask = _pattern(label, size, rng)
                fg, bg = _colour_pair(rng)
                image = np.where(mask[..., None], fg, bg) + rng.normal(0.0, noise, (size, size, 3))
                items.append({"image": np.clip(np.rint(image), 0, 255).astype(np.uint8), "label": label})
        splits[split] = items
    return splits, num_classes
