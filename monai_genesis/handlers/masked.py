"""Handlers of masked image modelling: gradient-norm clipping of the recipe and a picture of the reconstructions."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

import torch
from monai.engines.utils import IterationEvents
from monai.utils import IgniteInfo, min_version, optional_import

from monai_genesis.visualize import save_restoration_grid

Events, _ = optional_import("ignite.engine", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Events")
Engine, _ = optional_import("ignite.engine", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Engine")

__all__ = ["GradientNormClipper", "MaskedReconstructionPNGSaver", "masked_reconstructions"]

logger = logging.getLogger(__name__)


class GradientNormClipper:
    """Clip the global gradient norm of the trainer's network after every backward pass (12 in Wald et al.).

    ``monai.engines.SupervisedTrainer`` has no clipping argument; this handler runs on its
    ``IterationEvents.BACKWARD_COMPLETED``, between the backward pass and the optimiser step. With AMP the
    gradients are unscaled first (``GradScaler.unscale_``), so the threshold applies to the true gradients and the
    scaler's step still skips steps with infinite gradients.

    Args:
        max_norm: the largest total norm of the gradients.
        norm_type: the p of the p-norm.
    """

    def __init__(self, max_norm: float = 12.0, norm_type: float = 2.0) -> None:
        if not max_norm > 0:
            raise ValueError(f"max_norm must be positive, got {max_norm}.")
        self.max_norm, self.norm_type = float(max_norm), float(norm_type)
        self.last_norm: float | None = None

    def attach(self, engine: Engine) -> None:
        """Clip after every backward pass of ``engine`` (a ``SupervisedTrainer`` without gradient accumulation)."""
        if getattr(engine, "accumulation_steps", 1) != 1:
            raise ValueError(
                f"GradientNormClipper clips before every optimiser step, but the trainer accumulates gradients over "
                f"{engine.accumulation_steps} steps; set accumulation_steps=1."
            )
        engine.add_event_handler(IterationEvents.BACKWARD_COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        scaler = getattr(engine, "scaler", None)
        if getattr(engine, "amp", False) and scaler is not None:
            scaler.unscale_(engine.optimizer)
        norm = torch.nn.utils.clip_grad_norm_(engine.network.parameters(), self.max_norm, self.norm_type)
        self.last_norm = float(norm)


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
    items = [output] if isinstance(output, Mapping) else [
        {k: torch.as_tensor(v)[None] for k, v in item.items() if k in ("image", "pred", "label")}
        for item in output or []
        if isinstance(item, Mapping)
    ]
    parts: dict[str, list[torch.Tensor]] = {"masked": [], "reconstructed": [], "original": []}
    for item in items:
        if any(key not in item for key in ("image", "pred", "label")):
            return {}
        plain = {k: (item[k].as_tensor() if hasattr(item[k], "as_tensor") else item[k]).detach().float().cpu()
                 for k in ("image", "pred", "label")}
        parts["masked"].extend(plain["image"])
        parts["reconstructed"].extend(plain["pred"])
        # the target's last channel is the mask
        parts["original"].extend(plain["label"][:, :-1])
    return {name: torch.stack(values[:max_samples]) for name, values in parts.items() if values}


class MaskedReconstructionPNGSaver:
    """Save a PNG of the masked | reconstructed | original middle axial slices of the engine's last samples.

    Attach it to the validation evaluator (or the trainer) of masked image modelling; it rewrites
    ``output_dir/filename`` after every ``interval``-th epoch, so the picture shows the latest reconstructions.
    The grey scale spans the 1st–99th percentiles of the original slices (z-scored intensities have no fixed
    range). Only rank 0 writes.

    Args:
        output_dir: folder of the PNG (created if missing).
        filename: name of the PNG.
        max_samples: number of samples (rows) shown.
        interval: write every ``interval`` epochs.
    """

    def __init__(
        self, output_dir: str | os.PathLike, filename: str = "reconstructions.png", max_samples: int = 4, interval: int = 1
    ) -> None:
        if int(interval) < 1:
            raise ValueError(f"interval must be a positive number of epochs, got {interval}.")
        self.path = os.path.join(str(output_dir), filename)
        self.max_samples, self.interval = int(max_samples), int(interval)

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_COMPLETED(every=self.interval), self)

    def __call__(self, engine: Engine) -> None:
        dist = torch.distributed
        if dist.is_available() and dist.is_initialized() and dist.get_rank() != 0:
            return
        images = masked_reconstructions(engine.state.output, self.max_samples)
        if not images:
            logger.debug("engine output has no image/pred/label; no reconstruction picture written.")
            return
        original = images["original"]
        low, high = (float(v) for v in torch.quantile(original.flatten()[:: max(1, original.numel() // 1_000_000)],
                                                      torch.tensor([0.01, 0.99])))
        save_restoration_grid(images, self.path, value_range=(low, max(high, low + 1e-6)), max_rows=self.max_samples)
        logger.debug("wrote %s", self.path)
