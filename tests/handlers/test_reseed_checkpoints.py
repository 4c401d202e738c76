import os

import pytest
import torch
from ignite.engine import Engine, Events
from monai.transforms import Randomizable

from monai_genesis.handlers import ReseedHandler, ResumeHandler, latest_checkpoint, negative_key_metric


class _Draw(Randomizable):
    def randomize(self, data=None):
        pass


def test_reseed_repeats_draws_each_epoch():
    target, draws = _Draw(), []
    engine = Engine(lambda e, b: draws.append(float(target.R.rand())))
    ReseedHandler(target, seed=5).attach(engine)
    engine.run([0, 1], max_epochs=3)
    assert draws[0:2] == draws[2:4] == draws[4:6] and draws[0] != draws[1]
    with pytest.raises(ValueError, match="set_random_state"):
        ReseedHandler(object())


def test_latest_checkpoint_picks_the_highest_epoch(tmp_path):
    assert latest_checkpoint(str(tmp_path), required=False) is None
    with pytest.raises(ValueError, match="nothing to resume from"):
        latest_checkpoint(str(tmp_path))
    for name in ["resume_checkpoint_epoch=2.pt", "resume_checkpoint_epoch=10.pt", "model.pt", "x_checkpoint_epoch=99.pt"]:
        (tmp_path / name).write_bytes(b"")
    assert latest_checkpoint(str(tmp_path)) == os.path.join(str(tmp_path), "resume_checkpoint_epoch=10.pt")


def test_negative_key_metric():
    engine = Engine(lambda e, b: None)
    engine.state.metrics = {"val_mse": 0.25}
    engine.state.key_metric_name = "val_mse"
    assert negative_key_metric(engine) == -0.25


def _train(net, optimizer, epochs, handler):
    def step(engine, batch):
        optimizer.zero_grad()
        loss = net(torch.ones(1, 2)).sum()
        loss.backward()
        optimizer.step()

    engine = Engine(step)
    handler.attach(engine)
    seen = []
    engine.add_event_handler(Events.EPOCH_STARTED, lambda e: seen.append(e.state.epoch))
    engine.run([0, 1], max_epochs=epochs)
    return seen


def test_resume_handler_saves_and_restores(tmp_path):
    net = torch.nn.Linear(2, 1)
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    assert _train(net, opt, 2, ResumeHandler(str(tmp_path), {"model": net, "optimizer": opt})) == [1, 2]
    assert os.listdir(tmp_path) == ["resume_checkpoint_epoch=2.pt"]
    trained = net.weight.detach().clone()
    net2 = torch.nn.Linear(2, 1)
    opt2 = torch.optim.SGD(net2.parameters(), lr=0.1, momentum=0.9)
    handler = ResumeHandler(str(tmp_path), {"model": net2, "optimizer": opt2}, resume="true")
    loaded = {}
    engine = Engine(lambda e, b: None)
    handler.attach(engine)
    engine.add_event_handler(Events.STARTED, lambda e: loaded.update(w=net2.weight.detach().clone(), epoch=e.state.epoch))
    engine.run([0, 1], max_epochs=3)
    torch.testing.assert_close(loaded["w"], trained)
    assert loaded["epoch"] == 2 and engine.state.epoch == 3
    assert len(opt2.state) == 2
    with pytest.raises(ValueError, match="trainer"):
        ResumeHandler(str(tmp_path), {"trainer": engine})


def test_resume_handler_without_saving(tmp_path):
    net = torch.nn.Linear(2, 1)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    assert _train(net, opt, 2, ResumeHandler(str(tmp_path), {"model": net, "optimizer": opt}, save=False)) == [1, 2]
    assert os.listdir(tmp_path) == []
