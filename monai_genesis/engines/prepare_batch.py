"""One ``prepare_batch`` for every pretext: move the clean batch to the engine's device and apply the pretext there.

A pretext is any object with the two methods of the batch-first functional core of the transforms:

- ``draw(R, shape, device)``: every random parameter of a batch of ``shape`` ``(B, C, *spatial)``, drawn from the
  random state ``R`` (the pretext itself does not change, so one object serves several users);
- ``training_pair(x, params)``: ``(inputs, targets, extras)``, ``extras`` a dict of tensors a network may take as
  keyword arguments.

:py:class:`monai_genesis.transforms.RandGenesisCorruption` (corruption: ``(corrupted, clean, {})``) and
:py:class:`monai_genesis.transforms.RandBlockMask` (masking: ``(masked, cat([clean, mask]), {"mask": mask})``)
have them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from monai.engines.utils import PrepareBatch, default_prepare_batch
from monai.transforms import Randomizable

from monai_genesis.config import as_bool
from monai_genesis.transforms import RandBlockMask, RandGenesisCorruption

__all__ = ["PretextPrepareBatch", "GenesisPrepareBatch", "MaskedPrepareBatch", "images_on_device"]


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


class PretextPrepareBatch(PrepareBatch, Randomizable):
    """Move a batch of clean images to the engine's device and apply a pretext to every sample there, each with its
    own draw, in one batched pass.

    With it the data loader only loads and crops; the pretext (the same draws and kernels as its per-sample
    transform) runs where the network runs. Returns ``(inputs, targets)`` as ``SupervisedTrainer`` and
    ``SupervisedEvaluator`` expect, or ``(inputs, targets, (), {name: extra})`` when ``network_kwargs`` names
    extras of the pretext for the network (the mask of a sparse network).

    The random state is the prepare-batch's own (``self.R``): the pretext is only read, so a config builds the
    pretext once and references it from the per-sample transform and from the training and validation
    prepare-batches::

        "corruption": {"_target_": "monai_genesis.transforms.RandGenesisCorruption", "local_rate": 0.5},
        "train#prepare_batch": {"_target_": "monai_genesis.engines.PretextPrepareBatch", "pretext": "@corruption"},
        "validate#prepare_batch": {"_target_": "monai_genesis.engines.PretextPrepareBatch", "pretext": "@corruption"}

    and for masked image modelling with a sparse (S3D) network::

        "masking": {"_target_": "monai_genesis.transforms.RandBlockMask", "block_size": 16, "mask_ratio": 0.75},
        "prepare_batch": {"_target_": "monai_genesis.engines.PretextPrepareBatch", "pretext": "@masking",
                          "network_kwargs": {"mask": "mask"}}

    Without ``seed``, the random state is seeded from torch's global generator when the object is made, so
    ``monai.utils.set_determinism`` makes runs repeatable; under DDP give each rank its own seed.

    Args:
        pretext: an object with ``draw(R, shape, device)`` and ``training_pair(x, params)`` (see the module).
        image_key: key of the clean images in the batch dictionary.
        seed: seed of the random state.
        on_device: False when the data loader already applies the pretext to each sample (e.g.
            ``RandGenesisCorruptiond``): the batch's ``image`` and ``label`` are then only moved to the device, as
            ``monai.engines.default_prepare_batch`` does. A bundle switches both with one setting.
        network_kwargs: ``{network argument: name of a pretext extra}`` passed to the network as keyword
            arguments, e.g. ``{"mask": "mask"}``; None passes none.
    """

    def __init__(
        self,
        pretext: Any,
        image_key: str = "image",
        seed: int | None = None,
        on_device: bool | str = True,
        network_kwargs: Mapping[str, str] | None = None,
    ) -> None:
        missing = [m for m in ("draw", "training_pair") if not callable(getattr(pretext, m, None))]
        if missing:
            raise TypeError(
                f"{type(self).__name__}: the pretext {type(pretext).__name__} has no {' and no '.join(missing)} "
                "method; give a RandGenesisCorruption, a RandBlockMask or an object with draw(R, shape, device) and "
                "training_pair(x, params)."
            )
        self.pretext = pretext
        self.image_key = image_key
        self.on_device = as_bool(on_device, "on_device")
        self.network_kwargs = dict(network_kwargs or {})
        self.last_draw: Any = None
        self.set_random_state(seed=int(torch.randint(0, 2**31 - 1, (1,)).item()) if seed is None else seed)

    def randomize(self, data: Any = None) -> None:
        """Parameters are drawn per batch in ``__call__``."""

    def __call__(
        self,
        batchdata: Mapping[str, Any] | torch.Tensor,
        device: str | torch.device | None = None,
        non_blocking: bool = False,
        **kwargs,
    ) -> tuple:
        """Apply the pretext to ``batchdata[image_key]`` (or a tensor batch) on ``device``; returns
        ``(inputs, targets)``, or ``(inputs, targets, (), kwargs)`` with ``network_kwargs``."""
        if not self.on_device:
            return default_prepare_batch(batchdata, device, non_blocking, **kwargs)
        images = images_on_device(batchdata, self.image_key, type(self).__name__, device, non_blocking, **kwargs)
        with torch.no_grad():
            self.last_draw = self.pretext.draw(self.R, images.shape, images.device)
            inputs, targets, extras = self.pretext.training_pair(images, self.last_draw)
        if not self.network_kwargs:
            return inputs, targets
        absent = [name for name in self.network_kwargs.values() if name not in extras]
        if absent:
            raise KeyError(
                f"{type(self).__name__}: network_kwargs names {absent}, which {type(self.pretext).__name__} does not "
                f"give; it gives {sorted(extras)}."
            )
        return inputs, targets, (), {arg: extras[name] for arg, name in self.network_kwargs.items()}


class GenesisPrepareBatch(PretextPrepareBatch):
    """:py:class:`PretextPrepareBatch` of the Models Genesis corruption: returns ``(corrupted, clean)``.

    Args:
        corruption: the corruption to apply; None for :py:class:`RandGenesisCorruption` with the paper's rates.
        image_key: key of the clean images in the batch dictionary.
        seed: seed of the random state.
        corrupt: False when the data loader already corrupts each sample (``RandGenesisCorruptiond``): the batch's
            ``image`` and ``label`` are then only moved to the device. A bundle switches both with one setting
            (``corrupt_on_device``).
    """

    def __init__(
        self,
        corruption: RandGenesisCorruption | None = None,
        image_key: str = "image",
        seed: int | None = None,
        corrupt: bool | str = True,
    ) -> None:
        super().__init__(
            RandGenesisCorruption() if corruption is None else corruption,
            image_key=image_key,
            seed=seed,
            on_device=as_bool(corrupt, "corrupt_on_device"),
        )

    @property
    def corruption(self) -> RandGenesisCorruption:
        return self.pretext


class MaskedPrepareBatch(PretextPrepareBatch):
    """:py:class:`PretextPrepareBatch` of block masking: returns ``(masked, cat([clean, mask]))``.

    The target's last channel is the voxel mask (1 = masked), which :py:class:`monai_genesis.losses.MaskedMSELoss`
    splits off. With ``mask_kwarg`` it returns ``(masked, target, (), {mask_kwarg: mask})`` instead, and
    ``SupervisedTrainer`` calls ``network(masked, mask=mask)``, as the sparse (S3D)
    :py:class:`monai_genesis.networks.ResEncUNet` needs.

    Args:
        masking: the masking to apply; None for :py:class:`RandBlockMask` with the paper's block size 16 and
            mask ratio 0.75.
        image_key: key of the clean images in the batch dictionary.
        mask_kwarg: name of the network argument that receives the mask ``(B, 1, *spatial)``; None to not pass it.
        seed: seed of the random state.
    """

    def __init__(
        self,
        masking: RandBlockMask | None = None,
        image_key: str = "image",
        mask_kwarg: str | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__(
            RandBlockMask() if masking is None else masking,
            image_key=image_key,
            seed=seed,
            network_kwargs=None if mask_kwarg is None else {mask_kwarg: "mask"},
        )
        self.mask_kwarg = mask_kwarg

    @property
    def masking(self) -> RandBlockMask:
        return self.pretext
