import json
import os

import nibabel as nib
import numpy as np
import pytest
import torch
from ignite.engine import Events

from tests.bundles.workflows import REPO, TINY, config, kill_and_resume, make_workflow, root_cause, run_workflow

BUNDLE = "genesis_pretrain"


def test_train_leaves_models_logs_and_png(pretrain_run):
    root, workflow = pretrain_run
    models = sorted(os.listdir(root / "models"))
    assert models == ["model.pt", "model_final.pt", "resume_checkpoint_epoch=1.pt", "resume_checkpoint_epoch=2.pt"]
    assert any(name.startswith("events.out.tfevents") for name in os.listdir(root / "eval" / "runs"))
    png = root / "eval" / "restorations.png"
    assert png.stat().st_size > 0 and png.read_bytes()[:4] == b"\x89PNG"
    assert workflow.trainer.state.epoch == 2
    evaluator = workflow.evaluator
    assert np.isfinite(evaluator.state.metrics["val_mse"]) and evaluator.state.best_metric_epoch >= 1
    state = torch.load(root / "models" / "model.pt", weights_only=True)
    assert "out.conv.weight" in state and state["out.conv.weight"].shape[0] == 1
    # the phantoms were written under the bundle's output folder
    assert len([n for n in os.listdir(root / "eval" / "phantoms") if n.endswith(".nii.gz")]) == 3


def test_tensorboard_has_scalars_and_restoration_images(pretrain_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    root, _ = pretrain_run
    tags = {"images": [], "scalars": []}
    for name in os.listdir(root / "eval" / "runs"):
        events = EventAccumulator(str(root / "eval" / "runs" / name)).Reload().Tags()
        tags["images"] += events["images"]
        tags["scalars"] += events["scalars"]
    assert {"train_loss", "val_mse"} <= set(tags["scalars"])
    assert any(tag.startswith("validation restoration") for tag in tags["images"])


def test_validation_is_repeatable_across_epochs(pretrain_run):
    _, workflow = pretrain_run
    evaluator = workflow.evaluator
    first = evaluator.state.metrics["val_mse"]
    evaluator.run(global_epoch=3)
    assert evaluator.state.metrics["val_mse"] == pytest.approx(first, rel=1e-6)


def test_runs_are_reproducible_in_any_folder(pretrain_run, tmp_path):
    _, workflow = pretrain_run
    again = run_workflow(BUNDLE, "train", tmp_path / "elsewhere", epochs=2)
    assert again.evaluator.state.metrics["val_mse"] == pytest.approx(workflow.evaluator.state.metrics["val_mse"])


def test_per_sample_corruption_path(tmp_path):
    workflow = run_workflow(BUNDLE, "train", tmp_path, epochs=1, corrupt_on_device=False)
    corruption = workflow.parser.get_parsed_content("train#preprocessing").transforms
    assert [type(t).__name__ for t in corruption] == ["RandGenesisCorruptiond"]
    assert workflow.trainer.prepare_batch.on_device is False  # the loader corrupted the batch: it is only moved
    assert (tmp_path / "models" / "model.pt").is_file()


def test_one_corruption_node_sets_every_rate(tmp_path):
    """A rate changed in the one ``corruption`` node reaches the per-sample transform and both batch preparations."""
    workflow = make_workflow(BUNDLE, "train", tmp_path, corrupt_on_device=False, **{"corruption#local_rate": 0.25})
    node = workflow.parser.get_parsed_content("corruption")
    (per_sample,) = workflow.parser.get_parsed_content("train#preprocessing").transforms
    users = [per_sample.corruption, workflow.trainer.prepare_batch.pretext, workflow.evaluator.prepare_batch.pretext]
    assert all(user is node for user in users)
    assert node.shuffle.prob == 0.25 and node.nonlinear.prob == 0.9


def test_evaluate_writes_metrics_and_png(pretrain_run, tmp_path):
    root, _ = pretrain_run
    workflow = run_workflow(BUNDLE, "evaluate", root, output_dir=str(tmp_path))
    raw = (tmp_path / "val_mse_raw.csv").read_text().splitlines()
    assert raw[0].startswith("filename") and len(raw) == 1 + TINY[BUNDLE]["val_cubes_per_volume"]
    assert (tmp_path / "evaluation_restorations.png").is_file()
    assert workflow.evaluator.state.metrics["val_mse"] > 0


def test_inference_restores_in_input_geometry(pretrain_run, tmp_path):
    root, _ = pretrain_run
    run_workflow(BUNDLE, "inference", root, output_dir=str(tmp_path))
    restored = sorted(os.listdir(tmp_path / "restored"))
    assert restored == [f"phantom_00{i}_restored.nii.gz" for i in range(3)]
    source = nib.load(tmp_path / "phantoms" / "phantom_001.nii.gz")
    out = nib.load(tmp_path / "restored" / "phantom_001_restored.nii.gz")
    assert out.shape[:3] == source.shape
    np.testing.assert_allclose(out.affine, source.affine, atol=1e-5)
    values = out.get_fdata()
    assert 0.0 <= values.min() and values.max() <= 1.0


def test_resume_continues_at_the_saved_epoch(pretrain_run, tmp_path):
    root, _ = pretrain_run
    (tmp_path / "models").mkdir()
    saved = root / "models" / "resume_checkpoint_epoch=2.pt"
    (tmp_path / "models" / saved.name).write_bytes(saved.read_bytes())
    workflow = make_workflow(BUNDLE, "train", tmp_path, epochs=3, resume="true")
    trainer, optimizer = workflow.trainer, workflow.parser.get_parsed_content("optimizer")
    early_stop = workflow.parser.get_parsed_content("validate#early_stop")
    started, epochs = {}, []
    trainer.add_event_handler(Events.STARTED, lambda e: started.update(
        epoch=e.state.epoch, opt=len(optimizer.state), best=early_stop._handler.best_score))
    trainer.add_event_handler(Events.EPOCH_STARTED, lambda e: epochs.append(e.state.epoch))
    workflow.run()
    record = torch.load(saved, weights_only=True)["early_stop"]
    # the early stop's best score (minus the best validation MSE) comes back with the rest of the state
    assert record["best_score"] is not None and record["best_score"] < 0
    assert started == {
        "epoch": 2, "opt": len(list(workflow.parser.get_parsed_content("network").parameters())),
        "best": record["best_score"],
    }
    assert epochs == [3]
    assert workflow.parser.get_parsed_content("lr_scheduler").last_epoch == 3
    assert (tmp_path / "models" / "resume_checkpoint_epoch=3.pt").is_file()


def test_resume_without_checkpoint_errors(tmp_path):
    workflow = make_workflow(BUNDLE, "train", tmp_path, resume=True)
    with pytest.raises(RuntimeError) as error:
        _ = workflow.trainer
    assert "nothing to resume from" in str(root_cause(error.value))


def test_killed_run_resumes(tmp_path):
    saved, epochs = kill_and_resume(BUNDLE, tmp_path, timeout=120)
    assert epochs == [saved + 1]


def test_missing_dataset_dir_errors_before_training(tmp_path):
    workflow = make_workflow(BUNDLE, "train", tmp_path, dataset_dir=str(tmp_path / "nowhere"))
    with pytest.raises(RuntimeError) as error:
        _ = workflow.trainer
    assert "is not a folder" in str(root_cause(error.value))
    (tmp_path / "empty").mkdir()
    workflow = make_workflow(BUNDLE, "train", tmp_path, dataset_dir=str(tmp_path / "empty"))
    with pytest.raises(RuntimeError) as error:
        _ = workflow.trainer
    assert "holds no volume" in str(root_cause(error.value))


def test_unreadable_volume_is_named(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    nib.save(nib.Nifti1Image(np.zeros((32, 32, 24), np.int16), np.eye(4)), str(data / "good.nii.gz"))
    (data / "broken.nii.gz").write_bytes(b"truncated")
    workflow = make_workflow(BUNDLE, "train", tmp_path / "run", dataset_dir=str(data))
    with pytest.raises(RuntimeError) as error:
        _ = workflow.trainer
    assert "broken.nii.gz" in str(root_cause(error.value))


def test_small_volume_is_padded(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for i, shape in enumerate([(10, 12, 8), (40, 36, 20), (24, 24, 24)]):
        array = np.random.default_rng(i).integers(-1000, 1000, shape).astype(np.int16)
        nib.save(nib.Nifti1Image(array, np.eye(4)), str(data / f"v{i}.nii.gz"))
    workflow = run_workflow(BUNDLE, "train", tmp_path / "run", dataset_dir=str(data), epochs=1)
    cube = workflow.parser.get_parsed_content("train#dataset")[0]["image"]
    assert tuple(cube.shape) == (1, 16, 16, 16)
    assert not (tmp_path / "run" / "eval" / "phantoms").exists()


def test_mri_fragment_switches_intensity(tmp_path):
    """configs/mri.json merged after the bundle (as its docs say) scales every volume with the MRI window."""
    workflow = make_workflow(BUNDLE, "train", tmp_path, [str(REPO / "configs" / "mri.json")])
    settings = workflow.parser.get_parsed_content("store_settings")
    assert settings.intensity == "mri" and settings.percentiles == (0.5, 99.5)
    # the picture shows the validation volume as the store prepared it
    volume = workflow.parser.get_parsed_content("validate#picture_volume")
    entry = workflow.parser.get_parsed_content("data_split")["validation"][0]
    assert volume.meta["filename_or_obj"] == entry["image"] and volume.ndim == 4
    assert float(volume.min()) == 0.0 and float(volume.max()) == pytest.approx(1.0, abs=1e-4)


def test_store_settings_node_is_the_prepare_commands(tmp_path):
    """The bundle's store knobs reach ensure_store through the one store_settings node that `prepare --config_file`
    reads, so a store prepared by the command is the bundle's."""
    from monai_genesis.data import StoreSettings

    overrides = {"pixdim": [2.0, 2.0, 3.0], "store_dtype": "float16", "ct_window": [-500, 500]}
    workflow = make_workflow(BUNDLE, "train", tmp_path, **overrides)
    store = workflow.parser.get_parsed_content("store")
    expected = StoreSettings(pixdim=(2.0, 2.0, 3.0), dtype="float16", ct_window=(-500.0, 500.0))
    assert workflow.parser.get_parsed_content("store_settings") == expected
    assert StoreSettings.from_config(config(BUNDLE, "train"), overrides) == expected
    assert all(np.allclose(store[k].spacing, (2.0, 2.0, 3.0)) for k in store.keys) and len(store.keys) == 3


def test_inference_encodes_volumes_on_the_feature_grid(pretrain_run, tmp_path):
    root, _ = pretrain_run
    run_workflow(BUNDLE, "inference", root, [config(BUNDLE, "encode")], output_dir=str(tmp_path))
    encoded = sorted(os.listdir(tmp_path / "features"))
    assert encoded == [f"phantom_00{i}_features.nii.gz" for i in range(3)]
    source = nib.load(tmp_path / "phantoms" / "phantom_001.nii.gz")
    out = nib.load(tmp_path / "features" / "phantom_001_features.nii.gz")
    channels = 16 * TINY[BUNDLE]["genesis_features"]
    # (x, y, z) at 1/8 of the resolution, then the bottleneck's channels
    assert out.shape == (*(side // 8 for side in source.shape), channels)
    np.testing.assert_allclose(np.abs(np.diag(out.affine)[:3]), 8 * np.abs(np.diag(source.affine)[:3]), rtol=1e-5)
    assert np.isfinite(out.get_fdata()).all() and out.get_fdata().std() > 0


def test_pretraining_mixes_ct_and_mri_by_entry(tmp_path):
    """A datalist whose MRI entry names its own setting: each volume is scaled with its own window."""
    from monai_genesis.data import ct_phantom

    data = tmp_path / "data"
    data.mkdir()
    nib.save(nib.Nifti1Image(ct_phantom((32, 32, 24), seed=0)[0], np.eye(4)), str(data / "ct.nii.gz"))
    mr = np.zeros((32, 32, 24), np.float32)
    mr[4:28, 4:28, 4:20] = np.linspace(100.0, 500.0, 24 * 24 * 16).reshape(24, 24, 16)
    nib.save(nib.Nifti1Image(mr, np.eye(4)), str(data / "mr.nii.gz"))
    listing = data / "datalist.json"
    listing.write_text(json.dumps({
        "training": [{"image": "ct.nii.gz"}, {"image": "mr.nii.gz", "intensity": "mri"}],
        "validation": [{"image": "ct.nii.gz"}],
    }))
    workflow = run_workflow(BUNDLE, "train", tmp_path / "run", datalist=str(listing), epochs=1)
    store = workflow.parser.get_parsed_content("store")
    ct, mri = (store[entry].read() for entry in workflow.parser.get_parsed_content("data_split")["training"])
    assert 0.0 <= float(ct.min()) and float(ct.max()) <= 1.0 and float(ct.min()) == 0.0  # air at -1000 HU
    inside = mri[0, 4:28, 4:28, 4:20]
    # the MRI window spans the foreground (100-500 -> 0-1); the CT window would have put it in 0.55-0.75
    assert float(inside.min()) == pytest.approx(0.0, abs=0.01) and float(inside.max()) == pytest.approx(1.0, abs=0.01)
    # the store records the setting each volume was scaled with
    assert sorted(store.records[k]["settings"]["intensity"] for k in store.keys) == ["ct", "mri"]
    assert (tmp_path / "run" / "models" / "model_final.pt").is_file()
