"""PNG grids of middle slices: the corruptions of a volume (``preview``) and restorations during training."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from monai.transforms import Compose, EnsureChannelFirst, LoadImage, ScaleIntensityRange

__all__ = ["preview", "save_restoration_grid", "middle_slices"]

logger = logging.getLogger(__name__)

_LABEL_HEIGHT = 14


def middle_slices(volume: torch.Tensor | np.ndarray) -> np.ndarray:
    """The middle axial, coronal and sagittal slices of a ``(C, H, W, D)`` volume's first channel, side by side.

    A 2D image ``(C, H, W)`` gives its first channel.
    """
    v = torch.as_tensor(volume).detach().float().cpu().numpy()[0]
    if v.ndim == 2:
        return v
    h, w, d = v.shape
    views = [v[:, :, d // 2], v[:, w // 2, :], v[h // 2, :, :]]
    height = max(view.shape[0] for view in views)
    padded = [np.pad(view, ((0, height - view.shape[0]), (0, 1)), constant_values=np.nan) for view in views]
    return np.concatenate(padded, axis=1)


def _tile(panel: np.ndarray, low: float, high: float, scale: int) -> Image.Image:
    gray = np.clip((np.nan_to_num(panel, nan=low) - low) / max(high - low, 1e-12), 0, 1)
    # radiological display: rows of the array are image columns
    img = Image.fromarray((gray.T[::-1] * 255).astype(np.uint8), mode="L")
    return img.resize((img.width * scale, img.height * scale), Image.NEAREST)


def _grid(rows: Sequence[Sequence[np.ndarray]], titles: Sequence[str], value_range, scale: int) -> Image.Image:
    tiles = [[_tile(p, *value_range, scale) for p in row] for row in rows]
    tw = max(t.width for row in tiles for t in row)
    th = max(t.height for row in tiles for t in row)
    canvas = Image.new("L", (tw * len(titles) + 2 * (len(titles) - 1), _LABEL_HEIGHT + (th + 2) * len(rows)), 0)
    draw = ImageDraw.Draw(canvas)
    for c, title in enumerate(titles):
        draw.text((c * (tw + 2) + 2, 1), title, fill=255)
        for r, row in enumerate(tiles):
            canvas.paste(row[c], (c * (tw + 2), _LABEL_HEIGHT + r * (th + 2)))
    return canvas


def _save(image: Image.Image, path: str | Path, overwrite: bool) -> Path:
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; choose another --out or pass --overwrite true.")
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path


def save_restoration_grid(
    images: Mapping[str, torch.Tensor],
    path: str | Path,
    value_range: Sequence[float] = (0.0, 1.0),
    max_rows: int = 4,
    scale: int = 2,
    overwrite: bool = True,
) -> Path:
    """Write a PNG grid of middle slices: one column per named batch, one row per sample.

    Args:
        images: named batches ``(B, C, H, W[, D])`` of the same size, e.g. corrupted / restored / original.
        path: the PNG to write.
        value_range: intensities shown from black to white.
        max_rows: at most this many samples.
        scale: pixel magnification.
        overwrite: replace an existing file (a training run rewrites its own picture).
    """
    names = list(images)
    batches = [torch.as_tensor(images[k]).detach().float().cpu() for k in names]
    rows = [[middle_slices(b[i]) for b in batches] for i in range(min(max_rows, len(batches[0])))]
    return _save(_grid(rows, names, value_range, scale), path, overwrite)


def preview(
    image: str,
    out: str = "corruptions.png",
    window: Sequence[float] | None = None,
    pipelines: int = 4,
    seed: int = 0,
    scale: int = 3,
    overwrite: bool = False,
) -> str:
    """Write a PNG grid of the Genesis corruptions of one volume: the original, each corruption alone, and several
    full pipelines, on the middle slices of a 64×64×32 cube (or the whole image when smaller).

    Args:
        image: a NIfTI, NRRD or MHA file, or a DICOM series folder (read with MONAI's ``LoadImage``).
        out: the PNG to write.
        window: intensities mapped to [0, 1], e.g. ``-1000 1000`` for CT; default: the 0.5th–99.5th percentiles.
        pipelines: number of full pipelines shown.
        seed: random seed.
        scale: pixel magnification.
        overwrite: replace ``out`` if it exists.
    """
    from monai_genesis.transforms import (
        RandGenesisCorruption,
        RandInpaint,
        RandLocalPixelShuffle,
        RandNonlinearIntensity,
        RandOutpaint,
    )

    path = Path(image)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist; give a NIfTI, NRRD or MHA file or a DICOM folder.")
    volume = Compose([LoadImage(image_only=True), EnsureChannelFirst()])(str(path))
    volume = volume.as_tensor().float()[:1]
    if window is None:
        low, high = np.percentile(volume.numpy(), [0.5, 99.5])
    else:
        low, high = (float(w) for w in window)
    volume = ScaleIntensityRange(low, high, 0.0, 1.0, clip=True)(volume)
    cube = _center_cube(volume, (64, 64, 32))
    steps = {
        "original": lambda x: x,
        "local shuffle": RandLocalPixelShuffle(prob=1.0),
        "non-linear": RandNonlinearIntensity(prob=1.0),
        "in-painting": RandInpaint(),
        "out-painting": RandOutpaint(),
    }
    pipeline = RandGenesisCorruption()
    for i, step in enumerate(list(steps.values()) + [pipeline]):
        if hasattr(step, "set_random_state"):
            step.set_random_state(seed + i)
    columns = {name: step(cube) for name, step in steps.items()}
    for i in range(pipelines):
        columns[f"genesis #{i + 1}"] = pipeline(cube)[0]
    rows = [[middle_slices(x) for x in columns.values()]]
    written = _save(_grid(rows, list(columns), (0.0, 1.0), scale), out, overwrite)
    logger.info("wrote %s", written)
    return str(written)


def _center_cube(volume: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """The central crop of ``size`` (spatial sides smaller than ``size`` are kept whole)."""
    slices = [slice(None)]
    for side, want in zip(volume.shape[1:], size):
        start = max(0, (side - want) // 2)
        slices.append(slice(start, start + min(side, want)))
    return volume[tuple(slices)].contiguous()
