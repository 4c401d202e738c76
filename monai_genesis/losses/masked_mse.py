"""The masked image modelling loss: squared error over the masked voxels only (Wald et al., CVPR 2025)."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["MaskedMSELoss"]


class MaskedMSELoss(nn.Module):
    """Mean squared error over the masked voxels: ``sum(mask * (pred - clean)²) / (C * sum(mask))``.

    The target carries the mask as its last channel, ``target = cat([clean, mask], dim=1)`` with ``mask`` of shape
    ``(B, 1, *spatial)``, 1 where masked and 0 where visible, so the loss has the ``loss(pred, target)`` form that
    ``monai.engines.SupervisedTrainer`` calls. :py:class:`monai_genesis.engines.MaskedPrepareBatch` returns such
    targets, :py:class:`monai_genesis.transforms.RandBlockMaskd` does with ``mask_in_target=True``.

    The sum runs over the whole batch and divides by the number of masked voxels of the batch (times the ``C``
    channels of ``pred``, all of which are masked at a masked voxel), so every masked voxel weighs the same; the
    visible voxels get no gradient. The target is the clean image itself, with no per-patch normalisation. A batch
    with no masked voxel gives 0.
    """

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The masked mean squared error of ``pred`` ``(B, C, *spatial)`` and ``target`` ``(B, C + 1, *spatial)``."""
        if target.ndim != pred.ndim or target.shape[1] != pred.shape[1] + 1:
            raise ValueError(
                f"MaskedMSELoss: the target must be cat([clean, mask], dim=1) with one channel more than the "
                f"prediction, got prediction {tuple(pred.shape)} and target {tuple(target.shape)}; use "
                "MaskedPrepareBatch, RandBlockMaskd(mask_in_target=True) or "
                "ConcatItemsd(keys=['label', 'mask'], name='label')."
            )
        if target.shape[0] != pred.shape[0] or target.shape[2:] != pred.shape[2:]:
            raise ValueError(
                f"MaskedMSELoss: prediction {tuple(pred.shape)} and target {tuple(target.shape)} differ in batch or "
                "spatial size."
            )
        clean, mask = target[:, :-1], target[:, -1:].to(pred.dtype)
        squared = (pred - clean) ** 2 * mask
        count = mask.sum() * pred.shape[1]
        return squared.sum() / count.clamp_min(1.0)
