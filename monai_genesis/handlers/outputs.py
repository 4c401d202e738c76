"""Output transforms of handlers: metrics that take whole batches rather than lists of samples, and the loss of an
engine's output whether or not it was decollated."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.handlers import from_engine

__all__ = ["engine_loss", "stacked_from_engine"]


def stacked_from_engine(keys: Sequence[str]):
    """Like ``monai.handlers.from_engine(keys)``, but each key's decollated samples stacked back into one tensor.

    ignite's own metrics (e.g. ``ignite.metrics.Accuracy``) expect ``(y_pred, y)`` batches, while MONAI's evaluator
    hands its handlers a list of per-sample dicts after post-processing.

    Args:
        keys: the keys read from the engine's output, e.g. ``["prob", "label"]``.
    """
    read = from_engine(list(keys))

    def _stacked(output):
        return [torch.stack([torch.as_tensor(v) for v in values]) for values in read(output)]

    return _stacked


def engine_loss(output):
    """The loss of a trainer's iteration output: ``output["loss"]`` of an output kept whole (a dict, as the detection
    engines keep it), or of the first sample of a decollated one (a list of dicts, the loss repeated in each), as
    ``monai.handlers.from_engine(["loss"], first=True)`` reads it.

    Args:
        output: ``engine.state.output``.
    """
    if isinstance(output, dict):
        return output["loss"]
    return from_engine(["loss"], first=True)(output)
