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
