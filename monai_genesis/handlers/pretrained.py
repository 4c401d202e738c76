"""Loading pretrained Genesis weights into a fine-tuning network, with the full / frozen_encoder / scratch modes."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence

import torch
from monai.utils import IgniteInfo, min_version, optional_import

from monai_genesis.networks import unwrap_parallel

Events, _ = optional_import("ignite.engine", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Events")
Engine, _ = optional_import("ignite.engine", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Engine")

__all__ = ["FINETUNE_MODES", "PretrainedLoader", "check_pretrained", "default_finetune"]

FINETUNE_MODES = ("full", "frozen_encoder", "scratch")

logger = logging.getLogger(__name__)


def default_finetune(pretrained: str | None) -> str:
    """The fine-tuning mode when none is given: ``"full"`` with a checkpoint, ``"scratch"`` without one."""
    return "full" if pretrained else "scratch"


def check_pretrained(pretrained: str | None, finetune: str = "full") -> str:
    """Check a fine-tuning mode and its checkpoint path; return the path as a string (``""`` for none).

    The fine-tuning bundles call it first in ``initialize``, so that a wrong path stops the run before any
    data is read or cached.

    Raises:
        ValueError: for an unknown mode, a checkpoint with ``"scratch"``, none with ``"full"`` or
            ``"frozen_encoder"``, or a path that is not a file.
    """
    if finetune not in FINETUNE_MODES:
        raise ValueError(f"finetune must be one of {FINETUNE_MODES}, got {finetune!r}.")
    pretrained = str(pretrained) if pretrained else ""
    if finetune == "scratch" and pretrained:
        raise ValueError(
            f"finetune='scratch' but pretrained={pretrained!r} is given; use --finetune full (or frozen_encoder) "
            "to load it, or --pretrained '' to train from scratch."
        )
    if finetune != "scratch":
        if not pretrained:
            raise ValueError(f"finetune={finetune!r} needs a checkpoint: pass --pretrained PATH, or --finetune scratch.")
        if not os.path.isfile(pretrained):
            raise ValueError(f"pretrained checkpoint {pretrained} does not exist; pass the path of a model.pt file.")
    return pretrained


class PretrainedLoader:
    """Load pretrained weights into the network when training starts, through ``monai_genesis.weights.load_pretrained``.

    The path and the mode are checked (:py:func:`check_pretrained`) when the handler is made; the fine-tuning
    bundles also check them first in ``initialize``, so a wrong path fails before any data is read. The
    transfer report is logged and kept as ``self.report``; loading fewer than ``min_loaded`` tensors is an
    error, never a silent training from scratch.

    Args:
        network: the network being fine-tuned.
        pretrained: checkpoint from ``genesis_pretrain`` (``models/model.pt``) or a released Genesis file;
            may be empty only with ``finetune="scratch"``.
        finetune: ``"full"`` trains every weight; ``"frozen_encoder"`` loads, then freezes the parameters whose
            names start with ``encoder_prefix``; ``"scratch"`` loads nothing.
        encoder_prefix: name prefix of the encoder's parameters (``"encoder."`` in Genesis networks).
        prefix_map: checkpoint-to-network key prefix renaming, passed to ``load_pretrained``.
        min_loaded: fewest tensors that must load.
        include_prefixes: load only checkpoint tensors named with one of these prefixes (``["encoder."]``: the stem
            and encoder of an ``mae_pretrain`` model, the decoder fresh); None loads every matching tensor.
        repeat_input_channels: load a one-input-channel kernel into a multi-channel one, repeated over the
            channels and divided by their number (the stem of a one-channel pretraining, multi-channel input).
        intensity: the run's intensity setting (the bundles' ``intensity``); an nnssl checkpoint's pretraining
            normalisation is compared with it, and a difference is warned about with the override that matches.
    """

    def __init__(
        self,
        network: torch.nn.Module,
        pretrained: str | None = None,
        finetune: str = "full",
        encoder_prefix: str = "encoder.",
        prefix_map: Mapping[str, str] | None = None,
        min_loaded: int = 1,
        include_prefixes: str | Sequence[str] | None = None,
        repeat_input_channels: bool = False,
        intensity: str | None = None,
    ) -> None:
        pretrained = check_pretrained(pretrained, finetune)
        self.network = network
        self.pretrained = pretrained
        self.finetune = finetune
        self.encoder_prefix = encoder_prefix
        self.prefix_map = prefix_map
        self.min_loaded = int(min_loaded)
        self.include_prefixes = include_prefixes
        self.repeat_input_channels = bool(repeat_input_channels)
        self.intensity = intensity
        self.report = None

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self)

    def __call__(self, engine: Engine | None = None) -> None:
        from monai_genesis.weights import load_pretrained

        if self.finetune == "scratch" or self.report is not None:
            return
        net = unwrap_parallel(self.network)
        self.report = load_pretrained(
            net,
            self.pretrained,
            prefix_map=self.prefix_map,
            min_loaded=self.min_loaded,
            include_prefixes=self.include_prefixes,
            repeat_input_channels=self.repeat_input_channels,
            intensity=self.intensity,
        )
        encoder = [k for k in net.state_dict() if k.startswith(self.encoder_prefix)]
        encoder_loaded = len(set(encoder) & set(self.report.loaded))
        logger.info(
            f"fine-tuning ({self.finetune}) from {self.pretrained}: {self.report.num_loaded} tensors loaded, "
            f"{encoder_loaded} of the {len(encoder)} encoder tensors ({self.encoder_prefix}*)."
        )
        if self.finetune == "frozen_encoder":
            frozen = [name for name, p in net.named_parameters() if name.startswith(self.encoder_prefix)]
            if not frozen:
                raise ValueError(
                    f"finetune='frozen_encoder': no parameter of {type(net).__name__} starts with "
                    f"{self.encoder_prefix!r}; set encoder_prefix to its encoder's name prefix."
                )
            for name, p in net.named_parameters():
                if name.startswith(self.encoder_prefix):
                    p.requires_grad_(False)
            logger.info(f"froze {len(frozen)} encoder parameter tensors ({self.encoder_prefix}*).")
