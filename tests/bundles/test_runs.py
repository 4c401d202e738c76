"""An earlier run's results are never replaced unless asked; every training bundle resumes."""

import pytest

from tests.bundles.workflows import BASE, QUICK, TINY, config, make_workflow, root_cause, run_workflow
from tests.packaging.helpers import run_cli

TRAINING_BUNDLES = ("genesis_pretrain", "finetune_segmentation", "finetune_classification", "mae_pretrain", "cspr_pretrain",
                    "finetune_detection")


def _snapshot(root):
    return {p: p.read_bytes() for p in sorted((root / "models").iterdir())}


@pytest.mark.parametrize("bundle", TRAINING_BUNDLES)
def test_second_run_in_the_same_root_is_refused_then_resumes_or_overwrites(bundle, tmp_path):
    run_workflow(bundle, "train", tmp_path, epochs=1)
    before = _snapshot(tmp_path)
    assert tmp_path / "models" / "model.pt" in before
    with pytest.raises(Exception) as err:
        run_workflow(bundle, "train", tmp_path, epochs=1)
    assert isinstance(root_cause(err.value), FileExistsError)
    assert "--overwrite true" in str(root_cause(err.value))
    assert _snapshot(tmp_path) == before  # nothing of the first run was touched

    # --resume true continues the first run: one more epoch on top of the first
    resumed = run_workflow(bundle, "train", tmp_path, epochs=2, resume=True)
    assert resumed.trainer.state.epoch == 2 and resumed.trainer.state.iteration > 0
    names = sorted(p.name for p in (tmp_path / "models").iterdir())
    assert "resume_checkpoint_epoch=2.pt" in names

    # --overwrite true starts afresh: the earlier resume states and event files are gone, a new run's are there
    events_before = {p.name for p in (tmp_path / "eval" / "runs").iterdir()}
    fresh = run_workflow(bundle, "train", tmp_path, epochs=1, overwrite=True)
    assert fresh.trainer.state.epoch == 1
    names = sorted(p.name for p in (tmp_path / "models").iterdir())
    assert "resume_checkpoint_epoch=2.pt" not in names and "model.pt" in names
    assert not events_before & {p.name for p in (tmp_path / "eval" / "runs").iterdir()}


def test_failed_first_step_writes_no_final_model(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(Exception):
        run_workflow("finetune_segmentation", "train", tmp_path / "run", pretrained=str(bad))
    models = tmp_path / "run" / "models"
    assert not (models / "model_final.pt").exists()
    assert not models.exists() or not [p for p in models.iterdir() if p.name.startswith("model")]


def test_without_data_the_phantoms_are_a_warning_with_the_flag(tmp_path, caplog):
    import logging

    with caplog.at_level(logging.WARNING, logger="monai_genesis"):
        make_workflow("genesis_pretrain", "train", tmp_path).parser.get_parsed_content("data_split")
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "no data named" in r.getMessage()]
    assert warnings and "--dataset_dir DIR" in warnings[0].getMessage()


@pytest.mark.slow
def test_second_run_from_the_command_line_is_refused(tmp_path):
    root = tmp_path / "run"
    args = ["-m", "monai.bundle", "run", "--config_file", f"['{config('finetune_segmentation', 'train')}','{BASE}','{QUICK}']",
            "--bundle_root", str(root), "--epochs", "1"]
    for key, value in TINY["finetune_segmentation"].items():
        args += [f"--{key}", str(value).replace(" ", "")]
    run_cli(args)
    model = (root / "models" / "model.pt").read_bytes()
    again = run_cli(args, check=False)
    assert again.returncode != 0
    assert "already holds the results of an earlier run" in again.stderr
    assert (root / "models" / "model.pt").read_bytes() == model
