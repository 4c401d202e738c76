"""A damaged newest resume state through a bundle run: passed over with a warning naming it (#21 case 8)."""

import logging
import os

from tests.bundles.workflows import run_workflow


def test_a_cut_newest_resume_state_is_passed_over(tmp_path, caplog):
    run_workflow("genesis_pretrain", "train", tmp_path, epochs=2)
    newest = tmp_path / "models" / "resume_checkpoint_epoch=2.pt"
    os.truncate(newest, os.path.getsize(newest) // 2)
    with caplog.at_level(logging.WARNING, logger="monai_genesis"):
        resumed = run_workflow("genesis_pretrain", "train", tmp_path, epochs=3, resume=True)
    assert "resume_checkpoint_epoch=2.pt" in caplog.text and "resume_checkpoint_epoch=1.pt" in caplog.text
    # epochs 2 and 3 trained again on top of epoch 1; two whole states kept
    assert resumed.trainer.state.epoch == 3
    assert sorted(p.name for p in (tmp_path / "models").glob("resume_*.pt")) == [
        "resume_checkpoint_epoch=2.pt", "resume_checkpoint_epoch=3.pt"]
