import logging
import os

import pytest
import torch
from ignite.engine import Engine, Events

from monai_genesis.errors import GenesisInputError
from monai_genesis.handlers.checkpoints import ResumeHandler, intact_checkpoint


def _train(ckpt_dir, epochs, resume=False):
    net = torch.nn.Linear(2, 1)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)

    def step(engine, batch):
        opt.zero_grad()
        net(torch.ones(1, 2)).sum().backward()
        opt.step()

    engine = Engine(step)
    ResumeHandler(str(ckpt_dir), {"model": net, "optimizer": opt}, resume=resume).attach(engine)
    started = []
    engine.add_event_handler(Events.STARTED, lambda e: started.append(e.state.epoch))
    engine.run([0, 1], max_epochs=epochs)
    return started[0]


def _states(folder):
    return sorted(n for n in os.listdir(folder) if n.endswith(".pt"))


def test_a_resumed_run_keeps_two_states(tmp_path):
    _train(tmp_path, 2)
    assert _states(tmp_path) == ["resume_checkpoint_epoch=1.pt", "resume_checkpoint_epoch=2.pt"]
    assert _train(tmp_path, 4, resume=True) == 2
    assert _states(tmp_path) == ["resume_checkpoint_epoch=3.pt", "resume_checkpoint_epoch=4.pt"]


def test_a_broken_newest_state_is_passed_over_with_its_name(tmp_path, caplog):
    _train(tmp_path, 3)
    newest = tmp_path / "resume_checkpoint_epoch=3.pt"
    os.truncate(newest, os.path.getsize(newest) // 2)
    assert intact_checkpoint(str(tmp_path)).endswith("resume_checkpoint_epoch=2.pt")
    with caplog.at_level(logging.WARNING, logger="monai_genesis.handlers.checkpoints"):
        assert _train(tmp_path, 4, resume=True) == 2
    assert "resume_checkpoint_epoch=3.pt" in caplog.text and "resuming from" in caplog.text
    # epoch 3 trained again and written whole
    assert torch.load(newest, weights_only=True)["trainer"]["iteration"] == 6  # 3 epochs of 2 iterations
    for name in _states(tmp_path):
        (tmp_path / name).write_bytes(b"not a checkpoint")
    with pytest.raises(GenesisInputError, match=r"no resume state .* can be read: .*epoch=4.pt.*without --resume"):
        ResumeHandler(str(tmp_path), {"model": torch.nn.Linear(2, 1)}, resume=True)
