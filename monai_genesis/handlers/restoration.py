"""Handlers showing what the network restores: corrupted / restored / original slices to TensorBoard and to a PNG."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

import numpy as np
import torch
from monai.utils import IgniteInfo, min_version, optional_import

Events, _ = optional_import("ignite.engine", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Events")
Engine, _ = optional_import("ignite.engine", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Engine")

__all__ = ["RestorationImageHandler", "RestorationPNGSaver", "middle_slice_grid", "restoration_images"]

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


def middle_slice_grid(images: Mapping[str, torch.Tensor]) -> np.ndarray:
    """Tile the middle slice (last axis) of channel 0 of every sample: one column per name, one row per sample.

    Args:
        images: name -> ``(B, C, H, W, D)`` (or ``(B, C, H, W)``) tensors of equal shape, values in [0, 1].

    Returns:
        a ``(B * H, len(images) * W)`` float32 array clipped to [0, 1].
    """
    columns = []
    for value in images.values():
        slices = value[:, 0, ..., value.shape[-1] // 2] if value.ndim == 5 else value[:, 0]
        columns.append(torch.cat(list(slices), dim=0))
    return torch.cat(columns, dim=1).clamp(0.0, 1.0).numpy().astype(np.float32)


class _EveryNEpochs:
    """Run ``self.write(engine)`` after every ``interval``-th epoch of the engine it is attached to."""

    interval: int = 1

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_COMPLETED(every=self.interval), self)

    def __call__(self, engine: Engine) -> None:
        images = restoration_images(engine.state.output, self.max_samples)
        if not images:
            logger.debug("engine output has no image/pred/label; no restoration images written.")
            return
        self.write(engine, images)


class RestorationImageHandler(_EveryNEpochs):
    """Write a grid of corrupted / restored / original middle slices to TensorBoard after each epoch.

    Attach it to the pretraining trainer or evaluator; the images come from the last iteration of the epoch.

    Args:
        summary_writer: a ``torch.utils.tensorboard.SummaryWriter``; when None one is made for ``log_dir``.
        log_dir: TensorBoard folder when ``summary_writer`` is None.
        tag: image tag in TensorBoard.
        max_samples: number of samples (rows) shown.
        interval: write every ``interval`` epochs.
    """

    def __init__(
        self, summary_writer=None, log_dir: str = "./runs", tag: str = "restoration", max_samples: int = 4, interval: int = 1
    ) -> None:
        if summary_writer is None:
            from torch.utils.tensorboard import SummaryWriter

            summary_writer = SummaryWriter(log_dir=log_dir)
        self.writer = summary_writer
        self.tag = tag
        self.max_samples = int(max_samples)
        self.interval = int(interval)

    def write(self, engine: Engine, images: dict[str, torch.Tensor]) -> None:
        grid = middle_slice_grid(images)
        self.writer.add_image(f"{self.tag} ({' | '.join(images)})", grid[None], engine.state.epoch, dataformats="CHW")
        self.writer.flush()


class RestorationPNGSaver(_EveryNEpochs):
    """Save a PNG grid of corrupted / restored / original slices with ``monai_genesis.visualize.save_restoration_grid``.

    The file is rewritten after every ``interval`` epochs, so it shows the latest restorations.

    Args:
        output_dir: folder of the PNG (created if missing).
        filename: name of the PNG.
        max_samples: number of samples (rows) shown.
        interval: write every ``interval`` epochs.
    """

    def __init__(self, output_dir: str, filename: str = "restorations.png", max_samples: int = 4, interval: int = 1) -> None:
        self.path = os.path.join(output_dir, filename)
        self.max_samples = int(max_samples)
        self.interval = int(interval)

    def write(self, engine: Engine, images: dict[str, torch.Tensor]) -> None:
        from monai_genesis.visualize import save_restoration_grid

        save_restoration_grid(images, self.path)  # creates the folder
