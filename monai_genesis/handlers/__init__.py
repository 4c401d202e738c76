"""Ignite handlers and helpers of the Genesis bundles."""

from monai_genesis.handlers.checkpoints import RESUME_PREFIX, ResumeHandler, latest_checkpoint, negative_key_metric
from monai_genesis.handlers.pretrained import FINETUNE_MODES, PretrainedLoader, check_pretrained
from monai_genesis.handlers.reseed import ReseedHandler
from monai_genesis.handlers.run import FinalModelSaver, claim_run, earlier_outputs
from monai_genesis.handlers.restoration import (
    RestorationImageHandler,
    RestorationPNGSaver,
    SliceRestorationSaver,
    restoration_images,
)

__all__ = [
    "FinalModelSaver",
    "claim_run",
    "earlier_outputs",
    "FINETUNE_MODES",
    "RESUME_PREFIX",
    "PretrainedLoader",
    "ReseedHandler",
    "RestorationImageHandler",
    "RestorationPNGSaver",
    "ResumeHandler",
    "SliceRestorationSaver",
    "check_pretrained",
    "latest_checkpoint",
    "negative_key_metric",
    "restoration_images",
]
