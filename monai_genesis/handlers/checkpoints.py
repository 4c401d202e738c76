"""Checkpoint helpers of the bundles: finding the state to resume from, and a score for lower-is-better metrics."""

from __future__ import annotations

import glob
import logging
import os
import re
from collections.abc import Mapping

import torch
from monai.handlers import CheckpointLoader, CheckpointSaver, EarlyStopHandler
from monai.utils import IgniteInfo, min_version, optional_import

from monai_genesis.config import as_bool
from monai_genesis.errors import GenesisInputError

Checkpoint, _ = optional_import("ignite.handlers", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Checkpoint")
DiskSaver, _ = optional_import("ignite.handlers", IgniteInfo.OPT_IMPORT_VERSION, min_version, "DiskSaver")
Engine, _ = optional_import("ignite.engine", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Engine")
Events, _ = optional_import("ignite.engine", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Events")

__all__ = ["RESUME_PREFIX", "ResumeHandler", "intact_checkpoint", "latest_checkpoint", "negative_key_metric"]

logger = logging.getLogger(__name__)

# file prefix of the per-epoch training state written by the pretraining bundle's CheckpointSaver
RESUME_PREFIX = "resume"


def _checkpoints(ckpt_dir: str, prefix: str) -> list[tuple[int, str]]:
    """``(epoch, path)`` of every ``{prefix}_checkpoint_epoch=N.pt`` in ``ckpt_dir``, newest first."""
    pattern = re.compile(rf"^{re.escape(prefix)}_checkpoint_epoch=(\d+)\.pt$")
    found = []
    for path in glob.glob(os.path.join(glob.escape(ckpt_dir), f"{prefix}_checkpoint_epoch=*.pt")):
        match = pattern.match(os.path.basename(path))
        if match:
            found.append((int(match.group(1)), path))
    return sorted(found, reverse=True)


def intact_checkpoint(ckpt_dir: str, prefix: str = RESUME_PREFIX) -> str:
    """Path of the newest per-epoch checkpoint of ``ckpt_dir`` that loads; newer ones that do not are named in a
    warning (a file cut short by a full disk or a copy, say), and left in place.

    Raises:
        GenesisInputError: when there is none, or none loads.
    """
    found = _checkpoints(ckpt_dir, prefix)
    if not found:
        latest_checkpoint(ckpt_dir, required=True, prefix=prefix)
    broken = []
    for _, path in found:
        try:
            torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except Exception as e:  # noqa: BLE001 - any reader error means: not this one
            broken.append(f"{path} ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})")
            continue
        if broken:
            logger.warning(
                f"resume states that cannot be read are passed over: {'; '.join(broken)}; resuming from {path}, "
                "so the epochs after it are trained again."
            )
        return path
    raise GenesisInputError(
        f"no resume state in {ckpt_dir} can be read: {'; '.join(broken)}. Start a new run without --resume (with "
        "another --bundle_root, or --overwrite true to replace this run's outputs)."
    )


def latest_checkpoint(ckpt_dir: str, required: bool = True, prefix: str = RESUME_PREFIX) -> str | None:
    """Path of the newest per-epoch checkpoint ``{prefix}_checkpoint_epoch=N.pt`` in ``ckpt_dir`` (largest N).

    Args:
        ckpt_dir: folder of the checkpoints.
        required: raise when there is none; otherwise return None.
        prefix: the ``file_prefix`` the checkpoints were saved with.

    Raises:
        ValueError: when ``required`` and no checkpoint exists.
    """
    found = _checkpoints(ckpt_dir, prefix)
    if found:
        return found[0][1]
    if required:
        raise ValueError(
            f"nothing to resume from: no {prefix}_checkpoint_epoch=N.pt in {ckpt_dir}. Run without --resume to "
            "start a new training, or point --ckpt_dir at the folder of the run to continue."
        )
    return None


def negative_key_metric(engine) -> float:
    """Score for ``EarlyStopHandler`` when the key metric is an error to minimise (e.g. validation MSE)."""
    return -float(engine.state.metrics[engine.state.key_metric_name])


class _EarlyStopState:
    """State of an ``EarlyStopHandler`` for a checkpoint: its ignite ``EarlyStopping`` exists only once
    ``set_trainer`` has been called, which bundles do after the handlers are made."""

    def __init__(self, handler: EarlyStopHandler) -> None:
        self.handler = handler

    def _stopping(self):
        stopping = self.handler._handler
        if stopping is None:
            raise RuntimeError("the EarlyStopHandler given to ResumeHandler has no trainer; call set_trainer() first.")
        return stopping

    def state_dict(self) -> dict:
        return dict(self._stopping().state_dict())

    def load_state_dict(self, state: Mapping) -> None:
        self._stopping().load_state_dict(state)


# records that a resume state written before they were kept lacks: restored when present
_OPTIONAL_RECORDS = ("best_model_record", "early_stop")


class _ResumeLoader(CheckpointLoader):
    """``CheckpointLoader`` of a resume state that names what the state lacks: an optional record is skipped
    with a warning, a missing object is an error that names it."""

    def __call__(self, engine: Engine) -> None:
        saved = set(torch.load(self.load_path, map_location="cpu", weights_only=True, mmap=True))
        missing = [k for k in self.load_dict if k not in saved]
        required = [k for k in missing if k not in _OPTIONAL_RECORDS]
        if required:
            raise ValueError(
                f"the resume state {self.load_path} has no {required} (it holds {sorted(saved)}): it was written "
                "by a run with other training objects. Resume with the same configuration, or start a new run "
                "without --resume."
            )
        for key in missing:
            logger.warning(f"the resume state {self.load_path} has no {key!r}; it starts afresh.")
            self.load_dict.pop(key)
        super().__call__(engine)


class ResumeHandler:
    """Save the whole training state after every epoch and, with ``resume=True``, continue from the latest one.

    The state is ``save_dict`` (network, optimizer, scheduler, ...) plus the trainer this handler is
    attached to (epoch and iteration), written as ``{prefix}_checkpoint_epoch=N.pt`` in ``ckpt_dir``.
    Each file is written to a temporary name and then renamed, and the two newest are kept (a resumed run counts
    the states it continues from), so a complete state exists even when the run is killed while writing: a run
    stopped at any point loses at most one epoch. A newest state that cannot be read (cut short by a full disk or a
    copy) is passed over with a warning naming it, and the run resumes from the newest one that can. Put this handler
    first in the trainer's handlers, so the state is restored before the others start.

    Args:
        ckpt_dir: folder of the checkpoints.
        save_dict: the objects to save and restore besides the trainer, e.g.
            ``{"model": net, "optimizer": opt, "lr_scheduler": sched}``.
        resume: restore the latest checkpoint of ``ckpt_dir`` when training starts; checked when the
            handler is made, so a missing checkpoint fails before any data is read. The strings
            ``"true"``/``"false"`` (as given on the command line) are understood.
        map_location: device to load the checkpoint tensors to.
        prefix: file prefix of the checkpoints.
        save: write the checkpoints; under DDP only rank 0 should (every rank still restores).
        best_saver: the validation ``CheckpointSaver`` that keeps the best model by a key metric; its record of the
            best score is saved and restored too, so that a resumed run does not replace the best model with the
            first, possibly worse, model it validates.
        early_stop: the ``EarlyStopHandler`` of the run; its best score and count of epochs without improvement
            are saved and restored too, so that a resumed run stops where the uninterrupted one would have.
            Its trainer must be set (``set_trainer``) before training starts.
    """

    def __init__(
        self,
        ckpt_dir: str,
        save_dict: Mapping,
        resume: bool | str = False,
        map_location=None,
        prefix: str = RESUME_PREFIX,
        save: bool = True,
        best_saver: CheckpointSaver | None = None,
        early_stop: EarlyStopHandler | None = None,
    ) -> None:
        if "trainer" in save_dict:
            raise ValueError("save_dict must not hold 'trainer': the engine this handler is attached to is added.")
        self.ckpt_dir = ckpt_dir
        self.save_dict = dict(save_dict)
        best = getattr(best_saver, "_key_metric_checkpoint", None)
        if best_saver is not None and best is None:
            raise ValueError("best_saver must be a CheckpointSaver with save_key_metric=True.")
        if best is not None:
            # ignite's Checkpoint (the saver's key-metric part) has state_dict/load_state_dict of its best scores
            self.save_dict["best_model_record"] = best
        if early_stop is not None:
            self.save_dict["early_stop"] = _EarlyStopState(early_stop)
        self.prefix = prefix
        self.map_location = map_location
        self.load_path = intact_checkpoint(ckpt_dir, prefix=prefix) if as_bool(resume, "resume") else None
        self.save = bool(save)
        self._saver: Checkpoint | None = None

    def attach(self, engine: Engine) -> None:
        objects = {**self.save_dict, "trainer": engine}
        if self.load_path is not None:
            logger.info(f"resuming training from {self.load_path}")
            _ResumeLoader(load_path=self.load_path, load_dict=objects, map_location=self.map_location).attach(engine)
        if not self.save:
            return
        # MONAI's CheckpointSaver writes in place and deletes the previous file first: a kill in between
        # would leave no complete state
        self._saver = Checkpoint(
            objects,
            DiskSaver(self.ckpt_dir, atomic=True, require_empty=False),
            filename_prefix=self.prefix,
            filename_pattern="{filename_prefix}_checkpoint_epoch={global_step}.{ext}",
            n_saved=2,
            global_step_transform=lambda engine, _: engine.state.epoch,
        )
        if self.load_path is not None:
            # the states of the run this one continues count towards the two kept (their priority is their epoch)
            found = reversed(_checkpoints(self.ckpt_dir, self.prefix))
            earlier = [(epoch, os.path.basename(path)) for epoch, path in found]
            self._saver.load_state_dict({key: earlier for key in self._saver.state_dict()})
        # attached when training starts, so it saves after every other end-of-epoch handler (scheduler step, validation)
        engine.add_event_handler(Events.STARTED, self._attach_saver)

    def _attach_saver(self, engine: Engine) -> None:
        if self._saver is not None:
            engine.add_event_handler(Events.EPOCH_COMPLETED, self._saver)
            self._saver = None
