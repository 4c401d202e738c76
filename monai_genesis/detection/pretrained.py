"""Which pretrained checkpoints start the detector's ResNet-18 backbone, and under which names.

Three kinds load: a ``cspr_pretrain`` model (or any ``ResNet18Classifier`` / ``ResNetUNet``: ``encoder.*``), a bare
MONAI or MedicalNet ResNet-18 state dict (``conv1.*``, ``layer1.*`` ...), and a detector of this bundle
(``feature_extractor.*``, heads included). Anything else is refused before any data is read: a checkpoint of
another network (a Genesis U-Net, a ResEnc) and a ResNet of another depth or width, whose trunk would load only in
part.
"""

from __future__ import annotations

import torch

from monai_genesis.detection.networks import BACKBONE_PREFIX
from monai_genesis.errors import GenesisInputError
from monai_genesis.networks.resnet import ResNet18Encoder

__all__ = ["backbone_prefix_map", "check_backbone_checkpoint"]

_TRUNK = ("conv1.", "bn1.", "layer1.", "layer2.", "layer3.", "layer4.")
_SOURCES = {
    "encoder.": "a ResNet-18 classifier or U-Net of this project (cspr_pretrain)",
    "": "a MONAI or MedicalNet ResNet state dict",
    "feature_extractor.": "a detector of this bundle",
}
_FIX = (
    "The detector's backbone is CSPR's 3D ResNet-18 (basic blocks [2, 2, 2, 2], 64 to 512 channels): pass the "
    "models/model.pt of a cspr_pretrain run, a MONAI or MedicalNet ResNet-18 state dict (keys conv1.*, layer1.* ...), "
    "or --pretrained '' to train from scratch."
)


def _state_dict(pretrained: str) -> dict:
    from monai_genesis.weights import extract_state_dict, safe_load

    return extract_state_dict(safe_load(pretrained))


def _source_prefix(keys: list[str]) -> str | None:
    """The prefix under which a checkpoint holds a ResNet trunk, or None."""
    for prefix in ("feature_extractor.body.", "encoder.", ""):
        if any(k.startswith(prefix + "layer1.") for k in keys) and f"{prefix}conv1.weight" in keys:
            return prefix
    return None


def backbone_prefix_map(pretrained: str | None) -> dict[str, str] | None:
    """
    The ``prefix_map`` that renames a checkpoint's ResNet trunk to the detector's backbone (``feature_extractor.
    body.*``), for ``monai_genesis.weights.load_pretrained``; None without a checkpoint.

    Raises:
        GenesisInputError: for a checkpoint that holds no ResNet trunk.
    """
    if not pretrained:
        return None
    keys = list(_state_dict(str(pretrained)))
    prefix = _source_prefix(keys)
    if prefix is None:
        raise GenesisInputError(
            f"{pretrained} holds no ResNet trunk (no conv1.weight beside layer1.* under any prefix; its keys start "
            f"{keys[:4]}): it is a checkpoint of another architecture. {_FIX}"
        )
    if prefix == "feature_extractor.body.":
        return {}
    return {prefix: BACKBONE_PREFIX}


def check_backbone_checkpoint(pretrained: str | None, in_channels: int = 1) -> str:
    """
    Refuse, before training, a checkpoint whose ResNet trunk is not a ResNet-18 of ``in_channels`` input channels;
    return its path (``""`` for none).

    Every trunk tensor of the checkpoint (``conv1``, ``bn1``, ``layer1`` ... ``layer4``) must exist in the ResNet-18
    with the same shape; heads (``fc``, MedicalNet's ``conv_seg``) are ignored, and a missing shortcut convolution
    (MedicalNet's ResNet-18 has shortcut type A) only leaves those tensors fresh.

    Raises:
        GenesisInputError: naming the file, the first tensors that differ and the fix.
    """
    if not pretrained:
        return ""
    pretrained = str(pretrained)
    state = _state_dict(pretrained)
    keys = list(state)
    prefix_map = backbone_prefix_map(pretrained)
    prefix = next(iter(prefix_map)) if prefix_map else "feature_extractor.body."
    # shapes only: built on the meta device, no memory or initialisation
    with torch.device("meta"):
        reference = ResNet18Encoder(in_channels).state_dict()
    wrong = []
    for key in keys:
        if not key.startswith(prefix):
            continue
        name = key[len(prefix):]
        if not name.startswith(_TRUNK):
            continue
        if name not in reference:
            wrong.append(f"{key} (not in a ResNet-18)")
        elif tuple(state[key].shape) != tuple(reference[name].shape):
            wrong.append(f"{key}: {tuple(state[key].shape)} in the file, {tuple(reference[name].shape)} in the ResNet-18")
    if wrong:
        stem = f"{prefix}conv1.weight"
        channels = (
            f" Its stem takes {state[stem].shape[1]} input channel(s): set --in_channels {state[stem].shape[1]} if the "
            "images have that many."
            if stem in state and state[stem].ndim == 5 and state[stem].shape[1] != in_channels
            else ""
        )
        raise GenesisInputError(
            f"{pretrained} is {_SOURCES.get(prefix, 'a ResNet')} but not a ResNet-18 of {in_channels} input "
            f"channel(s): {len(wrong)} trunk tensor(s) differ, first {wrong[:3]}.{channels} {_FIX}"
        )
    return pretrained
