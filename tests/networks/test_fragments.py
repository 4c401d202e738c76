import pytest
import torch
from monai.bundle import ConfigParser

from monai_genesis.engines import GenesisPrepareBatch
from monai_genesis.networks import GenesisClassifier
from monai_genesis.weights import load_pretrained

FRAGMENTS = ("genesis_unet", "segresnet", "basicunet", "dynunet_resenc", "swinunetr")
# small widths so that two training steps take about a second on a CPU
TINY = {
    "genesis_unet": {"genesis_features": 4},
    "segresnet": {"segresnet_init_filters": 8},
    "basicunet": {"basicunet_features": [4, 4, 8, 8, 16, 4]},
    "dynunet_resenc": {"dynunet_filters": [4, 8, 16, 16, 16]},
    "swinunetr": {"swinunetr_feature_size": 12},
}
# small cubes each network accepts: sides divisible by its total downsampling, more than one voxel at the bottom
SHAPE = {
    "genesis_unet": (16, 16, 16),
    "segresnet": (16, 16, 16),
    "basicunet": (32, 32, 16),
    "dynunet_resenc": (32, 32, 16),
    "swinunetr": (64, 32, 32),
}
# the output layer, the only part whose shape depends on out_channels
OUTPUT_LAYER = {
    "genesis_unet": "out.conv.",
    "segresnet": "net.conv_final.2.",
    "basicunet": "net.final_conv.",
    "dynunet_resenc": "net.output_block.",
    "swinunetr": "net.out.",
}


def build(repo_root, name, out_channels, out_activation, genesis_norm="genesis"):
    """The fragment's network, with the ids an including bundle defines (``genesis_norm``: GenesisUNet only)."""
    parser = ConfigParser()
    parser.read_config(str(repo_root / "configs" / "networks" / f"{name}.json"))
    ids = {"in_channels": 1, "out_channels": out_channels, "out_activation": out_activation, **TINY[name]}
    if name == "genesis_unet":
        ids["genesis_norm"] = genesis_norm
    parser.update(ids)
    return parser.get_parsed_content("network_def")


def pretrain(net, shape, steps=2, seed=0):
    """Genesis restoration: cube corrupted by GenesisPrepareBatch in, clean (possibly flipped) cube as target, MSE."""
    clean = torch.rand(1, 1, *shape, generator=torch.Generator().manual_seed(seed))
    corrupted, target = GenesisPrepareBatch(seed=seed)({"image": clean}, torch.device("cpu"), False)
    assert not torch.equal(corrupted, target)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    net.train()
    losses = []
    for _ in range(steps):
        optimizer.zero_grad()
        out = net(corrupted)
        loss = torch.nn.functional.mse_loss(out, target)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return out.detach(), losses


@pytest.mark.slow
@pytest.mark.parametrize("name", FRAGMENTS)
def test_fragment_pretrains_and_transfers_to_segmentation_twin(repo_root, tmp_path, name):
    torch.manual_seed(0)
    net = build(repo_root, name, out_channels=1, out_activation="sigmoid")
    before = {k: v.clone() for k, v in net.state_dict().items()}
    if name == "swinunetr":
        pytest.importorskip("einops", reason="SwinUNETR needs einops (pip install monai[einops])")
    shape = SHAPE[name]
    out, losses = pretrain(net, shape)
    assert out.shape == (1, 1, *shape)
    assert out.min() >= 0 and out.max() <= 1
    assert all(l == l and l < 1.0 for l in losses)
    assert any(not torch.equal(v, before[k]) for k, v in net.state_dict().items())
    # saved like a bundle's CheckpointSaver with several objects
    path = tmp_path / "model.pt"
    torch.save({"model": net.state_dict(), "optimizer": {"state": {}, "param_groups": []}}, path)

    # as in the bundles: pretrained with the released batch norm, fine-tuned with the ordinary one
    twin = build(repo_root, name, out_channels=3, out_activation=None, genesis_norm="batch")
    report = load_pretrained(twin, path)
    twin_keys = list(twin.state_dict())
    output_keys = [k for k in twin_keys if k.startswith(OUTPUT_LAYER[name])]
    assert len(output_keys) == 2
    assert report.loaded == [k for k in twin_keys if k not in output_keys]
    assert sorted(report.skipped) == sorted(output_keys)
    assert all(why.startswith("shape") for why in report.skipped.values())
    assert sorted(report.missing) == sorted(output_keys)
    pretrained = net.state_dict()
    for key, value in twin.state_dict().items():
        if key not in output_keys:
            assert torch.equal(value, pretrained[key]), key
    twin.eval()
    with torch.no_grad():
        logits = twin(torch.rand(1, 1, *shape))
    assert logits.shape == (1, 3, *shape)

    if name == "genesis_unet":
        clf = GenesisClassifier(num_classes=2, features=TINY[name]["genesis_features"])
        clf_report = load_pretrained(clf, path)
        encoder_keys = [k for k in clf.state_dict() if k.startswith("encoder.")]
        assert clf_report.loaded == encoder_keys and len(encoder_keys) == 56
        assert clf(torch.rand(2, 1, *shape)).shape == (2, 2)
