"""A trainer handler for the distributed tests: records what one rank trained on and which handlers it runs."""

import hashlib
import json
import os

import torch
import torch.distributed as dist
from ignite.engine import Events


def _digest(array) -> str:
    return hashlib.sha1(torch.as_tensor(array).detach().cpu().contiguous().numpy().tobytes()).hexdigest()


class CubeProbe:
    """Write ``out_dir/rank{R}.json`` when training ends: hashes of every input and target seen, the random
    state of the corruption (when ``prepare_batch`` is given), the handler classes of both engines, the pid."""

    def __init__(self, out_dir, train_handlers, val_handlers, prepare_batch=None):
        self.out_dir = out_dir
        self.record = {
            "train_handlers": [type(h).__name__ for h in train_handlers],
            "val_handlers": [type(h).__name__ for h in val_handlers],
            "pid": os.getpid(),
            "clean": [],
            "corrupted": [],
        }
        self.prepare_batch = prepare_batch

    def attach(self, engine):
        engine.add_event_handler(Events.STARTED, self.started)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self.iteration)
        engine.add_event_handler(Events.COMPLETED, self.completed)

    def started(self, engine):
        if self.prepare_batch is not None:
            self.record["corruption_state"] = _digest(self.prepare_batch.R.get_state()[1])

    def iteration(self, engine):
        output = engine.state.output
        if isinstance(output, dict) and isinstance(output.get("image"), list):
            # a detection trainer keeps its output whole: lists of image crops and of their box targets
            self.record["clean"] += [_digest(target["box"]) for target in output["label"]]
            self.record["corrupted"] += [_digest(image) for image in output["image"]]
            return
        # the trainer decollates its output into one dictionary per sample
        samples = output if isinstance(output, list) else [dict(zip(output, v)) for v in zip(*output.values())]
        self.record["clean"] += [_digest(s["label"]) for s in samples]
        self.record["corrupted"] += [_digest(s["image"]) for s in samples]

    def completed(self, engine):
        self.record["rank"] = dist.get_rank()
        self.record["world_size"] = dist.get_world_size()
        os.makedirs(self.out_dir, exist_ok=True)
        with open(os.path.join(self.out_dir, f"rank{dist.get_rank()}.json"), "w") as f:
            json.dump(self.record, f)
