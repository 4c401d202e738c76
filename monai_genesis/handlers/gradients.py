"""Gradient-norm clipping for ``SupervisedTrainer``, which has no clipping argument (the recipe of masked image
modelling clips at 12)."""

from __future__ import annotations

import torch
from monai.engines.utils import IterationEvents
from monai.utils import IgniteInfo, min_version, optional_import

Engine, _ = optional_import("ignite.engine", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Engine")

__all__ = ["GradientNormClipper"]


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
