"""The classification loss of a network with ``num_classes`` outputs."""

from __future__ import annotations

import torch

__all__ = ["classification_loss"]


def classification_loss(num_classes: int, label_smoothing: float = 0.0) -> torch.nn.Module:
    """``BCEWithLogitsLoss`` for one output (a binary task), ``CrossEntropyLoss`` with one-hot targets for several.

    Args:
        num_classes: number of network outputs (1 for a binary task).
        label_smoothing: label smoothing of the multi-class loss (0.1 in CSPR's pretraining).
    """
    if int(num_classes) < 1:
        raise ValueError(f"num_classes must be at least 1, got {num_classes}.")
    if int(num_classes) == 1:
        return torch.nn.BCEWithLogitsLoss()
    return torch.nn.CrossEntropyLoss(label_smoothing=float(label_smoothing))
