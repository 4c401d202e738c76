"""Pictures a person can judge: the Genesis corruptions of a volume (``preview``) and what a network restores.

Every picture is drawn by one renderer, :py:func:`render_grid`, from :py:class:`View` panels. A view is a slice of
a volume reoriented to RAS and shown in the radiological convention: the patient's right on the viewer's left,
anterior (axial) or superior (coronal, sagittal) at the top, and anterior on the left of a sagittal view. Pixels are
square in millimetres (the voxel spacing sets each panel's aspect), small panels are magnified by nearest
neighbour, and the orientation letters sit at the edges of each panel.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from monai.data import MetaTensor
from monai.data.utils import affine_to_spacing
from monai.inferers import SlidingWindowInferer
from monai.transforms import Compose, EnsureChannelFirst, LoadImage, Orientation, ScaleIntensityRange

from monai_genesis.networks import unwrap_parallel

__all__ = [
    "CONVENTION",
    "VIEWS",
    "View",
    "available_path",
    "preview",
    "render_grid",
    "restoration_grid",
    "restore_slice",
    "save_png",
    "save_restoration_grid",
    "slice_restoration_picture",
    "slice_view",
    "to_ras",
]

logger = logging.getLogger(__name__)

VIEWS = ("axial", "coronal", "sagittal")
CONVENTION = "radiological view: patient's right on the left"
# letters at the (top, bottom, left, right) edges of each view in the radiological convention
_EDGES = {"axial": ("A", "P", "R", "L"), "coronal": ("S", "I", "R", "L"), "sagittal": ("S", "I", "A", "P")}
# the RAS axis cut by each view
_CUT_AXIS = {"axial": 2, "coronal": 1, "sagittal": 0}
_FONT_SIZE = 14
_GAP = 4
_BACKGROUND = (24, 24, 24)
_TEXT = (235, 235, 235)
_LETTERS = (255, 210, 0)
_BOX = (255, 64, 64)


@dataclass(frozen=True)
class View:
    """A 2D panel ready to display: ``pixels[0, 0]`` is the top-left corner on the screen.

    Args:
        pixels: ``(rows, columns)`` intensities.
        spacing: millimetres per pixel along the rows (height) and the columns (width).
        edges: letters at the top, bottom, left and right edges (empty strings for none).
        box: a rectangle to outline, ``(top, left, bottom, right)`` in pixels of ``pixels`` (bottom, right
            exclusive); None for none.
    """

    pixels: np.ndarray
    spacing: tuple[float, float] = (1.0, 1.0)
    edges: tuple[str, str, str, str] = ("", "", "", "")
    box: tuple[int, int, int, int] | None = None


def to_ras(volume: torch.Tensor | np.ndarray) -> tuple[torch.Tensor, tuple[float, ...]]:
    """Reorient a channel-first volume ``(C, H, W, D)`` to RAS with ``monai.transforms.Orientation``.

    Args:
        volume: a ``MetaTensor`` (its affine gives the orientation and spacing) or a plain array or tensor, which
            is taken as RAS already with 1 mm voxels.

    Returns:
        the plain float tensor ``(C, X, Y, Z)``, X running to the right, Y to anterior, Z to superior, and its
        voxel spacing in millimetres.
    """
    if not isinstance(volume, MetaTensor):
        tensor = torch.as_tensor(np.asarray(volume) if isinstance(volume, np.ndarray) else volume)
        if tensor.ndim != 4:
            raise ValueError(f"expected a channel-first volume (C, H, W, D), got shape {tuple(tensor.shape)}.")
        return tensor.detach().float().cpu(), (1.0, 1.0, 1.0)
    if volume.ndim != 4:
        raise ValueError(
            f"expected a channel-first volume (C, H, W, D), got shape {tuple(volume.shape)}; add the channel axis "
            "with `monai.transforms.EnsureChannelFirst` or give a 3D image."
        )
    oriented = Orientation(axcodes="RAS", labels=(("L", "R"), ("P", "A"), ("I", "S")))(volume.detach().cpu())
    spacing = tuple(float(s) for s in affine_to_spacing(oriented.affine, r=3))
    return oriented.as_tensor().float(), spacing


def slice_view(
    volume: torch.Tensor | np.ndarray,
    view: str = "axial",
    index: int | None = None,
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    channel: int = 0,
) -> View:
    """One slice of a RAS volume ``(C, X, Y, Z)`` as a :py:class:`View` in the radiological convention.

    Args:
        volume: a channel-first volume in RAS voxel order (see :py:func:`to_ras`).
        view: ``"axial"``, ``"coronal"`` or ``"sagittal"``.
        index: the slice along the cut axis; None for the middle one.
        spacing: the voxel spacing in millimetres along X, Y, Z.
        channel: the channel shown.
    """
    if view not in _CUT_AXIS:
        raise ValueError(f"view must be one of {VIEWS}, got {view!r}.")
    v = torch.as_tensor(volume).detach().float().cpu()[channel].numpy()
    axis = _CUT_AXIS[view]
    index = v.shape[axis] // 2 if index is None else int(index)
    if not 0 <= index < v.shape[axis]:
        raise ValueError(f"slice index {index} is outside the {v.shape[axis]} {view} slices of the volume.")
    cut = np.take(v, index, axis=axis)  # (first kept axis, second kept axis), both running to R/A/S
    kept = [s for a, s in enumerate(spacing) if a != axis]
    # rows run from the second kept axis' positive end down, columns from the first kept axis' positive end
    return View(np.ascontiguousarray(cut[::-1, ::-1].T), (float(kept[1]), float(kept[0])), _EDGES[view])


def _font(size: int = _FONT_SIZE):
    return ImageFont.load_default(size=size)


def _gray(pixels: np.ndarray, low: float, high: float) -> np.ndarray:
    if not high > low:
        raise ValueError(f"the intensity window must have low < high, got ({low}, {high}).")
    scaled = np.clip((np.asarray(pixels, dtype=np.float64) - low) / (high - low), 0.0, 1.0)
    return np.rint(np.nan_to_num(scaled, nan=0.0) * 255).astype(np.uint8)


def _panel_size(view: View, px_per_mm: float) -> tuple[int, int]:
    rows, cols = view.pixels.shape
    return max(1, round(cols * view.spacing[1] * px_per_mm)), max(1, round(rows * view.spacing[0] * px_per_mm))


def _column_scales(rows: Sequence[Sequence[View | None]], min_size: int, max_size: int) -> list[float]:
    """Pixels per millimetre of each column: the finest voxel gets whole pixels, the widest panel at least
    ``min_size`` pixels (by an integer nearest-neighbour magnification) and no side more than ``max_size``."""
    scales = []
    for column in zip(*rows):
        views = [v for v in column if v is not None]
        if not views:
            scales.append(1.0)
            continue
        base = 1.0 / min(min(v.spacing) for v in views)
        widest = max(_panel_size(v, base)[0] for v in views)
        largest = max(max(_panel_size(v, base)) for v in views)
        scale = base * max(1, math.ceil(min_size / widest))
        if largest * scale / base > max_size:
            scale = base * max_size / largest
        scales.append(scale)
    return scales


def _letters(draw: ImageDraw.ImageDraw, edges: Sequence[str], x: int, y: int, w: int, h: int, font) -> None:
    top, bottom, left, right = edges
    spots = {
        top: (x + w / 2, y + 2, "mt"),
        bottom: (x + w / 2, y + h - 2, "mb"),
        left: (x + 3, y + h / 2, "lm"),
        right: (x + w - 3, y + h / 2, "rm"),
    }
    for letter, (px, py, anchor) in spots.items():
        if letter:
            draw.text((px, py), letter, fill=_LETTERS, font=font, anchor=anchor, stroke_width=2, stroke_fill=(0, 0, 0))


def render_grid(
    rows: Sequence[Sequence[View | np.ndarray | None]],
    titles: Sequence[str] | None = None,
    row_labels: Sequence[str] | None = None,
    windows: Sequence[Sequence[float]] | Sequence[float] = (0.0, 1.0),
    header: str | Sequence[str] | None = None,
    min_size: int = 256,
    max_size: int = 512,
) -> Image.Image:
    """Draw a grid of panels with a title over each column, a label before each row and a header line.

    Every column has one scale in pixels per millimetre, so its views keep their true relative sizes and square
    pixels; small panels are magnified by nearest neighbour so that a column is at least ``min_size`` pixels wide.

    Args:
        rows: rows of :py:class:`View` (a plain 2D array is a view with 1 mm pixels and no letters); None leaves
            a cell empty.
        titles: one title per column, or None.
        row_labels: one label per row, or None.
        windows: the intensities shown black and white: one ``(low, high)`` for every row, or one per row, so a
            row's panels are compared on the same scale.
        header: a line (or lines) of text above the grid, e.g. the orientation convention.
        min_size: pixels of the width of a column's widest panel, at least (whole multiples of the voxels).
        max_size: pixels of any panel's side, at most (larger panels are shrunk by area averaging).

    Returns:
        an RGB ``PIL.Image``.
    """
    grid = [[View(np.asarray(p, dtype=np.float32)) if isinstance(p, np.ndarray) else p for p in row] for row in rows]
    ncols = max((len(row) for row in grid), default=0)
    if not grid or ncols == 0:
        raise ValueError("render_grid needs at least one panel.")
    grid = [list(row) + [None] * (ncols - len(row)) for row in grid]
    if titles is not None and len(titles) != ncols:
        raise ValueError(f"got {len(titles)} titles for {ncols} columns.")
    if row_labels is not None and len(row_labels) != len(grid):
        raise ValueError(f"got {len(row_labels)} row labels for {len(grid)} rows.")
    windows = [tuple(windows)] * len(grid) if np.ndim(windows) == 1 else [tuple(w) for w in windows]
    if len(windows) != len(grid) or any(len(w) != 2 for w in windows):
        raise ValueError(f"windows must be one (low, high) pair or one per row ({len(grid)}), got {windows}.")
    font = _font()
    header = [header] if isinstance(header, str) else list(header or [])
    scales = _column_scales(grid, min_size, max_size)
    sizes = [[_panel_size(v, s) if v is not None else (0, 0) for v, s in zip(row, scales)] for row in grid]
    col_w = [max(sizes[r][c][0] for r in range(len(grid))) for c in range(ncols)]
    if titles is not None:
        col_w = [max(w, round(font.getlength(t)) + _GAP) for w, t in zip(col_w, titles)]
    row_h = [max(h for _, h in row) for row in sizes]
    line = _FONT_SIZE + 6
    label_w = 0 if row_labels is None else max(round(font.getlength(t)) for t in row_labels) + 2 * _GAP
    top = line * len(header) + (line if titles is not None else 0) + _GAP
    width = max([label_w + sum(col_w) + _GAP * (ncols + 1)] + [round(font.getlength(t)) + 2 * _GAP for t in header])
    canvas = Image.new("RGB", (width, top + sum(row_h) + _GAP * len(grid)), _BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    for i, text in enumerate(header):
        draw.text((_GAP, 3 + i * line), text, fill=_TEXT, font=font)
    xs = np.cumsum([label_w + _GAP] + [w + _GAP for w in col_w])[:-1]
    for c, title in enumerate(titles or []):
        draw.text((xs[c] + col_w[c] / 2, top - _GAP - 4), title, fill=_TEXT, font=font, anchor="ms")
    y = top
    for r, row in enumerate(grid):
        if row_labels is not None:
            draw.text((_GAP, y + row_h[r] / 2), row_labels[r], fill=_TEXT, font=font, anchor="lm")
        for c, view in enumerate(row):
            if view is None:
                continue
            w, h = sizes[r][c]
            tile = Image.fromarray(_gray(view.pixels, *windows[r]), mode="L")
            shrink = w < tile.width or h < tile.height
            tile = tile.resize((w, h), Image.BOX if shrink else Image.NEAREST).convert("RGB")
            x0, y0 = int(xs[c] + (col_w[c] - w) // 2), int(y + (row_h[r] - h) // 2)
            canvas.paste(tile, (x0, y0))
            if view.box is not None:
                fy, fx = h / view.pixels.shape[0], w / view.pixels.shape[1]
                b0, b1, b2, b3 = view.box
                draw.rectangle((x0 + b1 * fx, y0 + b0 * fy, x0 + b3 * fx - 1, y0 + b2 * fy - 1), outline=_BOX, width=2)
            _letters(draw, view.edges, x0, y0, w, h, font)
        y += row_h[r] + _GAP
    return canvas


def available_path(path: str | Path) -> Path:
    """``path`` itself when it does not exist yet, else the first free ``<stem>_<n><suffix>`` beside it.

    Args:
        path: the file wanted.
    """
    path = Path(path)
    n = 1
    candidate = path
    while candidate.exists():
        candidate = path.with_name(f"{path.stem}_{n}{path.suffix}")
        n += 1
    return candidate


def save_png(image: Image.Image, path: str | Path, overwrite: bool = False) -> Path:
    """Write ``image`` to ``path`` (its folder is created).

    Args:
        image: the picture.
        path: the PNG to write.
        overwrite: replace an existing file; when False an existing file is a ``FileExistsError``.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; choose another --out or pass --overwrite true.")
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path


def restoration_grid(
    images: Mapping[str, torch.Tensor],
    value_range: Sequence[float] = (0.0, 1.0),
    max_rows: int = 4,
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    min_size: int = 128,
) -> Image.Image:
    """The middle axial slice of each sample of named batches: one column per name, one row per sample.

    Args:
        images: named batches ``(B, C, H, W, D)`` of the same size in RAS voxel order (the bundles' cubes), e.g.
            corrupted / restored / original.
        value_range: intensities shown from black to white.
        max_rows: at most this many samples.
        spacing: the voxel spacing in millimetres, which sets the aspect.
        min_size: pixels of a panel's width, at least.
    """
    names = list(images)
    batches = [torch.as_tensor(images[k]).detach().float().cpu() for k in names]
    if any(b.ndim != 5 for b in batches):
        shapes = {k: tuple(b.shape) for k, b in zip(names, batches)}
        raise ValueError(f"expected batches of volumes (B, C, H, W, D), got {shapes}.")
    count = min(max_rows, *(len(b) for b in batches))
    rows = [[slice_view(b[i], "axial", spacing=spacing) for b in batches] for i in range(count)]
    header = f"middle axial slice of each cube, {CONVENTION}"
    return render_grid(rows, names, [f"cube {i + 1}" for i in range(count)], value_range, header, min_size)


def save_restoration_grid(
    images: Mapping[str, torch.Tensor],
    path: str | Path,
    value_range: Sequence[float] = (0.0, 1.0),
    max_rows: int = 4,
    overwrite: bool = True,
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
) -> Path:
    """Write :py:func:`restoration_grid` of named batches to a PNG.

    Args:
        images: named batches ``(B, C, H, W, D)`` of the same size, e.g. corrupted / restored / original.
        path: the PNG to write.
        value_range: intensities shown from black to white.
        max_rows: at most this many samples.
        overwrite: replace an existing file (a training run rewrites its own picture).
        spacing: the voxel spacing in millimetres, which sets the aspect.
    """
    return save_png(restoration_grid(images, value_range, max_rows, spacing), path, overwrite)


def _corrupt_cubes(corruption: Callable, cubes: torch.Tensor) -> torch.Tensor:
    """Apply a corruption to a batch of cubes: a Genesis corruption, a block mask or a plain callable."""
    if hasattr(corruption, "corrupt_batch"):
        flip = getattr(corruption, "flip", None)
        if flip is not None and flip.flip_rate > 0:
            raise ValueError(
                f"the corruption flips cubes (flip_rate={flip.flip_rate}), which would scramble the slice put "
                "together from them; pass RandGenesisCorruption(flip_rate=0.0, ...)."
            )
        out = corruption.corrupt_batch(cubes)
    elif hasattr(corruption, "mask_batch"):
        out = corruption.mask_batch(cubes)
    else:
        out = corruption(cubes)
    out = out[0] if isinstance(out, (tuple, list)) else out
    if tuple(out.shape) != tuple(cubes.shape):
        raise ValueError(f"the corruption turned cubes of shape {tuple(cubes.shape)} into {tuple(out.shape)}.")
    return out


def restore_slice(
    network: torch.nn.Module,
    volume: torch.Tensor | np.ndarray,
    cube_size: Sequence[int],
    corruption: Callable,
    sw_batch_size: int = 4,
    overlap: float = 0.0,
    max_windows: int | None = 36,
) -> dict[str, View]:
    """Corrupt and restore the middle axial slice of a volume, cube by cube, through a sliding window.

    The slab of ``cube_size[2]`` slices around the middle axial slice is cut into cubes of ``cube_size`` (the
    volume is reoriented to RAS and padded with its minimum to whole cubes), each cube is corrupted as in
    training, and the corrupted slab is restored by ``monai.inferers.SlidingWindowInferer`` with windows of the
    cube size. With ``overlap=0`` every window is one corrupted cube, as the network saw in training.

    Args:
        network: the restoring network (a ``DistributedDataParallel`` wrapper is unwrapped); it runs in eval
            mode without gradients and is put back in its mode.
        volume: a channel-first volume ``(C, H, W, D)``, intensities as in training; a ``MetaTensor``'s affine
            gives its orientation and spacing.
        cube_size: the training cube size (voxels), three ints.
        corruption: applied to a batch of cubes ``(N, C, *cube_size)``: an object with ``corrupt_batch`` (e.g.
            ``RandGenesisCorruption(flip_rate=0.0)``) or ``mask_batch`` (``RandBlockMask``), or a callable; the
            first element of a returned tuple is taken as the corrupted batch.
        sw_batch_size: windows per forward pass.
        overlap: window overlap of the sliding window.
        max_windows: at most this many cubes, which bounds the time taken: a larger slice is cropped to its
            centre; None for the whole slice.

    Returns:
        ``{"original": View, "corrupted": View, "restored": View}``, the axial slice of each.
    """
    ras, spacing = to_ras(volume)
    return _restore_ras(network, ras, spacing, cube_size, corruption, sw_batch_size, overlap, max_windows)[0]


def _window_grid(sides: Sequence[int], cube: Sequence[int], max_windows: int | None) -> list[int]:
    """Cubes along X and Y to cover the slice, the larger count reduced until at most ``max_windows`` remain."""
    grid = [-(-n // c) for n, c in zip(sides, cube)]
    if max_windows is not None:
        if int(max_windows) < 1:
            raise ValueError(f"max_windows must be a positive number of cubes or None, got {max_windows}.")
        while grid[0] * grid[1] > int(max_windows):
            grid[int(grid[1] > grid[0])] -= 1
    return grid


def _restore_ras(network, ras, spacing, cube_size, corruption, sw_batch_size, overlap, max_windows):
    """:py:func:`restore_slice` of a RAS volume; also returns the ``(X, Y)`` voxels of the slice shown."""
    cube = tuple(int(s) for s in cube_size)
    if len(cube) != 3 or min(cube) < 1:
        raise ValueError(f"cube_size must be three positive ints (the training cube), got {cube_size!r}.")
    c, nx, ny, nz = ras.shape
    grid = _window_grid((nx, ny), cube, max_windows)
    extent = [min(n, g * s) for n, g, s in zip((nx, ny), grid, cube)]
    x0, y0 = ((n - e) // 2 for n, e in zip((nx, ny), extent))
    middle = nz // 2
    z0 = min(max(0, middle - cube[2] // 2), max(0, nz - cube[2]))
    slab = ras[:, x0 : x0 + extent[0], y0 : y0 + extent[1], z0 : z0 + cube[2]]
    pad = [0, cube[2] - slab.shape[-1], 0, grid[1] * cube[1] - extent[1], 0, grid[0] * cube[0] - extent[0]]
    slab = torch.nn.functional.pad(slab, pad, value=float(slab.min()))
    # (C, gx*cx, gy*cy, cz) -> (gx*gy, C, cx, cy, cz): one training cube per item
    tiles = slab.reshape(c, grid[0], cube[0], grid[1], cube[1], cube[2]).permute(1, 3, 0, 2, 4, 5)
    corrupted = _corrupt_cubes(corruption, tiles.reshape(-1, c, *cube))
    corrupted = corrupted.reshape(grid[0], grid[1], c, *cube).permute(2, 0, 3, 1, 4, 5).reshape(slab.shape)
    net = unwrap_parallel(network)
    device = next(net.parameters()).device
    training = net.training
    net.eval()
    try:
        with torch.no_grad():
            inferer = SlidingWindowInferer(cube, sw_batch_size=sw_batch_size, overlap=overlap, mode="constant")
            restored = inferer(corrupted[None].to(device), net)[0].float().cpu()
    finally:
        net.train(training)
    k = middle - z0
    volumes = {"original": slab, "corrupted": corrupted, "restored": restored}
    views = {
        name: slice_view(v[:, : extent[0], : extent[1], k : k + 1], "axial", index=0, spacing=spacing)
        for name, v in volumes.items()
    }
    return views, tuple(extent)


def slice_restoration_picture(
    network: torch.nn.Module,
    volume: torch.Tensor | np.ndarray,
    cube_size: Sequence[int],
    corruption: Callable,
    titles: Sequence[str] = ("original", "corrupted", "restored"),
    window: Sequence[float] | None = None,
    header: str | Sequence[str] | None = None,
    sw_batch_size: int = 4,
    overlap: float = 0.0,
    max_windows: int | None = 36,
    min_size: int = 256,
) -> Image.Image:
    """A picture of :py:func:`restore_slice`: original | corrupted | restored, one intensity window for all three.

    Args:
        network: the restoring network.
        volume: a channel-first volume ``(C, H, W, D)`` (see :py:func:`restore_slice`).
        cube_size: the training cube size.
        corruption: the corruption of a batch of cubes (see :py:func:`restore_slice`).
        titles: the titles of the original, corrupted and restored columns, e.g. ``("original", "masked",
            "reconstructed")`` for masked image modelling.
        window: intensities shown black and white; None for the 0.5th–99.5th percentiles of the original slice.
        header: text above the picture (what is shown, the orientation and the spacing are added below it).
        sw_batch_size: windows per forward pass.
        overlap: window overlap of the sliding window.
        max_windows: at most this many cubes (see :py:func:`restore_slice`).
        min_size: pixels of a panel's width, at least.
    """
    if len(titles) != 3:
        raise ValueError(f"titles names the original, corrupted and restored columns: three strings, got {titles!r}.")
    ras, spacing = to_ras(volume)
    views, extent = _restore_ras(network, ras, spacing, cube_size, corruption, sw_batch_size, overlap, max_windows)
    if window is None:
        low, high = (float(p) for p in np.percentile(views["original"].pixels, [0.5, 99.5]))
        window = (low, high) if high > low else (low, low + 1.0)
    shown = "middle axial slice" if extent == tuple(ras.shape[1:3]) else (
        f"central {extent[0]}x{extent[1]} of the {ras.shape[1]}x{ras.shape[2]} voxels of the middle axial slice"
    )
    lines = [header] if isinstance(header, str) else list(header or [])
    lines += [
        f"{shown}, corrupted cube by cube and restored in {'x'.join(map(str, cube_size))} windows",
        f"{CONVENTION}; pixels {spacing[0]:.2f} x {spacing[1]:.2f} mm; window {window[0]:.3g} to {window[1]:.3g}",
    ]
    return render_grid([list(views.values())], titles, None, window, lines, min_size)


def preview(
    image: str,
    out: str = "corruptions.png",
    window: Sequence[float] | None = None,
    pipelines: int = 4,
    seed: int = 0,
    cube: Sequence[int] = (64, 64, 32),
    overwrite: bool = False,
) -> str:
    """Write a PNG of the Genesis corruptions of one volume, reoriented to RAS, in the radiological convention.

    The first column shows the whole volume's middle axial, coronal and sagittal slices with the central cube
    outlined; the next ones show that cube (or the whole volume when smaller): the original, each corruption
    alone, and several full pipelines. The pipelines leave out the random flips, which only change the
    orientation, so that every panel keeps the orientation written at its edges. Pixels are square in
    millimetres.

    Args:
        image: a NIfTI, NRRD or MHA file, or a DICOM series folder (read with MONAI's ``LoadImage``).
        out: the PNG to write.
        window: intensities mapped to [0, 1], e.g. ``-1000 1000`` for CT; default: the 0.5th–99.5th percentiles.
        pipelines: number of full pipelines shown.
        seed: random seed.
        cube: the cube corrupted, in voxels (the training cube size).
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
    if Path(out).exists() and not overwrite:
        raise FileExistsError(f"{out} exists; choose another --out or pass --overwrite true.")
    loaded = Compose([LoadImage(image_only=True), EnsureChannelFirst()])(str(path))
    if loaded.ndim != 4:
        raise ValueError(f"{path} holds an image of shape {tuple(loaded.shape)}; preview shows 3D volumes.")
    volume, spacing = to_ras(loaded[:1])
    if window is None:
        low, high = np.percentile(volume.numpy(), [0.5, 99.5])
    else:
        low, high = (float(w) for w in window)
    volume = ScaleIntensityRange(low, high, 0.0, 1.0, clip=True)(volume)
    cube_slices = _center_cube_slices(volume.shape[1:], cube)
    center = volume[(slice(None), *cube_slices)].contiguous()
    steps = {
        "original": lambda x: x,
        "local shuffle": RandLocalPixelShuffle(prob=1.0),
        "non-linear": RandNonlinearIntensity(prob=1.0),
        "in-painting": RandInpaint(),
        "out-painting": RandOutpaint(),
    }
    pipeline = RandGenesisCorruption(flip_rate=0.0)
    for i, step in enumerate(list(steps.values()) + [pipeline]):
        if hasattr(step, "set_random_state"):
            step.set_random_state(seed + i)
    columns = {name: step(center) for name, step in steps.items()}
    for i in range(pipelines):
        columns[f"genesis #{i + 1}"] = pipeline(center)[0]
    rows = []
    for view in VIEWS:
        context = slice_view(volume, view, index=_mid(cube_slices[_CUT_AXIS[view]]), spacing=spacing)
        rows.append([replace(context, box=_cube_box(view, volume.shape[1:], cube_slices))])
        rows[-1] += [slice_view(x, view, spacing=spacing) for x in columns.values()]
    size = "x".join(str(s.stop - s.start) for s in cube_slices)
    header = [
        f"{path.name}: {'x'.join(map(str, volume.shape[1:]))} voxels of "
        f"{' x '.join(f'{s:.2f}' for s in spacing)} mm, shown in RAS with square pixels; {CONVENTION}",
        f"Genesis corruptions of the central {size} cube (outlined); pipelines without flips; window {low:.4g} to {high:.4g}",
    ]
    picture = render_grid(rows, ["whole volume"] + list(columns), list(VIEWS), (0.0, 1.0), header, 192, 512)
    written = save_png(picture, out, overwrite)
    logger.info("wrote %s", written)
    return str(written)


def _mid(s: slice) -> int:
    return (s.start + s.stop) // 2


def _center_cube_slices(shape: Sequence[int], size: Sequence[int]) -> list[slice]:
    """The slices of the central crop of ``size`` (sides smaller than ``size`` are kept whole)."""
    if len(size) != len(shape):
        raise ValueError(f"cube {tuple(size)} needs one side per spatial axis of the volume {tuple(shape)}.")
    starts = [max(0, (side - int(want)) // 2) for side, want in zip(shape, size)]
    return [slice(s, s + min(side, int(want))) for s, side, want in zip(starts, shape, size)]


def _cube_box(view: str, shape: Sequence[int], cube: Sequence[slice]) -> tuple[int, int, int, int]:
    """The cube's rectangle ``(top, left, bottom, right)`` in the pixels of a :py:func:`slice_view`."""
    first, second = [a for a in range(3) if a != _CUT_AXIS[view]]
    # the view reverses both kept axes: rows run down the second, columns along the first
    return (
        shape[second] - cube[second].stop,
        shape[first] - cube[first].stop,
        shape[second] - cube[second].start,
        shape[first] - cube[first].start,
    )
