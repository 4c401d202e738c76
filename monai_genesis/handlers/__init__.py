"""Ignite handlers and helpers of the bundles: checkpoints and resume, gradient clipping, pictures of the pretexts,
pretrained weights, reseeding, the run folder and a validation before training."""

from monai_genesis.handlers.checkpoints import RESUME_PREFIX, ResumeHandler, latest_checkpoint, negative_key_metric
from monai_genesis.handlers.gradients import GradientNormClipper
from monai_genesis.handlers.outputs import engine_loss, stacked_from_engine
from monai_genesis.handlers.pretrained import FINETUNE_MODES, PretrainedLoader, check_pretrained, default_finetune
from monai_genesis.handlers.reseed import ReseedHandler
from monai_genesis.handlers.run import FinalModelSaver, claim_run, earlier_outputs
from monai_genesis.handlers.restoration import (
    PANELS,
    RestorationImageHandler,
    RestorationPNGSaver,
    SliceRestorationSaver,
    masked_reconstructions,
    restoration_images,
    stored_volume,
)
from monai_genesis.handlers.validation import ValidateAtStart

__all__ = [
    "FinalModelSaver",
    "claim_run",
    "earlier_outputs",
    "FINETUNE_MODES",
    "GradientNormClipper",
    "PANELS",
    "RESUME_PREFIX",
    "PretrainedLoader",
    "ReseedHandler",
    "RestorationImageHandler",
    "RestorationPNGSaver",
    "ResumeHandler",
    "SliceRestorationSaver",
    "ValidateAtStart",
    "check_pretrained",
    "default_finetune",
    "engine_loss",
    "latest_checkpoint",
    "masked_reconstructions",
    "negative_key_metric",
    "restoration_images",
    "stacked_from_engine",
    "stored_volume",
]
