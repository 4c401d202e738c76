"""The ResNet-18 arms of the AdrenalMNIST3D benchmark and their learning curves, through the scripts' command lines."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from monai_genesis.networks import ResNet18Classifier
from tests.conftest import REPO_ROOT
from tests.packaging.helpers import run_cli

pytestmark = pytest.mark.slow


def test_resnet18_arms_record_curves_and_load_the_cspr_encoder(tmp_path):
    rng = np.random.default_rng(0)
    labels = np.arange(16) % 2
    images = rng.integers(0, 2, (16, 28, 28, 28), dtype=np.uint8) * 255
    npz = tmp_path / "tiny.npz"
    np.savez(npz, train_images=images[:12], train_labels=labels[:12, None], val_images=images[12:],
             val_labels=labels[12:, None])
    torch.manual_seed(0)
    checkpoint = tmp_path / "cspr.pt"
    torch.save(ResNet18Classifier(1, 10, depth_stride=False).state_dict(), checkpoint)
    run_cli(["benchmarks/finetune_adrenal.py", "--setting", "smoke", "--npz", str(npz), "--results", str(tmp_path),
             "--inits", "resnet18_scratch", "cspr", "--cspr-checkpoint", str(checkpoint), "--epochs", "2"],
            cwd=REPO_ROOT)
    results = tmp_path / "finetune_adrenal_smoke_cpu.json"
    saved = json.loads(results.read_text())
    assert [r["init"] for r in saved["runs"]] == ["resnet18_scratch", "cspr"]
    assert [r["tensors_loaded"] for r in saved["runs"]] == [0, 120]  # every encoder.* tensor, not the head
    assert {r["network"] for r in saved["runs"]} == {"ResNet18Classifier"}
    assert all([p["epoch"] for p in r["history"]] == [1, 2] for r in saved["runs"])

    proc = run_cli(["benchmarks/plot_learning_curves.py", str(results), "--metric", "auc"], cwd=REPO_ROOT)
    out = tmp_path / "finetune_adrenal_smoke_cpu_curve_auc.png"
    with Image.open(out) as png:
        assert png.format == "PNG" and min(png.size) > 100
    assert "| " in proc.stdout  # the same figures as a Markdown table


def test_brats_resnet18_arms_cut_their_own_pool_and_record_curves(phantom_dir, tmp_path):
    """The ResNet-18 U-Net arms of the BraTS benchmark: 32³ patches, the CSPR encoder loaded, a curve per run."""
    torch.manual_seed(0)
    checkpoint = tmp_path / "cspr.pt"
    torch.save(ResNet18Classifier(1, 10, depth_stride=False).state_dict(), checkpoint)
    run_cli(["benchmarks/finetune_brats.py", "--setting", "smoke", "--datalist", str(phantom_dir / "datalist.json"),
             "--inits", "scratch", "resnet18_scratch", "cspr", "--cspr-checkpoint", str(checkpoint),
             "--fractions", "1.0", "--steps", "3", "--results", str(tmp_path)], cwd=REPO_ROOT)
    results = tmp_path / "finetune_brats_smoke_cpu.json"
    saved = json.loads(results.read_text())
    runs = {r["init"]: r for r in saved["runs"]}
    assert [r["init"] for r in saved["runs"]] == ["scratch", "resnet18_scratch", "cspr"]
    assert runs["cspr"]["tensors_loaded"] == 120 and runs["resnet18_scratch"]["tensors_loaded"] == 0
    assert runs["cspr"]["network"] == runs["resnet18_scratch"]["network"] == "ResNetUNet"
    # 4 patches in batches of 2: 2 epochs make the 3 steps; 2 curve points → a validation after every epoch
    assert [(p["epoch"], p["step"]) for p in runs["cspr"]["history"]] == [(1, 2), (2, 4)]
    assert runs["cspr"]["history"][-1]["dice"] == pytest.approx(runs["cspr"]["dice"])
    assert runs["scratch"]["history"] == []
    assert saved["resnet18"]["patch_size"] == [32, 32, 32]
    assert "ResNet-18 arms" in (tmp_path / "finetune_brats_smoke_cpu.md").read_text()

    run_cli(["benchmarks/plot_learning_curves.py", str(results), "--metric", "dice", "--fraction", "1.0"],
            cwd=REPO_ROOT)
    with Image.open(tmp_path / "finetune_brats_smoke_cpu_curve_dice_1.png") as png:
        assert png.format == "PNG" and min(png.size) > 100
    proc = run_cli(["benchmarks/plot_learning_curves.py", str(results), "--metric", "auc"], cwd=REPO_ROOT,
                   check=False)
    assert proc.returncode != 0 and "has no 'auc'" in proc.stderr


def test_brats_cspr_arm_needs_its_checkpoint_and_a_divisible_patch(tmp_path):
    for extra, words in (([], "--inits cspr needs --cspr-checkpoint"),
                         (["--resnet-patch-size", "32", "32", "16"], "divisible by 32")):
        proc = run_cli(["benchmarks/finetune_brats.py", "--setting", "smoke", "--inits", "cspr", *extra,
                        "--results", str(tmp_path)], cwd=REPO_ROOT, check=False)
        assert proc.returncode != 0 and words in proc.stderr.splitlines()[-1]
