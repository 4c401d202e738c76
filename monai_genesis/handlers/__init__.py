"""Ignite handlers and helpers of the Genesis bundles."""

from monai_genesis.handlers.checkpoints import RESUME_PREFIX, ResumeHandler, latest_checkpoint, negative_key_metric
from monai_genesis.handlers.pretrained import FINETUNE_MODES, PretrainedLoader
from monai_genesis.handlers.reseed import ReseedHandler
from monai_genesis.handlers.restoration import (
    RestorationImageHandler,
    RestorationPNGSaver,
    middle_slice_grid,
    restoration_images,
)
