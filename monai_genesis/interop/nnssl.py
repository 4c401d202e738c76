"""Weights from and to nnssl / nnU-Net: the checkpoint format of nnssl's releases and our ``ResEncUNet``.

nnssl (MIC-DKFZ) pretrains, and nnU-Net 2.8 fine-tunes, the ``ResidualEncoderUNet`` of
``dynamic-network-architectures``; our :py:class:`monai_genesis.networks.ResEncUNet` is the same network under other
names. This module translates the names and the layouts, reads and writes the checkpoint files, and keeps the axis
order right:

- names: each conv / norm of the reference is stored twice (``.conv`` = ``.all_modules.0``, ``.norm`` =
  ``.all_modules.1``) and the whole encoder again under ``decoder.encoder.*``; the deep-supervision heads
  ``decoder.seg_layers.0 .. n-3`` are never used without deep supervision. :py:data:`KEY_TABLE` gives the rows.
- S3D checkpoints: nnssl's sparse conversion trains the ``all_modules.*`` copy and leaves the ``.conv`` / ``.norm``
  copy at its initial value; the ``all_modules`` copy is read, and a warning names the keys whose copies differ.
- axis order: nnssl and nnU-Net read images with SimpleITK, whose arrays are (z, y, x); MONAI's loaders give
  (x, y, z). Kernels, strides, spacings and patch sizes are reversed on import and on export
  (``reverse_axes=True``), so a network here sees the axes in the order the weights were trained in. Flips are
  not changed: nnssl pretrains with mirroring on every axis.
- files: ``checkpoint_final.pth`` holds ``network_weights``, ``nnssl_adaptation_plan``, ``init_args`` and
  ``trainer_name`` (only tensors and plain containers: ``torch.load(weights_only=True)`` reads it), with
  ``adaptation_plan.json`` beside it, as nnssl releases them and nnU-Net's ``nnUNetv2_train_pretrained`` reads them.
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

from monai_genesis.errors import GenesisInputError

__all__ = [
    "KEY_TABLE",
    "NNSSL_ARCHITECTURES",
    "NnsslCheckpoint",
    "PretrainingSetting",
    "export_command",
    "export_nnssl",
    "is_nnssl_checkpoint",
    "load_nnssl_network",
    "monai_axis_order",
    "nnssl_to_resenc_key",
    "permute_spatial_axes",
    "read_nnssl_checkpoint",
    "resenc_architecture",
    "resenc_to_nnssl_key",
    "reverse_spatial_axes",
    "to_nnssl_state_dict",
]

logger = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]

#: architectures of an nnssl adaptation plan that load into ``ResEncUNet`` (``ResEncL`` is a preset of the other)
NNSSL_ARCHITECTURES = ("ResEncL", "ResidualEncoderUNet")
#: the keys that make a checkpoint an nnssl one (release form; the training form has ``optimizer_state`` etc. too)
NNSSL_KEYS = ("network_weights", "nnssl_adaptation_plan", "init_args", "trainer_name")

# one row per unit: (the reference's prefix, ours); S, B, I, J are stage, block, decoder stage and conv numbers.
# A unit's conv is ``<prefix>.conv.*`` there (also ``.all_modules.0.*``) and ``<prefix>.conv.conv.*`` here; its norm
# ``<prefix>.norm.*`` there (also ``.all_modules.1.*``) and ``<prefix>.norm.*`` here.
KEY_TABLE = (
    ("encoder.stem.convs.0", "encoder.stem"),
    ("encoder.stages.S.blocks.B.conv1", "encoder.stages.S.B.conv1"),
    ("encoder.stages.S.blocks.B.conv2", "encoder.stages.S.B.conv2"),
    ("encoder.stages.S.blocks.B.skip.K", "encoder.stages.S.B.projection"),
    ("decoder.stages.I.convs.J", "decoder.I.convs.J"),
    ("decoder.transpconvs.I", "decoder.I.upsample.conv"),
    ("decoder.seg_layers.LAST", "out.conv"),
)
_STEM = re.compile(r"^encoder\.stem\.convs\.0\.(?P<rest>.+)$")
_BLOCK = re.compile(r"^encoder\.stages\.(\d+)\.blocks\.(\d+)\.(conv1|conv2)\.(?P<rest>.+)$")
_SKIP = re.compile(r"^encoder\.stages\.(\d+)\.blocks\.(\d+)\.skip\.[01]\.(?P<rest>.+)$")
_DECODER = re.compile(r"^decoder\.stages\.(\d+)\.convs\.(\d+)\.(?P<rest>.+)$")
_LAYER = re.compile(r"^(conv|norm|all_modules\.0|all_modules\.1)\.(weight|bias)$")
_TRANSP = re.compile(r"^decoder\.transpconvs\.(\d+)\.(weight|bias)$")
_SEG = re.compile(r"^decoder\.seg_layers\.(\d+)\.(weight|bias)$")
_OURS_UNIT = re.compile(
    r"^(encoder\.stem|encoder\.stages\.(\d+)\.(\d+)\.(conv1|conv2|projection)|decoder\.(\d+)\.convs\.(\d+))"
    r"\.(conv\.conv|norm)\.(weight|bias)$"
)
_OURS_UP = re.compile(r"^decoder\.(\d+)\.upsample\.conv\.(weight|bias)$")
_OURS_OUT = re.compile(r"^out\.conv\.(weight|bias)$")
_PRIMUS_KEYS = ("eva.", "down_projection.", "up_projection.")
_REFERENCE_STEM = "encoder.stem.convs.0."


def _translate(key: str, out_layer: int | None) -> tuple[str, str] | None:
    """``(ResEncUNet name, copy)`` of a reference key; copy is ``"trained"`` (``all_modules.*``), ``"plain"``
    (``.conv`` / ``.norm``) or ``"single"`` (a tensor stored once); None when it has no counterpart."""
    for kind, pattern in (("stem", _STEM), ("block", _BLOCK), ("skip", _SKIP), ("decoder", _DECODER)):
        m = pattern.match(key)
        if m is None:
            continue
        layer = _LAYER.match(m.group("rest"))
        if layer is None:
            return None
        unit = {
            "stem": "encoder.stem",
            "block": f"encoder.stages.{m.group(1)}.{m.group(2)}.{m.group(3)}" if kind == "block" else "",
            "skip": f"encoder.stages.{m.group(1)}.{m.group(2)}.projection" if kind == "skip" else "",
            "decoder": f"decoder.{m.group(1)}.convs.{m.group(2)}" if kind == "decoder" else "",
        }[kind]
        ours = f"{unit}.{'conv.conv' if layer.group(1) in ('conv', 'all_modules.0') else 'norm'}.{layer.group(2)}"
        return ours, "trained" if layer.group(1).startswith("all_modules") else "plain"
    m = _TRANSP.match(key)
    if m:
        return f"decoder.{m.group(1)}.upsample.conv.{m.group(2)}", "single"
    m = _SEG.match(key)
    if m and out_layer is not None and int(m.group(1)) == out_layer:
        return f"out.conv.{m.group(2)}", "single"
    return None


def nnssl_to_resenc_key(key: str, out_layer: int | None = None) -> str | None:
    """The ``ResEncUNet`` name of a key of the reference ``ResidualEncoderUNet``, or None if it has none.

    Both copies of a conv / norm (``.conv`` and ``.all_modules.0``, ``.norm`` and ``.all_modules.1``) map onto the
    same name; ``decoder.encoder.*`` (the encoder again) and the deep-supervision heads have none.

    Args:
        key: a key of the reference's state dict, e.g. ``encoder.stages.1.blocks.0.skip.1.norm.weight``.
        out_layer: number of the output head ``decoder.seg_layers.N`` (the last one); None maps no head.
    """
    found = _translate(key, out_layer)
    return None if found is None else found[0]


def resenc_to_nnssl_key(key: str, strided_stages: Sequence[int] = (), out_layer: int = 4) -> list[str]:
    """Every key of the reference that holds the ``ResEncUNet`` tensor ``key`` (both copies, ``decoder.encoder.*``).

    Args:
        key: a key of ``ResEncUNet().state_dict()``.
        strided_stages: the stages whose first block has a stride (its skip starts with a pooling: ``skip.1``).
        out_layer: number of the output head, the number of stages minus 2.

    Returns:
        the reference's keys, empty when ``key`` has no counterpart (``densify.*`` of S3D).
    """
    m = _OURS_UNIT.match(key)
    if m:
        unit, layer, param = m.group(1), m.group(7), m.group(8)
        if unit == "encoder.stem":
            ref = "encoder.stem.convs.0"
        elif m.group(2) is not None:
            stage, block, kind = m.group(2), m.group(3), m.group(4)
            if kind == "projection":
                kind = f"skip.{1 if int(stage) in strided_stages and block == '0' else 0}"
            ref = f"encoder.stages.{stage}.blocks.{block}.{kind}"
        else:
            ref = f"decoder.stages.{m.group(5)}.convs.{m.group(6)}"
        twin = "all_modules.0" if layer == "conv.conv" else "all_modules.1"
        plain = "conv" if layer == "conv.conv" else "norm"
        keys = [f"{ref}.{plain}.{param}", f"{ref}.{twin}.{param}"]
        if ref.startswith("encoder."):
            keys += [f"decoder.{k}" for k in keys]
        return keys
    m = _OURS_UP.match(key)
    if m:
        return [f"decoder.transpconvs.{m.group(1)}.{m.group(2)}"]
    m = _OURS_OUT.match(key)
    if m:
        return [f"decoder.seg_layers.{out_layer}.{m.group(1)}"]
    return []


def reverse_spatial_axes(tensor: torch.Tensor, spatial_dims: int = 3) -> torch.Tensor:
    """A convolution kernel ``(out, in, *k)`` with its spatial axes in the reverse order; other tensors unchanged.

    The kernel of a network trained on (z, y, x) arrays, reversed, is the kernel of the same network on (x, y, z)
    arrays (and back). Transposed-convolution kernels ``(in, out, *k)`` alike.

    Args:
        tensor: the tensor.
        spatial_dims: number of spatial axes.
    """
    if not isinstance(tensor, torch.Tensor) or tensor.ndim != spatial_dims + 2 or spatial_dims < 2:
        return tensor
    return tensor.permute(0, 1, *range(tensor.ndim - 1, 1, -1)).contiguous()


def is_nnssl_checkpoint(obj: Any) -> bool:
    """Whether a loaded checkpoint object is in nnssl's format (a dict with ``network_weights`` or another of its
    keys) or is a bare state dict of the reference ``ResidualEncoderUNet`` (its stem ``encoder.stem.convs.0.*``)."""
    if not isinstance(obj, Mapping):
        return False
    if any(k in obj for k in NNSSL_KEYS):
        return True
    return any(isinstance(k, str) and k.startswith(_REFERENCE_STEM) for k in obj)


@dataclass
class PretrainingSetting:
    """The pretraining setting an nnssl adaptation plan records, in MONAI's axis order (x, y, z).

    Args:
        architecture: ``arch_class_name`` of the plan.
        configuration: name of the plan's configuration (e.g. ``"onemmiso"``).
        spacing: voxel spacing in mm, or None when the images were not resampled.
        patch_size: pretraining patch size.
        normalization: the plan's normalisation schemes (e.g. ``["ZScoreNormalization"]``).
        in_channels: ``pretrain_num_input_channels``.
        recommended_patch_size: ``recommended_downstream_patchsize``.
    """

    architecture: str | None = None
    configuration: str | None = None
    spacing: list[float] | None = None
    patch_size: list[int] | None = None
    normalization: list[str] = field(default_factory=list)
    in_channels: int | None = None
    recommended_patch_size: list[int] | None = None

    @property
    def zscore(self) -> bool:
        """Whether the images were z-scored per image (nnssl's ``ZScoreNormalization``)."""
        return bool(self.normalization) and all(n == "ZScoreNormalization" for n in self.normalization)

    def advice(self, intensity: str | None = None, spacing: Sequence[float] | None = None) -> list[str]:
        """What differs between this setting and a fine-tuning one, each with the override that matches it.

        Args:
            intensity: the fine-tuning bundle's ``intensity`` (``"zscore"``, ``"ct"``, ``"mri"``), None if unknown.
            spacing: the fine-tuning voxel spacing in mm, None if the images are not resampled (this project's
                fine-tuning bundles do not resample).
        """
        out = []
        if self.zscore and intensity not in (None, "zscore"):
            out.append(
                f"the weights were pretrained on z-scored images ({self.normalization}), the fine-tuning uses "
                f"intensity={intensity!r}: pass --intensity zscore, or merge configs/finetune_mae.json"
            )
        if self.spacing is not None and (spacing is None or any(abs(a - b) > 1e-3 for a, b in zip(spacing, self.spacing))):
            got = "images at their own spacing" if spacing is None else f"spacing {list(spacing)}"
            out.append(
                f"the weights were pretrained at spacing {self.spacing} mm ({self.configuration}), the fine-tuning "
                f"reads {got}: resample the images to {self.spacing} mm first (e.g. monai.transforms.Spacingd "
                f"pixdim={self.spacing}) when the structures should look as they did in pretraining"
            )
        return out

    def __str__(self) -> str:
        spacing = "no resampling" if self.spacing is None else f"spacing {self.spacing} mm"
        return (
            f"pretrained as {self.architecture} ({self.configuration}): {spacing}, patch {self.patch_size}, "
            f"normalisation {self.normalization}, {self.in_channels} input channel(s)"
        )


@dataclass
class NnsslCheckpoint:
    """An nnssl checkpoint translated into ``ResEncUNet`` names.

    Args:
        source: the file (or ``"state dict"``).
        state_dict: the tensors under ``ResEncUNet`` names (the trained copy of each conv / norm).
        setting: the adaptation plan's pretraining setting (None when the file has no plan, as nnssl's S3D
            training checkpoints).
        skipped: reference key -> why it has no ``ResEncUNet`` tensor (duplicates, deep-supervision heads).
        stale: keys whose ``.conv`` / ``.norm`` copy differs from the ``all_modules`` copy (S3D), the latter read.
        trainer: ``trainer_name``.
        features: width of each encoder stage.
        strides: stride of each stage, in the order of the tensors returned (x, y, z when reversed).
    """

    source: str
    state_dict: dict[str, torch.Tensor]
    setting: PretrainingSetting | None = None
    skipped: dict[str, str] = field(default_factory=dict)
    stale: list[str] = field(default_factory=list)
    trainer: str | None = None
    features: list[int] = field(default_factory=list)
    strides: list[list[int]] = field(default_factory=list)


def monai_axis_order(plan: Mapping[str, Any] | None, spatial_dims: int = 3) -> list[int]:
    """For each MONAI array axis (x, y, z), the axis of an nnssl network that sees it.

    nnssl reads (z, y, x) arrays and transposes them by its plan's ``transpose_forward`` before the network (the
    identity in nnssl's pretraining plans), so network axis ``i`` is SimpleITK axis ``transpose_forward[i]``, which
    is MONAI axis ``spatial_dims - 1 - transpose_forward[i]``. Without a plan: the reversed order.

    Args:
        plan: the ``nnssl_adaptation_plan``, or None.
        spatial_dims: number of spatial axes.
    """
    forward = list(range(spatial_dims))
    if isinstance(plan, Mapping):
        given = (plan.get("pretrain_plan") or {}).get("transpose_forward")
        if given is not None and sorted(int(a) for a in given) == forward:
            forward = [int(a) for a in given]
    return [forward.index(spatial_dims - 1 - m) for m in range(spatial_dims)]


def permute_spatial_axes(tensor: torch.Tensor, order: Sequence[int]) -> torch.Tensor:
    """A convolution kernel ``(out, in, *k)`` whose spatial axis ``m`` is the input's spatial axis ``order[m]``;
    other tensors unchanged."""
    if not isinstance(tensor, torch.Tensor) or tensor.ndim != len(order) + 2 or list(order) == sorted(order):
        return tensor
    return tensor.permute(0, 1, *[2 + a for a in order]).contiguous()


def _plan_setting(plan: Mapping[str, Any], order: Sequence[int] | None) -> PretrainingSetting:
    arch = plan.get("architecture_plans") or {}
    pretrain = plan.get("pretrain_plan") or {}
    configurations = pretrain.get("configurations") or {}
    name, config = next(iter(configurations.items()), (None, {}))
    config = config or {}

    def axes(v):
        if v is None:
            return None
        v = list(v)
        return [v[a] for a in order] if order is not None and len(v) == len(order) else v

    return PretrainingSetting(
        architecture=arch.get("arch_class_name"),
        configuration=name,
        spacing=axes(config.get("spacing")),
        patch_size=axes(config.get("patch_size")),
        normalization=list(config.get("normalization_schemes") or []),
        in_channels=plan.get("pretrain_num_input_channels"),
        recommended_patch_size=axes(plan.get("recommended_downstream_patchsize")),
    )


def _refuse(source: str, found: str, why: str) -> GenesisInputError:
    return GenesisInputError(f"{source}: {found}; {why}")


def read_nnssl_checkpoint(
    checkpoint: PathLike | Mapping[str, Any], reverse_axes: bool = True, source: str | None = None
) -> NnsslCheckpoint:
    """Read an nnssl / nnU-Net-pretrained checkpoint and translate it into ``ResEncUNet`` names.

    Accepts the release form (``network_weights``, ``nnssl_adaptation_plan``, ``init_args``, ``trainer_name``),
    the training form (with ``optimizer_state`` and the others, which are ignored), S3D checkpoints (the trained
    ``all_modules.*`` copy is read; a warning names the keys whose ``.conv`` / ``.norm`` copy differs) and a bare
    state dict of the reference network. Refuses a Primus (transformer) checkpoint and a plan of another
    architecture, naming the file and what it found.

    Args:
        checkpoint: the file (read with ``torch.load(weights_only=True)``) or the loaded object.
        reverse_axes: reverse the spatial axes of the kernels, strides, spacing and patch size, from nnssl's
            (z, y, x) arrays to MONAI's (x, y, z) (see the module's docstring), after undoing the plan's
            ``transpose_forward`` (:py:func:`monai_axis_order`). False keeps the order as stored.
        source: how to name the checkpoint in messages (default: its path, or ``"state dict"``).
    """
    from monai_genesis.weights import safe_load

    if isinstance(checkpoint, Mapping):
        source, obj = source or "state dict", checkpoint
    else:
        source, obj = source or str(checkpoint), safe_load(checkpoint)
    if isinstance(obj, Mapping) and isinstance(obj.get("network_weights"), Mapping):
        weights, plan = obj["network_weights"], obj.get("nnssl_adaptation_plan")
        trainer = obj.get("trainer_name")
    elif isinstance(obj, Mapping) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        weights, plan, trainer = obj, None, None
    else:
        keys = list(obj)[:8] if isinstance(obj, Mapping) else type(obj).__name__
        raise _refuse(
            source,
            f"no network_weights found (top level: {keys})",
            "an nnssl checkpoint holds its network's state dict there; pass the release's checkpoint_final.pth",
        )
    primus = [k for k in weights if k.startswith(_PRIMUS_KEYS)]
    arch = (plan or {}).get("architecture_plans", {}).get("arch_class_name") if isinstance(plan, Mapping) else None
    if primus or (arch and str(arch).startswith("Primus")):
        raise _refuse(
            source,
            f"a Primus (transformer) checkpoint ({arch or 'keys ' + ', '.join(primus[:2])})",
            "only ResEnc checkpoints (ResidualEncoderUNet, ResEncL) load into ResEncUNet; fine-tune Primus with "
            "nnU-Net's nnUNetv2_train_pretrained",
        )
    if arch is not None and arch not in NNSSL_ARCHITECTURES:
        raise _refuse(
            source,
            f"its adaptation plan's architecture is {arch}",
            f"only {list(NNSSL_ARCHITECTURES)} load into ResEncUNet (configs/networks/resenc_l.json)",
        )
    if "encoder.stem.convs.0.conv.weight" not in weights and "encoder.stem.convs.0.all_modules.0.weight" not in weights:
        raise _refuse(
            source,
            f"no ResEnc stem (encoder.stem.convs.0.*) among its network_weights (first keys {list(weights)[:3]})",
            "it is not a ResidualEncoderUNet checkpoint",
        )
    heads = sorted(int(m.group(1)) for k in weights if (m := _SEG.match(k)))
    out_layer = heads[-1] if heads else None
    spatial_dims = weights["encoder.stem.convs.0.all_modules.0.weight" if "encoder.stem.convs.0.all_modules.0.weight"
                           in weights else "encoder.stem.convs.0.conv.weight"].ndim - 2
    result = NnsslCheckpoint(source=source, state_dict={}, trainer=trainer)
    order = monai_axis_order(plan, spatial_dims) if reverse_axes else list(range(spatial_dims))
    if isinstance(plan, Mapping):
        result.setting = _plan_setting(plan, order)
    plain: dict[str, tuple[str, torch.Tensor]] = {}
    for key, value in weights.items():
        if key.startswith("decoder.encoder."):
            result.skipped[key] = "the encoder again inside the decoder"
            continue
        found = _translate(key, out_layer)
        if found is None:
            why = "a deep-supervision head, unused" if _SEG.match(key) else "no counterpart in ResEncUNet"
            result.skipped[key] = why
            continue
        ours, copy = found
        value = permute_spatial_axes(value, order)
        if copy == "plain":
            plain[ours] = (key, value)
            result.skipped[key] = "the second name of a conv / norm (the all_modules copy is read)"
        else:
            result.state_dict[ours] = value
    for ours, (key, value) in plain.items():
        trained = result.state_dict.get(ours)
        if trained is None:
            result.state_dict[ours] = value  # a file with the plain names only
            result.skipped.pop(key)
        elif not torch.equal(trained, value):
            result.stale.append(key)
    if result.stale:
        logger.warning(
            "%s: %d conv / norm tensor(s) differ from their all_modules copy (an S3D checkpoint: nnssl's sparse "
            "conversion trains the all_modules copy and leaves the other at its initial value); the all_modules "
            "copy was read. First: %s", source, len(result.stale), result.stale[:5],
        )
    result.features, result.strides = _architecture(result.state_dict, spatial_dims)
    return result


def _architecture(state_dict: Mapping[str, torch.Tensor], spatial_dims: int) -> tuple[list[int], list[list[int]]]:
    """Stage widths and strides of a ``ResEncUNet`` state dict (strides read from the decoder's upsampling kernels)."""
    stages = sorted({int(m.group(1)) for k in state_dict if (m := re.match(r"^encoder\.stages\.(\d+)\.", k))})
    features = [int(state_dict[f"encoder.stages.{s}.0.conv1.conv.conv.weight"].shape[0]) for s in stages]
    strides = [[1] * spatial_dims]
    for s in stages[1:]:
        up = state_dict.get(f"decoder.{len(stages) - 1 - s}.upsample.conv.weight")
        strides.append(list(up.shape[2:]) if up is not None else [2] * spatial_dims)
    return features, strides


def resenc_architecture(state_dict: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """The ``ResEncUNet`` arguments of a state dict: ``spatial_dims``, ``in_channels``, ``out_channels``,
    ``features``, ``blocks_per_stage``, ``strides``, ``kernel_size`` (per stage), ``decoder_convs``.

    Strides are read from the decoder's upsampling kernels (kernel = stride); the first stage's is 1, as in
    every ResEnc plan.

    Args:
        state_dict: the network's state dict (``module.`` prefixes removed).
    """
    stem = state_dict.get("encoder.stem.conv.conv.weight")
    if stem is None:
        raise GenesisInputError(
            f"no ResEncUNet stem (encoder.stem.conv.conv.weight) in the state dict (first keys {list(state_dict)[:3]}); "
            "only ResEncUNet models (mae_pretrain, or a bundle run with configs/networks/resenc_l.json) export to nnssl."
        )
    spatial_dims = stem.ndim - 2
    features, strides = _architecture(state_dict, spatial_dims)
    n = len(features)
    blocks = [len({int(m.group(1)) for k in state_dict if (m := re.match(rf"^encoder\.stages\.{s}\.(\d+)\.", k))})
              for s in range(n)]
    kernels = [list(state_dict[f"encoder.stages.{s}.0.conv2.conv.conv.weight"].shape[2:]) for s in range(n)]
    decoder_convs = len({int(m.group(1)) for k in state_dict if (m := re.match(r"^decoder\.0\.convs\.(\d+)\.", k))})
    return {
        "spatial_dims": spatial_dims,
        "in_channels": int(stem.shape[1]),
        "out_channels": int(state_dict["out.conv.weight"].shape[0]),
        "features": features,
        "blocks_per_stage": blocks,
        "strides": strides,
        "kernel_size": kernels,
        "decoder_convs": decoder_convs,
    }


def to_nnssl_state_dict(
    state_dict: Mapping[str, torch.Tensor], reverse_axes: bool = True
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """A ``ResEncUNet`` state dict under the reference's names, every duplicate included, and its architecture.

    The result loads strictly into ``ResidualEncoderUNet(..., deep_supervision=False)`` built from the returned
    architecture's ``arch_kwargs``. The deep-supervision heads it never uses are written as zeros; S3D's
    ``densify.*`` tensors have no counterpart and are left out (as in nnssl's S3D ``network_weights``).

    Args:
        state_dict: a ``ResEncUNet`` state dict (``module.`` prefixes removed).
        reverse_axes: reverse the spatial axes of the kernels and strides, from MONAI's (x, y, z) to nnssl's
            (z, y, x).

    Returns:
        ``(network_weights, architecture)``; ``architecture`` is :py:func:`resenc_architecture`'s dict with the
        strides and kernel sizes in the written order.
    """
    arch = resenc_architecture(state_dict)
    sd = arch["spatial_dims"]
    n = len(arch["features"])
    strided = [s for s, st in enumerate(arch["strides"]) if any(v != 1 for v in st)]
    out: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        refs = resenc_to_nnssl_key(key, strided, out_layer=n - 2)
        if not refs:
            continue
        value = value.detach().cpu()
        value = reverse_spatial_axes(value, sd) if reverse_axes else value
        for ref in refs:
            out[ref] = value.clone()
    out_channels = arch["out_channels"]
    for head in range(n - 2):
        width = arch["features"][n - 2 - head]
        out[f"decoder.seg_layers.{head}.weight"] = torch.zeros(out_channels, width, *([1] * sd))
        out[f"decoder.seg_layers.{head}.bias"] = torch.zeros(out_channels)
    if reverse_axes:
        arch = {**arch, "strides": [s[::-1] for s in arch["strides"]], "kernel_size": [k[::-1] for k in arch["kernel_size"]]}
    return out, arch


def load_nnssl_network(
    path: PathLike, net: torch.nn.Module | None = None, sha256: str | None = None, reverse_axes: bool = True
) -> torch.nn.Module:
    """Load a whole nnssl ResEnc checkpoint (stem, encoder, decoder, output head) into a ``ResEncUNet``, strictly.

    Args:
        path: the ``checkpoint_final.pth``.
        net: the ``ResEncUNet`` to load into; None builds one from the checkpoint (its widths, blocks, strides,
            kernels and channels, in MONAI's axis order when ``reverse_axes``).
        sha256: expected hex SHA-256 of the file, checked before it is read; None skips the check.
        reverse_axes: reverse the kernels' spatial axes from nnssl's (z, y, x) to MONAI's (x, y, z).

    Returns:
        the network with every tensor of the checkpoint, in eval mode.
    """
    from monai_genesis.networks import ResEncUNet
    from monai_genesis.weights import safe_load

    ckpt = read_nnssl_checkpoint(safe_load(path, sha256=sha256), reverse_axes=reverse_axes, source=str(path))
    if net is None:
        net = ResEncUNet(**resenc_architecture(ckpt.state_dict))
    target = net.state_dict()
    missing = [k for k in target if k not in ckpt.state_dict and not k.startswith("densify.")]
    unexpected = [k for k in ckpt.state_dict if k not in target]
    wrong = [k for k in ckpt.state_dict if k in target and ckpt.state_dict[k].shape != target[k].shape]
    if missing or unexpected or wrong:
        raise GenesisInputError(
            f"{path}: its ResEnc (widths {ckpt.features}) does not fit the network {type(net).__name__}: "
            f"{len(missing)} missing tensor(s), first {missing[:3]}; {len(unexpected)} unexpected, first "
            f"{unexpected[:3]}; {len(wrong)} of another shape, first {wrong[:3]}. Pass net=None to build the "
            "network from the checkpoint."
        )
    net.load_state_dict(ckpt.state_dict, strict=not getattr(net, "sparse", False))
    logger.info("loaded %d tensors of an nnssl ResEnc checkpoint from %s", len(ckpt.state_dict), path)
    return net.eval()


def _arch_kwargs(arch: Mapping[str, Any]) -> dict[str, Any]:
    """The plan's ``arch_kwargs`` of ``ResidualEncoderUNet`` (dotted names for the classes, as nnssl writes them)."""
    sd = arch["spatial_dims"]
    return {
        "n_stages": len(arch["features"]),
        "features_per_stage": list(arch["features"]),
        "conv_op": f"torch.nn.modules.conv.Conv{sd}d",
        "kernel_sizes": [list(k) for k in arch["kernel_size"]],
        "strides": [list(s) for s in arch["strides"]],
        "n_blocks_per_stage": list(arch["blocks_per_stage"]),
        "n_conv_per_stage_decoder": [arch["decoder_convs"]] * (len(arch["features"]) - 1),
        "conv_bias": True,
        "norm_op": f"torch.nn.modules.instancenorm.InstanceNorm{sd}d",
        "norm_op_kwargs": {"eps": 1e-5, "affine": True},
        "dropout_op": None,
        "dropout_op_kwargs": None,
        "nonlin": "torch.nn.modules.activation.LeakyReLU",
        "nonlin_kwargs": {"inplace": True},
    }


def export_nnssl(
    checkpoint: PathLike | Mapping[str, torch.Tensor],
    out_dir: PathLike,
    spacing: Sequence[float] | None = None,
    patch_size: Sequence[int] = (160, 160, 160),
    normalization: str = "ZScoreNormalization",
    trainer_name: str = "monai_genesis",
    dataset_name: str = "monai_genesis",
    reverse_axes: bool = True,
    overwrite: bool = False,
) -> Path:
    """Write a ``ResEncUNet`` model as nnssl releases its checkpoints, for nnU-Net's ``nnUNetv2_train_pretrained``.

    ``out_dir`` receives ``checkpoint_final.pth`` (``network_weights`` under the reference's names with every
    duplicate, so that ``ResidualEncoderUNet.load_state_dict`` is strict; ``nnssl_adaptation_plan``; ``init_args``;
    ``trainer_name``; only tensors and plain containers) and ``adaptation_plan.json``. Works for ``mae_pretrain``
    models (MAE and S3D; S3D's ``densify.*`` is left out) and for Genesis pretrained on the ResEnc preset.

    Args:
        checkpoint: a ``models/model.pt`` of a ResEnc bundle run, or a ``ResEncUNet`` state dict.
        out_dir: the folder to write.
        spacing: the pretraining voxel spacing in mm, in MONAI's (x, y, z) order (the bundle's ``pixdim``); None when
            the images were not resampled (``mae_pretrain``'s default), written as nnssl's ``noresample``.
        patch_size: the pretraining patch size, (x, y, z).
        normalization: nnssl's name of the intensity normalisation (``"ZScoreNormalization"`` for mae_pretrain).
        trainer_name: recorded as ``trainer_name``.
        dataset_name: recorded as the plan's ``dataset_name``.
        reverse_axes: write the kernels, strides, spacing and patch size in nnssl's (z, y, x) order.
        overwrite: replace an existing ``checkpoint_final.pth``.

    Returns:
        the path of ``checkpoint_final.pth``.
    """
    from monai_genesis.weights import extract_state_dict, safe_load

    source = "state dict" if isinstance(checkpoint, Mapping) else str(checkpoint)
    obj = checkpoint if isinstance(checkpoint, Mapping) else safe_load(checkpoint)
    state_dict = extract_state_dict(obj)
    try:
        weights, arch = to_nnssl_state_dict(state_dict, reverse_axes=reverse_axes)
    except GenesisInputError as e:
        raise GenesisInputError(f"{source}: {e}") from None
    out_dir = Path(out_dir)
    target = out_dir / "checkpoint_final.pth"
    if target.exists() and not overwrite:
        raise FileExistsError(f"{target} exists; pass --overwrite True to replace it.")

    def axes(v):
        return None if v is None else [float(x) if isinstance(x, float) else int(x) for x in (list(v)[::-1] if reverse_axes else list(v))]

    # nnssl's spacing styles: 1 mm isotropic, no resampling, or one spacing for all (its data set's median)
    if spacing is None:
        configuration = "noresample"
    else:
        configuration = "onemmiso" if all(float(v) == 1.0 for v in spacing) else "median"
    plan = {
        "architecture_plans": {
            "arch_class_name": "ResidualEncoderUNet",
            "arch_kwargs": _arch_kwargs(arch),
            "arch_kwargs_requiring_import": ["conv_op", "norm_op", "nonlin"],
        },
        "pretrain_plan": {
            "dataset_name": dataset_name,
            "plans_name": "monai_genesis",
            "original_median_spacing_after_transp": axes(spacing) if spacing is not None else None,
            "image_reader_writer": "SimpleITKIO",
            "transpose_forward": [0, 1, 2],
            "transpose_backward": [0, 1, 2],
            "configurations": {
                configuration: {
                    "data_identifier": f"monai_genesis_{configuration}",
                    "preprocessor_name": "monai_genesis",
                    "spacing_style": configuration,
                    "normalization_schemes": [normalization] * arch["in_channels"],
                    "use_mask_for_norm": [False] * arch["in_channels"],
                    "resampling_fn_data": "resample_data_or_seg_to_shape",
                    "resampling_fn_data_kwargs": {},
                    "resampling_fn_mask": "resample_data_or_seg_to_shape",
                    "resampling_fn_mask_kwargs": {},
                    "spacing": axes(spacing),
                    "patch_size": axes(patch_size),
                }
            },
            "experiment_planner_used": "monai_genesis",
        },
        "pretrain_num_input_channels": arch["in_channels"],
        "recommended_downstream_patchsize": axes(patch_size),
        "key_to_encoder": "encoder.stages",
        "key_to_stem": "encoder.stem",
        "keys_to_in_proj": ["encoder.stem.convs.0.conv", "encoder.stem.convs.0.all_modules.0"],
        "key_to_lpe": None,
    }
    ckpt = {
        "network_weights": weights,
        "nnssl_adaptation_plan": plan,
        "init_args": {"configuration_name": configuration, "fold": 0, "exported_from": source},
        "trainer_name": trainer_name,
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.save(ckpt, target)
    with open(out_dir / "adaptation_plan.json", "w") as f:
        json.dump({**plan, "trainer_name": trainer_name}, f, indent=4)
    logger.info("wrote %d tensors (%d distinct) of a ResidualEncoderUNet to %s", len(weights), len(state_dict), target)
    return target


def export_command(
    checkpoint: str,
    out: str,
    format: str = "nnssl",
    spacing: Sequence[float] | None = None,
    patch_size: Sequence[int] = (160, 160, 160),
    normalization: str = "ZScoreNormalization",
    trainer_name: str = "monai_genesis",
    overwrite: bool = False,
) -> str:
    """Export a ResEnc model for nnssl / nnU-Net: ``python -m monai_genesis export --checkpoint M --out DIR``.

    Args:
        checkpoint: ``models/model.pt`` of ``mae_pretrain`` (or of a bundle run with the ResEnc preset).
        out: folder that receives ``checkpoint_final.pth`` and ``adaptation_plan.json``.
        format: ``"nnssl"`` (the only one).
        spacing: pretraining voxel spacing in mm (x, y, z), the bundle's ``pixdim``; ``None`` (the default, as
            ``mae_pretrain``'s ``pixdim``) when the images were not resampled.
        patch_size: pretraining patch size (x, y, z).
        normalization: nnssl's name of the normalisation (``ZScoreNormalization`` for ``intensity=zscore``).
        trainer_name: recorded as ``trainer_name``.
        overwrite: replace an existing export.
    """
    if format != "nnssl":
        raise GenesisInputError(f"export --format {format!r} is not known; the one format is 'nnssl'.")
    path = export_nnssl(
        checkpoint, out, spacing=spacing, patch_size=patch_size, normalization=normalization,
        trainer_name=trainer_name, overwrite=overwrite,
    )
    return str(path)

