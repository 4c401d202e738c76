"""Engine helpers: batch preparation that corrupts on the training device."""

from .masking import MaskedPrepareBatch
from .prepare_batch import GenesisPrepareBatch

__all__ = ["GenesisPrepareBatch", "MaskedPrepareBatch"]
