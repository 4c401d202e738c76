"""One validation before the first training step, beside the periodic validation of the shared base."""

from __future__ import annotations

from monai.utils import IgniteInfo, min_version, optional_import

Events, _ = optional_import("ignite.engine", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Events")
Engine, _ = optional_import("ignite.engine", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Engine")

__all__ = ["ValidateAtStart"]


class ValidateAtStart:
    """Validate once when a fresh run starts its first epoch, so that the validation curve starts at the network as
    loaded (pretrained or random), as MONAI's ``ValidationHandler(exec_at_start=True)`` does.

    It runs after every handler of the training start (pretrained weights, resume), on the first epoch only: a
    resumed run, whose first epoch is a later one, continues without it, so that its best model and its early-stop
    count are those of the run it continues. The periodic validation stays the base's ``ValidationHandler``.

    Args:
        validator: the evaluator, run as at epoch 0.
    """

    def __init__(self, validator) -> None:
        self.validator = validator

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_STARTED(once=1), self)

    def __call__(self, engine: Engine) -> None:
        self.validator.run(0)
