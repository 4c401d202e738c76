"""Test helpers: a checkpoint in the released Models Genesis format and an independent reference forward."""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F

# names and shapes of the released Genesis_Chest_CT.pt state dict (without the module. prefix)
KEYS_JSON = Path(__file__).resolve().parent / "genesis_official_keys.json"


def official_keys_and_shapes() -> list[tuple[str, tuple[int, ...]]]:
    """The 106 (key, shape) pairs of the released state dict, from the shared documentation."""
    spec = json.loads(KEYS_JSON.read_text())
    return [(k, tuple(s)) for k, s in zip(spec["keys"], spec["shapes"])]


def random_official_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """Random tensors with the released names and shapes (no ``module.``), scaled like trained weights."""
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for key, shape in official_keys_and_shapes():
        if key.endswith("num_batches_tracked"):
            sd[key] = torch.tensor(1000, dtype=torch.long)
        elif key.endswith("running_var"):
            sd[key] = torch.rand(shape, generator=g) * 4 + 0.5
        elif key.endswith("running_mean"):
            sd[key] = torch.randn(shape, generator=g) * 3
        elif len(shape) == 1:
            base = 1.0 if ".bn1.weight" in key else 0.0
            sd[key] = base + 0.1 * torch.randn(shape, generator=g)
        else:
            fan_in = shape[1] * int(torch.tensor(shape[2:]).prod())
            sd[key] = torch.randn(shape, generator=g) / fan_in**0.5
    return sd


def released_checkpoint(state_dict: dict[str, torch.Tensor]) -> dict:
    """Wrap a state dict like ``Genesis_Chest_CT.pt``: ``module.`` keys beside epoch and optimizer state."""
    return {
        "epoch": 37,
        "state_dict": {f"module.{k}": v for k, v in state_dict.items()},
        "optimizer_state_dict": {"state": {}, "param_groups": [{"lr": 1.0, "momentum": 0.9, "params": [0, 1]}]},
    }


def reference_forward(sd: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """The documented 3D U-Net in plain torch: conv-BN(batch statistics)-ReLU blocks, 3 pools, sigmoid output."""

    def block(prefix: str, t: torch.Tensor) -> torch.Tensor:
        t = F.conv3d(t, sd[prefix + "conv1.weight"], sd[prefix + "conv1.bias"], padding=1)
        mean = t.mean(dim=(0, 2, 3, 4), keepdim=True)
        var = t.var(dim=(0, 2, 3, 4), unbiased=False, keepdim=True)
        shape = (1, -1, 1, 1, 1)
        t = (t - mean) / torch.sqrt(var + 1e-5)
        t = t * sd[prefix + "bn1.weight"].view(shape) + sd[prefix + "bn1.bias"].view(shape)
        return torch.relu(t)

    def level(name: str, t: torch.Tensor) -> torch.Tensor:
        return block(f"{name}.ops.1.", block(f"{name}.ops.0.", t))

    def up(name: str, t: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        t = F.conv_transpose3d(t, sd[f"{name}.up_conv.weight"], sd[f"{name}.up_conv.bias"], stride=2)
        return level(name, torch.cat([t, skip], dim=1))

    s64 = level("down_tr64", x)
    s128 = level("down_tr128", F.max_pool3d(s64, 2))
    s256 = level("down_tr256", F.max_pool3d(s128, 2))
    bottom = level("down_tr512", F.max_pool3d(s256, 2))
    y = up("up_tr64", up("up_tr128", up("up_tr256", bottom, s256), s128), s64)
    return torch.sigmoid(F.conv3d(y, sd["out_tr.final_conv.weight"], sd["out_tr.final_conv.bias"]))
