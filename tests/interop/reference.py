"""The reference ResidualEncoderUNet of dynamic-network-architectures (nnssl's and nnU-Net's), and nnssl-format files."""

from __future__ import annotations

import torch
from torch import nn

# a narrow ResEnc with ResEnc-L's depth (the same 224 encoder tensors), one anisotropic stage stride and kernel
FEATURES = [4, 8, 16, 24, 32, 32]
BLOCKS = [1, 3, 4, 6, 6, 6]
# in nnssl's (z, y, x) order: anisotropic strides (the fourth stage keeps z, the sixth halves z only), a change of
# width without a stride (the fifth stage: a skip without pooling, ``skip.0``), and flat kernels in the fourth stage
STRIDES_ZYX = [[1, 1, 1], [2, 2, 2], [2, 2, 2], [1, 2, 2], [1, 1, 1], [2, 1, 1]]
KERNELS_ZYX = [[3, 3, 3], [3, 3, 3], [3, 3, 3], [1, 3, 3], [3, 3, 3], [3, 3, 3]]


def reference_unet(
    features=FEATURES, strides=STRIDES_ZYX, kernels=KERNELS_ZYX, in_channels=1, num_classes=1, seed=0
) -> nn.Module:
    """``ResidualEncoderUNet`` as nnssl builds ResEnc-L (instance norm, LeakyReLU, no deep supervision), with every
    weight moved off its initial value so that a copy cannot pass by chance."""
    from dynamic_network_architectures.architectures.unet import ResidualEncoderUNet

    torch.manual_seed(seed)
    net = ResidualEncoderUNet(
        in_channels, len(features), list(features), nn.Conv3d, kernels, strides, BLOCKS[: len(features)], num_classes,
        [1] * (len(features) - 1), conv_bias=True, norm_op=nn.InstanceNorm3d,
        norm_op_kwargs={"eps": 1e-5, "affine": True}, nonlin=nn.LeakyReLU, nonlin_kwargs={"inplace": True},
        deep_supervision=False,
    )
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return net.eval()


def adaptation_plan(arch="ResidualEncoderUNet", spacing=(1.0, 1.0, 1.0), patch=(160, 160, 160)) -> dict:
    """An ``nnssl_adaptation_plan`` as nnssl's releases carry it (the fields nnU-Net reads, values of OpenMind)."""
    return {
        "architecture_plans": {"arch_class_name": arch, "arch_kwargs": None, "arch_kwargs_requiring_import": None},
        "pretrain_plan": {
            "dataset_name": "Dataset745_OpenMind",
            "plans_name": "nnsslPlans",
            "transpose_forward": [0, 1, 2],
            "transpose_backward": [0, 1, 2],
            "configurations": {
                "onemmiso": {
                    "spacing": list(spacing),
                    "patch_size": list(patch),
                    "normalization_schemes": ["ZScoreNormalization"],
                    "use_mask_for_norm": [False],
                }
            },
        },
        "pretrain_num_input_channels": 1,
        "recommended_downstream_patchsize": list(patch),
        "key_to_encoder": "encoder.stages",
        "key_to_stem": "encoder.stem",
        "keys_to_in_proj": ["encoder.stem.convs.0.conv", "encoder.stem.convs.0.all_modules.0"],
        "key_to_lpe": None,
    }


def release_checkpoint(network_weights: dict, plan: dict | None = None, trainer: str = "BaseMAETrainer") -> dict:
    """nnssl's release form: ``{network_weights, nnssl_adaptation_plan, init_args, trainer_name}``."""
    return {
        "network_weights": network_weights,
        "nnssl_adaptation_plan": adaptation_plan() if plan is None else plan,
        "init_args": {"configuration_name": "onemmiso", "fold": 0},
        "trainer_name": trainer,
    }


def s3d_weights(net: nn.Module, seed: int = 5) -> dict:
    """The ``network_weights`` of an nnssl S3D run: the ``all_modules`` copies trained, the ``.conv`` / ``.norm``
    copies still at another (initial) value."""
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for key, value in net.state_dict().items():
        stale = (".conv." in key or ".norm." in key) and ".all_modules." not in key and "transpconvs" not in key
        out[key] = value + torch.randn(value.shape, generator=gen) if stale else value.clone()
    return out
