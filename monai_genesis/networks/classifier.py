"""The Models Genesis classification model: the Genesis encoder with a two-layer head."""

from __future__ import annotations

import torch
from monai.networks.layers.factories import Pool
from torch import nn

from monai_genesis.networks.genesis_unet import GenesisEncoder

__all__ = ["GenesisClassifier"]


class GenesisClassifier(nn.Module):
    """
    Classifier of the Models Genesis paper: Genesis encoder -> global average pooling -> Linear(16f, 1024) -> ReLU
    -> Linear(1024, num_classes).

    Its encoder is the same module as ``GenesisUNet.encoder`` with the same parameter names (``encoder.*``), so
    ``monai_genesis.weights.load_pretrained(classifier, unet_checkpoint)`` takes the pretrained encoder with no
    prefix map (the decoder tensors are reported as skipped). The output are logits; apply a sigmoid
    (binary, with BCE) or softmax in the loss.

    Args:
        spatial_dims: number of spatial dimensions, 2 or 3.
        in_channels: number of input channels.
        num_classes: number of outputs.
        features: width ``f`` of the encoder; 32 gives the released encoder (512-channel bottleneck).
        norm: ``"genesis"``, ``"batch"`` or ``"instance"``, see :py:class:`monai_genesis.networks.GenesisUNet`.
        hidden_features: width of the hidden layer of the head (1024 in the paper).
    """

    def __init__(
        self,
        spatial_dims: int = 3,
        in_channels: int = 1,
        num_classes: int = 1,
        features: int = 32,
        norm: str = "genesis",
        hidden_features: int = 1024,
    ) -> None:
        super().__init__()
        self.encoder = GenesisEncoder(spatial_dims, in_channels, features, norm)
        self.pool = Pool["adaptiveavg", spatial_dims](1)
        self.head = nn.Sequential(
            nn.Linear(self.encoder.out_channels, hidden_features), nn.ReLU(), nn.Linear(hidden_features, num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the logits ``(B, num_classes)`` of ``x`` of shape ``(B, C, *spatial)``."""
        bottleneck, _ = self.encoder(x)
        return self.head(torch.flatten(self.pool(bottleneck), 1))
