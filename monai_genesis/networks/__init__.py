"""Networks of the three pretraining methods and their fine-tuning: the Genesis 3D U-Net (and its encoder as a
classifier), the Residual Encoder U-Net of masked image modelling, CSPR's 3D ResNet-18, and the layers they share."""

from monai_genesis.networks.classifier import GenesisClassifier
from monai_genesis.networks.genesis_unet import GENESIS_NORMS, GenesisEncoder, GenesisUNet, GenesisUpBlock, genesis_norm
from monai_genesis.networks.layers import EncoderFeatures, GenesisBatchNorm, NetWithActivation, make_activation, unwrap_parallel
from monai_genesis.networks.resenc import RESENC_PRESETS, MaskedInstanceNorm, ResEncClassifier, ResEncoder, ResEncUNet
from monai_genesis.networks.resnet import ResNet18Classifier, ResNet18Encoder, ResNetUNet

__all__ = [
    "EncoderFeatures",
    "GENESIS_NORMS",
    "GenesisBatchNorm",
    "GenesisClassifier",
    "GenesisEncoder",
    "GenesisUNet",
    "GenesisUpBlock",
    "NetWithActivation",
    "ResNet18Classifier",
    "ResNet18Encoder",
    "ResNetUNet",
    "genesis_norm",
    "make_activation",
    "unwrap_parallel",
    "MaskedInstanceNorm",
    "RESENC_PRESETS",
    "ResEncClassifier",
    "ResEncoder",
    "ResEncUNet",
]
