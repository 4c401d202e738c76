"""Keeping every run's results: a new training never replaces an earlier one's files unless asked to, and a failed
run leaves no final model behind."""

from __future__ import annotations

import glob
import logging
import os
from collections.abc import Sequence

from monai.handlers import CheckpointSaver
from monai.utils import IgniteInfo, min_version, optional_import

from monai_genesis.config import as_bool
from monai_genesis.distributed import is_rank_zero

Engine, _ = optional_import("ignite.engine", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Engine")

__all__ = ["FinalModelSaver", "claim_run", "earlier_outputs"]

logger = logging.getLogger(__name__)

# how many of an earlier run's files an error message lists
_SHOWN = 5


def earlier_outputs(outputs: Sequence[str]) -> list[str]:
    """The files matching the glob patterns ``outputs`` (what a run writes), sorted."""
    found = set()
    for pattern in outputs:
        found.update(p for p in glob.glob(pattern) if os.path.isfile(p))
    return sorted(found)


def claim_run(outputs: Sequence[str], resume: bool | str = False, overwrite: bool | str = False) -> list[str]:
    """Check, before anything is written, that a new training run will not replace the results of an earlier one.

    A bundle lists the glob patterns of the files its training writes (models, resume states, TensorBoard event
    files, pictures). When some already exist:

    - with ``resume`` they are this run's own, continued: nothing happens;
    - with ``overwrite`` the user asked to replace them: rank 0 deletes them (so that resume states and
      TensorBoard curves of the two runs never mix) and logs what it deleted;
    - otherwise the run stops with an error that names them and says how to go on.

    Args:
        outputs: glob patterns of the files a training run of the bundle writes.
        resume: the run continues the earlier one (``--resume true``).
        overwrite: replace the earlier run's files (``--overwrite true``).

    Returns:
        the files deleted (on rank 0 with ``overwrite``), else an empty list.

    Raises:
        FileExistsError: when earlier results exist and neither ``resume`` nor ``overwrite`` is set.
    """
    if as_bool(resume, "resume"):
        return []
    existing = earlier_outputs(outputs)
    if not existing:
        return []
    if not as_bool(overwrite, "overwrite"):
        shown = ", ".join(existing[:_SHOWN]) + (f" and {len(existing) - _SHOWN} more" if len(existing) > _SHOWN else "")
        raise FileExistsError(
            f"this bundle_root already holds the results of an earlier run ({shown}); a new run would replace "
            "them. Start the new run beside it with another --bundle_root, continue the earlier one with "
            "--resume true, or replace its results with --overwrite true."
        )
    if not is_rank_zero():
        return []
    for path in existing:
        os.remove(path)
    logger.warning(f"--overwrite true: deleted {len(existing)} files of the earlier run ({', '.join(existing[:_SHOWN])}...).")
    return existing


class FinalModelSaver(CheckpointSaver):
    """``CheckpointSaver`` of the final model that writes it only when training completes.

    MONAI's ``CheckpointSaver(save_final=True)`` also writes the final checkpoint when an exception stops the
    run, so a run that fails at its first step would leave an untrained network under the final model's name.
    This one writes ``final_filename`` on ``Events.COMPLETED`` (also after an early stop) and nothing on an
    exception.

    Args:
        save_dir: folder of the checkpoint.
        save_dict: the objects to save, e.g. ``{"model": network}``.
        final_filename: file name of the final checkpoint. Defaults to ``"model_final.pt"``.
        kwargs: other arguments of ``monai.handlers.CheckpointSaver``.
    """

    def __init__(self, save_dir: str, save_dict: dict, final_filename: str = "model_final.pt", **kwargs) -> None:
        super().__init__(save_dir, save_dict, save_final=True, final_filename=final_filename, **kwargs)

    def exception_raised(self, engine: Engine, e: Exception) -> None:
        logger.warning(f"training stopped by {type(e).__name__}; no final model was written to {self.save_dir}.")
        raise e
