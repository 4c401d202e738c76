import json
import os

import nibabel as nib
import numpy as np
import pytest
import torch

from tests.bundles.workflows import REPO, make_workflow, root_cause, run_workflow

BUNDLE = "finetune_segmentation"


def test_train_saves_best_and_final(segmentation_run):
    root, workflow = segmentation_run
    assert {"model.pt", "model_final.pt"} <= set(os.listdir(root / "models"))
    metrics = workflow.evaluator.state.metrics
    assert 0.0 <= metrics["val_mean_dice"] <= 1.0
    # IoU = Dice / (2 - Dice) per case and class, so it never exceeds the Dice
    assert 0.0 <= metrics["val_mean_iou"] <= metrics["val_mean_dice"] + 1e-6
    state = torch.load(root / "models" / "model.pt", weights_only=True)
    assert state["out.conv.weight"].shape[0] == 3


def test_evaluate_writes_per_case_dice(segmentation_run, tmp_path):
    root, _ = segmentation_run
    run_workflow(BUNDLE, "evaluate", root, output_dir=str(tmp_path))
    rows = (tmp_path / "val_mean_dice_raw.csv").read_text().splitlines()
    assert rows[0] == "filename,class0,class1,mean"
    assert len(rows) == 2 and "phantom_" in rows[1]
    metrics = dict(line.split(",") for line in (tmp_path / "metrics.csv").read_text().splitlines())
    assert set(metrics) == {"val_mean_dice", "val_mean_iou"}
    assert 0.0 <= float(metrics["val_mean_iou"]) <= float(metrics["val_mean_dice"]) + 1e-6
    iou_rows = (tmp_path / "val_mean_iou_raw.csv").read_text().splitlines()
    assert iou_rows[0] == "filename,class0,class1,mean" and len(iou_rows) == 2
    # per class, the IoU is the Dice's: IoU = Dice / (2 - Dice)
    dice = np.array(rows[1].split(",")[1:3], dtype=float)
    iou = np.array(iou_rows[1].split(",")[1:3], dtype=float)
    np.testing.assert_allclose(iou, dice / (2 - dice), atol=1e-4)


def test_inference_writes_masks_in_input_geometry(segmentation_run, tmp_path):
    root, _ = segmentation_run
    run_workflow(BUNDLE, "inference", root, output_dir=str(tmp_path))
    masks = sorted(os.listdir(tmp_path / "predictions"))
    assert masks == [f"phantom_00{i}_seg.nii.gz" for i in range(3)]
    source = nib.load(tmp_path / "phantoms" / "phantom_000.nii.gz")
    mask = nib.load(tmp_path / "predictions" / "phantom_000_seg.nii.gz")
    assert mask.shape[:3] == source.shape and mask.get_data_dtype() == np.uint8
    np.testing.assert_allclose(mask.affine, source.affine, atol=1e-5)
    assert set(np.unique(mask.get_fdata()).astype(int)) <= {0, 1, 2}


def test_finetune_from_pretraining_loads_weights(pretrain_run, tmp_path):
    pretrain_root, _ = pretrain_run
    checkpoint = pretrain_root / "models" / "model.pt"
    workflow = run_workflow(BUNDLE, "train", tmp_path, pretrained=str(checkpoint))
    loader = workflow.parser.get_parsed_content("train#handlers")[0]
    assert loader.finetune == "full"
    pretrained = torch.load(checkpoint, weights_only=True)
    # every tensor but the output layer, whose channels differ (1 restored image vs 3 classes)
    assert loader.report.num_loaded == len(pretrained) - 2
    assert sorted(loader.report.missing) == ["out.conv.bias", "out.conv.weight"]


def test_frozen_encoder_keeps_pretrained_encoder(pretrain_run, tmp_path):
    pretrain_root, _ = pretrain_run
    checkpoint = pretrain_root / "models" / "model.pt"
    workflow = run_workflow(BUNDLE, "train", tmp_path, pretrained=str(checkpoint), finetune="frozen_encoder")
    pretrained = torch.load(checkpoint, weights_only=True)
    network = workflow.parser.get_parsed_content("network")
    params = dict(network.named_parameters())
    encoder = [name for name in params if name.startswith("encoder.")]
    assert encoder and all(not params[name].requires_grad for name in encoder)
    for name in encoder:
        torch.testing.assert_close(params[name].detach().cpu(), pretrained[name])
    trained = [
        name
        for name in params
        if name not in encoder and name in pretrained and params[name].shape == pretrained[name].shape
    ]
    assert trained and all(params[name].requires_grad for name in trained)
    assert any(not torch.equal(params[name].detach().cpu(), pretrained[name]) for name in trained)


def test_missing_pretrained_errors_before_any_data_is_read(tmp_path):
    with pytest.raises(RuntimeError) as error:
        make_workflow(BUNDLE, "train", tmp_path, pretrained=str(tmp_path / "none.pt"))
    assert "none.pt does not exist" in str(root_cause(error.value))
    with pytest.raises(RuntimeError) as error:
        make_workflow(BUNDLE, "train", tmp_path, finetune="full")
    assert "needs a checkpoint" in str(root_cause(error.value))
    # stopped in initialize: the phantoms (the default data) were never written
    assert not (tmp_path / "eval").exists()


def test_label_shape_mismatch_errors(tmp_path):
    nib.save(nib.Nifti1Image(np.zeros((20, 20, 20), np.int16), np.eye(4)), str(tmp_path / "img.nii.gz"))
    nib.save(nib.Nifti1Image(np.zeros((20, 20, 18), np.uint8), np.eye(4)), str(tmp_path / "lab.nii.gz"))
    datalist = tmp_path / "datalist.json"
    datalist.write_text(json.dumps({"training": [{"image": "img.nii.gz", "label": "lab.nii.gz"}] * 2}))
    workflow = make_workflow(BUNDLE, "train", tmp_path / "run", datalist=str(datalist))
    with pytest.raises(RuntimeError) as error:
        _ = workflow.trainer
    assert "lab.nii.gz has spatial shape (20, 20, 18)" in str(root_cause(error.value))


def test_missing_datalist_errors(tmp_path):
    workflow = make_workflow(BUNDLE, "train", tmp_path, datalist=str(tmp_path / "nolist.json"))
    with pytest.raises(RuntimeError) as error:
        _ = workflow.trainer
    assert "nolist.json does not exist" in str(root_cause(error.value))


def test_network_preset_pretrains_and_transfers(tmp_path):
    preset = str(REPO / "configs" / "networks" / "segresnet.json")
    settings = {"epochs": 1, "segresnet_init_filters": 8}
    pretrain = run_workflow("genesis_pretrain", "train", tmp_path / "pretrain", extra_configs=[preset], **settings)
    assert type(pretrain.parser.get_parsed_content("network").net).__name__ == "SegResNet"
    checkpoint = tmp_path / "pretrain" / "models" / "model.pt"
    twin = run_workflow(BUNDLE, "train", tmp_path / "twin", extra_configs=[preset], pretrained=str(checkpoint), **settings)
    report = twin.parser.get_parsed_content("train#handlers")[0].report
    pretrained = torch.load(checkpoint, weights_only=True)
    # everything but the output layer, whose shape differs, is transferred
    assert report.num_loaded == len(pretrained) - len(report.skipped) and report.num_loaded > 50
    assert report.skipped and all("shape" in why for why in report.skipped.values())


def test_labels_beyond_out_channels_are_named_before_training(tmp_path):
    from monai_genesis.errors import GenesisInputError

    rng = np.random.default_rng(0)
    entries = []
    for i in range(2):
        image = rng.uniform(-1000, 400, (32, 32, 24)).astype(np.float32)
        label = np.zeros((32, 32, 24), np.uint8)
        label[8:20, 8:20, 6:16] = 3 if i == 0 else 1  # raw label 3 with three outputs (0, 1, 2)
        nib.save(nib.Nifti1Image(image, np.eye(4)), tmp_path / f"img{i}.nii.gz")
        nib.save(nib.Nifti1Image(label, np.eye(4)), tmp_path / f"lab{i}.nii.gz")
        entries.append({"image": f"img{i}.nii.gz", "label": f"lab{i}.nii.gz"})
    datalist = tmp_path / "datalist.json"
    datalist.write_text(json.dumps({"training": entries[:1], "validation": entries[1:]}))
    with pytest.raises(Exception) as err:
        run_workflow(BUNDLE, "train", tmp_path / "run", datalist=str(datalist), out_channels=3)
    cause = root_cause(err.value)
    assert isinstance(cause, GenesisInputError)
    assert "lab0.nii.gz" in str(cause) and "out_channels=3" in str(cause) and "--out_channels" in str(cause)
    assert not (tmp_path / "run" / "models" / "model_final.pt").exists()
