"""One validation before the first epoch of a fresh run, after the handlers of the start; none in a resumed run."""

from ignite.engine import Engine, Events

from monai_genesis.handlers import ValidateAtStart


class _Validator:
    def __init__(self):
        self.runs = []

    def run(self, epoch):
        self.runs.append(epoch)


def test_validates_once_before_training_after_the_start_handlers():
    order = []
    trainer = Engine(lambda engine, batch: order.append(("step", engine.state.epoch)))
    validator = _Validator()
    # a handler of the start attached after it (as the base's resume handler is) still runs first
    ValidateAtStart(validator).attach(trainer)
    trainer.add_event_handler(Events.STARTED, lambda e: order.append("started"))
    trainer.add_event_handler(Events.EPOCH_STARTED, lambda e: order.append(("validations", list(validator.runs))))
    trainer.run([0, 1], max_epochs=3)
    assert validator.runs == [0]
    assert order[0] == "started" and order[1] == ("validations", [0]) and order[2] == ("step", 1)


def test_a_resumed_run_continues_without_it():
    trainer = Engine(lambda engine, batch: None)
    validator = _Validator()
    ValidateAtStart(validator).attach(trainer)
    trainer.load_state_dict({"epoch": 2, "epoch_length": 2, "max_epochs": 4})  # as a resume state restores it
    trainer.run([0, 1], max_epochs=4)
    assert trainer.state.epoch == 4 and validator.runs == []

