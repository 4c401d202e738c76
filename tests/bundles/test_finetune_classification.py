import csv
import os

import numpy as np
import pytest
import torch

from tests.bundles.workflows import make_workflow, root_cause, run_workflow

BUNDLE = "finetune_classification"


def test_train_reports_auc_and_accuracy(classification_run):
    root, workflow = classification_run
    metrics = workflow.evaluator.state.metrics
    assert 0.0 <= metrics["val_auc"] <= 1.0 and 0.0 <= metrics["val_accuracy"] <= 1.0
    assert {"model.pt", "model_final.pt"} <= set(os.listdir(root / "models"))


def test_evaluate_writes_probabilities(classification_run, tmp_path):
    root, _ = classification_run
    run_workflow(BUNDLE, "evaluate", root, output_dir=str(tmp_path))
    rows = list(csv.reader((tmp_path / "probabilities.csv").read_text().splitlines()))
    assert len(rows) == 2  # the test part falls back to the 2 validation patches
    assert all("nodule_patch_" in row[0] and 0.0 <= float(row[1]) <= 1.0 for row in rows)
    assert (tmp_path / "metrics.csv").read_text().count("val_") == 2


def test_inference_writes_predictions(classification_run, tmp_path):
    root, _ = classification_run
    run_workflow(BUNDLE, "inference", root, output_dir=str(tmp_path))
    rows = list(csv.reader((tmp_path / "predictions.csv").read_text().splitlines()))
    assert len(rows) == 2 and all(0.0 <= float(row[1]) <= 1.0 for row in rows)


def test_finetune_loads_pretrained_encoder(pretrain_run, tmp_path):
    pretrain_root, _ = pretrain_run
    checkpoint = pretrain_root / "models" / "model.pt"
    workflow = run_workflow(BUNDLE, "train", tmp_path, pretrained=str(checkpoint))
    report = workflow.parser.get_parsed_content("train#handlers")[0].report
    encoder_keys = [k for k in torch.load(checkpoint, weights_only=True) if k.startswith("encoder.")]
    assert report.num_loaded == len(encoder_keys)
    assert all(k.startswith("encoder.") for k in report.loaded)


def test_medmnist_multiclass(tmp_path):
    rng = np.random.default_rng(0)
    npz = tmp_path / "tiny3d.npz"
    np.savez(
        npz,
        train_images=rng.integers(0, 256, (6, 16, 16, 16), dtype=np.uint8),
        train_labels=np.array([[0], [1], [2]] * 2),
        val_images=rng.integers(0, 256, (3, 16, 16, 16), dtype=np.uint8),
        val_labels=np.array([[0], [1], [2]]),
    )
    workflow = run_workflow(BUNDLE, "train", tmp_path / "run", medmnist_npz=str(npz), num_classes=3)
    # MedMNIST entries carry their own 0-255 setting; the bundle's default stays the CT window
    split = workflow.parser.get_parsed_content("data_split")
    assert {item["intensity"] for part in split.values() for item in part} == {"minmax"}
    assert workflow.parser.get_parsed_content("intensity") == "ct"
    scaled = workflow.parser.get_parsed_content("train#dataset")[0]["image"]
    assert 0.0 <= float(scaled.min()) and float(scaled.max()) <= 1.0 and float(scaled.max()) > 0.9
    assert isinstance(workflow.parser.get_parsed_content("loss"), torch.nn.CrossEntropyLoss)
    assert 0.0 <= workflow.evaluator.state.metrics["val_accuracy"] <= 1.0
    assert not (tmp_path / "run" / "eval" / "phantoms").exists()


def test_real_medmnist_reader(shared_data, tmp_path):
    workflow = make_workflow(
        BUNDLE, "train", tmp_path, medmnist_npz=str(shared_data / "medmnist" / "adrenalmnist3d_trainval.npz")
    )
    split = workflow.parser.get_parsed_content("data_split")
    assert [len(split[k]) for k in ("training", "validation")] == [1188, 98]


def test_missing_medmnist_file_errors(tmp_path):
    workflow = make_workflow(BUNDLE, "train", tmp_path, medmnist_npz=str(tmp_path / "none.npz"))
    with pytest.raises(RuntimeError) as error:
        _ = workflow.trainer
    assert "none.npz does not exist" in str(root_cause(error.value))


def test_missing_pretrained_errors_before_any_data_is_read(tmp_path):
    with pytest.raises(RuntimeError) as error:
        make_workflow(BUNDLE, "train", tmp_path, pretrained=str(tmp_path / "none.pt"), finetune="frozen_encoder")
    assert "none.pt does not exist" in str(root_cause(error.value))
    assert not (tmp_path / "eval").exists()
