"""The old names of the bundles renamed in 0.3 are answered with the new name and the command to run instead."""

import os
from pathlib import Path

import pytest

from monai_genesis.errors import GenesisInputError
from monai_genesis.renamed_bundles import (
    RENAMED_BUNDLES,
    check_renamed_paths,
    renamed_bundle,
    renamed_command,
    renamed_path,
)

REPO = Path(__file__).resolve().parents[1]
MONAI_BUNDLE = os.path.join("/venv", "lib", "site-packages", "monai", "bundle", "__main__.py")
MONAI_GENESIS = os.path.join("/work", "monai_genesis", "__main__.py")


def test_old_names_map_to_the_finetune_bundles():
    assert RENAMED_BUNDLES == {"genesis_segmentation": "finetune_segmentation",
                               "genesis_classification": "finetune_classification"}
    for old, new in RENAMED_BUNDLES.items():
        assert (REPO / "bundles" / new / "configs" / "metadata.json").is_file()
        # the old folder holds the configs that answer the old commands and a README, nothing else
        left = sorted(p.relative_to(REPO / "bundles" / old).as_posix() for p in (REPO / "bundles" / old).rglob("*")
                      if p.is_file())
        assert left == ["README.md", "configs/evaluate.json", "configs/inference.json", "configs/train.json"], left
        assert f"bundles/{new}" in (REPO / "bundles" / old / "README.md").read_text()


def test_paths_are_renamed_only_where_a_bundle_folder_is_named():
    assert renamed_path("['bundles/genesis_segmentation/configs/train.json','configs/base/train.json']") == (
        "['bundles/finetune_segmentation/configs/train.json','configs/base/train.json']"
    )
    assert renamed_path("bundles/genesis_classification") == "bundles/finetune_classification"
    assert renamed_path("runs/my_genesis_segmentation/model.pt") == "runs/my_genesis_segmentation/model.pt"
    assert renamed_path("genesis_segmentation.json") == "genesis_segmentation.json"


def test_command_line_is_written_back_with_the_new_name():
    argv = [MONAI_BUNDLE, "run", "--config_file",
            "['bundles/genesis_segmentation/configs/train.json','configs/base/train.json','configs/quick.json']",
            "--bundle_root", "runs/seg", "--pretrained", "runs/pretrain/models/model.pt"]
    assert renamed_command(argv) == (
        "python -m monai.bundle run --config_file \"['bundles/finetune_segmentation/configs/train.json',"
        "'configs/base/train.json','configs/quick.json']\" --bundle_root runs/seg --pretrained runs/pretrain/models/model.pt"
    )
    argv = [MONAI_GENESIS, "package", "--bundle=bundles/genesis_classification", "--out", "dist/"]
    assert renamed_command(argv) == "python -m monai_genesis package --bundle=bundles/finetune_classification --out dist/"
    assert renamed_command(["/usr/bin/pytest", "tests"]) is None


def test_a_run_outside_the_command_line_names_the_configs_to_merge(monkeypatch):
    monkeypatch.setattr("sys.argv", ["/usr/bin/pytest"])
    with pytest.raises(GenesisInputError) as error:
        renamed_bundle("genesis_classification", "evaluate")
    assert str(error.value) == (
        "bundle genesis_classification was renamed finetune_classification in 0.3 (it fine-tunes from every "
        "pretraining method, not only Genesis); run: python -m monai.bundle run --config_file "
        "\"['bundles/finetune_classification/configs/train.json','configs/base/train.json',"
        "'bundles/finetune_classification/configs/evaluate.json']\""
    )
    with pytest.raises(GenesisInputError, match=r"run: python -m monai.bundle run --config_file "
                                                r"bundles/finetune_segmentation/configs/inference.json$"):
        renamed_bundle("genesis_segmentation", "inference")


def test_paths_into_an_old_folder_are_refused_but_run_outputs_in_it_are_not(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    old = tmp_path / "bundles" / "genesis_segmentation"
    (old / "configs").mkdir(parents=True)
    (old / "configs" / "train.json").write_text("{}")
    (old / "models").mkdir()
    (old / "models" / "model.pt").write_bytes(b"\0")
    for refused in (["--bundle", "bundles/genesis_segmentation"], ["--config_file", str(old / "configs" / "train.json")],
                    ["--checkpoint=bundles/genesis_segmentation/models/missing.pt"],
                    ["--bundle", "elsewhere/genesis_classification"]):
        with pytest.raises(GenesisInputError, match=r"was renamed finetune_(segmentation|classification) in 0\.3"):
            check_renamed_paths(refused)
    # a run's outputs left in the old folder are still read, and a bundle of that name with its own metadata is not
    # the folder left behind
    check_renamed_paths(["--checkpoint", "bundles/genesis_segmentation/models/model.pt", "--out", "export"])
    (old / "configs" / "metadata.json").write_text("{}")
    check_renamed_paths(["--bundle", "bundles/genesis_segmentation"])
    with pytest.raises(GenesisInputError, match=r"run: python -m monai_genesis package --bundle x/finetune_classification$"):
        check_renamed_paths(["x/genesis_classification"],
                            command="python -m monai_genesis package --bundle x/finetune_classification")
