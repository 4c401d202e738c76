import logging
import os

import pytest
import torch
from ignite.engine import Engine

from monai_genesis.config import as_bool
from monai_genesis.handlers import FinalModelSaver, claim_run


def _outputs(root):
    return [str(root / "models" / "*.pt"), str(root / "eval" / "runs" / "events.out.tfevents.*")]


def test_claim_run_refuses_to_replace_an_earlier_run(tmp_path):
    assert claim_run(_outputs(tmp_path)) == []  # nothing there yet
    (tmp_path / "models").mkdir()
    model = tmp_path / "models" / "model.pt"
    model.write_bytes(b"earlier")
    with pytest.raises(FileExistsError, match=r"model\.pt.*--bundle_root.*--resume true.*--overwrite true"):
        claim_run(_outputs(tmp_path))
    with pytest.raises(FileExistsError):
        claim_run(_outputs(tmp_path), resume="false", overwrite="false")
    assert model.read_bytes() == b"earlier"
    # a resumed run continues its own files
    assert claim_run(_outputs(tmp_path), resume="true") == []
    assert model.read_bytes() == b"earlier"


def test_claim_run_overwrite_deletes_only_the_run_outputs(tmp_path, caplog):
    (tmp_path / "models").mkdir()
    (tmp_path / "eval" / "runs").mkdir(parents=True)
    old = [tmp_path / "models" / "model.pt", tmp_path / "models" / "resume_checkpoint_epoch=3.pt",
           tmp_path / "eval" / "runs" / "events.out.tfevents.1.host.7.0"]
    for path in old:
        path.write_bytes(b"x")
    mine = tmp_path / "models" / "notes.txt"
    mine.write_text("a user's file")
    with caplog.at_level(logging.WARNING):
        deleted = claim_run(_outputs(tmp_path), overwrite=True)
    assert sorted(deleted) == sorted(str(p) for p in old)
    assert not any(p.exists() for p in old) and mine.read_text() == "a user's file"
    assert "deleted 3 files of the earlier run" in caplog.text


def test_as_bool_names_a_bad_flag():
    assert as_bool("True") and as_bool(" yes ") and not as_bool("false") and not as_bool(0) and as_bool(1)
    with pytest.raises(ValueError, match="--overwrite must be true or false, got 'maybe'"):
        as_bool("maybe", "overwrite")


def _engine(fail_at=None):
    def step(engine, batch):
        if fail_at is not None and engine.state.iteration == fail_at:
            raise RuntimeError("bad volume")
        return 0.0

    return Engine(step)


def test_final_model_only_after_a_completed_run(tmp_path):
    net = torch.nn.Linear(2, 1)
    failing = _engine(fail_at=1)
    FinalModelSaver(str(tmp_path / "failed"), {"model": net}).attach(failing)
    with pytest.raises(RuntimeError, match="bad volume"):
        failing.run([0, 1], max_epochs=1)
    assert not (tmp_path / "failed" / "model_final.pt").exists()

    done = _engine()
    FinalModelSaver(str(tmp_path / "done"), {"model": net}).attach(done)
    done.run([0, 1], max_epochs=2)
    state = torch.load(tmp_path / "done" / "model_final.pt", weights_only=True)
    assert torch.equal(state["weight"], net.weight)
    assert os.listdir(tmp_path / "done") == ["model_final.pt"]
