import json

import numpy as np
import torch
from PIL import Image

from benchmarks import finetune_adrenal, plot_learning_curves
from monai_genesis.networks import ResNet18Classifier


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
    finetune_adrenal.main(["--setting", "smoke", "--npz", str(npz), "--results", str(tmp_path), "--inits",
                           "resnet18_scratch", "cspr", "--cspr-checkpoint", str(checkpoint), "--epochs", "2"])
    saved = json.loads((tmp_path / "finetune_adrenal_smoke_cpu.json").read_text())
    assert [r["init"] for r in saved["runs"]] == ["resnet18_scratch", "cspr"]
    assert [r["tensors_loaded"] for r in saved["runs"]] == [0, 120]  # every encoder.* tensor, not the head
    assert {r["network"] for r in saved["runs"]} == {"ResNet18Classifier"}
    assert all([p["epoch"] for p in r["history"]] == [1, 2] for r in saved["runs"])

    out = plot_learning_curves.main([str(tmp_path / "finetune_adrenal_smoke_cpu.json"), "--metric", "auc"])
    with Image.open(out) as png:
        assert png.size == (plot_learning_curves.WIDTH, plot_learning_curves.HEIGHT)
