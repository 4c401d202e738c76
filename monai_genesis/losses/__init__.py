"""Losses of the pretraining recipes."""

from .classification import classification_loss
from .masked_mse import MaskedMSELoss

__all__ = ["MaskedMSELoss", "classification_loss"]
