"""Handlers showing what the network restores, drawn by :py:mod:`monai_genesis.visualize`.

:py:class:`SliceRestorationSaver` writes the picture to judge a pretraining by: a whole slice of a validation volume,
original | corrupted | restored through the sliding window. :py:class:`RestorationImageHandler` (TensorBoard) and
:py:class:`RestorationPNGSaver` show the middle slices of the cubes of the engine's last iteration: the panels of
Genesis restoration (corrupted | restored | original) or of masked image modelling (masked | reconstructed |
original), chosen by their ``panels`` argument.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from monai.data import MetaTensor
from monai.data.utils import affine_to_spacing
from monai.utils import IgniteInfo, min_version, optional_import

from monai_genesis.config import as_bool
from monai_genesis.distributed import is_rank_zero
from monai_genesis.visualize import (
    available_path,
    restoration_grid,
    save_png,
    slice_restoration_picture,
)

Events, _ = optional_import("ignite.engine", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Events")
Engine, _ = optional_import("ignite.engine", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Engine")

__all__ = [
    "PANELS",
    "RestorationImageHandler",
    "RestorationPNGSaver",
    "SliceRestorationSaver",
    "masked_reconstructions",
    "restoration_images",
    "stored_volume",
]

logger = logging.getLogger(__name__)

# engine output keys of SupervisedTrainer/SupervisedEvaluator, in the order shown
RESTORATION_KEYS = {"corrupted": "image", "restored": "pred", "original": "label"}


def restoration_images(output, max_samples: int = 4) -> dict[str, torch.Tensor]:
    """Collect the corrupted, restored and original images of an engine's last iteration.

    Args:
        output: ``engine.state.output`` of a Genesis trainer or evaluator: a dict of batches or, after
            decollation, a list of per-sample dicts, with keys ``image`` (corrupted input), ``pred``
            (restoration) and ``label`` (clean target).
        max_samples: keep at most this many samples.

    Returns:
        ``{"corrupted": (B, C, *spatial), "restored": ..., "original": ...}`` float CPU tensors; empty
        when the output lacks a key.
    """
    # a dict holds whole batches; a decollated list holds one sample per dict
    batches = [output] if isinstance(output, Mapping) else [
        {k: torch.as_tensor(v)[None] for k, v in item.items() if k in RESTORATION_KEYS.values()}
        for item in output or []
        if isinstance(item, Mapping)
    ]
    images: dict[str, list[torch.Tensor]] = {name: [] for name in RESTORATION_KEYS}
    for batch in batches:
        if any(key not in batch for key in RESTORATION_KEYS.values()):
            return {}
        for name, key in RESTORATION_KEYS.items():
            value = batch[key].as_tensor() if hasattr(batch[key], "as_tensor") else torch.as_tensor(batch[key])
            images[name].extend(value.detach().float().cpu())
    return {name: torch.stack(values[:max_samples]) for name, values in images.items() if values}


def masked_reconstructions(output, max_samples: int = 4) -> dict[str, torch.Tensor]:
    """The masked inputs, reconstructions and clean images of an engine's last iteration of masked image modelling.

    Args:
        output: ``engine.state.output``: a dict of batches or a decollated list of per-sample dicts, with ``image``
            (the masked input), ``pred`` (the reconstruction) and ``label`` (``cat([clean, mask])``, as
            :py:class:`monai_genesis.engines.MaskedPrepareBatch` returns it).
        max_samples: keep at most this many samples.

    Returns:
        ``{"masked": (B, C, *spatial), "reconstructed": ..., "original": ...}`` float CPU tensors; empty when the
        output lacks a key.
    """
    images = restoration_images(output, max_samples)
    if not images:
        return {}
    # the target's last channel is the mask
    return {"masked": images["corrupted"], "reconstructed": images["restored"], "original": images["original"][:, :-1]}


def stored_volume(store, entry) -> MetaTensor:
    """The volume of a datalist entry as the network sees it in training: read from the volume store, with its affine.

    A picture handler (:py:class:`SliceRestorationSaver`) then shows the intensities, spacing and orientation the store
    prepared, whatever the preparation settings.

    Args:
        store: the bundle's ``VolumeStore`` (``monai_genesis.data.ensure_store``).
        entry: a datalist entry of the store, e.g. the first validation entry.
    """
    volume = store[entry]
    return MetaTensor(torch.from_numpy(volume.read()), affine=torch.as_tensor(volume.affine),
                      meta={"filename_or_obj": volume.source})


# what a picture handler draws: the panels of one pretext, read from the engine's output
PANELS: dict[str, Callable[..., dict[str, torch.Tensor]]] = {
    "restoration": restoration_images,
    "masked": masked_reconstructions,
}


def _percentile_range(original: torch.Tensor) -> tuple[float, float]:
    """The 1st and 99th percentiles of (at most a million voxels of) the clean images: z-scored intensities have no
    fixed range."""
    values = original.flatten()[:: max(1, original.numel() // 1_000_000)]
    low, high = (float(v) for v in torch.quantile(values, torch.tensor([0.01, 0.99])))
    return low, max(high, low + 1e-6)


def _output_spacing(output) -> tuple[float, ...]:
    """The voxel spacing of the first clean cube of an engine output that carries an affine, else 1 mm."""
    items = [output] if isinstance(output, Mapping) else list(output or [])
    for item in items:
        label = item.get(RESTORATION_KEYS["original"]) if isinstance(item, Mapping) else None
        if isinstance(label, MetaTensor) and label.ndim in (4, 5):
            affine = label.affine[0] if label.affine.ndim == 3 else label.affine
            return tuple(float(s) for s in affine_to_spacing(affine, r=3))
    return (1.0, 1.0, 1.0)


class _RunFile:
    """The file of this run: ``output_dir/filename``, or a free ``<stem>_<n>`` name beside a file of an earlier run."""

    def __init__(self, output_dir: str | os.PathLike, filename: str, overwrite: bool = False) -> None:
        self.wanted = Path(output_dir) / filename
        self.overwrite = overwrite
        self.path: Path | None = None

    def write(self, image) -> Path:
        if self.path is None:
            self.path = self.wanted if self.overwrite else available_path(self.wanted)
            if self.path != self.wanted:
                logger.warning("%s is from an earlier run and is kept; this run writes %s.", self.wanted, self.path)
        return save_png(image, self.path, overwrite=True)


class _EveryNEpochs:
    """Run ``self.write(engine, images, spacing, value_range)`` with the engine's panels after every ``interval``-th
    epoch, on rank 0 only."""

    interval: int = 1
    max_samples: int = 4
    panels: str = "restoration"
    value_range: Sequence[float] | None = (0.0, 1.0)

    def _set_drawing(self, panels: str, value_range: Sequence[float] | None, max_samples: int, interval: int) -> None:
        if panels not in PANELS:
            raise ValueError(f"panels must be one of {sorted(PANELS)} (what the picture shows), got {panels!r}.")
        if int(interval) < 1:
            raise ValueError(f"interval must be a positive number of epochs, got {interval}.")
        if value_range is not None and (len(value_range) != 2 or not float(value_range[0]) < float(value_range[1])):
            raise ValueError(f"value_range must be (black, white) with black < white, or None, got {value_range!r}.")
        self.panels, self.max_samples, self.interval = panels, int(max_samples), int(interval)
        self.value_range = None if value_range is None else tuple(float(v) for v in value_range)

    def attach(self, engine: Engine) -> None:
        """Call this handler when every ``interval``-th epoch of ``engine`` completes.

        Args:
            engine: the trainer or evaluator whose output holds ``image``, ``pred`` and ``label``.
        """
        engine.add_event_handler(Events.EPOCH_COMPLETED(every=self.interval), self)

    def __call__(self, engine: Engine) -> None:
        if not is_rank_zero():
            return
        images = PANELS[self.panels](engine.state.output, self.max_samples)
        if not images:
            logger.debug("engine output has no image/pred/label; no picture written.")
            return
        value_range = self.value_range or _percentile_range(images["original"])
        self.write(engine, images, _output_spacing(engine.state.output), value_range)


class RestorationImageHandler(_EveryNEpochs):
    """Write the middle axial slices of the last cubes (corrupted / restored / original) to TensorBoard.

    Attach it to the pretraining trainer or evaluator; the images come from the last iteration of every
    ``interval``-th epoch, drawn by :py:func:`monai_genesis.visualize.restoration_grid`. Only rank 0 writes.

    Args:
        summary_writer: a ``torch.utils.tensorboard.SummaryWriter``; when None one is made for ``log_dir``.
        log_dir: TensorBoard folder when ``summary_writer`` is None.
        tag: image tag in TensorBoard.
        max_samples: number of samples (rows) shown.
        interval: write every ``interval`` epochs.
        panels: what is drawn, a key of ``PANELS``: ``"restoration"`` (corrupted | restored | original) or
            ``"masked"`` (masked | reconstructed | original, the target's mask channel dropped).
        value_range: intensities shown black and white; None for the 1st–99th percentiles of the original cubes.
    """

    def __init__(
        self,
        summary_writer=None,
        log_dir: str = "./runs",
        tag: str = "restoration",
        max_samples: int = 4,
        interval: int = 1,
        panels: str = "restoration",
        value_range: Sequence[float] | None = (0.0, 1.0),
    ) -> None:
        self._set_drawing(panels, value_range, max_samples, interval)
        if summary_writer is None:
            from torch.utils.tensorboard import SummaryWriter

            summary_writer = SummaryWriter(log_dir=log_dir)
        self.writer = summary_writer
        self.tag = tag

    def write(
        self, engine: Engine, images: dict[str, torch.Tensor], spacing: Sequence[float], value_range: Sequence[float]
    ) -> None:
        grid = np.asarray(restoration_grid(images, value_range, max_rows=self.max_samples, spacing=spacing))
        self.writer.add_image(f"{self.tag} ({' | '.join(images)})", grid, engine.state.epoch, dataformats="HWC")
        self.writer.flush()


class RestorationPNGSaver(_EveryNEpochs):
    """Save a PNG of the middle axial slices of the last cubes: corrupted / restored / original, or masked /
    reconstructed / original.

    The picture (:py:func:`monai_genesis.visualize.restoration_grid`) is rewritten after every ``interval``
    epochs, so it shows the latest restorations. A file of an earlier run at ``output_dir/filename`` is kept and
    this run writes ``<stem>_1.png`` (or the next free number) instead, unless ``overwrite``. Only rank 0 writes.

    Args:
        output_dir: folder of the PNG (created if missing).
        filename: name of the PNG.
        max_samples: number of samples (rows) shown.
        interval: write every ``interval`` epochs.
        overwrite: replace a file of an earlier run (e.g. the one this run resumes).
        panels: what is drawn, a key of ``PANELS``: ``"restoration"`` (corrupted | restored | original) or
            ``"masked"`` (masked | reconstructed | original, the target's mask channel dropped).
        value_range: intensities shown black and white; None for the 1st–99th percentiles of the original cubes
            (z-scored intensities have no fixed range).
    """

    def __init__(
        self,
        output_dir: str,
        filename: str = "restorations.png",
        max_samples: int = 4,
        interval: int = 1,
        overwrite: bool = False,
        panels: str = "restoration",
        value_range: Sequence[float] | None = (0.0, 1.0),
    ) -> None:
        self._set_drawing(panels, value_range, max_samples, interval)
        self.file = _RunFile(output_dir, filename, as_bool(overwrite, "overwrite"))

    @property
    def path(self) -> Path:
        """The PNG this run writes (chosen at its first write)."""
        return self.file.path or self.file.wanted

    def write(
        self, engine: Engine, images: dict[str, torch.Tensor], spacing: Sequence[float], value_range: Sequence[float]
    ) -> None:
        self.file.write(restoration_grid(images, value_range, max_rows=self.max_samples, spacing=spacing))


class SliceRestorationSaver:
    """Save a PNG of one slice of a validation volume: original | corrupted | restored through the sliding window.

    Attach it to the validation evaluator: after every ``interval``-th validation it draws
    :py:func:`monai_genesis.visualize.slice_restoration_picture` of the middle axial slice of one volume, corrupted
    cube by cube with ``cube_size`` cubes and restored by the network in windows of the same size. The corruption
    is reseeded every time, so successive pictures differ only by the network. The volume is read once. A file of
    an earlier run at ``output_dir/filename`` is kept and this run writes ``<stem>_1.png`` (or the next free
    number) instead, unless ``overwrite``; the file is rewritten at every validation of the run. Only rank 0
    writes.

    Args:
        network: the network being trained (a ``DistributedDataParallel`` wrapper is unwrapped).
        data: where the volume comes from: a data set (its item ``index`` is taken), a data dict, or a
            channel-first volume ``(C, H, W, D)``, intensities as the network sees them in training (a
            ``MetaTensor``'s affine gives orientation and spacing).
        cube_size: the training cube size, three ints.
        output_dir: folder of the PNG (created if missing), e.g. the run's output folder.
        filename: name of the PNG.
        corruption: the corruption of a batch of cubes (see :py:func:`monai_genesis.visualize.restore_slice`);
            None for ``RandGenesisCorruption(flip_rate=0.0)`` with the paper's other rates.
        image_key: the key of the volume in a data dict.
        index: the item of ``data`` shown.
        titles: the titles of the original, corrupted and restored columns.
        window: intensities shown black and white; None for the 0.5th–99.5th percentiles of the original slice.
        seed: the seed of the corruption.
        interval: draw every ``interval`` validations.
        sw_batch_size: windows per forward pass.
        overlap: window overlap of the sliding window.
        max_windows: at most this many cubes are restored, which bounds the time taken: a larger slice is
            cropped to its centre; None for the whole slice.
        overwrite: replace a file of an earlier run (e.g. the one this run resumes).
    """

    def __init__(
        self,
        network: torch.nn.Module,
        data,
        cube_size: Sequence[int],
        output_dir: str | os.PathLike,
        filename: str = "restorations.png",
        corruption: Callable | None = None,
        image_key: str = "image",
        index: int = 0,
        titles: Sequence[str] = ("original", "corrupted", "restored"),
        window: Sequence[float] | None = None,
        seed: int = 0,
        interval: int = 1,
        sw_batch_size: int = 4,
        overlap: float = 0.0,
        max_windows: int | None = 36,
        overwrite: bool = False,
    ) -> None:
        if len(titles) != 3:
            raise ValueError(f"titles names the original, corrupted and restored columns: three strings, got {titles!r}.")
        if int(interval) < 1:
            raise ValueError(f"interval must be a positive number of validations, got {interval}.")
        if corruption is None:
            from monai_genesis.transforms import RandGenesisCorruption

            corruption = RandGenesisCorruption(flip_rate=0.0)
        self.network, self.data, self.cube_size = network, data, tuple(int(s) for s in cube_size)
        self.file = _RunFile(output_dir, filename, as_bool(overwrite, "overwrite"))
        self.corruption, self.image_key, self.index = corruption, image_key, int(index)
        self.titles, self.window, self.seed = tuple(titles), window, int(seed)
        self.interval, self.sw_batch_size, self.overlap = int(interval), int(sw_batch_size), float(overlap)
        self.max_windows = max_windows
        self._volume = None

    @property
    def path(self) -> Path:
        """The PNG this run writes (chosen at its first write)."""
        return self.file.path or self.file.wanted

    def attach(self, engine: Engine) -> None:
        """Draw the picture when every ``interval``-th epoch (validation) of ``engine`` completes.

        Args:
            engine: the validation evaluator.
        """
        engine.add_event_handler(Events.EPOCH_COMPLETED(every=self.interval), self)

    def volume(self):
        """The volume shown, read from ``data`` at the first call."""
        if self._volume is None:
            item = self.data
            if not isinstance(item, (Mapping, torch.Tensor, np.ndarray)):
                if len(item) <= self.index:
                    raise ValueError(
                        f"SliceRestorationSaver: the data set has {len(item)} items, so item {self.index} cannot be "
                        "shown; give a validation data set with at least one volume or a smaller index."
                    )
                item = item[self.index]
            item = item[0] if isinstance(item, (list, tuple)) else item
            if isinstance(item, Mapping):
                if self.image_key not in item:
                    raise KeyError(f"SliceRestorationSaver: key {self.image_key!r} is not in the data item {list(item)}.")
                item = item[self.image_key]
            self._volume = item
        return self._volume

    def __call__(self, engine: Engine) -> None:
        if not is_rank_zero():
            return
        volume = self.volume()
        if hasattr(self.corruption, "set_random_state"):
            self.corruption.set_random_state(self.seed)
        source = volume.meta.get("filename_or_obj") if isinstance(volume, MetaTensor) else None
        header = f"epoch {engine.state.epoch}" + (f": {os.path.basename(str(source))}" if source else "")
        picture = slice_restoration_picture(
            self.network,
            volume,
            self.cube_size,
            self.corruption,
            self.titles,
            self.window,
            header,
            self.sw_batch_size,
            self.overlap,
            self.max_windows,
        )
        logger.debug("wrote %s", self.file.write(picture))
