import hashlib
import json
import logging
from pathlib import Path

import pytest
import torch
from monai.bundle import ckpt_export, verify_metadata, verify_net_in_out

from tests.bundles.workflows import BASE, BUNDLES, TINY, config

SCHEMA = Path(__file__).with_name("metadata_schema.json")
NAMES = ["genesis_pretrain", "finetune_segmentation", "finetune_classification", "cspr_pretrain", "finetune_detection"]
# a detector's network returns one map per pyramid level and head, not one tensor that verify_net_in_out can check
NET_IN_OUT = [name for name in NAMES if name != "finetune_detection"]
MODEL_ZOO_FILES = [
    "LICENSE",
    "configs/metadata.json",
    "configs/train.json",
    "configs/evaluate.json",
    "configs/inference.json",
    "configs/logging.conf",
    "docs/README.md",
    "docs/data_license.txt",
]


def _md5(path):
    return hashlib.md5(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("name", NAMES)
def test_model_zoo_layout(name):
    missing = [f for f in MODEL_ZOO_FILES if not (BUNDLES / name / f).is_file()]
    assert missing == []
    assert "Apache License" in (BUNDLES / name / "LICENSE").read_text()


@pytest.mark.parametrize("name", NAMES)
def test_metadata_passes_schema(name, tmp_path):
    schema = tmp_path / "schema.json"
    schema.write_bytes(SCHEMA.read_bytes())
    verify_metadata(meta_file=config(name, "metadata"), filepath=str(schema), hash_val=_md5(schema))
    meta = json.loads(Path(config(name, "metadata")).read_text())
    assert meta["version"] in meta["changelog"] and list(meta["changelog"])[0] == meta["version"]


def test_schema_rejects_incomplete_metadata(tmp_path):
    schema = tmp_path / "schema.json"
    schema.write_bytes(SCHEMA.read_bytes())
    meta = json.loads(Path(config("genesis_pretrain", "metadata")).read_text())
    del meta["intended_use"]
    bad = tmp_path / "metadata.json"
    bad.write_text(json.dumps(meta))
    with pytest.raises(Exception, match="intended_use"):
        verify_metadata(meta_file=str(bad), filepath=str(schema), hash_val=_md5(schema))


@pytest.mark.parametrize("name", NAMES)
def test_train_config_defines_network_contract(name):
    from monai.bundle import ConfigParser

    # what a run reads: the bundle's own recipe merged with the shared base
    train = ConfigParser.load_config_files([config(name, "train"), BASE])
    ids = ["in_channels", "out_channels", "out_activation", "network_def", "bundle_root", "ckpt_dir", "output_dir",
           "dataset_dir", "device", "epochs", "val_interval", "network", "loss", "optimizer", "train", "validate",
           "initialize", "run", "finalize"]
    assert [i for i in ids if i not in train] == []
    assert train["out_activation"] == ("sigmoid" if name == "genesis_pretrain" else None)
    assert not any("set_trainer" in str(item) or "data" in str(item) for item in train["initialize"])


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("part", ["train", "inference"])
def test_norm_is_released_one_for_pretraining_and_ordinary_for_fine_tuning(name, part):
    from monai.bundle import ConfigParser

    from monai_genesis.networks import GenesisBatchNorm

    parser = ConfigParser()
    parser.read_config(config(name, part))
    parser.update({"genesis_features": 2})
    network = parser.get_parsed_content("network_def")
    norms = [m for m in network.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    assert len(norms) >= 8
    if name == "genesis_pretrain":
        assert all(isinstance(m, GenesisBatchNorm) for m in norms)
    else:
        assert all(type(m) is torch.nn.BatchNorm3d for m in norms)


@pytest.mark.parametrize("name", NET_IN_OUT)
def test_verify_net_in_out(name, caplog):
    with caplog.at_level(logging.INFO, logger="monai"):
        verify_net_in_out(
            net_id="network_def",
            meta_file=config(name, "metadata"),
            config_file=config(name, "inference"),
            device="cpu",
            genesis_features=2,
        )
    assert "verified with no error" in caplog.text


@pytest.mark.parametrize("name,run", [("genesis_pretrain", "pretrain_run"), ("finetune_segmentation", "segmentation_run"),
                                      ("finetune_classification", "classification_run")])
def test_ckpt_export(name, run, request, tmp_path):
    root, _ = request.getfixturevalue(run)
    target = tmp_path / "model.ts"
    ckpt_export(
        net_id="network_def",
        filepath=str(target),
        ckpt_file=str(root / "models" / "model.pt"),
        meta_file=config(name, "metadata"),
        config_file=config(name, "inference"),
        genesis_features=TINY[name]["genesis_features"],
    )
    scripted = torch.jit.load(str(target))
    with torch.no_grad():
        out = scripted(torch.rand(1, 1, 16, 16, 16))
    expected = {"genesis_pretrain": (1, 1, 16, 16, 16), "finetune_segmentation": (1, 3, 16, 16, 16),
                "finetune_classification": (1, 1)}[name]
    assert tuple(out.shape) == expected
