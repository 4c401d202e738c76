"""The finetune_detection bundle end to end: the quick run of the docs (train.json + the shared base +
configs/quick.json) learns to find the blobs of the phantoms, evaluation and inference write boxes, a CSPR checkpoint
loads into the backbone, and bad input stops the run naming the file and the fix."""

import json
import logging
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from ignite.engine import Events
from monai.bundle import ConfigWorkflow, verify_metadata
from monai.data.box_utils import box_iou

from monai_genesis.detection import BACKBONE_PREFIX, blob_phantom, boxes_from_label, voxel_to_world_boxes, world_to_voxel_boxes
from monai_genesis.errors import GenesisInputError
from monai_genesis.networks import GenesisUNet

REPO = Path(__file__).resolve().parents[2]
BUNDLE = REPO / "bundles" / "finetune_detection"
QUICK = str(REPO / "configs" / "quick.json")
# the shared base the bundle's train.json is a recipe over (trainer, evaluator, checkpoints, resume, logging)
BASE = str(REPO / "configs" / "base" / "train.json")
SCHEMA = Path(__file__).with_name("metadata_schema.json")
# a one-epoch run on four phantoms, for the checks that need a trained network but not a good one
TINY = {"num_detection_phantoms": 4, "epochs": 1, "val_interval": 1, "num_workers": 0, "batch_size": 2}


def _config(name):
    return str(BUNDLE / "configs" / f"{name}.json")


def _workflow(kind, root, **override):
    files = {
        "train": [_config("train"), BASE, QUICK],
        "evaluate": [_config("train"), BASE, _config("evaluate"), QUICK],
        "inference": [_config("inference"), QUICK],
    }[kind]
    workflow = ConfigWorkflow(
        config_file=files,
        meta_file=_config("metadata"),
        logging_file=False,
        workflow_type="train" if kind == "train" else "infer",
        bundle_root=str(root),
        **override,
    )
    workflow.initialize()
    return workflow


def _run(kind, root, **override):
    workflow = _workflow(kind, root, **override)
    assert workflow.check_properties() == []
    workflow.run()
    workflow.finalize()
    return workflow


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """The quick run of the docs: configs/quick.json merged, nothing else changed."""
    root = tmp_path_factory.mktemp("detection_quick")
    workflow = _workflow("train", root)
    history = []
    evaluator = workflow.parser.get_parsed_content("validate#evaluator")
    evaluator.add_event_handler(Events.EPOCH_COMPLETED, lambda e: history.append(dict(e.state.metrics)))
    workflow.run()
    workflow.finalize()
    return root, workflow, history


def test_quick_run_learns_to_find_the_blobs(quick_run):
    root, workflow, history = quick_run
    # validated before training, then every val_interval (5) of the 10 epochs
    assert len(history) == 3
    first, last = history[0]["val_mAP_IoU_0.1"], history[-1]["val_mAP_IoU_0.1"]
    assert last >= 0.7 and last >= first + 0.3, [h["val_mAP_IoU_0.1"] for h in history]
    assert 0.0 <= history[-1]["val_mAP_IoU_0.5"] <= 1.0 and history[-1]["val_mAR_IoU_0.1_0.5"] >= 0.7
    models = {p.name for p in (root / "models").iterdir()}
    assert {"model.pt", "model_final.pt"} <= models
    state = torch.load(root / "models" / "model.pt", weights_only=True)
    assert len([k for k in state if k.startswith(BACKBONE_PREFIX)]) == 120
    assert list((root / "eval" / "runs").glob("events.out.tfevents.*"))
    picture = np.asarray(__import__("PIL.Image", fromlist=["Image"]).open(root / "eval" / "boxes.png"))
    # green (true) and red (predicted) box outlines on the grey slice
    assert ((picture[..., 1] > 200) & (picture[..., 0] < 50)).sum() > 20
    assert ((picture[..., 0] > 200) & (picture[..., 1] < 80)).sum() > 20


def test_inference_finds_the_known_box_of_a_new_phantom(quick_run, tmp_path):
    root, _, _ = quick_run
    image, label = blob_phantom((64, 64, 64), seed=1000, num_blobs=1)
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    affine[:3, 3] = [-40.0, 10.0, 25.0]
    path = tmp_path / "new_phantom.nii.gz"
    nib.save(nib.Nifti1Image(image.astype(np.int16), affine), str(path))
    _run("inference", root, images=[str(path)], output_dir=str(tmp_path / "out"))
    result = json.loads((tmp_path / "out" / "predictions.json").read_text())
    assert result["box_mode"] == "cccwhd" and len(result["test"]) == 1 and result["test"][0]["image"] == str(path)
    boxes = np.asarray(result["test"][0]["box"])
    scores = result["test"][0]["label_scores"]
    assert scores == sorted(scores, reverse=True)
    true_world = voxel_to_world_boxes(boxes_from_label(label)[0], affine, "cccwhd")
    iou = box_iou(world_to_voxel_boxes(boxes[:1], affine, "cccwhd"), world_to_voxel_boxes(true_world, affine, "cccwhd"))
    assert float(iou.max()) >= 0.5, (boxes[:3], true_world)


def test_evaluate_writes_test_boxes_and_metrics(quick_run, tmp_path):
    root, _, _ = quick_run
    _run("evaluate", root, output_dir=str(tmp_path))
    boxes = json.loads((tmp_path / "test_boxes.json").read_text())
    # without a test list, the 24 validation phantoms (a quarter of 96)
    assert len(boxes["test"]) == 24 and all(e["image"].endswith(".nii.gz") for e in boxes["test"])
    assert "val_mAP_IoU_0.1" in (tmp_path / "metrics.csv").read_text()
    assert (tmp_path / "test_boxes.png").is_file()


def test_cspr_checkpoint_loads_every_encoder_tensor(tmp_path, caplog):
    # the model a cspr_pretrain quick run writes: ResNet18Classifier without the depth stride, encoder.* and head.*
    from tests.bundles.workflows import TINY as TINY_RUNS
    from tests.bundles.workflows import run_workflow

    run_workflow("cspr_pretrain", "train", tmp_path / "cspr", **TINY_RUNS["cspr_pretrain"])
    checkpoint = tmp_path / "cspr" / "models" / "model.pt"
    with caplog.at_level(logging.INFO):
        workflow = _run("train", tmp_path / "run", pretrained=str(checkpoint), **TINY)
    loader = workflow.parser.get_parsed_content("train#handlers")[0]
    report = loader.report
    assert len([k for k in report.loaded if k.startswith(BACKBONE_PREFIX)]) == 120 == report.num_loaded
    assert sorted(report.skipped) == ["head.bias", "head.weight"]
    assert f"120 of the 120 encoder tensors ({BACKBONE_PREFIX}*)" in caplog.text


def test_checkpoint_of_another_architecture_is_refused_before_training(tmp_path):
    checkpoint = tmp_path / "genesis_unet.pt"
    torch.save(GenesisUNet(features=2).state_dict(), checkpoint)
    with pytest.raises(RuntimeError) as error:
        _workflow("train", tmp_path / "run", pretrained=str(checkpoint), **TINY)
    cause = error.value
    while cause.__cause__ is not None:
        cause = cause.__cause__
    assert isinstance(cause, GenesisInputError)
    assert "genesis_unet.pt holds no ResNet trunk" in str(cause) and "--pretrained ''" in str(cause)
    assert not (tmp_path / "run" / "eval").exists()


def test_box_outside_the_image_stops_the_run_naming_the_file(tmp_path):
    image = tmp_path / "scan.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((40, 40, 40), dtype=np.int16), np.eye(4)), str(image))
    datalist = tmp_path / "boxes.json"
    datalist.write_text(json.dumps({"box_mode": "cccwhd", "training": [
        {"image": str(image), "box": [[20, 20, 20, 8, 8, 8]], "label": [0]},
        {"image": str(image), "box": [[38, 20, 20, 8, 8, 8]], "label": [0]},
    ]}))
    workflow = _workflow("train", tmp_path / "run", datalist=str(datalist), **TINY)
    with pytest.raises(RuntimeError) as error:
        workflow.parser.get_parsed_content("data_split")
    cause = error.value
    while cause.__cause__ is not None:
        cause = cause.__cause__
    assert isinstance(cause, GenesisInputError)
    assert f"training[1]: image {image}: box 0 spans voxels" in str(cause) and "outside the image" in str(cause)


def test_model_zoo_layout_and_metadata(tmp_path):
    for name in ["LICENSE", "configs/metadata.json", "configs/train.json", "configs/evaluate.json", "configs/inference.json",
                 "configs/logging.conf", "docs/README.md", "docs/data_license.txt"]:
        assert (BUNDLE / name).is_file(), name
    # DDP is the shared configs/multi_gpu_train.json, as for every bundle
    assert not (BUNDLE / "configs" / "multi_gpu_train.json").exists()
    schema = tmp_path / "schema.json"
    schema.write_bytes(SCHEMA.read_bytes())
    import hashlib

    verify_metadata(meta_file=_config("metadata"), filepath=str(schema), hash_val=hashlib.md5(schema.read_bytes()).hexdigest())
    from monai.bundle import ConfigParser

    # what a run reads: the recipe merged with the shared base
    train = ConfigParser.load_config_files([_config("train"), BASE])
    assert [i for i in ["in_channels", "out_channels", "out_activation", "network_def", "network", "loss", "optimizer",
                        "train", "validate", "initialize", "run", "finalize"] if i not in train] == []


def test_release_zip_merges_the_base_and_runs_alone(quick_run, tmp_path):
    """The release zip carries train.json merged with the shared base (as every bundle's zip), the shared DDP override
    and the trained model; its train.json trains alone and its inference finds boxes with the released model."""
    import shutil
    import zipfile

    from monai_genesis.packaging import package

    root, _, _ = quick_run
    src = shutil.copytree(BUNDLE, tmp_path / "src" / "finetune_detection",
                          ignore=shutil.ignore_patterns("models", "eval", "runs"))
    (src / "models").mkdir()
    shutil.copy(root / "models" / "model.pt", src / "models" / "model.pt")
    zip_path = package(src, out=tmp_path / "dist", fragments=REPO / "configs")
    version = json.loads((BUNDLE / "configs" / "metadata.json").read_text())["version"]
    assert Path(zip_path).name == f"finetune_detection_v{version}.zip"
    with zipfile.ZipFile(zip_path) as zf:
        names = zf.namelist()
        zf.extractall(tmp_path / "unpacked")
    assert "finetune_detection/configs/multi_gpu_train.json" in names and "finetune_detection/models/model.pt" in names
    assert not [n for n in names if "/configs/base/" in n]
    fetched = tmp_path / "unpacked" / "finetune_detection"
    train = json.loads((fetched / "configs" / "train.json").read_text())
    assert train["train"]["trainer"]["_target_"] == "@train#engine"
    assert train["train"]["engine"]["_target_"] == "monai_genesis.detection.DetectionTrainer"
    assert train["validate"]["evaluator"]["_target_"] == "@validate#engine"
    assert train["train"]["handlers"][0]["_target_"] == "monai_genesis.handlers.PretrainedLoader"
    assert any(h.get("_target_") == "monai_genesis.handlers.ResumeHandler" for h in train["train"]["handlers"])
    assert list(train)[:2] == ["imports", "bundle_root"] and list(train)[-3:] == ["initialize", "run", "finalize"]

    # the unpacked train.json runs alone (with the packed quick.json), as in any Model Zoo bundle
    run = ConfigWorkflow(config_file=[str(fetched / "configs" / "train.json"), str(fetched / "configs" / "quick.json")],
                         meta_file=str(fetched / "configs" / "metadata.json"), logging_file=False,
                         workflow_type="train", bundle_root=str(tmp_path / "run"), **TINY)
    run.initialize()
    assert run.check_properties() == []
    run.run()
    run.finalize()
    assert (tmp_path / "run" / "models" / "model_final.pt").is_file()

    image, _ = blob_phantom((64, 64, 64), seed=1000, num_blobs=1)
    scan = tmp_path / "scan.nii.gz"
    nib.save(nib.Nifti1Image(image.astype(np.int16), np.diag([2.0, 2.0, 2.0, 1.0])), str(scan))
    infer = ConfigWorkflow(config_file=[str(fetched / "configs" / "inference.json"), str(fetched / "configs" / "quick.json")],
                           meta_file=str(fetched / "configs" / "metadata.json"), logging_file=False,
                           workflow_type="infer", bundle_root=str(fetched), images=[str(scan)],
                           output_dir=str(tmp_path / "out"))
    infer.initialize()
    infer.run()
    result = json.loads((tmp_path / "out" / "predictions.json").read_text())
    assert len(result["test"]) == 1 and len(result["test"][0]["box"]) >= 1
