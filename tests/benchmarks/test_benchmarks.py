"""Smoke runs of the benchmark scripts on synthetic volumes: result files, their keys and finite figures."""

from __future__ import annotations

import json
import math
import sys

import numpy as np
import pytest
import torch

from tests.conftest import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT))

from benchmarks import common, finetune_adrenal, finetune_brats, pretraining_throughput
from monai_genesis.data import write_ct_phantoms


def read_results(folder, name):
    payload = json.loads((folder / f"{name}.json").read_text())
    table = (folder / f"{name}.md").read_text()
    for key in ("benchmark", "setting", "command", "machine", "config"):
        assert key in payload
    for key in ("cpu_model", "cpu_cores", "torch", "monai", "device"):
        assert payload["machine"][key]
    assert payload["command"].startswith("python ")
    assert f"benchmarks/{payload['benchmark']}.py --setting smoke" in payload["command"]
    assert table.startswith(f"# {name}\n") and "| " in table
    return payload, table


def all_finite(rows, keys):
    return all(math.isfinite(float(row[key])) for row in rows for key in keys)


@pytest.fixture(scope="module")
def phantom_dir(tmp_path_factory):
    """Two CT phantoms with label maps and a datalist that trains on one and validates on the other."""
    folder = tmp_path_factory.mktemp("phantoms")
    items = write_ct_phantoms(str(folder), 2, (40, 40, 32), seed=0, with_labels=True)
    (folder / "datalist.json").write_text(json.dumps({"training": items[:1], "validation": items[1:]}))
    return folder


def test_throughput_smoke_in_process(phantom_dir, tmp_path):
    payload = pretraining_throughput.main(
        ["--setting", "smoke", "--data", str(phantom_dir / "phantom_000.nii.gz"), "--workers", "0",
         "--in-process", "--results", str(tmp_path), "--work-dir", str(tmp_path)]
    )
    saved, table = read_results(tmp_path, "pretraining_throughput_smoke_cpu")
    assert saved["results"] == json.loads(json.dumps(payload["results"]))
    assert [(r["path"], r["workers"]) for r in saved["results"]] == [("per_sample", 0), ("batched", 0)]
    keys = ("steps_per_s", "cubes_per_s", "step_s", "data_wait_share", "peak_rss_gib", "final_loss")
    assert all_finite(saved["results"], keys)
    for row in saved["results"]:
        assert row["steps"] == 2
        assert 0.0 <= row["data_wait_share"] < 1.0
        assert row["cubes_per_s"] == pytest.approx(2 * row["steps_per_s"])
        assert 0.05 < row["peak_rss_gib"] < 8
    assert "| per-sample | 0 |" in table and "| batched | 0 |" in table


def test_throughput_isolated_worker(phantom_dir, tmp_path):
    """One combination in its own process, with a loader worker, over a folder of volumes."""
    pretraining_throughput.main(
        ["--setting", "smoke", "--data", str(phantom_dir), "--paths", "batched", "--workers", "1",
         "--results", str(tmp_path), "--tag", "folder"]
    )
    saved, _ = read_results(tmp_path, "pretraining_throughput_smoke_cpu_folder")
    (row,) = saved["results"]
    assert row["workers"] == 1 and row["path"] == "batched"
    assert saved["config"]["isolated_processes"] is True
    assert all_finite([row], ("steps_per_s", "data_wait_share", "peak_rss_gib"))


def test_throughput_rejects_bad_sizes(tmp_path):
    with pytest.raises(ValueError, match="divisible by 8"):
        pretraining_throughput.parse_args(["--patch-size", "30", "32", "32"])
    with pytest.raises(ValueError, match="neither a volume file nor a folder"):
        pretraining_throughput.data_items(str(tmp_path / "missing.nii.gz"), None, tmp_path)


def test_brats_smoke(phantom_dir, tmp_path):
    payload = finetune_brats.main(
        ["--setting", "smoke", "--datalist", str(phantom_dir / "datalist.json"),
         "--pretrain-data", str(phantom_dir / "phantom_000.nii.gz"), str(phantom_dir / "phantom_001.nii.gz"),
         "--genesis-chest-ct", str(tmp_path / "absent.pt"), "--results", str(tmp_path)]
    )
    saved, table = read_results(tmp_path, "finetune_brats_smoke_cpu")
    assert saved["summary"] == json.loads(json.dumps(payload["summary"]))
    assert {(r["init"], r["fraction"]) for r in saved["summary"]} == {
        (i, f) for i in ("scratch", "genesis_real") for f in (0.5, 1.0)
    }
    assert all_finite(saved["summary"], ("dice_mean", "dice_std", "iou_mean", "iou_std"))
    assert all(0.0 <= r["dice"] <= 1.0 and 0.0 <= r["iou"] <= r["dice"] + 1e-6 for r in saved["runs"])
    # the pretrained runs loaded the pretraining's weights, the scratch ones none
    assert all((r["tensors_loaded"] > 0) == (r["init"] == "genesis_real") for r in saved["runs"])
    assert math.isfinite(saved["pretraining"]["best_val_mse"])
    assert saved["pretraining"]["volumes"] == ["00_phantom_000.nii", "01_phantom_001.nii"]
    assert saved["config"]["patch_pool"] == 4
    assert "Genesis Chest CT not run" in table and "released file was not found" in saved["notes"][0]
    # the bundle's default norm, as built: ordinary batch norm
    assert saved["config"]["norm"] == "batch" and "(norm 'batch')" in table
    assert {r["norm_layer"] for r in saved["runs"]} == {"BatchNorm3d"}


def test_brats_norm_option_reaches_the_network(phantom_dir, tmp_path):
    finetune_brats.main(
        ["--setting", "smoke", "--datalist", str(phantom_dir / "datalist.json"), "--inits", "scratch",
         "--fractions", "1.0", "--norm", "genesis", "--results", str(tmp_path), "--tag", "released_norm"]
    )
    saved, table = read_results(tmp_path, "finetune_brats_smoke_cpu_released_norm")
    assert saved["config"]["norm"] == "genesis" and "(norm 'genesis')" in table
    assert [r["norm_layer"] for r in saved["runs"]] == ["GenesisBatchNorm"]


def test_brats_chest_ct_needs_released_width(tmp_path):
    fake = tmp_path / "Genesis_Chest_CT.pt"
    fake.write_bytes(b"0")
    args = finetune_brats.parse_args(["--setting", "smoke", "--genesis-chest-ct", str(fake)])
    assert args.features == 2 and args.genesis_chest_ct == str(fake)
    with pytest.raises(ValueError, match="--fractions"):
        finetune_brats.parse_args(["--fractions", "0"])


def test_brats_case_preparation(shared_data):
    """A real BraTS case at 4 mm: FLAIR windowed to [0, 1] in the brain, 0 outside, label = label > 0, cropped."""
    folder = shared_data / "brats2013" / "brats_2013_pat0005_1"
    d = finetune_brats.prepare_case(
        str(folder / "Flair_subtrMeanDivStd.nii.gz"), str(folder / "OTMultiClass.nii.gz"),
        str(folder / "brainmask.nii.gz"), [4.0, 4.0, 4.0],
    )
    image, label = d["image"], d["label"]
    assert image.shape == label.shape and image.shape[0] == 1
    # 60×60×40 at 4 mm before the crop to the brain
    assert image.shape[1] < 60 and image.shape[2] < 60 and image.shape[3] <= 40
    assert float(image.min()) == 0.0 and float(image.max()) == pytest.approx(1.0)
    assert set(torch.unique(label).tolist()) == {0, 1}
    assert 0.2 < float((image > 0).float().mean()) < 0.9


def test_adrenal_smoke(tmp_path):
    rng = np.random.default_rng(0)

    def shapes(n):
        # class 1: a larger blob, so that the task is learnable in principle
        labels = np.arange(n) % 2
        images = np.zeros((n, 28, 28, 28), np.uint8)
        for i, y in enumerate(labels):
            r = 5 + 3 * y + rng.integers(0, 2)
            images[i, 14 - r : 14 + r, 14 - r : 14 + r, 14 - r : 14 + r] = 255
        return images, labels[:, None]

    train_images, train_labels = shapes(24)
    val_images, val_labels = shapes(10)
    npz = tmp_path / "tiny.npz"
    np.savez(npz, train_images=train_images, train_labels=train_labels, val_images=val_images, val_labels=val_labels)
    finetune_adrenal.main(["--setting", "smoke", "--npz", str(npz), "--results", str(tmp_path)])
    saved, table = read_results(tmp_path, "finetune_adrenal_smoke_cpu")
    assert [r["init"] for r in saved["summary"]] == ["scratch", "genesis"]
    assert all_finite(saved["summary"], ("auc_mean", "auc_std", "accuracy_mean", "accuracy_std"))
    assert all(r["train_samples"] == 24 and r["val_samples"] == 10 for r in saved["runs"])
    assert all((r["tensors_loaded"] > 0) == (r["init"] == "genesis") for r in saved["runs"])
    assert saved["published"]["auc"] == 0.828 and "0.828" in table and "official test" in table
    assert saved["config"]["norm"] == "batch" and {r["norm_layer"] for r in saved["runs"]} == {"BatchNorm3d"}


def test_common_helpers():
    assert common.mean_std([1.0, 3.0]) == (2.0, pytest.approx(math.sqrt(2.0)))
    assert common.mean_std([0.5]) == (0.5, 0.0)
    assert common.fmt(0.12345, 0.01) == "0.123 ± 0.010" and common.fmt(float("nan")) == "–"
    assert common.markdown_table(["a", "b"], [[1, 2]]).splitlines() == ["| a | b |", "|---|---:|", "| 1 | 2 |"]
    assert common.results_name("x", "smoke", torch.device("cpu"), "t") == "x_smoke_cpu_t"
    assert common.process_tree_rss() > 0
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA device"):
            common.resolve_device("cuda")


def test_throughput_acceptance():
    row = {"path": "batched", "workers": 2, "data_wait_share": 0.05, "peak_rss_gib": 2.0}
    verdict = pretraining_throughput.check_acceptance([row, dict(row, workers=0, data_wait_share=0.5)], torch.device("cpu"))
    assert verdict["passed"] and "met" in verdict["summary"]
    slow = dict(row, path="per_sample", data_wait_share=0.2)
    verdict = pretraining_throughput.check_acceptance([row, slow], torch.device("cpu"))
    assert not verdict["passed"] and verdict["checks"]["per_sample"] == {"data_wait_ok": False, "peak_rss_ok": True}
    assert pretraining_throughput.check_acceptance([dict(row, workers=1)], torch.device("cpu")) is None


def test_brats_released_checkpoint_arm(phantom_dir, tmp_path):
    """The released-weights arm loads a file in the released format into the width-32 network."""
    from monai_genesis.networks import GenesisUNet
    from monai_genesis.weights import save_official_checkpoint

    released = save_official_checkpoint(GenesisUNet(features=32), tmp_path / "Genesis_Chest_CT.pt")
    finetune_brats.main(
        ["--setting", "smoke", "--datalist", str(phantom_dir / "datalist.json"), "--features", "32",
         "--genesis-chest-ct", str(released), "--inits", "scratch", "genesis_chest_ct", "--fractions", "1.0",
         "--results", str(tmp_path)]
    )
    saved, table = read_results(tmp_path, "finetune_brats_smoke_cpu")
    assert [(r["init"], r["tensors_loaded"]) for r in saved["runs"]] == [("scratch", 0), ("genesis_chest_ct", 104)]
    assert saved["pretraining"] is None and saved["notes"] == []
    assert "Genesis Chest CT (released)" in table
