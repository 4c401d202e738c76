import csv
import logging

import numpy as np
import pytest
import torch
from monai.bundle import ckpt_export
from PIL import Image

from monai_genesis.networks import ResNet18Classifier
from tests.bundles.workflows import REPO, TINY, config, make_workflow, root_cause, run_workflow

BUNDLE = "cspr_pretrain"
RESNET18 = str(REPO / "configs" / "networks" / "resnet18.json")
RESNET18_UNET = str(REPO / "configs" / "networks" / "resnet18_unet.json")
# the synthetic test split of TINY: a quarter of 8 images for each of the 2 classes
TINY_TEST = 2 * (8 // 4)


def _encoder_keys(checkpoint):
    return [k for k in torch.load(checkpoint, weights_only=True) if k.startswith("encoder.")]


def _data_error(tmp_path, **override):
    """The error of the project raised when the bundle builds its data split with ``override`` (config evaluation
    wraps it in RuntimeError; a reader's own error may be its cause)."""
    workflow = make_workflow(BUNDLE, "train", tmp_path / "run", **override)
    with pytest.raises(RuntimeError) as error:
        workflow.parser.get_parsed_content("data_split")
    chain = [error.value]
    while chain[-1].__cause__ is not None:
        chain.append(chain[-1].__cause__)
    return next((e for e in chain if type(e) is ValueError), root_cause(error.value))


def _write_folder(root, classes, size=20, per_class=3):
    rng = np.random.default_rng(0)
    for name in classes:
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 256, (size, size + 4, 3), dtype=np.uint8)).save(root / name / f"{i}.png")
    return root


def test_train_writes_models_of_the_depth_three_resnet(cspr_run):
    root, workflow = cspr_run
    assert 0.0 <= workflow.evaluator.state.metrics["val_accuracy"] <= 1.0
    names = {p.name for p in (root / "models").iterdir()}
    assert {"model.pt", "model_final.pt", "resume_checkpoint_epoch=1.pt"} <= names
    state = torch.load(root / "models" / "model.pt", weights_only=True)
    reference = ResNet18Classifier(1, TINY[BUNDLE]["num_classes"], depth_stride=False).state_dict()
    assert list(state) == list(reference) and len(_encoder_keys(root / "models" / "model.pt")) == 120
    # the photos became one-channel volumes of depth 3, colours as slices
    batch = workflow.parser.get_parsed_content("validate#dataset")[0]
    assert tuple(batch["image"].shape) == (1, 3, 16, 16) and batch["image"].dtype == torch.float32
    assert isinstance(workflow.parser.get_parsed_content("loss"), torch.nn.CrossEntropyLoss)
    assert workflow.parser.get_parsed_content("loss").label_smoothing == 0.1
    optimizer = workflow.parser.get_parsed_content("optimizer")
    assert optimizer.defaults["momentum"] == 0.9 and optimizer.defaults["weight_decay"] == 1e-4
    # SGD lr 0.1 per 256 images, scaled to the batch
    assert optimizer.defaults["lr"] == pytest.approx(0.1 * TINY[BUNDLE]["batch_size"] / 256)


def test_evaluate_writes_test_probabilities(cspr_run, tmp_path):
    root, _ = cspr_run
    run_workflow(BUNDLE, "evaluate", root, output_dir=str(tmp_path))
    rows = list(csv.reader((tmp_path / "probabilities.csv").read_text().splitlines()))
    assert len(rows) == TINY_TEST
    assert all(row[0].startswith("synthetic#test[") and len(row) == 3 for row in rows)
    assert all(sum(float(v) for v in row[1:]) == pytest.approx(1.0, abs=1e-4) for row in rows)
    assert "val_accuracy" in (tmp_path / "metrics.csv").read_text()


def test_inference_writes_predictions(cspr_run, tmp_path):
    root, _ = cspr_run
    run_workflow(BUNDLE, "inference", root, output_dir=str(tmp_path))
    rows = list(csv.reader((tmp_path / "predictions.csv").read_text().splitlines()))
    assert len(rows) == TINY_TEST and all(0.0 <= float(v) <= 1.0 for row in rows for v in row[1:])


def test_ckpt_export(cspr_run, tmp_path):
    root, _ = cspr_run
    target = tmp_path / "model.ts"
    ckpt_export(net_id="network_def", filepath=str(target), ckpt_file=str(root / "models" / "model.pt"),
                meta_file=config(BUNDLE, "metadata"), config_file=config(BUNDLE, "inference"),
                num_classes=TINY[BUNDLE]["num_classes"])
    with torch.no_grad():
        assert tuple(torch.jit.load(str(target))(torch.rand(1, 1, 3, 16, 16)).shape) == (1, 2)


def test_classification_loads_the_whole_encoder(cspr_run, tmp_path):
    """finetune_classification with the ResNet-18 preset (depth stride on) loads every encoder.* tensor."""
    checkpoint = cspr_run[0] / "models" / "model.pt"
    workflow = run_workflow("finetune_classification", "train", tmp_path, extra_configs=[RESNET18],
                            pretrained=str(checkpoint))
    report = workflow.parser.get_parsed_content("train#handlers")[0].report
    encoder = _encoder_keys(checkpoint)
    assert report.num_loaded == len(encoder) == 120 and sorted(report.loaded) == sorted(encoder)
    assert set(report.skipped) == {"head.weight", "head.bias"}  # 2 classes there, 1 output here
    assert workflow.parser.get_parsed_content("network").encoder.depth_stride


def test_segmentation_loads_the_encoder_into_the_resnet_unet(cspr_run, tmp_path):
    checkpoint = cspr_run[0] / "models" / "model.pt"
    workflow = run_workflow("finetune_segmentation", "train", tmp_path, extra_configs=[RESNET18_UNET],
                            pretrained=str(checkpoint), patch_size=[32, 32, 32], phantom_size=[32, 32, 32])
    report = workflow.parser.get_parsed_content("train#handlers")[0].report
    encoder = _encoder_keys(checkpoint)
    assert report.num_loaded == len(encoder) and sorted(report.loaded) == sorted(encoder)
    assert all(k.startswith(("decoder.", "out.")) for k in report.missing)
    final = torch.load(tmp_path / "models" / "model_final.pt", weights_only=True)
    assert any(k.startswith("decoder.") for k in final)


def test_npz_splits_and_names(tmp_path):
    rng = np.random.default_rng(0)
    npz = tmp_path / "photos.npz"
    np.savez(npz, train_images=rng.integers(0, 256, (8, 16, 16, 3), dtype=np.uint8), train_labels=np.arange(8) % 2,
             test_images=rng.integers(0, 256, (3, 16, 16, 3), dtype=np.uint8), test_labels=np.array([0, 1, 0]))
    split = make_workflow(BUNDLE, "train", tmp_path / "run", natural_npz=str(npz)).parser.get_parsed_content("data_split")
    assert [len(split[k]) for k in ("training", "validation", "test")] == [6, 2, 3]
    assert split["test"][2]["image"].meta["filename_or_obj"] == f"{npz}#test[2]"
    assert {item["label"] for item in split["validation"]} == {0, 1}  # stratified


def test_image_folder_trains(tmp_path):
    folder = _write_folder(tmp_path / "photos", ["cat", "dog"])
    workflow = run_workflow(BUNDLE, "train", tmp_path / "run", dataset_dir=str(folder))
    split = workflow.parser.get_parsed_content("data_split")
    assert sorted(i["label"] for part in ("training", "validation") for i in split[part]) == [0, 0, 0, 1, 1, 1]
    image = workflow.parser.get_parsed_content("validate#dataset")[0]["image"]
    assert tuple(image.shape) == (1, 3, 16, 16) and str(image.meta["filename_or_obj"]).endswith(".png")
    assert (tmp_path / "run" / "models" / "model_final.pt").is_file()


def test_real_tiny_imagenet_reader(shared_data, tmp_path):
    npz = shared_data / "natural" / "tinyimagenet10_64px_subset.npz"
    workflow = make_workflow(BUNDLE, "train", tmp_path, natural_npz=str(npz), num_classes=10)
    split = workflow.parser.get_parsed_content("data_split")
    assert [len(split[k]) for k in ("training", "validation", "test")] == [2700, 300, 500]


def test_without_data_a_warning_names_the_flags(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="monai_genesis"):
        make_workflow(BUNDLE, "train", tmp_path).parser.get_parsed_content("data_split")
    warnings = [r.getMessage() for r in caplog.records if "no data named" in r.getMessage()]
    assert warnings and "--dataset_dir DIR or --natural_npz FILE" in warnings[0]


def test_folder_of_one_class_errors(tmp_path):
    folder = _write_folder(tmp_path / "photos", ["cat"])
    error = _data_error(tmp_path, dataset_dir=str(folder))
    assert isinstance(error, ValueError) and "holds 1 class folder(s) ['cat']" in str(error)


def test_folder_of_other_class_count_errors(tmp_path):
    folder = _write_folder(tmp_path / "photos", ["a", "b", "c"])
    assert "pass --num_classes 3" in str(_data_error(tmp_path, dataset_dir=str(folder)))


def test_label_outside_the_class_count_errors(tmp_path):
    npz = tmp_path / "photos.npz"
    np.savez(npz, train_images=np.zeros((4, 16, 16, 3), np.uint8), train_labels=np.array([0, 1, 0, 5]))
    error = _data_error(tmp_path, natural_npz=str(npz))
    assert str(npz) in str(error) and "label 5, outside [0, 2)" in str(error)


def test_unreadable_image_is_named(tmp_path):
    folder = _write_folder(tmp_path / "photos", ["cat", "dog"])
    (folder / "dog" / "broken.png").write_bytes(b"not an image")
    error = _data_error(tmp_path, dataset_dir=str(folder))
    assert "cannot read image" in str(error) and str(folder / "dog" / "broken.png") in str(error)


def test_synthetic_default_rejects_many_classes(tmp_path):
    assert "pass --num_classes 4" in str(_data_error(tmp_path, num_classes=1000))


@pytest.mark.slow
def test_learns_the_synthetic_classes_above_chance(tmp_path):
    """A few dozen steps tell horizontal from vertical stripes on the held-out test images (chance: 0.5)."""
    root = tmp_path / "run"
    run_workflow(BUNDLE, "train", root, epochs=8, batch_size=16, synthetic_per_class=24)
    run_workflow(BUNDLE, "evaluate", root, epochs=8, batch_size=16, synthetic_per_class=24, output_dir=str(tmp_path))
    metrics = dict(line.split(",") for line in (tmp_path / "metrics.csv").read_text().splitlines())
    assert float(metrics["val_accuracy"]) > 0.75
