"""Re-seeding a random component at the start of every epoch, so that what it draws repeats from epoch to epoch."""

from __future__ import annotations

from monai.utils import IgniteInfo, min_version, optional_import

Events, _ = optional_import("ignite.engine", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Events")
Engine, _ = optional_import("ignite.engine", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Engine")

__all__ = ["ReseedHandler"]


class ReseedHandler:
    """Call ``target.set_random_state(seed)`` when each epoch of the engine starts.

    Attached to the validation evaluator with the evaluator's ``GenesisPrepareBatch`` as target, every
    validation corrupts the same cubes in the same way, so validation MSE is comparable across epochs.

    Args:
        target: an object with ``set_random_state(seed=...)`` (a MONAI ``Randomizable``).
        seed: the seed set at every epoch start.
    """

    def __init__(self, target, seed: int = 0) -> None:
        if not hasattr(target, "set_random_state"):
            raise ValueError(f"target {type(target).__name__} has no set_random_state(); pass a Randomizable.")
        self.target = target
        self.seed = int(seed)

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_STARTED, self)

    def __call__(self, engine: Engine) -> None:
        self.target.set_random_state(seed=self.seed)
