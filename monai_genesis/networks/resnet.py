"""The 3D ResNet-18 of CSPR (MONAI's ``ResNet``) as a classifier and as the encoder of a segmentation U-Net.

CSPR pretrains the network on photos read as volumes of depth 3
(:py:class:`monai_genesis.transforms.VariableDimension`), with no stride along the depth; for 3D targets the depth
stride is turned back on. Strides own no parameters, so both variants have the same parameter names and shapes and
the pretrained weights load unchanged. The classifier and the U-Net hold the same encoder module under the name
``encoder``, so a classification checkpoint's ``encoder.*`` tensors load into the U-Net by name with no prefix map.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.networks.blocks import Convolution
from monai.networks.nets import ResNet
from monai.networks.nets.basic_unet import UpCat
from monai.networks.nets.resnet import get_inplanes
from torch import nn

__all__ = ["ResNet18Encoder", "ResNet18Classifier", "ResNetUNet"]

# channels of the stem and of the four stages of ResNet-18
RESNET18_FEATURE_CHANNELS = (64, 64, 128, 256, 512)
# stem convolution, max pool and three strided stages each halve a side
RESNET_DOWNSAMPLING = 32


class ResNet18Encoder(ResNet):
    """
    3D ResNet-18 trunk: 7³ stem with stride 2, 3³ max pool with stride 2, four stages of two basic blocks (3³
    kernels, BatchNorm3d; stages 2–4 with stride 2 and a 1³ convolution + batch norm shortcut), 3D global average
    pooling; no fully connected layer.

    It is MONAI's :py:class:`monai.networks.nets.ResNet` configured as the ImageNet ResNet-18 (shortcut ``"B"``
    without bias), so its parameter names are MONAI's (``conv1``, ``bn1``, ``layer1`` ... ``layer4``) and a MONAI
    ``resnet18(shortcut_type="B", bias_downsample=False, feed_forward=False)`` state dict loads into it. The depth
    is the first spatial axis, as in the volumes ``(1, 3, H, W)`` of the variable dimension transform.
    :py:meth:`forward` returns the pooled features ``(B, 512)``, :py:meth:`features` the five feature maps.

    Args:
        in_channels: number of input channels (1 for the variable dimension volumes and for CT).
        depth_stride: stride 2 along the depth in the stem, the max pool and the strided stages (3D targets);
            False for CSPR pretraining, where the depth is only 3, so that the depth is kept everywhere.
    """

    def __init__(self, in_channels: int = 1, depth_stride: bool = True) -> None:
        super().__init__(
            block="basic",
            layers=[2, 2, 2, 2],
            block_inplanes=get_inplanes(),
            spatial_dims=3,
            n_input_channels=in_channels,
            conv1_t_size=7,
            conv1_t_stride=2,
            shortcut_type="B",
            bias_downsample=False,
            feed_forward=False,
        )
        self.out_channels = RESNET18_FEATURE_CHANNELS[-1]
        self.feature_channels = RESNET18_FEATURE_CHANNELS
        self.depth_stride = bool(depth_stride)
        if not self.depth_stride:
            # strides own no parameters: the same weights serve both variants
            for module in self.strided_modules():
                module.stride = (1, 2, 2)

    def strided_modules(self) -> list[nn.Module]:
        """The modules with stride 2: the stem convolution, the max pool, and the first block of stages 2–4 (its
        first convolution and its shortcut convolution)."""
        modules: list[nn.Module] = [self.conv1, self.maxpool]
        for stage in (self.layer2, self.layer3, self.layer4):
            modules += [stage[0].conv1, stage[0].downsample[0]]
        return modules

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Return the feature maps of ``x``: the stem's (1/2 resolution) and the four stages' (1/4 to 1/32)."""
        x = self.act(self.bn1(self.conv1(x)))
        out = [x]
        x = self.maxpool(x)
        for stage in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = stage(x)
            out.append(x)
        return out


class ResNet18Classifier(nn.Module):
    """
    3D ResNet-18 classifier of CSPR: :py:class:`ResNet18Encoder` -> 3D global average pooling -> Linear(512,
    num_classes).

    Its parameters are named ``encoder.*`` (the trunk) and ``head.*``, as in
    :py:class:`monai_genesis.networks.GenesisClassifier`: the fine-tuning bundles freeze ``encoder.*``, and
    :py:class:`ResNetUNet` loads the ``encoder.*`` tensors of its checkpoint by name. A checkpoint of a bare MONAI
    ResNet loads with ``prefix_map={"": "encoder."}``. The output are logits.

    Args:
        in_channels: number of input channels.
        num_classes: number of outputs.
        depth_stride: False for CSPR pretraining on volumes of depth 3, True (default) for 3D targets; see
            :py:class:`ResNet18Encoder`.
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 1000, depth_stride: bool = True) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be a positive int, got {num_classes}.")
        self.encoder = ResNet18Encoder(in_channels, depth_stride)
        self.head = nn.Linear(self.encoder.out_channels, num_classes)
        nn.init.zeros_(self.head.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the logits ``(B, num_classes)`` of ``x`` of shape ``(B, in_channels, D, H, W)``."""
        return self.head(self.encoder(x))


class ResNetUNet(nn.Module):
    """
    Segmentation U-Net whose encoder is the 3D ResNet-18 of CSPR and whose decoder, from random, is built of MONAI
    ``UpCat`` blocks (transposed convolution, concatenation with the skip, two conv–batch norm–ReLU blocks).

    The decoder upsamples the 1/32 features back through the 1/16, 1/8, 1/4 and 1/2 skips (stages 3 to 1 and the
    stem) and then to full resolution, where it concatenates the input. The encoder is a
    :py:class:`ResNet18Encoder` with the depth stride on, under the name ``encoder`` as in
    :py:class:`ResNet18Classifier`, so ``monai_genesis.weights.load_pretrained(unet, classifier_checkpoint)`` loads
    every encoder tensor (the classifier's ``head.*`` are reported as skipped, the decoder as not loaded). Every
    input side must be divisible by 32. The output are logits.

    Args:
        in_channels: number of input channels.
        out_channels: number of output channels (classes).
        decoder_channels: channels of the five decoder levels, from 1/16 to full resolution.
            Defaults to ``(256, 128, 64, 32, 16)``.
    """

    def __init__(
        self, in_channels: int = 1, out_channels: int = 2, decoder_channels: Sequence[int] = (256, 128, 64, 32, 16)
    ) -> None:
        super().__init__()
        if len(decoder_channels) != 5 or min(decoder_channels) < 1:
            raise ValueError(f"decoder_channels must be five positive ints, got {decoder_channels}.")
        self.encoder = ResNet18Encoder(in_channels, depth_stride=True)
        skips = list(reversed(self.encoder.feature_channels[:-1])) + [in_channels]
        ups = []
        channels = self.encoder.out_channels
        for skip, out in zip(skips, decoder_channels):
            ups.append(UpCat(3, channels, skip, out, act="relu", norm="batch", bias=False, upsample="deconv"))
            channels = out
        self.decoder = nn.ModuleList(ups)
        self.out = Convolution(3, channels, out_channels, kernel_size=1, conv_only=True, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the logits ``(B, out_channels, *spatial)`` of ``x`` of shape ``(B, in_channels, *spatial)``."""
        spatial = tuple(x.shape[2:])
        if len(spatial) != 3 or any(s % RESNET_DOWNSAMPLING for s in spatial):
            raise ValueError(
                f"ResNetUNet: input spatial shape {spatial} must be 3D with every side divisible by "
                f"{RESNET_DOWNSAMPLING} (the stem, the max pool and three strided stages each halve it); pad it, "
                f"e.g. with `DivisiblePadd(keys='image', k={RESNET_DOWNSAMPLING})`."
            )
        features = self.encoder.features(x)
        y = features[-1]
        for up, skip in zip(self.decoder, list(reversed(features[:-1])) + [x]):
            y = up(y, skip)
        return self.out(y)
