"""Losses of the pretraining recipes."""

from .masked_mse import MaskedMSELoss

__all__ = ["MaskedMSELoss"]
