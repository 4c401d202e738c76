import hashlib
import json
import logging
import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from ignite.engine import Events
from monai.bundle import ConfigParser, verify_metadata, verify_net_in_out

from tests.bundles.workflows import (
    BASE,
    BUNDLES,
    QUICK,
    REPO,
    TINY,
    config,
    kill_and_resume,
    make_workflow,
    root_cause,
    run_workflow,
)

BUNDLE = "mae_pretrain"
SCHEMA = Path(__file__).with_name("metadata_schema.json")


@pytest.fixture(scope="module")
def mae_run(tmp_path_factory):
    """A two-epoch MAE pretraining run on the embedded phantoms."""
    root = tmp_path_factory.mktemp("mae")
    return root, run_workflow(BUNDLE, "train", root, epochs=2)


def test_model_zoo_layout_and_metadata(tmp_path):
    for name in ["LICENSE", "configs/metadata.json", "configs/train.json", "configs/evaluate.json",
                 "configs/inference.json", "configs/encode.json", "configs/logging.conf",
                 "docs/README.md", "docs/data_license.txt"]:
        assert (BUNDLES / BUNDLE / name).is_file(), name
    # one DDP override for every bundle, packed into each release as configs/multi_gpu_train.json
    assert (REPO / "configs" / "multi_gpu_train.json").is_file()
    schema = tmp_path / "schema.json"
    schema.write_bytes(SCHEMA.read_bytes())
    verify_metadata(meta_file=config(BUNDLE, "metadata"), filepath=str(schema),
                    hash_val=hashlib.md5(schema.read_bytes()).hexdigest())


def test_defaults_are_the_published_recipe():
    parser = ConfigParser()
    parser.read_config([config(BUNDLE, "train"), BASE])
    parser.update({"resenc_features": [2, 4, 4, 4, 4, 4]})  # a narrow network: only the recipe is read here
    assert parser["patch_size"] == [160, 160, 160] and parser["intensity"] == "zscore"
    assert parser["mask_block_size"] == 16 and parser["mask_ratio"] == 0.75 and parser["batch_size"] == 2
    optimizer = parser.get_parsed_content("optimizer")
    group = optimizer.param_groups[0]
    assert type(optimizer).__name__ == "SGD" and group["nesterov"] is True
    assert (group["lr"], group["momentum"], group["weight_decay"]) == (0.01, 0.99, 3e-05)
    schedule = parser.get_parsed_content("lr_scheduler")
    assert (schedule.warmup_steps, schedule.exponent, schedule.total_steps) == (0, 0.9, 1000)
    # read from the raw handler list: building the handlers would build the data
    (clipper,) = [h for h in parser["train"]["handlers"] if str(h.get("_target_", "")).endswith("GradientNormClipper")]
    assert parser.get_parsed_content(clipper["max_norm"][1:]) == 12.0
    full = ConfigParser()
    full.read_config(config(BUNDLE, "train"))
    net = full.get_parsed_content("network_def")
    assert [stage[0].conv1.conv.conv.out_channels for stage in net.encoder.stages] == [32, 64, 128, 256, 320, 320]
    assert [len(stage) for stage in net.encoder.stages] == [1, 3, 4, 6, 6, 6]


def test_train_leaves_models_logs_and_png(mae_run):
    root, workflow = mae_run
    models = sorted(os.listdir(root / "models"))
    assert models == ["model.pt", "model_final.pt", "resume_checkpoint_epoch=1.pt", "resume_checkpoint_epoch=2.pt"]
    png = root / "eval" / "reconstructions.png"
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert workflow.trainer.state.epoch == 2
    assert np.isfinite(workflow.evaluator.state.metrics["val_masked_mse"])
    state = torch.load(root / "models" / "model.pt", weights_only=True)
    assert "encoder.stem.conv.conv.weight" in state and state["out.conv.weight"].shape[0] == 1
    # the masking ran on the device, in the trainer's batch preparation, and the loss saw the mask
    assert type(workflow.trainer.prepare_batch).__name__ == "PretextPrepareBatch"
    assert workflow.trainer.prepare_batch.pretext is workflow.parser.get_parsed_content("masking")
    assert type(workflow.trainer.loss_function).__name__ == "MaskedMSELoss"
    clipper = next(h for h in workflow.parser.get_parsed_content("train#handlers") if hasattr(h, "last_norm"))
    assert clipper.last_norm is not None and np.isfinite(clipper.last_norm)


def test_tensorboard_has_scalars(mae_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    root, _ = mae_run
    scalars = []
    for name in os.listdir(root / "eval" / "runs"):
        scalars += EventAccumulator(str(root / "eval" / "runs" / name)).Reload().Tags()["scalars"]
    assert {"train_loss", "val_masked_mse", "train_masked_mse"} <= set(scalars)


def test_validation_masks_the_same_blocks_every_epoch(mae_run):
    _, workflow = mae_run
    first = workflow.evaluator.state.metrics["val_masked_mse"]
    workflow.evaluator.run(global_epoch=3)
    assert workflow.evaluator.state.metrics["val_masked_mse"] == pytest.approx(first, rel=1e-6)


def test_training_masks_differ_between_steps(mae_run):
    _, workflow = mae_run
    prepare = workflow.trainer.prepare_batch
    batch = {"image": torch.randn(2, 1, 16, 16, 16)}
    masks = [prepare(batch)[1][:, -1] for _ in range(2)]
    assert not torch.equal(masks[0], masks[1])
    assert float(masks[0].mean()) == pytest.approx(0.75)  # 6 of the 8 blocks of 8³


def test_evaluate_writes_metrics_and_png(mae_run, tmp_path):
    root, _ = mae_run
    workflow = run_workflow(BUNDLE, "evaluate", root, output_dir=str(tmp_path))
    raw = (tmp_path / "val_masked_mse_raw.csv").read_text().splitlines()
    assert len(raw) == 1 + TINY[BUNDLE]["val_cubes_per_volume"]
    assert (tmp_path / "evaluation_reconstructions.png").is_file()
    assert workflow.evaluator.state.metrics["val_masked_mse"] > 0


def test_inference_reconstructs_masked_volumes_in_input_geometry(mae_run, tmp_path):
    root, _ = mae_run
    run_workflow(BUNDLE, "inference", root, output_dir=str(tmp_path))
    names = sorted(os.listdir(tmp_path / "reconstructed"))
    assert names == sorted([f"phantom_00{i}_{kind}.nii.gz" for i in range(3) for kind in ("masked", "reconstructed")])
    source = nib.load(tmp_path / "phantoms" / "phantom_001.nii.gz")
    out = nib.load(tmp_path / "reconstructed" / "phantom_001_reconstructed.nii.gz")
    masked = nib.load(tmp_path / "reconstructed" / "phantom_001_masked.nii.gz").get_fdata()
    assert out.shape[:3] == source.shape and masked.shape[:3] == source.shape
    np.testing.assert_allclose(out.affine, source.affine, atol=1e-5)
    # three quarters of the 8³ blocks are 0 in the masked input
    assert 0.6 < float((masked == 0).mean()) < 0.9
    assert np.isfinite(out.get_fdata()).all()


def test_encode_override_writes_features_on_the_coarse_grid(mae_run, tmp_path):
    root, _ = mae_run
    run_workflow(BUNDLE, "inference", root, [config(BUNDLE, "encode")], output_dir=str(tmp_path))
    encoded = sorted(os.listdir(tmp_path / "features"))
    assert encoded == [f"phantom_00{i}_features.nii.gz" for i in range(3)]
    source = nib.load(tmp_path / "phantoms" / "phantom_001.nii.gz")
    out = nib.load(tmp_path / "features" / "phantom_001_features.nii.gz")
    assert out.shape == (*(side // 8 for side in source.shape), TINY[BUNDLE]["resenc_features"][-1])
    np.testing.assert_allclose(np.abs(np.diag(out.affine)[:3]), 8 * np.abs(np.diag(source.affine)[:3]), rtol=1e-5)


def test_verify_net_in_out(caplog):
    with caplog.at_level(logging.INFO, logger="monai"):
        verify_net_in_out(net_id="network_def", meta_file=config(BUNDLE, "metadata"),
                          config_file=config(BUNDLE, "inference"), device="cpu", n=2,
                          resenc_features=[2, 4, 4, 4, 4, 4])
    assert "verified with no error" in caplog.text


def test_resume_continues_at_the_saved_epoch(mae_run, tmp_path):
    root, _ = mae_run
    (tmp_path / "models").mkdir()
    saved = root / "models" / "resume_checkpoint_epoch=2.pt"
    (tmp_path / "models" / saved.name).write_bytes(saved.read_bytes())
    workflow = make_workflow(BUNDLE, "train", tmp_path, epochs=3, resume=True)
    optimizer = workflow.parser.get_parsed_content("optimizer")
    started, epochs = {}, []
    workflow.trainer.add_event_handler(Events.STARTED, lambda e: started.update(epoch=e.state.epoch,
                                                                                opt=len(optimizer.state)))
    workflow.trainer.add_event_handler(Events.EPOCH_STARTED, lambda e: epochs.append(e.state.epoch))
    workflow.run()
    assert started == {"epoch": 2, "opt": len(list(workflow.parser.get_parsed_content("network").parameters()))}
    assert epochs == [3] and workflow.parser.get_parsed_content("lr_scheduler").last_epoch == 3


@pytest.mark.slow
def test_killed_run_resumes(tmp_path):
    saved, epochs = kill_and_resume(BUNDLE, tmp_path, timeout=180)
    assert epochs == [saved + 1]


def test_missing_dataset_dir_and_unreadable_volume_are_named(tmp_path):
    workflow = make_workflow(BUNDLE, "train", tmp_path / "a", dataset_dir=str(tmp_path / "nowhere"))
    with pytest.raises(RuntimeError) as error:
        _ = workflow.trainer
    assert "is not a folder" in str(root_cause(error.value))
    data = tmp_path / "data"
    data.mkdir()
    nib.save(nib.Nifti1Image(np.ones((32, 32, 24), np.float32), np.eye(4)), str(data / "good.nii.gz"))
    (data / "broken.nii.gz").write_bytes(b"truncated")
    workflow = make_workflow(BUNDLE, "train", tmp_path / "b", dataset_dir=str(data))
    with pytest.raises(RuntimeError) as error:
        _ = workflow.trainer
    assert "broken.nii.gz" in str(root_cause(error.value))


def test_ct_window_is_an_option(tmp_path):
    # the store records the setting each volume was scaled with
    store = make_workflow(BUNDLE, "train", tmp_path, intensity="ct").parser.get_parsed_content("store")
    assert {store.records[k]["settings"]["intensity"] for k in store.keys} == {"ct"}
    default = make_workflow(BUNDLE, "train", tmp_path / "z").parser.get_parsed_content("store")
    assert {default.records[k]["settings"]["intensity"] for k in default.keys} == {"zscore"}


def test_quick_settings_fit_the_resenc_network():
    quick = json.loads(Path(QUICK).read_text())
    from monai_genesis.networks import ResEncUNet

    net = ResEncUNet(features=quick["resenc_features"], strides=quick["resenc_strides"])
    with torch.no_grad():
        out = net.train()(torch.randn(2, 1, *quick["patch_size"]))
    assert tuple(out.shape) == (2, 1, *quick["patch_size"])
    assert all(side % quick["mask_block_size"] == 0 for side in quick["patch_size"])
    assert REPO.joinpath("configs", "quick.json").is_file()


def test_sparse_s3d_variant_gets_the_mask(tmp_path):
    # the one flag makes the sparse network and hands it the mask
    workflow = run_workflow(BUNDLE, "train", tmp_path, epochs=1, resenc_sparse=True)
    assert workflow.trainer.prepare_batch.network_kwargs == {"mask": "mask"}
    network = workflow.parser.get_parsed_content("network")
    assert network.sparse and len(network.densify) == 6
    assert np.isfinite(workflow.evaluator.state.metrics["val_masked_mse"])
    assert any(k.startswith("densify.") for k in torch.load(tmp_path / "models" / "model.pt", weights_only=True))


def test_block_size_that_does_not_divide_the_patch_is_refused_when_the_bundle_is_built(tmp_path):
    workflow = make_workflow(BUNDLE, "train", tmp_path, patch_size=[16, 16, 16], mask_block_size=12)
    with pytest.raises(Exception) as error:
        workflow.parser.get_parsed_content("masking")
    message = str(root_cause(error.value))
    assert "12" in message and "--patch_size" in message and "--mask_block_size" in message
