"""MONAI's RetinaNet over CSPR's 3D ResNet-18 and a feature pyramid, built without torchvision.

MONAI's ``resnet_fpn_feature_extractor`` and ``BackboneWithFPN`` call two torchvision helpers
(``_validate_trainable_layers`` and ``IntermediateLayerGetter``); installing torchvision would replace this
project's torch, so :py:class:`ResNetFPNFeatureExtractor` does their small job here and keeps the parameter names
those helpers give (``feature_extractor.body.conv1.weight``, ``feature_extractor.fpn.inner_blocks.0.weight``), so a
state dict of a Model Zoo RetinaNet with a ResNet-18 backbone loads by name.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
from monai.apps.detection.networks.retinanet_network import RetinaNet
from monai.networks.blocks.feature_pyramid_network import FeaturePyramidNetwork, LastLevelMaxPool
from torch import nn

from monai_genesis.networks.resnet import ResNet18Encoder

__all__ = ["BACKBONE_PREFIX", "ResNetFPNFeatureExtractor", "resnet18_retinanet", "size_divisible"]

#: name prefix of the ResNet backbone's tensors inside the RetinaNet (where a pretrained encoder loads)
BACKBONE_PREFIX = "feature_extractor.body."

# the stem convolution and the max pool each halve a side before layer1; layers 2-4 halve it again
_STEM_DOWNSAMPLING = 4


def size_divisible(returned_layers: Sequence[int], extra_level: bool = True) -> int:
    """The side every input must be divisible by for the feature maps of ``returned_layers`` (and the extra
    max-pooled level of the pyramid): 4 (stem and max pool) x 2 per stage after layer1 (x 2 for the extra level)."""
    return _STEM_DOWNSAMPLING * 2 ** (max(returned_layers) - 1) * (2 if extra_level else 1)


class ResNetFPNFeatureExtractor(nn.Module):
    """
    A ResNet backbone and a feature pyramid network: the feature maps of ``returned_layers`` of the backbone, each
    brought to ``out_channels`` by the FPN, plus one max-pooled level (``LastLevelMaxPool``) with ``extra_level``,
    as MONAI's ``resnet_fpn_feature_extractor`` builds it.

    ``body`` holds the backbone's modules up to the last returned layer (the layers after it and the pooling are
    left out, as torchvision's ``IntermediateLayerGetter`` does), so its parameters are named as the backbone's.

    Args:
        backbone: a MONAI ``ResNet`` (``conv1``, ``bn1``, ``act``, ``maxpool``, ``layer1`` ... ``layer4``).
        returned_layers: the stages (1 to 4) whose outputs enter the pyramid, in increasing order.
        out_channels: channels of every pyramid level (MONAI's extractor uses 256).
        trainable_layers: the stages trained, counted from ``layer4`` back to the stem (5: all; 0: none), as in
            MONAI's extractor; the others are frozen.
        extra_level: add the max-pooled level above the last one (MONAI's extractor always does); without it the
            inputs need only half the divisibility, e.g. 32 instead of 64 for ``layer4``.
    """

    def __init__(
        self,
        backbone: nn.Module,
        returned_layers: Sequence[int] = (2, 3, 4),
        out_channels: int = 256,
        trainable_layers: int = 5,
        extra_level: bool = True,
    ) -> None:
        super().__init__()
        returned = [int(i) for i in returned_layers]
        if not returned or returned != sorted(set(returned)) or returned[0] < 1 or returned[-1] > 4:
            raise ValueError(f"returned_layers must be increasing stage numbers among 1-4, got {returned_layers}.")
        if not 0 <= int(trainable_layers) <= 5:
            raise ValueError(f"trainable_layers must be in 0-5 (5 trains the whole backbone), got {trainable_layers}.")
        if int(out_channels) < 1:
            raise ValueError(f"out_channels must be a positive int, got {out_channels}.")
        names = ["conv1", "bn1", "act", "maxpool", "layer1", "layer2", "layer3", "layer4"]
        last = names.index(f"layer{returned[-1]}")
        self.body = nn.ModuleDict(OrderedDict((n, getattr(backbone, n)) for n in names[: last + 1]))
        self.return_layers = {f"layer{k}": str(v) for v, k in enumerate(returned)}
        trained = ["layer4", "layer3", "layer2", "layer1", "conv1"][: int(trainable_layers)]
        if int(trainable_layers) == 5:
            trained.append("bn1")
        for name, parameter in self.body.named_parameters():
            if not name.startswith(tuple(trained)):
                parameter.requires_grad_(False)
        stage_channels = {i: getattr(backbone, f"layer{i}")[-1].bn2.num_features for i in returned}
        self.fpn = FeaturePyramidNetwork(
            spatial_dims=3,
            in_channels_list=[stage_channels[i] for i in returned],
            out_channels=int(out_channels),
            extra_blocks=LastLevelMaxPool(3) if extra_level else None,
        )
        self.out_channels = int(out_channels)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Return the pyramid's feature maps, highest resolution first."""
        features: OrderedDict[str, torch.Tensor] = OrderedDict()
        for name, module in self.body.items():
            x = module(x)
            if name in self.return_layers:
                features[self.return_layers[name]] = x
        return self.fpn(features)


def resnet18_retinanet(
    in_channels: int = 1,
    num_classes: int = 1,
    num_anchors: int = 3,
    returned_layers: Sequence[int] = (2, 3, 4),
    fpn_channels: int = 256,
    trainable_layers: int = 5,
    extra_level: bool = True,
) -> RetinaNet:
    """
    MONAI's ``RetinaNet`` whose feature extractor is CSPR's 3D ResNet-18 (:py:class:`ResNet18Encoder`, the depth
    stride on, as for every 3D target) under a feature pyramid.

    The backbone's tensors are named ``feature_extractor.body.*`` (:py:data:`BACKBONE_PREFIX`); with the default
    ``returned_layers`` (2, 3, 4) the body holds the whole ResNet-18 trunk, so all 120 tensors of a
    ``cspr_pretrain`` encoder load. The pyramid's levels have strides 8, 16, 32 and, with ``extra_level``, 64 (the
    extra max-pooled level); every input side must be divisible by :py:func:`size_divisible` (64, or 32 without
    the extra level); the detector pads to it.

    Args:
        in_channels: image channels.
        num_classes: box classes, without the background.
        num_anchors: anchor shapes per location (the anchor generator's ``len(base_anchor_shapes)``).
        returned_layers: ResNet stages whose outputs enter the pyramid.
        fpn_channels: channels of the pyramid and of the heads (256 in MONAI's extractor; fewer is faster on a CPU).
        trainable_layers, extra_level: see :py:class:`ResNetFPNFeatureExtractor`.
    """
    if int(num_classes) < 1:
        raise ValueError(f"num_classes must be a positive int (box classes without the background), got {num_classes}.")
    extractor = ResNetFPNFeatureExtractor(
        ResNet18Encoder(in_channels, depth_stride=True), returned_layers, fpn_channels, trainable_layers, extra_level
    )
    return RetinaNet(
        spatial_dims=3,
        num_classes=int(num_classes),
        num_anchors=int(num_anchors),
        feature_extractor=extractor,
        size_divisible=size_divisible(returned_layers, extra_level),
    )
