"""Engine helpers: one batch preparation that applies a pretext (corruption, masking) on the training device."""

from .prepare_batch import GenesisPrepareBatch, MaskedPrepareBatch, PretextPrepareBatch

__all__ = ["PretextPrepareBatch", "GenesisPrepareBatch", "MaskedPrepareBatch"]
