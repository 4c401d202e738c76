"""Boxes of a detection data set: from label volumes (one per connected component), between voxel and world
coordinates, and the checks that refuse a box outside its image, a box of no size or one written in another mode.

Boxes follow ``monai.data.box_utils``: a mode names the layout of the six numbers of a 3D box (``"xyzxyz"``: two
corners, ``"xyzwhd"``: a corner and the sizes, ``"cccwhd"``: the centre and the sizes, the Model Zoo's
``lung_nodule_ct_detection`` datalists). In voxel coordinates the box of a component whose voxels run from ``a``
to ``b`` is ``[a, b + 1)``. World coordinates are millimetres: the box corners through the image's affine (the
NIfTI affine as nibabel and MONAI's loaders read it, RAS), exactly as MONAI's ``AffineBoxToImageCoordinated`` and
``AffineBoxToWorldCoordinated`` convert them, so boxes written by inference read back unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from monai.data.box_utils import convert_box_mode, convert_box_to_standard_mode

from monai_genesis.errors import GenesisInputError

__all__ = [
    "BOX_MODES",
    "boxes_from_label",
    "check_box_mode",
    "check_boxes",
    "connected_components",
    "voxel_to_world_boxes",
    "world_to_voxel_boxes",
]

#: the 3D box modes a datalist may declare (``monai.data.box_utils`` names)
BOX_MODES = ("xyzxyz", "xyzwhd", "cccwhd")


def check_box_mode(mode: str) -> str:
    """Return ``mode`` if it is one of :py:data:`BOX_MODES`, else raise a ``ValueError`` that lists them."""
    if mode not in BOX_MODES:
        raise ValueError(
            f"box_mode {mode!r} is not a 3D box mode; use one of {list(BOX_MODES)} (xyzxyz: two corners, xyzwhd: a "
            "corner and the sizes, cccwhd: the centre and the sizes, as the Model Zoo's detection datalists)."
        )
    return mode


def connected_components(mask: np.ndarray | torch.Tensor) -> tuple[np.ndarray, int]:
    """
    Label the 26-connected components of a 3D boolean mask.

    Each foreground voxel starts with its own number; the largest number of its 3x3x3 neighbourhood spreads through
    the foreground with max pooling until nothing changes, so every component ends with one number (its largest
    voxel index). The components are then numbered 1, 2, ... in the order of those numbers.

    Args:
        mask: a 3D array, nonzero in the foreground.

    Returns:
        ``(labels, count)``: int32 array of the mask's shape (0 background, 1..count the components) and the count.
    """
    fg = torch.as_tensor(np.asarray(mask) != 0)
    if fg.ndim != 3:
        raise ValueError(f"connected_components takes a 3D mask, got shape {tuple(fg.shape)}.")
    if not fg.any():
        return np.zeros(fg.shape, dtype=np.int32), 0
    ids = torch.arange(1, fg.numel() + 1, dtype=torch.float64).reshape(fg.shape) * fg
    ids = ids[None, None]
    fgf = fg[None, None].to(torch.float64)
    while True:
        spread = F.max_pool3d(ids, kernel_size=3, stride=1, padding=1) * fgf
        if torch.equal(spread, ids):
            break
        ids = spread
    values, labels = torch.unique(ids[0, 0], return_inverse=True)
    # value 0 (the background) is the smallest, so components are numbered from 1
    labels = labels if values[0] == 0 else labels + 1
    return labels.numpy().astype(np.int32), int((values > 0).sum())


def boxes_from_label(
    label: np.ndarray | torch.Tensor,
    classes: Sequence[int] | None = None,
    min_size: int = 1,
    source: str = "the label volume",
) -> tuple[np.ndarray, np.ndarray]:
    """
    One box per connected component of each class of a label volume, in voxel coordinates (``"xyzxyz"``).

    Args:
        label: 3D (or channel-first 1x3D) integer label volume, 0 the background.
        classes: the label values that are box classes, numbered 0, 1, ... in this order; None takes every nonzero
            value present, in increasing order. Other values are background.
        min_size: components of fewer voxels are left out (specks of a model-made or noisy mask).
        source: the volume's name in error messages (its file).

    Returns:
        ``(boxes, labels)``: float32 ``(N, 6)`` boxes ``[x0, y0, z0, x1, y1, z1)`` and int64 ``(N,)`` class indices,
        sorted by class, then by the component's first voxel.

    Raises:
        GenesisInputError: when the volume holds no component of a box class of at least ``min_size`` voxels.
    """
    array = np.asarray(label.detach().cpu() if isinstance(label, torch.Tensor) else label)
    if array.ndim == 4 and array.shape[0] == 1:
        array = array[0]
    if array.ndim != 3:
        raise GenesisInputError(f"{source}: a label volume must be 3D (or 1x3D), got shape {array.shape}.")
    values = sorted(int(v) for v in np.unique(array) if v != 0) if classes is None else [int(c) for c in classes]
    boxes, labels = [], []
    for index, value in enumerate(values):
        components, count = connected_components(array == value)
        for c in range(1, count + 1):
            voxels = np.argwhere(components == c)
            if len(voxels) < int(min_size):
                continue
            boxes.append(np.concatenate([voxels.min(0), voxels.max(0) + 1]))
            labels.append(index)
    if not boxes:
        present = sorted(int(v) for v in np.unique(array))
        raise GenesisInputError(
            f"{source} has no foreground to make a box from: no component of the box classes {values or '(none)'} "
            f"with at least {min_size} voxels (values present: {present[:10]}). Check that it is the label volume of "
            "its image, set the classes (label_classes) to values it holds, or lower min_box_voxels; or leave the "
            "image out of the datalist."
        )
    return np.asarray(boxes, dtype=np.float32), np.asarray(labels, dtype=np.int64)


def voxel_to_world_boxes(boxes: np.ndarray, affine: np.ndarray, mode: str = "xyzxyz") -> np.ndarray:
    """Boxes in voxel coordinates (corner mode ``[x0, y0, z0, x1, y1, z1)``) to world millimetres in ``mode``.

    The corners go through the affine as in MONAI's ``AffineBoxToWorldCoordinated`` and are sorted per axis, so an
    axis flipped by the affine still gives a valid box."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 6)
    affine = np.asarray(affine, dtype=np.float64)
    corners = [np.c_[b, np.ones(len(b))] @ affine[:3].T for b in (boxes[:, :3], boxes[:, 3:])]
    world = np.concatenate([np.minimum(*corners), np.maximum(*corners)], axis=1)
    return convert_box_mode(world, src_mode="xyzxyz", dst_mode=check_box_mode(mode)).astype(np.float32)


def world_to_voxel_boxes(boxes: np.ndarray, affine: np.ndarray, mode: str = "xyzxyz") -> np.ndarray:
    """World boxes in ``mode`` to voxel coordinates (corner mode), the inverse of :py:func:`voxel_to_world_boxes`."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 6)
    corner = convert_box_to_standard_mode(boxes, mode=check_box_mode(mode))
    inverse = np.linalg.inv(np.asarray(affine, dtype=np.float64))
    corners = [np.c_[b, np.ones(len(b))] @ inverse[:3].T for b in (corner[:, :3], corner[:, 3:])]
    return np.concatenate([np.minimum(*corners), np.maximum(*corners)], axis=1).astype(np.float32)


def _problems(world: np.ndarray, mode: str, affine: np.ndarray, shape: Sequence[int], tolerance: float) -> list[str]:
    """What is wrong with each world box read in ``mode`` in an image of ``shape``: empty if nothing."""
    out = []
    size = np.asarray(shape, dtype=np.float64)
    if not np.all(np.isfinite(world)):
        return [f"box {i} has non-finite values" for i, b in enumerate(world) if not np.all(np.isfinite(b))]
    corners = convert_box_to_standard_mode(world, mode=mode)
    voxel = world_to_voxel_boxes(world, affine, mode)
    for i, (c, b) in enumerate(zip(corners, voxel)):
        sides = b[3:] - b[:3]
        if np.any(c[3:] - c[:3] <= 0) or np.any(sides <= 1e-3):
            out.append(f"box {i} has size {np.round(np.where(c[3:] - c[:3] <= 0, c[3:] - c[:3], sides), 2).tolist()} (zero or negative)")
        elif np.any(b[:3] < -tolerance) or np.any(b[3:] > size + tolerance):
            out.append(
                f"box {i} spans voxels {np.round(b[:3], 1).tolist()} to {np.round(b[3:], 1).tolist()}, outside the "
                f"image of {list(map(int, shape))} voxels"
            )
    return out


def check_boxes(
    boxes: np.ndarray | Sequence[Sequence[float]],
    mode: str,
    affine: np.ndarray,
    shape: Sequence[int],
    source: str = "the image",
    tolerance: float = 0.5,
) -> np.ndarray:
    """
    Check the world boxes of one image and return them in voxel coordinates (corner mode).

    A box must have six finite numbers, a positive size on every axis, and lie inside the image (up to
    ``tolerance`` voxels, for rounding). When the boxes fail in the declared ``mode`` but pass in another mode, the
    message says so: the datalist was most likely written in that mode.

    Args:
        boxes: ``(N, 6)`` world boxes (mm) in ``mode``.
        mode: the declared box mode (:py:data:`BOX_MODES`).
        affine: the image's 4x4 affine.
        shape: the image's spatial shape.
        source: the image (its file) in error messages.
        tolerance: voxels a box may reach past the image's border.

    Raises:
        GenesisInputError: naming ``source``, the box, what is wrong and how to fix it.
    """
    array = np.asarray(boxes, dtype=np.float64)
    if array.size == 0:
        raise GenesisInputError(
            f"{source} has no box; every training image needs at least one (leave images without boxes out, or "
            "give their label volume to derive boxes from)."
        )
    if array.ndim == 1:
        array = array[None]
    if array.ndim != 2 or array.shape[1] != 6:
        raise GenesisInputError(f"{source}: boxes must be lists of 6 numbers (3D, mode {mode}), got shape {array.shape}.")
    problems = _problems(array, mode, affine, shape, tolerance)
    # a box of negative or zero size in a corner mode is a sign of another mode; so is one that only fits in another
    if problems:
        fits = [m for m in BOX_MODES if m != mode and not _problems(array, m, affine, shape, tolerance)]
        hint = (
            f" These boxes are valid as {fits[0]!r}: the datalist is likely written in that mode; declare it with "
            f"box_mode {fits[0]!r}."
            if fits
            else f" Boxes are world coordinates (mm, the image's affine) in mode {mode!r}; fix or remove the box."
        )
        raise GenesisInputError(f"{source}: {'; '.join(problems[:3])} (boxes read as {mode!r}).{hint}")
    return np.clip(world_to_voxel_boxes(array, affine, mode), 0, np.r_[shape, shape]).astype(np.float32)
