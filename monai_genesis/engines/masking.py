"""A ``prepare_batch`` that masks random blocks of a whole batch on the engine's device."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch


from monai_genesis.engines.prepare_batch import SeededPrepareBatch, images_on_device
from monai_genesis.transforms.masking import RandBlockMask

__all__ = ["MaskedPrepareBatch"]


class MaskedPrepareBatch(SeededPrepareBatch):
    """Move a batch of clean images to the engine's device and block-mask every sample there, each with its own draw.

    The masking is the kernel of :py:class:`monai_genesis.transforms.RandBlockMask`, vectorised over the batch.
    Returns ``(masked, target)`` with ``target = cat([clean, mask], dim=1)``: the clean image and, as its last
    channel, the voxel mask (1 = masked), which :py:class:`monai_genesis.losses.MaskedMSELoss` splits off, so
    ``SupervisedTrainer`` trains masked image modelling with no other code. With ``mask_kwarg`` it returns
    ``(masked, target, (), {mask_kwarg: mask})`` instead, and ``SupervisedTrainer`` calls
    ``network(masked, mask=mask)``, as the sparse (S3D) :py:class:`monai_genesis.networks.ResEncUNet` needs.

    Without ``seed``, the random state is seeded from torch's global generator when the object is made, so
    ``monai.utils.set_determinism`` makes runs repeatable; under DDP give each rank its own seed.

    Args:
        masking: the masking to apply; None for :py:class:`RandBlockMask` with the paper's block size 16 and
            mask ratio 0.75.
        image_key: key of the clean images in the batch dictionary.
        mask_kwarg: name of the network argument that receives the mask ``(B, 1, *spatial)``; None to not pass it.
        seed: seed of the random state.
    """

    transform_attribute = "masking"

    def __init__(
        self,
        masking: RandBlockMask | None = None,
        image_key: str = "image",
        mask_kwarg: str | None = None,
        seed: int | None = None,
    ) -> None:
        self.masking = RandBlockMask() if masking is None else masking
        self.image_key = image_key
        self.mask_kwarg = mask_kwarg
        self.seed(seed)

    def __call__(
        self,
        batchdata: Mapping[str, Any] | torch.Tensor,
        device: str | torch.device | None = None,
        non_blocking: bool = False,
        **kwargs,
    ) -> tuple:
        """Mask ``batchdata[image_key]`` (or a tensor batch) on ``device``; returns ``(masked, cat([clean, mask]))``."""
        images = images_on_device(batchdata, self.image_key, type(self).__name__, device, non_blocking, **kwargs)
        with torch.no_grad():
            masked, mask = self.masking.mask_batch(images)
            target = torch.cat([images, mask.to(images.dtype)], dim=1)
        if self.mask_kwarg is None:
            return masked, target
        return masked, target, (), {self.mask_kwarg: mask}
