"""The old commands of the bundles renamed in 0.3 stop before they read or write anything, and their last line is the
new name and the command to run instead."""

import ast
import re

import pytest

from tests.bundles.workflows import REPO
from tests.packaging.helpers import run_cli

RENAMED = [("genesis_segmentation", "finetune_segmentation"), ("genesis_classification", "finetune_classification")]
WHY = "(it fine-tunes from every pretraining method, not only Genesis)"


def _last_line(proc):
    assert proc.returncode != 0
    return [line for line in proc.stderr.splitlines() if line.strip()][-1]


@pytest.mark.parametrize("old,new", RENAMED)
def test_bundle_run_of_the_old_folder_ends_with_the_new_command(old, new, tmp_path):
    root = tmp_path / "run"
    args = ["-m", "monai.bundle", "run", "--config_file",
            f"['bundles/{old}/configs/train.json','configs/base/train.json','configs/quick.json']",
            "--bundle_root", str(root), "--epochs", "1"]
    last = _last_line(run_cli(args, cwd=REPO, check=False))
    assert last == (
        f"GenesisInputError: bundle {old} was renamed {new} in 0.3 {WHY}; run: python -m monai.bundle run --config_file "
        f"\"['bundles/{new}/configs/train.json','configs/base/train.json','configs/quick.json']\" --bundle_root {root} "
        "--epochs 1"
    )
    assert not root.exists()
    # the command given names files that exist
    files = ast.literal_eval(re.search(r'--config_file "(.*?)"', last).group(1))
    assert all((REPO / f).is_file() for f in files)


@pytest.mark.parametrize("kind,config_file", [
    ("inference", "bundles/{b}/configs/inference.json"),
    ("evaluate", "['bundles/{b}/configs/train.json','configs/base/train.json','bundles/{b}/configs/evaluate.json']"),
])
def test_evaluation_and_inference_of_the_old_folder_too(kind, config_file):
    old, new = RENAMED[0]
    proc = run_cli(["-m", "monai.bundle", "run", "--config_file", config_file.format(b=old)], cwd=REPO, check=False)
    given = config_file.format(b=new)
    quoted = f'"{given}"' if given.startswith("[") else given
    assert _last_line(proc) == (
        f"GenesisInputError: bundle {old} was renamed {new} in 0.3 {WHY}; run: python -m monai.bundle run "
        f"--config_file {quoted}"
    )


@pytest.mark.parametrize("old,new", RENAMED)
def test_package_refuses_the_old_folder_with_the_new_command(old, new, tmp_path):
    out = tmp_path / "dist"
    proc = run_cli(["-m", "monai_genesis", "package", "--bundle", f"bundles/{old}", "--out", str(out)], cwd=REPO,
                   check=False)
    assert _last_line(proc) == (
        f"GenesisInputError: bundle {old} was renamed {new} in 0.3 {WHY}; run: python -m monai_genesis package "
        f"--bundle bundles/{new} --out {out}"
    )
    assert not out.exists()


def test_other_commands_refuse_paths_into_the_old_folder(tmp_path):
    proc = run_cli(["-m", "monai_genesis", "prepare", "--store", str(tmp_path / "store"), "--config_file",
                    "bundles/genesis_segmentation/configs/train.json"], cwd=REPO, check=False)
    assert _last_line(proc).startswith("GenesisInputError: bundle genesis_segmentation was renamed finetune_segmentation")
    assert not (tmp_path / "store").exists()
    proc = run_cli(["-m", "monai_genesis", "export", "--checkpoint", "bundles/genesis_classification/models/model.pt",
                    "--out", str(tmp_path / "export")], cwd=REPO, check=False)
    assert _last_line(proc).endswith(
        "run: python -m monai_genesis export --checkpoint bundles/finetune_classification/models/model.pt "
        f"--out {tmp_path / 'export'}"
    )
