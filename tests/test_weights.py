import hashlib
import logging
import pickle

import pytest
import torch

import monai_genesis.weights as weights
from monai_genesis.errors import GenesisInputError
from monai_genesis.networks import GenesisClassifier, GenesisUNet, NetWithActivation
from monai_genesis.weights import (
    extract_state_dict,
    file_sha256,
    genesis_to_official_key,
    load_official_checkpoint,
    load_pretrained,
    official_to_genesis_key,
    save_official_checkpoint,
    to_official_state_dict,
)
from monai_genesis.utils import file_digest

from tests.networks.official_format import official_keys_and_shapes, random_official_state_dict, released_checkpoint


@pytest.fixture(scope="module")
def official_sd():
    return random_official_state_dict(seed=1)


@pytest.fixture()
def released_file(tmp_path, official_sd):
    path = tmp_path / "Genesis_Chest_CT.pt"
    torch.save(released_checkpoint(official_sd), path)
    return path


def test_key_map_is_a_bijection_onto_the_network():
    official = [k for k, _ in official_keys_and_shapes()]
    ours = [official_to_genesis_key(k) for k in official]
    net_sd = GenesisUNet().state_dict()
    assert None not in ours and len(set(ours)) == 106
    assert set(ours) == set(net_sd)
    assert [genesis_to_official_key(k) for k in ours] == official
    for (key, shape), mapped in zip(official_keys_and_shapes(), ours):
        assert tuple(net_sd[mapped].shape) == shape, key
    assert official_to_genesis_key("down_tr64.ops.0.bn1.weight") == "encoder.down1.0.adn.N.weight"
    assert official_to_genesis_key("up_tr128.up_conv.bias") == "up2.upsample.conv.bias"
    assert official_to_genesis_key("head.0.weight") is None
    assert genesis_to_official_key("head.0.weight") is None


def test_round_trip_official_project_official_is_identical(tmp_path, released_file, official_sd):
    net = load_official_checkpoint(released_file)
    back = to_official_state_dict(net)
    assert list(back) == list(official_sd)
    for key, value in official_sd.items():
        assert torch.equal(back[key], value), key
    out = save_official_checkpoint(net, tmp_path / "exported.pt", epoch=5)
    saved = torch.load(out, weights_only=True)
    assert set(saved) == {"epoch", "state_dict", "optimizer_state_dict"} and saved["epoch"] == 5
    assert all(k.startswith("module.") for k in saved["state_dict"])
    for key, value in official_sd.items():
        assert torch.equal(saved["state_dict"]["module." + key], value), key
    with pytest.raises(FileExistsError):
        save_official_checkpoint(net, out)


def test_bare_state_dict_and_given_net(tmp_path, official_sd):
    path = tmp_path / "bare.pt"
    torch.save(official_sd, path)
    net = GenesisUNet(out_activation=None)
    assert load_official_checkpoint(path, net=net) is net
    assert torch.equal(net.out.conv.weight, official_sd["out_tr.final_conv.weight"])


def test_sha256_checked_before_loading(released_file, monkeypatch):
    digest = file_sha256(released_file)
    assert load_official_checkpoint(released_file, sha256=digest.upper()) is not None
    calls = []
    monkeypatch.setattr(weights.torch, "load", lambda *a, **k: calls.append(a))
    with pytest.raises(ValueError, match="SHA-256"):
        load_official_checkpoint(released_file, sha256="0" * 64)
    assert calls == []


def test_mismatching_keys_and_shapes_are_named(tmp_path, official_sd):
    renamed = dict(official_sd)
    renamed["down_tr64.ops.0.conv9.weight"] = renamed.pop("down_tr64.ops.0.conv1.weight")
    path = tmp_path / "renamed.pt"
    torch.save(released_checkpoint(renamed), path)
    with pytest.raises(ValueError, match=r"down_tr64\.ops\.0\.conv9\.weight") as err:
        load_official_checkpoint(path)
    assert "down_tr64.ops.0.conv1.weight" in str(err.value)
    path = tmp_path / "ok.pt"
    torch.save(released_checkpoint(official_sd), path)
    with pytest.raises(ValueError, match=r"out_tr\.final_conv\.weight: \(1, 64, 1, 1, 1\) in file, \(2, 64, 1, 1, 1\)"):
        load_official_checkpoint(path, net=GenesisUNet(out_channels=2))


def test_non_checkpoint_files_are_refused(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("not a checkpoint")
    with pytest.raises(ValueError, match="weights_only=True"):
        load_official_checkpoint(text)
    number = tmp_path / "number.pt"
    torch.save(5, number)
    with pytest.raises(ValueError, match="state dict"):
        load_official_checkpoint(number)
    with pytest.raises(FileNotFoundError):
        load_official_checkpoint(tmp_path / "absent.pt")


class _Payload:
    """Unpickling this object would create a marker file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("writer", ["torch", "pickle"])
def test_malicious_pickle_is_refused_and_not_run(tmp_path, writer):
    marker = tmp_path / "payload_ran"
    path = tmp_path / "evil.pt"
    obj = {"state_dict": {"module.x": torch.zeros(1)}, "hook": _Payload(marker)}
    if writer == "torch":
        torch.save(obj, path)
    else:
        with open(path, "wb") as f:
            pickle.dump(obj, f, protocol=2)
    with pytest.raises(ValueError, match="weights_only=True"):
        load_official_checkpoint(path)
    with pytest.raises(ValueError, match="weights_only=True"):
        load_pretrained(GenesisUNet(features=2), path)
    assert not marker.exists()


def test_load_pretrained_unet_into_classifier_reports_and_logs(caplog):
    source = GenesisUNet(features=2)
    checkpoint = {"module." + k: v for k, v in source.state_dict().items()}
    clf = GenesisClassifier(num_classes=2, features=2)
    with caplog.at_level(logging.INFO, logger="monai_genesis.weights"):
        report = load_pretrained(clf, checkpoint)
    encoder_keys = [k for k in clf.state_dict() if k.startswith("encoder.")]
    assert report.loaded == encoder_keys and report.num_loaded == 56
    assert report.missing == ["head.0.weight", "head.0.bias", "head.2.weight", "head.2.bias"]
    assert len(report.skipped) == 106 - 56
    assert report.skipped["up3.upsample.conv.weight"] == "no tensor of this name in the network"
    assert torch.equal(clf.encoder.down1[0].conv.weight, source.encoder.down1[0].conv.weight)
    text = str(report)
    assert "GenesisClassifier: loaded 56 of 60 tensors from state dict" in text
    assert "not loaded head.0.weight" in text
    assert text in caplog.text
    # the caller's checkpoint keeps its keys
    assert all(k.startswith("module.") for k in checkpoint)


def test_load_pretrained_released_file_into_classifier(released_file, official_sd):
    clf = GenesisClassifier()
    report = load_pretrained(clf, released_file)
    assert report.num_loaded == 56 and report.source == str(released_file)
    assert torch.equal(clf.encoder.bottleneck[1].adn.N.running_var, official_sd["down_tr512.ops.1.bn1.running_var"])


@pytest.mark.parametrize("container", ["model", "network", "state_dict"])
def test_load_pretrained_understands_checkpoint_dicts(tmp_path, container):
    source = GenesisUNet(features=2, out_channels=2)
    path = tmp_path / "ckpt.pt"
    torch.save({container: source.state_dict(), "optimizer": {"state": {}, "param_groups": []}, "epoch": 3}, path)
    target = GenesisUNet(features=2, out_channels=1, out_activation=None)
    report = load_pretrained(target, path)
    assert report.num_loaded == 104
    assert report.missing == ["out.conv.weight", "out.conv.bias"]
    assert report.skipped["out.conv.weight"] == "shape (2, 4, 1, 1, 1) in checkpoint, (1, 4, 1, 1, 1) in network"
    with pytest.raises(ValueError, match="strict loading failed"):
        load_pretrained(GenesisUNet(features=2), path, strict=True)


def test_load_pretrained_prefix_map():
    wrapped = NetWithActivation(GenesisUNet(features=2, out_activation=None), "sigmoid")
    bare = GenesisUNet(features=2)
    with pytest.raises(ValueError, match="only 0 learned weight tensor"):
        load_pretrained(bare, wrapped.state_dict())
    report = load_pretrained(bare, wrapped.state_dict(), prefix_map={"net.": ""})
    assert report.num_loaded == 106 and not report.skipped and not report.missing
    assert torch.equal(bare.up1.convs[1].conv.weight, wrapped.net.up1.convs[1].conv.weight)


def test_load_pretrained_fails_loudly_when_too_little_loads():
    unet = GenesisUNet(features=2)
    before = {k: v.clone() for k, v in unet.state_dict().items()}
    other = GenesisUNet(features=4).state_dict()
    # a checkpoint of another width: only the scalar counters and the 1-channel output bias fit, neither counts
    with pytest.raises(ValueError, match=r"only 0 learned weight tensor\(s\) match GenesisUNet .*min_loaded=10"):
        load_pretrained(unet, other, min_loaded=10)
    with pytest.raises(ValueError, match="only 0 learned weight tensor"):
        load_pretrained(unet, {"fc.weight": torch.zeros(2, 2)})
    for k, v in unet.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert load_pretrained(unet, {"fc.weight": torch.zeros(2, 2)}, min_loaded=0).num_loaded == 0


def test_extract_state_dict_rejects_unknown_layouts():
    with pytest.raises(ValueError, match="top-level keys"):
        extract_state_dict({"weights": [1, 2], "epoch": 1})
    with pytest.raises(ValueError, match="got list"):
        extract_state_dict([torch.zeros(1)])


def test_load_pretrained_into_data_parallel_network():
    source = GenesisUNet(features=2)
    target = torch.nn.DataParallel(GenesisUNet(features=2))
    report = load_pretrained(target, source.state_dict(), strict=True)
    assert report.num_loaded == 106 and report.network == "GenesisUNet"
    assert torch.equal(target.module.out.conv.weight.cpu(), source.out.conv.weight)


def test_load_pretrained_refuses_a_checkpoint_of_another_width(tmp_path):
    path = tmp_path / "wide.pt"
    torch.save({"model": GenesisUNet(features=32, out_channels=3).state_dict()}, path)
    narrow = GenesisUNet(features=8, out_channels=3)
    before = {k: v.clone() for k, v in narrow.state_dict().items()}
    # 14 num_batches_tracked counters and the 3-channel output bias match by name and shape, nothing else
    with pytest.raises(GenesisInputError) as err:
        load_pretrained(narrow, path)
    message = str(err.value)
    assert message.startswith(f"{path}: only 0 learned weight tensor(s) match GenesisUNet")
    assert "not biases, norm parameters or num_batches_tracked counters" in message
    assert "91 tensor(s) match by name but not by shape" in message
    assert "encoder.down1.0.conv.weight: (32, 1, 3, 3, 3) in the checkpoint, (8, 1, 3, 3, 3) in the network" in message
    assert "another width" in message and "--genesis_features 32" in message
    assert all(torch.equal(v, before[k]) for k, v in narrow.state_dict().items())


def test_load_pretrained_counts_learned_tensors_only():
    source = GenesisUNet(features=4)
    report = load_pretrained(GenesisUNet(features=4), source.state_dict())
    assert report.num_loaded == 106
    # the 18 convolution kernels (15 convolutions, 3 up-convolutions) are the learned weight tensors
    assert report.num_learned_loaded == 18 and report.shape_mismatched == []
    assert report.learned_loaded[:2] == ["encoder.down1.0.conv.weight", "encoder.down1.1.conv.weight"]
    assert "out.conv.bias" in report.loaded and "out.conv.bias" not in report.learned_loaded


def test_one_table_maps_keys_both_ways():
    for key in GenesisUNet(features=2).state_dict():
        official = genesis_to_official_key(key)
        assert official is not None and official_to_genesis_key(official) == key
    assert official_to_genesis_key("down_tr512.ops.1.bn1.running_var") == "encoder.bottleneck.1.adn.N.running_var"
    assert genesis_to_official_key("up3.upsample.conv.weight") == "up_tr256.up_conv.weight"
    assert official_to_genesis_key("out_tr.final_conv.x.weight") is None
    assert official_to_genesis_key("down_tr64.ops.0.conv2.weight") is None


def test_file_digest_is_the_one_hasher(tmp_path):
    path = tmp_path / "blob.bin"
    path.write_bytes(b"genesis" * 100_000)
    assert file_sha256(path) == hashlib.sha256(path.read_bytes()).hexdigest()
    assert file_digest(path, "sha1", chunk_size=1000) == hashlib.sha1(path.read_bytes()).hexdigest()


def test_refusal_names_the_preset_of_an_mae_model():
    """An mae_pretrain model fine-tuned with the bundles' default network: the preset and the fragment to merge."""
    from monai_genesis.networks import ResEncUNet

    mae = ResEncUNet(features=[2, 4, 4, 8, 8, 8]).state_dict()
    with pytest.raises(GenesisInputError) as err:
        load_pretrained(GenesisUNet(features=2, out_channels=3), mae)
    message = str(err.value)
    assert "The checkpoint is a ResEncUNet (mae_pretrain" in message and "the network a GenesisUNet" in message
    assert "merging configs/networks/resenc_l.json and configs/finetune_mae.json" in message
    assert message.endswith("after the bundle's train.json, with --resenc_features [2, 4, 4, 8, 8, 8].")


def test_refusal_names_the_preset_of_a_cspr_model():
    from monai_genesis.networks import ResEncUNet, ResNet18Classifier

    cspr = ResNet18Classifier(num_classes=4).state_dict()
    with pytest.raises(GenesisInputError, match=r"The checkpoint is CSPR's 3D ResNet-18 \(cspr_pretrain\) and the "
                       r"network a ResEncUNet: .*merging configs/networks/resnet18_unet.json"):
        load_pretrained(ResEncUNet(features=[2, 4, 4, 8, 8, 8]), cspr)
