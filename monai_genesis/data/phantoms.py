"""Synthetic CT-like phantoms, generated deterministically from a seed, so the bundles run without any data."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence

import nibabel as nib
import numpy as np

__all__ = [
    "PHANTOM_LABELS",
    "ct_phantom",
    "nodule_patch_phantom",
    "write_ct_phantoms",
    "write_nodule_patch_phantoms",
]

logger = logging.getLogger(__name__)

# label values of the segmentation phantoms
PHANTOM_LABELS = {"background": 0, "lung": 1, "nodule": 2}

AIR_HU, LUNG_HU, SOFT_TISSUE_HU, FAT_HU, VESSEL_HU, NODULE_HU, BONE_HU = -1000, -850, 40, -100, 40, 30, 700
SPACING_MM = (1.5, 1.5, 2.5)


def _grid(shape: Sequence[int]) -> tuple[np.ndarray, ...]:
    """Voxel coordinates normalised to [-1, 1] along each axis."""
    return tuple(np.linspace(-1.0, 1.0, int(n), dtype=np.float32) for n in shape)


def _ellipsoid(coords, center, radii) -> np.ndarray:
    x, y, z = coords
    return (
        ((x[:, None, None] - center[0]) / radii[0]) ** 2
        + ((y[None, :, None] - center[1]) / radii[1]) ** 2
        + ((z[None, None, :] - center[2]) / radii[2]) ** 2
    ) <= 1.0


def _tube(coords, start, end, radius) -> np.ndarray:
    """Voxels within `radius` (normalised units) of the segment from `start` to `end`."""
    x, y, z = np.meshgrid(*coords, indexing="ij")
    p = np.stack([x, y, z], axis=-1) - np.asarray(start, dtype=np.float32)
    d = np.asarray(end, dtype=np.float32) - np.asarray(start, dtype=np.float32)
    t = np.clip((p @ d) / max(float(d @ d), 1e-8), 0.0, 1.0)
    return np.linalg.norm(p - t[..., None] * d, axis=-1) <= radius


def _sphere_mask(shape, center_vox, radius_vox) -> np.ndarray:
    idx = np.ogrid[tuple(slice(0, int(n)) for n in shape)]
    dist2 = sum((i - c) ** 2 for i, c in zip(idx, center_vox))
    return dist2 <= radius_vox**2


def _random_points_in(mask: np.ndarray, rng: np.random.Generator, count: int) -> np.ndarray:
    candidates = np.argwhere(mask)
    if len(candidates) == 0:
        return np.zeros((0, mask.ndim), dtype=int)
    return candidates[rng.choice(len(candidates), size=min(count, len(candidates)), replace=False)]


def ct_phantom(
    shape: Sequence[int] = (96, 96, 64), seed: int = 0, num_nodules: int | None = None, noise_hu: float = 20.0
) -> tuple[np.ndarray, np.ndarray]:
    """Generate one chest-CT-like volume in Hounsfield units and its label map.

    The volume (axes x, y, z) holds a body ellipsoid of soft tissue under a fat layer, two lungs with
    vessels running through them, spherical nodules inside the lungs, a spine and a sternum of bone,
    and Gaussian noise. Every size and position is drawn from ``numpy.random.default_rng(seed)``.

    Args:
        shape: spatial size (x, y, z) in voxels; each side at least 16.
        seed: seed of the generator; the same seed gives the same volume.
        num_nodules: number of nodules; ``None`` draws 1 to 4.
        noise_hu: standard deviation of the additive Gaussian noise in HU.

    Returns:
        ``(image, label)``: float32 HU array of ``shape`` and uint8 label map with the values of
        ``PHANTOM_LABELS`` (0 background/body, 1 lung, 2 nodule).
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3 or min(shape) < 16:
        raise ValueError(f"phantom shape must be 3 sides of at least 16 voxels, got {shape}.")
    rng = np.random.default_rng(seed)
    coords = _grid(shape)
    image = np.full(shape, AIR_HU, dtype=np.float32)
    label = np.zeros(shape, dtype=np.uint8)

    body_radii = (rng.uniform(0.82, 0.92), rng.uniform(0.62, 0.75), 1.6)
    body = _ellipsoid(coords, (0.0, 0.0, 0.0), body_radii)
    image[body] = FAT_HU
    inner = _ellipsoid(coords, (0.0, 0.0, 0.0), (body_radii[0] - 0.07, body_radii[1] - 0.07, 1.6))
    image[inner] = SOFT_TISSUE_HU

    lungs = np.zeros(shape, dtype=bool)
    for side in (-1.0, 1.0):
        center = (side * rng.uniform(0.36, 0.42), rng.uniform(-0.1, 0.0), rng.uniform(-0.1, 0.1))
        radii = (rng.uniform(0.26, 0.32), rng.uniform(0.4, 0.48), rng.uniform(0.75, 0.9))
        lungs |= _ellipsoid(coords, center, radii)
    lungs &= inner
    image[lungs] = LUNG_HU
    label[lungs] = PHANTOM_LABELS["lung"]

    # vessels branch from the hilum (near the lung's medial side) outwards
    for _ in range(int(rng.integers(6, 11))):
        side = rng.choice([-1.0, 1.0])
        start = (side * 0.15, rng.uniform(-0.15, 0.05), rng.uniform(-0.3, 0.3))
        end = (side * rng.uniform(0.45, 0.7), rng.uniform(-0.5, 0.4), rng.uniform(-0.8, 0.8))
        vessel = _tube(coords, start, end, rng.uniform(0.02, 0.045)) & lungs
        image[vessel] = VESSEL_HU + rng.normal(0.0, 10.0)

    # RAS voxel axes: the spine lies posterior (-y), the sternum anterior (+y)
    spine = _tube(coords, (0.0, -body_radii[1] + 0.2, -1.0), (0.0, -body_radii[1] + 0.2, 1.0), 0.11)
    sternum = _tube(coords, (0.0, body_radii[1] - 0.1, -1.0), (0.0, body_radii[1] - 0.1, 1.0), 0.05)
    image[(spine | sternum) & body] = BONE_HU

    count = int(rng.integers(1, 5)) if num_nodules is None else int(num_nodules)
    voxel_scale = min(shape) / 64.0
    for center in _random_points_in(lungs, rng, count):
        radius = rng.uniform(2.0, 5.0) * voxel_scale
        nodule = _sphere_mask(shape, center, radius) & lungs
        image[nodule] = NODULE_HU
        label[nodule] = PHANTOM_LABELS["nodule"]

    image += rng.normal(0.0, noise_hu, size=shape).astype(np.float32)
    return np.clip(image, -1024.0, 3071.0), label


def nodule_patch_phantom(
    shape: Sequence[int] = (32, 32, 32), seed: int = 0, has_nodule: bool = True, noise_hu: float = 20.0
) -> np.ndarray:
    """Generate a lung patch in HU with vessels, with or without a spherical nodule near its centre.

    Args:
        shape: spatial size (x, y, z) in voxels; each side at least 8.
        seed: seed of the generator; the same seed gives the same patch.
        has_nodule: whether to place a nodule (radius 12–25% of the smallest side) near the centre.
        noise_hu: standard deviation of the additive Gaussian noise in HU.

    Returns:
        float32 HU array of ``shape``.
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3 or min(shape) < 8:
        raise ValueError(f"patch shape must be 3 sides of at least 8 voxels, got {shape}.")
    rng = np.random.default_rng(seed)
    coords = _grid(shape)
    image = np.full(shape, LUNG_HU, dtype=np.float32)
    # vessels are tubes of the same density as nodules, so only shape tells them apart
    for _ in range(int(rng.integers(2, 5))):
        start, end = rng.uniform(-1.0, 1.0, size=3), rng.uniform(-1.0, 1.0, size=3)
        image[_tube(coords, start, end, rng.uniform(0.04, 0.08))] = VESSEL_HU
    if has_nodule:
        center = [n / 2 + rng.uniform(-0.15, 0.15) * n for n in shape]
        radius = rng.uniform(0.12, 0.25) * min(shape)
        image[_sphere_mask(shape, center, radius)] = NODULE_HU
    image += rng.normal(0.0, noise_hu, size=shape).astype(np.float32)
    return image


def _write_nifti(array: np.ndarray, path: str, dtype) -> None:
    nib.save(nib.Nifti1Image(array.astype(dtype), np.diag([*SPACING_MM, 1.0])), path)


def _phantoms_up_to_date(out_dir: str, manifest: dict) -> bool:
    """Whether ``out_dir`` already holds phantoms written with ``manifest``'s parameters."""
    manifest_path = os.path.join(out_dir, "phantoms.json")
    if not os.path.isfile(manifest_path):
        return False
    with open(manifest_path) as f:
        try:
            stored = json.load(f)
        except json.JSONDecodeError:
            return False
    return stored.get("parameters") == manifest and all(
        os.path.isfile(os.path.join(out_dir, name)) for name in stored.get("files", [])
    )


def _check_phantom_dir(out_dir: str) -> None:
    """Refuse to write phantoms into a folder that holds other files than phantoms written earlier."""
    if not os.path.isdir(out_dir):
        return
    foreign = [
        name
        for name in os.listdir(out_dir)
        if not (name.startswith(("phantom_", "nodule_patch_")) and name.endswith(".nii.gz")) and name != "phantoms.json"
    ]
    if foreign:
        raise ValueError(
            f"phantom folder {out_dir} holds other files ({', '.join(sorted(foreign)[:3])}, ...); "
            "point it (the bundle's output_dir) at a folder of its own."
        )


def write_ct_phantoms(
    out_dir: str, num_volumes: int = 8, shape: Sequence[int] = (96, 96, 64), seed: int = 0, with_labels: bool = True
) -> list[dict[str, str]]:
    """Write ``num_volumes`` CT phantoms (and their label maps) as NIfTI files into ``out_dir``.

    Files written earlier with the same parameters are reused, so a bundle can call this on every run.

    Args:
        out_dir: folder for the files; created if missing. It must hold nothing but phantoms.
        num_volumes: number of volumes; volume ``i`` is generated from seed ``seed + i``.
        shape: spatial size of each volume (x, y, z).
        seed: seed of the first volume.
        with_labels: also write ``phantom_XXX_label.nii.gz`` label maps (values of ``PHANTOM_LABELS``).

    Returns:
        a datalist: one ``{"image": path}`` (plus ``"label": path``) per volume, in order.
    """
    if num_volumes < 1:
        raise ValueError(f"num_volumes must be at least 1, got {num_volumes}.")
    out_dir = os.path.abspath(out_dir)
    manifest = {
        "kind": "ct",
        "num_volumes": int(num_volumes),
        "shape": [int(s) for s in shape],
        "seed": int(seed),
        "with_labels": bool(with_labels),
    }
    items = []
    for i in range(num_volumes):
        item = {"image": os.path.join(out_dir, f"phantom_{i:03d}.nii.gz")}
        if with_labels:
            item["label"] = os.path.join(out_dir, f"phantom_{i:03d}_label.nii.gz")
        items.append(item)
    if _phantoms_up_to_date(out_dir, manifest):
        return items
    _check_phantom_dir(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    for i, item in enumerate(items):
        image, label = ct_phantom(shape, seed=seed + i)
        _write_nifti(image, item["image"], np.int16)
        if with_labels:
            _write_nifti(label, item["label"], np.uint8)
    _write_manifest(out_dir, manifest, items)
    logger.info(f"wrote {num_volumes} synthetic CT phantoms of {tuple(shape)} voxels to {out_dir}")
    return items


def write_nodule_patch_phantoms(
    out_dir: str, num_volumes: int = 16, shape: Sequence[int] = (32, 32, 32), seed: int = 0
) -> list[dict]:
    """Write ``num_volumes`` lung patches as NIfTI into ``out_dir``, alternately with and without a nodule.

    Args:
        out_dir: folder for the files; created if missing. It must hold nothing but phantoms.
        num_volumes: number of patches; patch ``i`` is generated from seed ``seed + i`` and has a
            nodule when ``i`` is odd.
        shape: spatial size of each patch (x, y, z).
        seed: seed of the first patch.

    Returns:
        a datalist: one ``{"image": path, "label": 0 or 1}`` per patch, in order.
    """
    if num_volumes < 2:
        raise ValueError(f"num_volumes must be at least 2 (one per class), got {num_volumes}.")
    out_dir = os.path.abspath(out_dir)
    manifest = {"kind": "nodule_patch", "num_volumes": int(num_volumes), "shape": [int(s) for s in shape], "seed": int(seed)}
    items = [
        {"image": os.path.join(out_dir, f"nodule_patch_{i:03d}.nii.gz"), "label": int(i % 2)} for i in range(num_volumes)
    ]
    if _phantoms_up_to_date(out_dir, manifest):
        return items
    _check_phantom_dir(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    for i, item in enumerate(items):
        _write_nifti(nodule_patch_phantom(shape, seed=seed + i, has_nodule=bool(item["label"])), item["image"], np.int16)
    _write_manifest(out_dir, manifest, items)
    logger.info(f"wrote {num_volumes} synthetic lung patches of {tuple(shape)} voxels to {out_dir}")
    return items


def _write_manifest(out_dir: str, manifest: dict, items: list[dict]) -> None:
    files = [os.path.basename(v) for item in items for v in item.values() if isinstance(v, str)]
    with open(os.path.join(out_dir, "phantoms.json"), "w") as f:
        json.dump({"parameters": manifest, "files": files}, f, indent=2)
