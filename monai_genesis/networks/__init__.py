"""Networks of Models Genesis and helpers to use MONAI's networks for Genesis pretraining."""

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
