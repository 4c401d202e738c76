"""Synthetic CT volumes with bright blobs of known boxes: the detection bundle's data when none is given."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence

import nibabel as nib
import numpy as np

from monai_genesis.detection.boxes import boxes_from_label, voxel_to_world_boxes

__all__ = ["BLOB_HU", "blob_phantom", "write_blob_phantoms"]

logger = logging.getLogger(__name__)

AIR_HU, SOFT_TISSUE_HU, VESSEL_HU, BLOB_HU = -1000.0, 40.0, 200.0, 400.0
SPACING_MM = (2.0, 2.0, 2.0)
_MANIFEST = "blob_phantoms.json"


def blob_phantom(
    shape: Sequence[int] = (64, 64, 64),
    seed: int = 0,
    num_blobs: int | None = None,
    radius_range: Sequence[float] = (4.0, 8.0),
    num_vessels: int = 2,
    noise_hu: float = 20.0,
) -> tuple[np.ndarray, np.ndarray]:
    """
    One CT-like volume (HU) with 1 to 3 bright ellipsoidal blobs (400 HU) in a soft-tissue body, thin vessels of
    200 HU as distractors and Gaussian noise, and its label map (each blob its own component of value 1).

    Blobs never touch each other or the border, so the boxes of the label's components are the blobs' boxes.

    Args:
        shape: spatial size (x, y, z), each side at least 32.
        seed: seed of ``numpy.random.default_rng``; the same seed gives the same volume.
        num_blobs: number of blobs; None draws 1 to 3.
        radius_range: smallest and largest semi-axis of a blob, in voxels.
        num_vessels: number of distractor tubes.
        noise_hu: standard deviation of the noise.

    Returns:
        ``(image, label)``: float32 HU volume and uint8 label map of ``shape``.
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3 or min(shape) < 32:
        raise ValueError(f"blob phantom shape must be 3 sides of at least 32 voxels, got {shape}.")
    lo, hi = float(radius_range[0]), float(radius_range[1])
    if not 1.0 <= lo <= hi or 2 * hi + 4 > min(shape) / 2:
        raise ValueError(f"radius_range must be 1 <= low <= high with blobs of at most a quarter of the volume, got {radius_range}.")
    rng = np.random.default_rng(seed)
    grid = np.meshgrid(*[np.arange(n, dtype=np.float32) for n in shape], indexing="ij")
    centre = np.array([(n - 1) / 2 for n in shape], dtype=np.float32)
    body = sum(((g - c) / (0.47 * n)) ** 2 for g, c, n in zip(grid, centre, shape)) <= 1.0
    image = np.where(body, SOFT_TISSUE_HU, AIR_HU).astype(np.float32)
    label = np.zeros(shape, dtype=np.uint8)

    for _ in range(int(num_vessels)):
        a, b = rng.uniform(0.15, 0.85, 3) * shape, rng.uniform(0.15, 0.85, 3) * shape
        d = b - a
        p = np.stack([g - x for g, x in zip(grid, a)], axis=-1)
        t = np.clip(p @ d / max(float(d @ d), 1e-6), 0.0, 1.0)
        tube = np.linalg.norm(p - t[..., None] * d, axis=-1) <= rng.uniform(1.0, 1.8)
        image[tube & body] = VESSEL_HU

    count = int(rng.integers(1, 4)) if num_blobs is None else int(num_blobs)
    placed: list[tuple[np.ndarray, np.ndarray]] = []
    for _ in range(100 * max(count, 1)):
        if len(placed) == count:
            break
        radii = rng.uniform(lo, hi, 3)
        c = np.array([rng.uniform(0.25 * n, 0.75 * n) for n in shape])
        # distinct blobs at least 2 voxels apart on some axis, so that they stay distinct components
        if not all(np.any(np.abs(c - pc) > radii + pr + 2) for pc, pr in placed):
            continue
        inside = sum(((g - x) / r) ** 2 for g, x, r in zip(grid, c, radii)) <= 1.0
        image[inside] = BLOB_HU
        label[inside] = 1
        placed.append((c, radii))
    image += rng.normal(0.0, noise_hu, size=shape).astype(np.float32)
    return image, label


def write_blob_phantoms(
    out_dir: str,
    num_phantoms: int = 16,
    shape: Sequence[int] = (64, 64, 64),
    seed: int = 0,
    box_mode: str = "cccwhd",
) -> list[dict]:
    """
    Write blob phantoms as NIfTI (image and label, 2 mm voxels) and return their datalist entries with the boxes in
    world coordinates: ``{"image", "label_volume", "box", "label"}``, ``box`` in ``box_mode``, ``label`` the class
    index (0) of each box.

    Files written with the same parameters are reused; the entries are also kept in ``blob_phantoms.json``.

    Args:
        out_dir: folder of the phantoms (created).
        num_phantoms: how many.
        shape: spatial size of each.
        seed: seed of the first phantom (phantom ``i`` uses ``seed + i``).
        box_mode: mode of the boxes written.
    """
    os.makedirs(out_dir, exist_ok=True)
    parameters = {"num_phantoms": int(num_phantoms), "shape": [int(s) for s in shape], "seed": int(seed), "box_mode": box_mode}
    manifest = os.path.join(out_dir, _MANIFEST)
    if os.path.isfile(manifest):
        with open(manifest) as f:
            stored = json.load(f)
        if stored.get("parameters") == parameters and all(os.path.isfile(e["image"]) for e in stored["entries"]):
            return stored["entries"]
    affine = np.diag([*SPACING_MM, 1.0])
    entries = []
    for i in range(int(num_phantoms)):
        image, label = blob_phantom(shape, seed=int(seed) + i)
        image_path = os.path.join(out_dir, f"blob_phantom_{i:03d}.nii.gz")
        label_path = os.path.join(out_dir, f"blob_phantom_{i:03d}_label.nii.gz")
        nib.save(nib.Nifti1Image(image.astype(np.int16), affine), image_path)
        nib.save(nib.Nifti1Image(label, affine), label_path)
        boxes, classes = boxes_from_label(label, source=label_path)
        world = voxel_to_world_boxes(boxes, affine, box_mode)
        entries.append({"image": image_path, "label_volume": label_path,
                        "box": np.round(world, 3).tolist(), "label": classes.tolist()})
    with open(manifest, "w") as f:
        json.dump({"parameters": parameters, "entries": entries}, f, indent=1)
    logger.info(f"wrote {num_phantoms} blob phantoms with their boxes to {out_dir}")
    return entries
