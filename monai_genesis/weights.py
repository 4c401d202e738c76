"""Load and export Models Genesis weights: the released checkpoint format and transfer into any network.

Why not ``monai.networks.utils.copy_model_state``: it copies matching names and shapes, but a transfer from
pretraining needs more: the released checkpoint's key names and ``module.`` prefix, a report of what was loaded,
skipped (with the reason) and left fresh, a refusal when no learned weight tensor matched (a checkpoint of another
width matches only counters and biases), loading of the encoder only, and a stem repeated over more input channels
(Wald et al.). ``load_pretrained`` does these and leaves the copying of the tensors to ``load_state_dict``.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import torch
from torch import nn

from monai_genesis.errors import GenesisInputError
from monai_genesis.networks import GenesisUNet, unwrap_parallel
from monai_genesis.utils import file_digest

__all__ = [
    "GENESIS_CHEST_CT_SHA256",
    "TransferReport",
    "extract_state_dict",
    "file_sha256",
    "genesis_to_official_key",
    "load_official_checkpoint",
    "load_pretrained",
    "official_to_genesis_key",
    "repeat_over_input_channels",
    "safe_load",
    "save_official_checkpoint",
    "to_official_state_dict",
]

logger = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]

#: SHA-256 of the released ``Genesis_Chest_CT.pt`` (Hugging Face ``MrGiovanni/ModelsGenesis``, 152 639 120 bytes).
GENESIS_CHEST_CT_SHA256 = "62de21a05236d6a8d8d5b03ec740f6ac6b818d15d3e86eed4f38a2a17d63cc08"

# one row per released module: (its prefix, the GenesisUNet prefix, whether it holds numbered conv blocks)
_KEY_TABLE = (
    ("down_tr64.ops.", "encoder.down1.", True),
    ("down_tr128.ops.", "encoder.down2.", True),
    ("down_tr256.ops.", "encoder.down3.", True),
    ("down_tr512.ops.", "encoder.bottleneck.", True),
    ("up_tr256.ops.", "up3.convs.", True),
    ("up_tr128.ops.", "up2.convs.", True),
    ("up_tr64.ops.", "up1.convs.", True),
    ("up_tr256.up_conv.", "up3.upsample.conv.", False),
    ("up_tr128.up_conv.", "up2.upsample.conv.", False),
    ("up_tr64.up_conv.", "up1.upsample.conv.", False),
    ("out_tr.final_conv.", "out.conv.", False),
)
# the layers of a numbered block: (released name, GenesisUNet name)
_BLOCK_LAYERS = (("conv1", "conv"), ("bn1", "adn.N"))
_OFFICIAL, _GENESIS = 0, 1
_BLOCK_PATTERNS = tuple(
    re.compile(rf"^(\d+)\.({'|'.join(re.escape(layers[side]) for layers in _BLOCK_LAYERS)})\.([^.]+)$")
    for side in (_OFFICIAL, _GENESIS)
)
_CONTAINER_KEYS = ("state_dict", "model_state_dict", "model", "network", "net")


def _translate_key(key: str, source: int, target: int) -> str | None:
    """Rename ``key`` from one naming (``_OFFICIAL`` or ``_GENESIS``) to the other through ``_KEY_TABLE``."""
    for row in _KEY_TABLE:
        prefix, blocks = row[source], row[2]
        if not key.startswith(prefix):
            continue
        rest = key[len(prefix) :]
        if not blocks:
            return row[target] + rest if "." not in rest else None
        m = _BLOCK_PATTERNS[source].match(rest)
        if m is None:
            return None
        layer = next(layers[target] for layers in _BLOCK_LAYERS if layers[source] == m.group(2))
        return f"{row[target]}{m.group(1)}.{layer}.{m.group(3)}"
    return None


def official_to_genesis_key(key: str) -> str | None:
    """
    Return the ``GenesisUNet`` parameter name of a key of the released state dict, or None if it is not one.

    Args:
        key: a key of the authors' network, without the ``module.`` prefix (e.g. ``down_tr64.ops.0.bn1.weight``).
    """
    return _translate_key(key, _OFFICIAL, _GENESIS)


def genesis_to_official_key(key: str) -> str | None:
    """
    Return the released state-dict key of a ``GenesisUNet`` parameter name, or None if it has none.

    Args:
        key: a key of ``GenesisUNet().state_dict()`` (e.g. ``encoder.down1.0.adn.N.weight``).
    """
    return _translate_key(key, _GENESIS, _OFFICIAL)


def file_sha256(path: PathLike, chunk_size: int = 1 << 20) -> str:
    """
    Return the hex SHA-256 of a file, read in chunks so that large checkpoints are not held in memory.

    Args:
        path: the file.
        chunk_size: bytes read at a time.
    """
    return file_digest(path, "sha256", chunk_size)


def safe_load(path: PathLike, sha256: str | None = None) -> Any:
    """
    Read a PyTorch checkpoint with ``torch.load(weights_only=True)`` after an optional SHA-256 check.

    Only tensors and plain containers are unpickled: a file whose unpickling would construct arbitrary objects
    or run code is refused with a ``ValueError`` and nothing of it is executed. A wrong SHA-256 raises before
    the file is unpickled.

    Args:
        path: the checkpoint file.
        sha256: expected hex SHA-256 of the file; None skips the check.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file {path} does not exist.")
    if sha256 is not None:
        actual = file_sha256(path)
        if actual.lower() != sha256.strip().lower():
            raise GenesisInputError(
                f"SHA-256 of {path} is {actual}, expected {sha256}; the file is corrupt, incomplete or not the "
                "expected checkpoint. Download it again; it was not loaded."
            )
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises UnpicklingError, RuntimeError, EOFError... for unsafe or non-checkpoint files
        first_line = (str(e).strip().splitlines() or [""])[0]
        raise GenesisInputError(
            f"{path} is not a checkpoint that can be read safely with torch.load(weights_only=True) "
            f"({type(e).__name__}: {first_line}). "
            "Only files holding tensors and plain containers (e.g. saved state dicts) are accepted."
        ) from e


def _strip_module(state_dict: Mapping[str, Any]) -> dict[str, Any]:
    """Return a copy of ``state_dict`` without the ``module.`` prefixes of (Distributed)DataParallel."""
    out = {}
    for key, value in state_dict.items():
        while key.startswith("module."):
            key = key[len("module.") :]
        out[key] = value
    return out


def extract_state_dict(checkpoint: Mapping[str, Any]) -> dict[str, Any]:
    """
    Return the state dict held by a checkpoint object, without ``module.`` prefixes.

    Understands a plain state dict (all values tensors), the released Models Genesis format
    (``{"state_dict", "epoch", "optimizer_state_dict"}``) and MONAI/ignite checkpoint dicts such as
    ``{"model": sd, "optimizer": ...}`` or ``{"network": sd, ...}`` (also ``"net"`` and ``"model_state_dict"``).

    Args:
        checkpoint: the object read from a checkpoint file.
    """
    if not isinstance(checkpoint, Mapping):
        raise GenesisInputError(
            f"a checkpoint must be a state dict or a dict holding one, got {type(checkpoint).__name__}."
        )
    if checkpoint and all(isinstance(v, torch.Tensor) for v in checkpoint.values()):
        return _strip_module(checkpoint)
    for key in _CONTAINER_KEYS:
        inner = checkpoint.get(key)
        if isinstance(inner, Mapping) and inner and all(isinstance(v, torch.Tensor) for v in inner.values()):
            return _strip_module(inner)
    raise GenesisInputError(
        f"no state dict found in the checkpoint: its top-level keys are {list(checkpoint)[:10]}; expected a state "
        f"dict of tensors or a dict holding one under one of {list(_CONTAINER_KEYS)}. Pass the state dict itself."
    )


def _is_official(state_dict: Mapping[str, Any]) -> bool:
    """Whether a (``module.``-stripped) state dict uses the key names of the released network."""
    return any(official_to_genesis_key(k) is not None for k in state_dict)


def _shape(t: Any) -> tuple:
    return tuple(t.shape) if isinstance(t, torch.Tensor) else ()


def load_official_checkpoint(path: PathLike, net: nn.Module | None = None, sha256: str | None = None) -> nn.Module:
    """
    Load a checkpoint in the released Models Genesis format (e.g. ``Genesis_Chest_CT.pt``) into a ``GenesisUNet``.

    The file is read with ``torch.load(weights_only=True)`` (nothing in it is executed) after the optional
    SHA-256 check; it may be the released dict ``{"epoch", "state_dict", "optimizer_state_dict"}`` whose keys
    carry ``module.``, or a bare state dict of the authors' network. Every key is mapped onto ``GenesisUNet``
    and all must match in name and shape. In float32 the outputs equal those of the authors' network to about
    1e-5; on GPUs where cuDNN uses TF32 (PyTorch's default) they differ by about 1e-3.

    Args:
        path: the checkpoint file.
        net: the network to load into (a ``GenesisUNet`` with matching channels and ``features=32``);
            None creates ``GenesisUNet()`` (3D, 1 -> 1 channels, sigmoid output, released batch norm).
        sha256: expected hex SHA-256 of the file, e.g. :py:data:`GENESIS_CHEST_CT_SHA256`; None skips the check.

    Returns:
        the network with the loaded weights.
    """
    state_dict = extract_state_dict(safe_load(path, sha256=sha256))
    net = GenesisUNet() if net is None else net
    target = net.state_dict()
    converted: dict[str, torch.Tensor] = {}
    unknown = []
    for key, value in state_dict.items():
        ours = official_to_genesis_key(key)
        if ours is None or ours not in target:
            unknown.append(key)
        else:
            converted[ours] = value
    missing = [genesis_to_official_key(k) or k for k in target if k not in converted]
    if unknown or missing:
        raise GenesisInputError(
            f"{path} does not match the released Genesis U-Net: {len(unknown)} unexpected key(s), first "
            f"{unknown[:5]}; {len(missing)} missing key(s), first {missing[:5]}. Is it a Models Genesis checkpoint "
            "of the released 3D U-Net? Other checkpoints load with monai_genesis.weights.load_pretrained."
        )
    wrong = [
        f"{genesis_to_official_key(k)}: {_shape(v)} in file, {_shape(target[k])} in network"
        for k, v in converted.items()
        if _shape(v) != _shape(target[k])
    ]
    if wrong:
        raise GenesisInputError(
            f"{path}: {len(wrong)} tensor shape(s) differ from the network, first {wrong[:5]}. Build the network "
            "with the checkpoint's channels and width (GenesisUNet(in_channels=1, out_channels=1, features=32))."
        )
    net.load_state_dict(converted, strict=True)
    logger.info("loaded %d tensors of the released Models Genesis format from %s", len(converted), path)
    return net


def to_official_state_dict(net: nn.Module | Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """
    Return the state dict of a ``GenesisUNet`` with the key names of the authors' network (without ``module.``).

    Args:
        net: a ``GenesisUNet`` (or its state dict, ``module.`` prefixes allowed).
    """
    state_dict = net.state_dict() if isinstance(net, nn.Module) else _strip_module(net)
    out = {}
    for key, value in state_dict.items():
        official = genesis_to_official_key(key)
        if official is None:
            raise GenesisInputError(
                f"key {key!r} has no counterpart in the released Genesis U-Net; only a GenesisUNet "
                "(any width and channels) can be exported to the released format."
            )
        out[official] = value
    return out


def save_official_checkpoint(
    net: nn.Module,
    path: PathLike,
    epoch: int = 0,
    optimizer: torch.optim.Optimizer | None = None,
    overwrite: bool = False,
) -> Path:
    """
    Save a ``GenesisUNet`` in the released format, loadable by the authors' code.

    The file holds ``{"epoch", "state_dict", "optimizer_state_dict"}`` with ``module.``-prefixed keys, like
    ``Genesis_Chest_CT.pt``.

    Args:
        net: a ``GenesisUNet``.
        path: the file to write.
        epoch: value stored under ``"epoch"``.
        optimizer: optimizer whose state is stored under ``"optimizer_state_dict"``; None stores an empty dict.
        overwrite: whether an existing file may be replaced; by default an existing file raises ``FileExistsError``.

    Returns:
        the path written.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True to replace it.")
    state_dict = {f"module.{k}": v.detach().cpu() for k, v in to_official_state_dict(net).items()}
    checkpoint = {
        "epoch": int(epoch),
        "state_dict": state_dict,
        "optimizer_state_dict": optimizer.state_dict() if optimizer is not None else {},
    }
    torch.save(checkpoint, path)
    return path


@dataclass
class TransferReport:
    """
    What :py:func:`load_pretrained` did: tensors loaded, checkpoint tensors skipped (with the reason) and network
    tensors left as they were.

    Args:
        source: description of the checkpoint (its path, or ``"state dict"``).
        network: class name of the network loaded into.
        loaded: network keys that received a checkpoint tensor.
        skipped: checkpoint key (after renaming) -> why it was not loaded.
        missing: network keys that received nothing.
        learned_loaded: the keys of ``loaded`` that are learned weight tensors (see ``num_learned_loaded``).
        shape_mismatched: the keys of ``skipped`` whose name is in the network but whose shape differs.
        repeated_input_channels: the keys of ``loaded`` whose one-input-channel kernel was repeated over the
            network's input channels (``repeat_input_channels``).
        pretraining: for an nnssl checkpoint, the pretraining setting of its adaptation plan
            (:py:class:`monai_genesis.interop.PretrainingSetting`: spacing, patch size, normalisation, input
            channels, in MONAI's axis order); None otherwise.
        stale: for an nnssl S3D checkpoint, the ``.conv`` / ``.norm`` keys whose value differs from the trained
            ``all_modules`` copy that was read.
    """

    source: str
    network: str
    loaded: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    learned_loaded: list[str] = field(default_factory=list)
    shape_mismatched: list[str] = field(default_factory=list)
    repeated_input_channels: list[str] = field(default_factory=list)
    pretraining: Any = None
    stale: list[str] = field(default_factory=list)

    @property
    def num_loaded(self) -> int:
        """Number of tensors loaded."""
        return len(self.loaded)

    @property
    def num_learned_loaded(self) -> int:
        """Number of learned weight tensors loaded: the floating-point kernels and matrices (two axes or more).

        Batch-norm ``num_batches_tracked`` counters, biases and norm parameters are left out: counters and the
        output bias match a network of any width, so loading only them means that nothing was transferred.
        """
        return len(self.learned_loaded)

    def __str__(self) -> str:
        total = self.num_loaded + len(self.missing)
        lines = [
            f"{self.network}: loaded {self.num_loaded} of {total} tensors from {self.source}; "
            f"skipped {len(self.skipped)} checkpoint tensor(s); {len(self.missing)} network tensor(s) not loaded."
        ]
        if self.pretraining is not None:
            lines.append(f"  {self.pretraining}")
        if self.stale:
            lines.append(
                f"  {len(self.stale)} conv / norm tensor(s) of the file differ from their all_modules copy (S3D); "
                f"the all_modules copy was read, first {self.stale[0]}"
            )
        lines += [f"  repeated over the input channels: {k}" for k in self.repeated_input_channels]
        lines += [f"  skipped {k}: {why}" for k, why in list(self.skipped.items())[:10]]
        if len(self.skipped) > 10:
            lines.append(f"  ... {len(self.skipped) - 10} more skipped")
        lines += [f"  not loaded {k}" for k in self.missing[:10]]
        if len(self.missing) > 10:
            lines.append(f"  ... {len(self.missing) - 10} more not loaded")
        return "\n".join(lines)


def _apply_prefix_map(state_dict: Mapping[str, Any], prefix_map: Mapping[str, str]) -> dict[str, Any]:
    """Rename keys by their longest matching prefix in ``prefix_map``; keys without a match are kept."""
    prefixes = sorted(prefix_map, key=len, reverse=True)
    out: dict[str, Any] = {}
    for key, value in state_dict.items():
        new = key
        for prefix in prefixes:
            if key.startswith(prefix):
                new = prefix_map[prefix] + key[len(prefix) :]
                break
        if new in out:
            raise GenesisInputError(f"prefix_map {dict(prefix_map)} maps two checkpoint keys onto {new!r}.")
        out[new] = value
    return out


# the first convolution of a GenesisUNet (or its encoder): its number of filters is the network's ``features``
_FIRST_GENESIS_CONV = "encoder.down1.0.conv.weight"


def _is_learned(t: Any) -> bool:
    """Whether ``t`` is a learned weight tensor: a floating-point kernel or matrix (two axes or more)."""
    return isinstance(t, torch.Tensor) and t.is_floating_point() and t.ndim >= 2


def _too_little_loaded(report: TransferReport, state_dict: Mapping[str, Any], target: Mapping[str, Any], min_loaded: int) -> str:
    """The message of :py:func:`load_pretrained` when fewer than ``min_loaded`` learned tensors match."""
    head = (
        f"{report.source}: only {report.num_learned_loaded} learned weight tensor(s) match {report.network} by name "
        f"and shape (min_loaded={min_loaded}; only kernels and matrices count, not biases, norm parameters or "
        "num_batches_tracked counters), so nothing would be transferred"
    )
    advice = _preset_advice(state_dict, target, report.network)
    if advice:
        return f"{head}. {advice}"
    if report.shape_mismatched:
        key = report.shape_mismatched[0]
        first = state_dict.get(_FIRST_GENESIS_CONV)
        width = f"; this checkpoint has features={first.shape[0]}, --genesis_features {first.shape[0]}" if isinstance(first, torch.Tensor) else ""
        return (
            f"{head}. {len(report.shape_mismatched)} tensor(s) match by name but not by shape, e.g. {key}: "
            f"{_shape(state_dict[key])} in the checkpoint, {_shape(target[key])} in the network: the checkpoint was "
            "made with another width or channel count. Build the network as the checkpoint was made (for a "
            f"GenesisUNet the same features and in_channels{width}), or train from scratch."
        )
    return (
        f"{head}. No checkpoint tensor has a name of the network: checkpoint keys start {list(state_dict)[:3]}, "
        f"network keys start {list(target)[:3]}. Check that the checkpoint belongs to this architecture, or rename "
        "its keys with prefix_map={'<checkpoint prefix>': '<network prefix>'}."
    )


# the first tensor of each pretraining network of the project: (key, what made it, the presets to merge)
_ARCHITECTURES = (
    (
        "encoder.stem.conv.conv.weight",
        "a ResEncUNet (mae_pretrain, an nnssl / nnU-Net release, or a bundle run with the ResEnc preset)",
        (
            "configs/networks/resenc_l.json and configs/finetune_mae.json (finetune_classification: "
            "configs/networks/resenc_classifier.json and configs/finetune_mae.json)"
        ),
    ),
    (
        "encoder.layer1.0.conv1.weight",
        "CSPR's 3D ResNet-18 (cspr_pretrain)",
        "configs/networks/resnet18_unet.json (finetune_classification: configs/networks/resnet18.json)",
    ),
    (
        _FIRST_GENESIS_CONV,
        "a GenesisUNet (genesis_pretrain or the released Genesis Chest CT)",
        "no network preset (the GenesisUNet is the bundles' default) or configs/networks/genesis_unet.json",
    ),
)


def _preset_advice(state_dict: Mapping[str, Any], target: Mapping[str, Any], network: str) -> str:
    """Which network made the checkpoint and which preset fragments build it, when the network is another one."""
    for key, made_by, presets in _ARCHITECTURES:
        if key in state_dict and key not in target:
            width = ""
            if key == "encoder.stem.conv.conv.weight":
                widths = [
                    int(state_dict[k].shape[0])
                    for k in sorted(
                        (k for k in state_dict if re.match(r"^encoder\.stages\.\d+\.0\.conv1\.conv\.conv\.weight$", k)),
                        key=lambda k: int(k.split(".")[2]),
                    )
                ]
                width = f", with --resenc_features {json.dumps(widths)}" if widths else ""
            return (
                f"The checkpoint is {made_by} and the network a {network}: fine-tune it in the network it was "
                f"pretrained in by merging {presets} after the bundle's train.json{width}."
            )
    return ""


def repeat_over_input_channels(kernel: torch.Tensor, shape: Sequence[int]) -> torch.Tensor | None:
    """A convolution kernel of one input channel made into one of ``shape[1]`` channels, else None.

    The kernel ``(out, 1, *k)`` is repeated over the input channels and divided by their number, so a
    multi-channel input whose channels are all equal gives the pretrained response (Wald et al., CVPR 2025).
    None when ``kernel`` is not a kernel of one input channel that differs from ``shape`` only there.

    Args:
        kernel: the pretrained kernel.
        shape: the shape of the network's kernel.
    """
    shape = tuple(shape)
    if kernel.ndim < 3 or len(shape) != kernel.ndim or kernel.shape[1] != 1 or shape[1] == 1:
        return None
    if (kernel.shape[0], *kernel.shape[2:]) != (shape[0], *shape[2:]):
        return None
    return kernel.repeat(1, shape[1], *([1] * (kernel.ndim - 2))) / shape[1]


def load_pretrained(
    net: nn.Module,
    checkpoint: PathLike | Mapping[str, Any],
    prefix_map: Mapping[str, str] | None = None,
    strict: bool = False,
    min_loaded: int = 1,
    include_prefixes: str | Sequence[str] | None = None,
    repeat_input_channels: bool = False,
    reverse_axes: bool = True,
    intensity: str | None = None,
    spacing: Sequence[float] | None = None,
) -> TransferReport:
    """
    Copy into ``net`` every checkpoint tensor whose name and shape match, and report what was loaded.

    The checkpoint may be a file (read with ``torch.load(weights_only=True)``) or an object already loaded: a
    plain state dict, the released Models Genesis format (its keys are renamed to ``GenesisUNet`` names, so it
    loads into ``GenesisUNet`` and into the encoder of ``GenesisClassifier``), or a MONAI/ignite checkpoint dict
    (``{"model": sd, ...}``, ``{"network": sd, ...}``). ``module.`` prefixes are removed, then ``prefix_map``
    renames keys. A ``GenesisUNet`` checkpoint loads into ``GenesisClassifier`` without a map (same ``encoder.*``
    names). The report is logged at INFO level. ``checkpoint`` is not modified.

    Args:
        net: the network to load into, in place (a (Distributed)DataParallel wrapper is unwrapped).
        checkpoint: path of a checkpoint file, or the loaded checkpoint object.
        prefix_map: checkpoint key prefix -> network key prefix, applied to the longest matching prefix,
            e.g. ``{"net.": ""}`` to load weights of a ``NetWithActivation`` into the bare network.
        strict: raise a ``ValueError`` unless every checkpoint tensor is loaded and every network tensor received one.
        min_loaded: raise a ``ValueError`` when fewer learned weight tensors are loaded, so that a fine-tuning
            run whose pretrained weights did not match fails instead of silently training from scratch.
            Only kernels and matrices count, not biases, norm parameters or batch-norm ``num_batches_tracked``
            counters: counters and the output bias match a network of any width.
        include_prefixes: load only the checkpoint tensors whose name (after renaming) starts with one of these,
            e.g. ``"encoder."`` for the stem and encoder of a pretrained ``ResEncUNet`` with a fresh decoder; the
            others are reported as skipped. None loads every matching tensor.
        repeat_input_channels: load a kernel of one input channel into a kernel of ``C`` input channels by
            repeating it over them and dividing by ``C`` (:py:func:`repeat_over_input_channels`), for a network
            fine-tuned on multi-channel input (e.g. several MRI sequences) from a one-channel pretraining.
        reverse_axes: for an nnssl checkpoint, reverse the spatial axes of its kernels from nnssl's (z, y, x)
            arrays to MONAI's (x, y, z) (:py:mod:`monai_genesis.interop.nnssl`); False keeps them as stored.
        intensity: the fine-tuning's intensity setting (``"zscore"``, ``"ct"``, ``"mri"``), compared with an nnssl
            checkpoint's pretraining normalisation; None when unknown.
        spacing: the fine-tuning voxel spacing in mm, compared with an nnssl checkpoint's; None when the images
            are not resampled.

    An nnssl / nnU-Net checkpoint (:py:func:`monai_genesis.interop.read_nnssl_checkpoint`: the release or the
    training form, S3D, or a bare state dict of the reference ``ResidualEncoderUNet``) is translated into
    ``ResEncUNet`` names first; unless ``include_prefixes`` says otherwise only its stem and encoder load (as in
    nnU-Net), the report gives its pretraining setting, and a warning says each difference from ``intensity`` and
    ``spacing`` with the override that matches it. A Primus or other non-ResEnc checkpoint, or one whose encoder
    has other widths than the network, is refused with the file and the reason.

    Returns:
        the :py:class:`TransferReport`.
    """
    from monai_genesis.interop.nnssl import is_nnssl_checkpoint, read_nnssl_checkpoint

    net = unwrap_parallel(net)
    if isinstance(checkpoint, Mapping):
        source, obj = "state dict", checkpoint
    else:
        source, obj = str(checkpoint), safe_load(checkpoint)
    nnssl = read_nnssl_checkpoint(obj, reverse_axes=reverse_axes, source=source) if is_nnssl_checkpoint(obj) else None
    if nnssl is not None:
        state_dict = dict(nnssl.state_dict)
        if include_prefixes is None:
            # nnssl and nnU-Net transfer the stem and the encoder only (the adaptation plan's key_to_stem / _encoder)
            include_prefixes = "encoder."
    else:
        state_dict = extract_state_dict(obj)
    if _is_official(state_dict):
        state_dict = {official_to_genesis_key(k) or k: v for k, v in state_dict.items()}
    if prefix_map:
        state_dict = _apply_prefix_map(state_dict, prefix_map)
    target = net.state_dict()
    report = TransferReport(source=source, network=type(net).__name__)
    if nnssl is not None:
        report.pretraining, report.stale = nnssl.setting, list(nnssl.stale)
    to_load = {}
    included = None if include_prefixes is None else tuple(
        [include_prefixes] if isinstance(include_prefixes, str) else include_prefixes
    )
    for key, value in state_dict.items():
        repeated = (
            repeat_over_input_channels(value, _shape(target[key]))
            if repeat_input_channels and key in target and isinstance(value, torch.Tensor)
            and _shape(value) != _shape(target[key])
            else None
        )
        if included is not None and not key.startswith(included):
            report.skipped[key] = f"not under include_prefixes {list(included)}"
        elif key not in target:
            report.skipped[key] = "no tensor of this name in the network"
        elif repeated is not None:
            to_load[key] = repeated
            report.loaded.append(key)
            report.repeated_input_channels.append(key)
            report.learned_loaded.append(key)
        elif _shape(value) != _shape(target[key]):
            report.skipped[key] = f"shape {_shape(value)} in checkpoint, {_shape(target[key])} in network"
            report.shape_mismatched.append(key)
        else:
            to_load[key] = value
            report.loaded.append(key)
            if _is_learned(target[key]):
                report.learned_loaded.append(key)
    report.missing = [k for k in target if k not in to_load]
    if nnssl is not None:
        _check_nnssl_fit(nnssl, report, state_dict, target)
    if strict and (report.skipped or report.missing):
        raise GenesisInputError(f"strict loading failed, the checkpoint and the network differ:\n{report}")
    if report.num_learned_loaded < min_loaded:
        logger.warning("%s", report)
        raise GenesisInputError(_too_little_loaded(report, state_dict, target, min_loaded))
    net.load_state_dict(to_load, strict=False)
    logger.info("%s", report)
    if report.pretraining is not None:
        for line in report.pretraining.advice(intensity=intensity, spacing=spacing):
            logger.warning("%s: %s.", source, line)
    return report


def _check_nnssl_fit(nnssl, report: TransferReport, state_dict: Mapping[str, Any], target: Mapping[str, Any]) -> None:
    """Refuse an nnssl checkpoint whose encoder does not fit the network (another width or depth), naming both."""
    encoder_mismatch = [k for k in report.shape_mismatched if k.startswith("encoder.")]
    if not encoder_mismatch:
        return
    widths = [int(v.shape[0]) for k, v in sorted(target.items()) if re.match(r"^encoder\.stages\.\d+\.0\.conv1\.conv\.conv\.weight$", k)]
    key = encoder_mismatch[0]
    if widths == nnssl.features:
        fix = (
            "The widths agree, the kernels do not: build the network with the checkpoint's kernel sizes and strides "
            f"({nnssl.strides}), in the axis order it was read in (reverse_axes)."
        )
    else:
        fix = (
            "Build the network as the checkpoint was made: configs/networks/resenc_l.json with --resenc_features "
            f"{json.dumps(nnssl.features)}."
        )
    raise GenesisInputError(
        f"{report.source}: a ResEnc checkpoint of stage widths {nnssl.features} and strides {nnssl.strides}, "
        f"the network {report.network} has widths {widths or 'of another architecture'}; {len(encoder_mismatch)} "
        f"encoder tensor(s) differ in shape, e.g. {key}: {_shape(state_dict[key])} in the checkpoint, "
        f"{_shape(target[key])} in the network. {fix}"
    )
