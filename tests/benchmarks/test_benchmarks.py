"""Smoke runs of the benchmark scripts, run as a user runs them: result files, their keys, finite figures, and the
messages and exit codes of bad arguments. The scripts are never imported: ``benchmarks/`` is not a package of the
project, so the tests reach it only through its command line."""

from __future__ import annotations

import json
import math

import nibabel as nib
import numpy as np
import pytest
import torch

from tests.conftest import REPO_ROOT
from tests.packaging.helpers import run_cli

pytestmark = pytest.mark.slow


def run_benchmark(name, *args, check=True):
    """``python benchmarks/NAME.py ARGS`` from the repository root; the completed process."""
    return run_cli([f"benchmarks/{name}.py", *map(str, args)], cwd=REPO_ROOT, check=check)


def fails_with(name, message, *args):
    """The script exits non-zero, naming ``message`` in its error output, and writes no result."""
    proc = run_benchmark(name, *args, check=False)
    assert proc.returncode != 0, proc.stdout[-2000:]
    assert message in proc.stderr, proc.stderr[-3000:]


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


def test_throughput_smoke_in_process(phantom_dir, tmp_path):
    proc = run_benchmark(
        "pretraining_throughput", "--setting", "smoke", "--data", phantom_dir / "phantom_000.nii.gz", "--workers", "0",
        "--in-process", "--results", tmp_path, "--work-dir", tmp_path,
    )
    saved, table = read_results(tmp_path, "pretraining_throughput_smoke_cpu")
    # the table is printed as well as written
    assert "| per-sample | 0 |" in proc.stdout and "| batched | 0 |" in proc.stdout
    assert [(r["path"], r["workers"]) for r in saved["results"]] == [("per_sample", 0), ("batched", 0)]
    keys = ("steps_per_s", "cubes_per_s", "step_s", "data_wait_share", "peak_rss_gib", "final_loss")
    assert all_finite(saved["results"], keys)
    for row in saved["results"]:
        assert row["steps"] == 2
        assert 0.0 <= row["data_wait_share"] < 1.0
        assert row["cubes_per_s"] == pytest.approx(2 * row["steps_per_s"])
        assert 0.05 < row["peak_rss_gib"] < 8
    assert "| per-sample | 0 |" in table and "| batched | 0 |" in table
    # without 2-worker rows there is nothing to judge the acceptance criteria on
    assert saved["acceptance"] is None


def test_throughput_isolated_worker(phantom_dir, tmp_path):
    """One combination in its own process, with a loader worker, over a folder of volumes."""
    run_benchmark(
        "pretraining_throughput", "--setting", "smoke", "--data", phantom_dir, "--paths", "batched", "--workers", "1",
        "--results", tmp_path, "--tag", "folder",
    )
    saved, _ = read_results(tmp_path, "pretraining_throughput_smoke_cpu_folder")
    (row,) = saved["results"]
    assert row["workers"] == 1 and row["path"] == "batched"
    assert saved["config"]["isolated_processes"] is True
    assert all_finite([row], ("steps_per_s", "data_wait_share", "peak_rss_gib"))


def test_throughput_rejects_bad_arguments(tmp_path):
    fails_with("pretraining_throughput", "divisible by 8", "--setting", "smoke", "--patch-size", "30", "32", "32",
               "--results", tmp_path)
    fails_with("pretraining_throughput", "neither a volume file nor a folder", "--setting", "smoke",
               "--data", tmp_path / "missing.nii.gz", "--results", tmp_path)
    assert not list(tmp_path.glob("*.json"))


@pytest.mark.skipif(torch.cuda.is_available(), reason="the message is for machines without a GPU")
def test_cuda_without_a_gpu_is_refused(tmp_path):
    fails_with("pretraining_throughput", "no CUDA device", "--setting", "smoke", "--device", "cuda",
               "--results", tmp_path)


def test_brats_smoke(phantom_dir, tmp_path):
    proc = run_benchmark(
        "finetune_brats", "--setting", "smoke", "--datalist", phantom_dir / "datalist.json",
        "--pretrain-data", phantom_dir / "phantom_000.nii.gz", phantom_dir / "phantom_001.nii.gz",
        "--inits", "scratch", "genesis_real", "genesis_chest_ct", "--genesis-chest-ct", tmp_path / "absent.pt",
        "--results", tmp_path,
    )
    saved, table = read_results(tmp_path, "finetune_brats_smoke_cpu")
    assert "Genesis Chest CT not run" in proc.stdout
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


def test_brats_reports_the_steps_it_ran(phantom_dir, tmp_path):
    """Whole epochs: 3 steps asked of 4 patches in batches of 2 (2 steps an epoch) run 4; the results say 4."""
    run_benchmark(
        "finetune_brats", "--setting", "smoke", "--datalist", phantom_dir / "datalist.json", "--inits", "scratch",
        "--fractions", "1.0", "--steps", "3", "--results", tmp_path,
    )
    saved, table = read_results(tmp_path, "finetune_brats_smoke_cpu")
    assert [(r["steps"], r["epochs"]) for r in saved["runs"]] == [(4, 2)]
    assert saved["config"]["steps_requested"] == 3 and saved["config"]["steps_run"] == [4]
    assert [r["steps"] for r in saved["summary"]] == [[4]]
    assert "| steps run |" in table and "| 100% (4) | 4 |" in table
    assert "4 steps of batch 2 per run (whole epochs, the fewest that make the 3 steps asked for)" in table


def test_brats_norm_option_reaches_the_network(phantom_dir, tmp_path):
    """``--norm`` reaches the network; a released file at the smoke width is refused with a note, not run."""
    fake = tmp_path / "Genesis_Chest_CT.pt"
    fake.write_bytes(b"0")
    run_benchmark(
        "finetune_brats", "--setting", "smoke", "--datalist", phantom_dir / "datalist.json",
        "--inits", "scratch", "genesis_chest_ct", "--genesis-chest-ct", fake, "--fractions", "1.0",
        "--norm", "genesis", "--results", tmp_path, "--tag", "released_norm",
    )
    saved, table = read_results(tmp_path, "finetune_brats_smoke_cpu_released_norm")
    assert saved["config"]["norm"] == "genesis" and "(norm 'genesis')" in table
    assert [r["norm_layer"] for r in saved["runs"]] == ["GenesisBatchNorm"]
    assert saved["config"]["features"] == 2
    assert saved["notes"] == ["Genesis Chest CT not run: the released network has features 32, this run uses 2."]


def test_brats_rejects_bad_arguments(tmp_path):
    fails_with("finetune_brats", "--fractions", "--setting", "smoke", "--fractions", "0", "--results", tmp_path)
    fails_with("finetune_brats", "divisible by 8", "--setting", "smoke", "--patch-size", "16", "16", "12",
               "--results", tmp_path)
    assert not list(tmp_path.glob("*.json"))


def test_brats_case_preparation(shared_data, tmp_path):
    """A real BraTS case at 4 mm: FLAIR windowed to [0, 1] in the brain, 0 outside, label = label > 0, cropped."""
    work = tmp_path / "work"
    run_benchmark(
        "finetune_brats", "--setting", "smoke", "--data", shared_data / "brats2013", "--train-cases", "pat0006",
        "--val-cases", "pat0005", "--inits", "scratch", "--fractions", "1.0", "--work-dir", work,
        "--results", tmp_path,
    )
    saved, _ = read_results(tmp_path, "finetune_brats_smoke_cpu")
    assert saved["config"]["training_cases"] == ["pat0006"] and saved["config"]["validation_cases"] == ["pat0005"]
    image = np.asarray(nib.load(work / "volumes" / "pat0005_image.nii").dataobj)
    label = np.asarray(nib.load(work / "volumes" / "pat0005_label.nii").dataobj)
    image, label = np.squeeze(image), np.squeeze(label)
    assert image.shape == label.shape == tuple(saved["config"]["validation_shapes"][0][-3:])
    # 60×60×40 at 4 mm before the crop to the brain
    assert image.shape[0] < 60 and image.shape[1] < 60 and image.shape[2] <= 40
    assert float(image.min()) == 0.0 and float(image.max()) == pytest.approx(1.0)
    assert set(np.unique(label).tolist()) == {0, 1}
    assert 0.2 < float((image > 0).mean()) < 0.9


def adrenal_npz(path, train=24, val=10, test=0):
    """A tiny MedMNIST-like file: class 1 a larger cube than class 0, so that the task is learnable in principle; a
    faint noise makes every image its own (the store keeps one copy of identical volumes)."""
    rng = np.random.default_rng(0)

    def shapes(n):
        labels = np.arange(n) % 2
        images = rng.integers(0, 30, (n, 28, 28, 28)).astype(np.uint8)
        for i, y in enumerate(labels):
            r = 5 + 3 * y + rng.integers(0, 2)
            images[i, 14 - r : 14 + r, 14 - r : 14 + r, 14 - r : 14 + r] = 255
        return images, labels[:, None]

    arrays = {}
    for split, n in (("train", train), ("val", val), ("test", test)):
        if n:
            arrays[f"{split}_images"], arrays[f"{split}_labels"] = shapes(n)
    np.savez(path, **arrays)
    return path


def test_adrenal_smoke(tmp_path):
    npz = adrenal_npz(tmp_path / "tiny.npz")
    run_benchmark("finetune_adrenal", "--setting", "smoke", "--npz", npz, "--results", tmp_path)
    saved, table = read_results(tmp_path, "finetune_adrenal_smoke_cpu")
    assert [r["init"] for r in saved["summary"]] == ["scratch", "genesis"]
    assert all_finite(saved["summary"], ("auc_mean", "auc_std", "accuracy_mean", "accuracy_std"))
    assert all(r["train_samples"] == 24 and r["val_samples"] == 10 for r in saved["runs"])
    assert all((r["tensors_loaded"] > 0) == (r["init"] == "genesis") for r in saved["runs"])
    assert saved["published"]["auc"] == 0.828 and "0.828" in table and "official test" in table
    assert saved["config"]["norm"] == "batch" and {r["norm_layer"] for r in saved["runs"]} == {"BatchNorm3d"}
    # no test split in the file: only validation rows, and the notes say so
    assert saved["config"]["official_test_split"] is False
    assert not any("test_auc" in r for r in saved["runs"]) and "| scratch | official test |" not in table
    assert "The published figures are on the official test split (not in these files)" in table


def test_adrenal_scores_the_official_test_split(tmp_path):
    """A file with ``test_*``: every run's final network is scored on it once, in rows of its own."""
    npz = adrenal_npz(tmp_path / "tiny_test.npz", test=12)
    run_benchmark("finetune_adrenal", "--setting", "smoke", "--npz", npz, "--inits", "scratch", "--seeds", "0", "1",
                  "--results", tmp_path)
    saved, table = read_results(tmp_path, "finetune_adrenal_smoke_cpu")
    assert saved["config"]["official_test_split"] is True and "official test split" in saved["config"]["metric"]
    assert [(r["test_samples"], r["val_samples"]) for r in saved["runs"]] == [(12, 10), (12, 10)]
    assert all(0.0 <= r[k] <= 1.0 for r in saved["runs"] for k in ("test_auc", "test_accuracy"))
    (row,) = saved["summary"]
    assert all_finite([row], ("test_auc_mean", "test_auc_std", "test_accuracy_mean", "test_accuracy_std"))
    assert row["test_auc_mean"] == pytest.approx(np.mean([r["test_auc"] for r in saved["runs"]]))
    assert "| scratch | val |" in table and "| scratch | official test |" in table
    assert "not in these files" not in table and "no model selection on it" in table
    # the validation figures stay those of the validation split, not the test split's
    assert row["auc_mean"] == pytest.approx(np.mean([r["auc"] for r in saved["runs"]]))


def test_adrenal_rejects_bad_arguments(tmp_path):
    fails_with("finetune_adrenal", "does not exist", "--setting", "smoke", "--npz", tmp_path / "missing.npz",
               "--results", tmp_path)
    npz = adrenal_npz(tmp_path / "tiny.npz")
    fails_with("finetune_adrenal", "multiple of 8", "--setting", "smoke", "--npz", npz, "--input-size", "20",
               "--results", tmp_path)
    fails_with("finetune_adrenal", "--cspr-checkpoint", "--setting", "smoke", "--npz", npz, "--inits", "cspr",
               "--results", tmp_path)


def test_brats_released_checkpoint_arm(phantom_dir, tmp_path):
    """The released-weights arm loads a file in the released format into the width-32 network."""
    from monai_genesis.networks import GenesisUNet
    from monai_genesis.weights import save_official_checkpoint

    released = save_official_checkpoint(GenesisUNet(features=32), tmp_path / "Genesis_Chest_CT.pt")
    run_benchmark(
        "finetune_brats", "--setting", "smoke", "--datalist", phantom_dir / "datalist.json", "--features", "32",
        "--genesis-chest-ct", released, "--inits", "scratch", "genesis_chest_ct", "--fractions", "1.0",
        "--results", tmp_path,
    )
    saved, table = read_results(tmp_path, "finetune_brats_smoke_cpu")
    assert [(r["init"], r["tensors_loaded"]) for r in saved["runs"]] == [("scratch", 0), ("genesis_chest_ct", 104)]
    assert saved["pretraining"] is None and saved["notes"] == []
    assert "Genesis Chest CT (released)" in table
