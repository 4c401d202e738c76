"""Weights from and to other frameworks: nnssl / nnU-Net checkpoints of the Residual Encoder U-Net."""

from monai_genesis.interop.nnssl import (
    KEY_TABLE,
    NNSSL_ARCHITECTURES,
    NnsslCheckpoint,
    PretrainingSetting,
    export_command,
    export_nnssl,
    is_nnssl_checkpoint,
    load_nnssl_network,
    monai_axis_order,
    nnssl_to_resenc_key,
    permute_spatial_axes,
    read_nnssl_checkpoint,
    resenc_architecture,
    resenc_to_nnssl_key,
    reverse_spatial_axes,
    to_nnssl_state_dict,
)

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
