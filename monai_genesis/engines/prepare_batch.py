"""A ``prepare_batch`` that applies the Genesis corruption to a whole batch on the engine's device."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from monai.engines.utils import PrepareBatch, default_prepare_batch
from monai.transforms import Randomizable

from monai_genesis.config import as_bool
from monai_genesis.transforms import RandGenesisCorruption

__all__ = ["GenesisPrepareBatch", "SeededPrepareBatch", "images_on_device"]


def images_on_device(
    batchdata: Mapping[str, Any] | torch.Tensor,
    image_key: str,
    name: str,
    device: str | torch.device | None = None,
    non_blocking: bool = False,
    **kwargs,
) -> torch.Tensor:
    """The images ``batchdata[image_key]`` (or a tensor batch) as a plain tensor on ``device``.

    Args:
        batchdata: the loader's batch, a dictionary or a tensor.
        image_key: key of the images in a dictionary batch.
        name: the caller's name, for the error when the key is missing.
        device: where to move the images.
        non_blocking: passed to ``Tensor.to``.
        kwargs: other arguments of ``Tensor.to``.
    """
    if isinstance(batchdata, Mapping):
        if image_key not in batchdata:
            raise KeyError(
                f"{name}: key '{image_key}' not in the batch, which has keys {list(batchdata)}; set image_key=."
            )
        batchdata = batchdata[image_key]
    images = torch.as_tensor(batchdata).to(device=device, non_blocking=non_blocking, **kwargs)
    return images.as_tensor() if hasattr(images, "as_tensor") else images


class SeededPrepareBatch(PrepareBatch, Randomizable):
    """Base of the prepare-batches that draw on the device from a transform of their own, seeded once.

    Without a seed the random state is seeded from torch's global generator when the object is made, so
    ``monai.utils.set_determinism`` makes runs repeatable; ``set_random_state`` reaches the transform too.
    Subclasses name the transform in ``transform_attribute``.
    """

    transform_attribute = ""

    def seed(self, seed: int | None) -> None:
        """Seed the random state with ``seed``, or from torch's global generator when it is None."""
        self.set_random_state(seed=int(torch.randint(0, 2**31 - 1, (1,)).item()) if seed is None else seed)

    def set_random_state(self, seed: int | None = None, state: np.random.RandomState | None = None):
        super().set_random_state(seed, state)
        getattr(self, self.transform_attribute).set_random_state(state=self.R)
        return self

    def randomize(self, data: Any = None) -> None:
        """Parameters are drawn per batch in ``__call__``."""


class GenesisPrepareBatch(SeededPrepareBatch):
    """Move a batch of clean images to the engine's device and corrupt every sample there in one pass.

    With it the data loader only loads and crops; the corruption (the same code as
    :py:class:`monai_genesis.transforms.RandGenesisCorruption`, vectorised over the batch) runs where the network
    runs. Returns ``(corrupted, target)`` as ``SupervisedTrainer`` and ``SupervisedEvaluator`` expect.

    Without ``seed``, the random state is seeded from torch's global generator when the object is made, so
    ``monai.utils.set_determinism`` makes runs repeatable; under DDP give each rank its own seed.

    Args:
        corruption: the corruption to apply; None for :py:class:`RandGenesisCorruption` with the paper's rates.
        image_key: key of the clean images in the batch dictionary.
        seed: seed of the random state.
        corrupt: False when the data loader already corrupts each sample (``RandGenesisCorruptiond``): the batch's
            ``image`` and ``label`` are then only moved to the device, as ``monai.engines.default_prepare_batch``
            does. A bundle switches both with one setting (``corrupt_on_device``).
    """

    transform_attribute = "corruption"

    def __init__(
        self,
        corruption: RandGenesisCorruption | None = None,
        image_key: str = "image",
        seed: int | None = None,
        corrupt: bool | str = True,
    ) -> None:
        self.corruption = RandGenesisCorruption() if corruption is None else corruption
        self.image_key = image_key
        self.corrupt = as_bool(corrupt, "corrupt_on_device")
        self.seed(seed)

    def __call__(
        self,
        batchdata: Mapping[str, Any] | torch.Tensor,
        device: str | torch.device | None = None,
        non_blocking: bool = False,
        **kwargs,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Corrupt ``batchdata[image_key]`` (or a tensor batch) on ``device``; returns ``(corrupted, clean)``."""
        if not self.corrupt:
            return default_prepare_batch(batchdata, device, non_blocking, **kwargs)
        images = images_on_device(batchdata, self.image_key, type(self).__name__, device, non_blocking, **kwargs)
        with torch.no_grad():
            return self.corruption.corrupt_batch(images)
