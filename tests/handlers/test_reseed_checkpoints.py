import logging
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
    assert sorted(os.listdir(tmp_path)) == ["resume_checkpoint_epoch=1.pt", "resume_checkpoint_epoch=2.pt"]
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


def test_resume_state_survives_a_failure_while_writing(tmp_path, monkeypatch):
    net = torch.nn.Linear(2, 1)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    _train(net, opt, 3, ResumeHandler(str(tmp_path), {"model": net, "optimizer": opt}))
    assert sorted(os.listdir(tmp_path)) == ["resume_checkpoint_epoch=2.pt", "resume_checkpoint_epoch=3.pt"]

    def interrupted(obj, f, *args, **kwargs):
        f.write(b"half a checkpoint")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _train(net, opt, 4, ResumeHandler(str(tmp_path), {"model": net, "optimizer": opt}, resume=True))
    monkeypatch.undo()
    # no half-written epoch 4; the newest complete state is still there and loads
    assert "resume_checkpoint_epoch=4.pt" not in os.listdir(tmp_path)
    latest = latest_checkpoint(str(tmp_path))
    assert latest.endswith("resume_checkpoint_epoch=3.pt")
    assert torch.load(latest, weights_only=True)["trainer"]["iteration"] == 6  # 3 epochs of 2 iterations


def test_resume_handler_without_saving(tmp_path):
    net = torch.nn.Linear(2, 1)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    assert _train(net, opt, 2, ResumeHandler(str(tmp_path), {"model": net, "optimizer": opt}, save=False)) == [1, 2]
    assert os.listdir(tmp_path) == []


def _validate_and_keep_best(tmp_path, net, scores, resume):
    """Train one epoch per score (each epoch adds 1 to the weights); the 'validation' after each epoch reports
    that score (lower is better)."""
    from monai.handlers import CheckpointSaver

    evaluator = Engine(lambda e, b: None)
    evaluator.state.key_metric_name = "mse"
    evaluator.add_event_handler(
        Events.EPOCH_COMPLETED, lambda e: e.state.metrics.update(mse=scores[trainer.state.epoch - 1])
    )
    best = CheckpointSaver(
        str(tmp_path), {"model": net}, save_key_metric=True, key_metric_filename="model.pt", key_metric_negative_sign=True
    )
    best.attach(evaluator)

    def step(engine, batch):
        with torch.no_grad():
            net.weight.add_(1.0)

    trainer = Engine(step)
    ResumeHandler(str(tmp_path), {"model": net}, resume=resume, best_saver=best).attach(trainer)
    trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda e: evaluator.run([0]))
    trainer.run([0], max_epochs=len(scores))


def _saved_weight(tmp_path):
    return float(torch.load(tmp_path / "model.pt", weights_only=True)["weight"][0, 0])


def test_resumed_run_keeps_the_best_model_of_the_first_run(tmp_path):
    from monai.handlers import CheckpointSaver

    net = torch.nn.Linear(2, 1)
    with torch.no_grad():
        net.weight.fill_(0.0)
    _validate_and_keep_best(tmp_path, net, [0.5, 0.1], resume=False)
    assert _saved_weight(tmp_path) == 2.0  # best: epoch 2
    # resumed at epoch 2: epoch 3 validates worse (0.3), so the best model of the first run stays
    _validate_and_keep_best(tmp_path, net, [0.5, 0.1, 0.3], resume=True)
    assert _saved_weight(tmp_path) == 2.0
    # resumed at epoch 3: epoch 4 validates better (0.05) and replaces it
    _validate_and_keep_best(tmp_path, net, [0.5, 0.1, 0.3, 0.05], resume=True)
    assert _saved_weight(tmp_path) == 4.0
    with pytest.raises(ValueError, match="save_key_metric"):
        ResumeHandler(str(tmp_path), {"model": net}, best_saver=CheckpointSaver(str(tmp_path), {"model": net}))


def _train_with_early_stop(tmp_path, scores, resume, patience=2):
    """One epoch per score (lower is better) with an early stop of ``patience`` epochs; returns the last epoch
    and the early stop's count of epochs without improvement."""
    from monai.handlers import EarlyStopHandler

    net = torch.nn.Linear(2, 1)
    evaluator = Engine(lambda e, b: None)
    evaluator.state.key_metric_name = "mse"
    trainer = Engine(lambda e, b: None)
    evaluator.add_event_handler(
        Events.EPOCH_COMPLETED, lambda e: e.state.metrics.update(mse=scores[trainer.state.epoch - 1])
    )
    early_stop = EarlyStopHandler(patience=patience, score_function=negative_key_metric)
    early_stop.attach(evaluator)
    handler = ResumeHandler(str(tmp_path), {"model": net}, resume=resume, early_stop=early_stop)
    handler.attach(trainer)
    early_stop.set_trainer(trainer)  # as the bundles do, after the handlers are made
    trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda e: evaluator.run([0]))
    trainer.run([0], max_epochs=len(scores))
    return trainer.state.epoch, early_stop._handler.counter


def test_resumed_run_keeps_the_early_stop_count(tmp_path):
    # best at epoch 2, then one epoch without improvement
    assert _train_with_early_stop(tmp_path, [0.5, 0.1, 0.3], resume=False) == (3, 1)
    saved = torch.load(tmp_path / "resume_checkpoint_epoch=3.pt", weights_only=True)["early_stop"]
    assert saved["counter"] == 1 and saved["best_score"] == pytest.approx(-0.1)
    # resumed: epoch 4 is the second epoch without improvement, so the run stops there, before epoch 5
    assert _train_with_early_stop(tmp_path, [0.5, 0.1, 0.3, 0.4, 0.45], resume=True) == (4, 2)


def test_resume_state_without_a_record_restarts_it_and_one_without_an_object_is_refused(tmp_path, caplog):
    _train_with_early_stop(tmp_path, [0.5, 0.1, 0.3], resume=False)
    path = tmp_path / "resume_checkpoint_epoch=3.pt"
    state = torch.load(path, weights_only=True)
    del state["early_stop"]  # as written before the early stop was kept
    torch.save(state, path)
    with caplog.at_level(logging.WARNING, logger="monai_genesis.handlers.checkpoints"):
        # the record restarts at the resume: epoch 4 is its first best, epoch 5 its first without improvement
        assert _train_with_early_stop(tmp_path, [0.5, 0.1, 0.3, 0.4, 0.45], resume=True) == (5, 1)
    assert "has no 'early_stop'" in caplog.text
    state = torch.load(tmp_path / "resume_checkpoint_epoch=5.pt", weights_only=True)
    del state["model"]
    torch.save(state, tmp_path / "resume_checkpoint_epoch=5.pt")
    with pytest.raises(ValueError, match=r"has no \['model'\]"):
        _train_with_early_stop(tmp_path, [0.5] * 6, resume=True)


def test_early_stop_without_trainer_is_reported(tmp_path):
    from monai.handlers import EarlyStopHandler

    net = torch.nn.Linear(2, 1)
    handler = ResumeHandler(str(tmp_path), {"model": net}, early_stop=EarlyStopHandler(patience=1, score_function=negative_key_metric))
    with pytest.raises(RuntimeError, match="set_trainer"):
        handler.save_dict["early_stop"].state_dict()
