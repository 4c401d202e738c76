"""End-to-end pretraining throughput of the ``genesis_pretrain`` bundle on real CT: steps/s, cubes/s, data waiting, memory.

    python benchmarks/pretraining_throughput.py [--setting smoke|reduced|full] [--device cpu|cuda]
        [--data VOLUME_OR_FOLDER | --datalist JSON] [--workers 0 1 2] [--paths per_sample batched]
        [--features F] [--patch-size 64 64 32] [--batch-size 6] [--steps N] [--warmup N] [--results DIR]

Each combination of corruption path and loader workers runs the bundle's own trainer (``train#trainer`` of
``bundles/genesis_pretrain/configs/train.json``) in a fresh process, so its memory is its own: the bundle prepares
its volume store from the data (``ensure_store``, uint16, in the run's temporary bundle root: counted in the setup
time, not in the steps), ``StoreCubeDataset`` reads random cubes lazily from it and ``collate_store_cubes`` moves
them as whole batches from persistent workers, then corruption, forward, MSE, backward, SGD step. The two paths:

- ``per_sample``: ``corrupt_on_device=false``, every cube is corrupted in the data loader by
  ``RandGenesisCorruptiond``;
- ``batched``: ``corrupt_on_device=true``, the loader only cuts cubes and ``GenesisPrepareBatch`` corrupts the
  whole batch on the training device.

Measured after ``--warmup`` steps: steps/s, cubes/s, the share of wall time spent waiting for the next batch
(from the end of one iteration to the start of the next), the peak resident memory of the process tree (main
process and loader workers) and, on a GPU, the peak allocated GPU memory. Validation and checkpointing are
left out (``train#handlers`` is emptied): the figures are those of the training loop.

Settings: ``reduced`` (the paper's 64×64×32 cubes and batch 6 on a narrower U-Net, ``features`` 4, one torch
thread in the training process, for a 2-core CPU), ``full`` (the released width, ``features`` 32, more steps,
for a GPU), ``smoke`` (seconds, for CI).
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import common
from monai_genesis.transforms import INTENSITY_SETTINGS

BUNDLE = "genesis_pretrain"
PATHS = ("per_sample", "batched")
PRESETS = {
    "smoke": {"threads": 1, "features": 2, "patch_size": [32, 32, 16], "batch_size": 2, "steps": 2, "warmup": 1},
    "reduced": {"threads": 1, "features": 4, "patch_size": [64, 64, 32], "batch_size": 6, "steps": 10, "warmup": 2},
    "full": {"threads": 0, "features": 32, "patch_size": [64, 64, 32], "batch_size": 6, "steps": 50, "warmup": 5},
}
DEFAULT_DATA = common.SHARED_DATA / "chest_ct" / "chest_ct_0.nii.gz"

logger = logging.getLogger("benchmarks.pretraining_throughput")


class StepTimer:
    """Ignite handler timing each iteration and the wait for its batch; stops the run after ``warmup + steps``.

    Args:
        warmup: iterations left out of the figures (worker start-up, first allocations).
        steps: iterations measured.
        sync: called before every time stamp (``torch.cuda.synchronize`` on a GPU), so that the GPU's
            queued work is counted in the iteration that issued it.
    """

    def __init__(self, warmup: int, steps: int, sync=None) -> None:
        self.warmup, self.steps, self.sync = int(warmup), int(steps), sync
        self.waits: list[float] = []
        self.computes: list[float] = []
        self.first_wait = float("nan")
        self.measure_start = float("nan")
        self.measure_end = float("nan")
        self._epoch_start = None
        self._iter_start = None
        self._iter_end = None

    def _now(self) -> float:
        if self.sync is not None:
            self.sync()
        return time.perf_counter()

    def attach(self, engine) -> None:
        from ignite.engine import Events

        engine.add_event_handler(Events.EPOCH_STARTED, self._epoch_started)
        engine.add_event_handler(Events.ITERATION_STARTED, self._iteration_started)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._iteration_completed)

    def _epoch_started(self, engine) -> None:
        self._epoch_start = self._now()
        self._iter_end = None
        if self.warmup == 0:
            self.measure_start = self._epoch_start

    def _iteration_started(self, engine) -> None:
        now = self._now()
        if self._iter_end is None:
            self.first_wait = now - self._epoch_start
            if self.warmup == 0:
                self.waits.append(self.first_wait)
        elif engine.state.iteration > self.warmup:
            self.waits.append(now - self._iter_end)
        self._iter_start = now

    def _iteration_completed(self, engine) -> None:
        now = self._now()
        if engine.state.iteration > self.warmup:
            self.computes.append(now - self._iter_start)
        if engine.state.iteration == self.warmup:
            self.measure_start = now
        self._iter_end = now
        if engine.state.iteration >= self.warmup + self.steps:
            self.measure_end = now
            engine.terminate()


def data_items(data: str | None, datalist: str | None, work_dir: Path) -> dict[str, str]:
    """The bundle's data overrides for ``--data`` (a volume or a folder of volumes) or ``--datalist``."""
    if datalist:
        return {"datalist": str(Path(datalist).resolve())}
    path = Path(data).resolve()
    if path.is_dir():
        return {"dataset_dir": str(path)}
    if not path.is_file():
        raise ValueError(f"--data {data} is neither a volume file nor a folder; pass a NIfTI/NRRD file or a folder.")
    # one volume: a datalist that trains on it (validation is not run by this benchmark)
    listing = work_dir / "datalist.json"
    listing.write_text(json.dumps({"training": [{"image": str(path)}], "validation": [{"image": str(path)}]}))
    return {"datalist": str(listing)}


def run_one(args, path: str, workers: int) -> dict:
    """Run the bundle's trainer for one path and worker count in this process; returns its figures."""
    device = common.resolve_device(args.device)
    work_dir = Path(tempfile.mkdtemp(prefix=f"genesis_throughput_{path}_{workers}_", dir=args.work_dir))
    sync = torch.cuda.synchronize if device.type == "cuda" else None
    if device.type == "cuda":
        torch.cuda.init()  # the peak-memory counters exist once CUDA is initialised
        torch.cuda.reset_peak_memory_stats(torch.device(device).index or 0)
    timer = StepTimer(args.warmup, args.steps, sync)
    clock = common.Stopwatch()
    with common.PeakMemory() as memory:
        overrides = {
            **data_items(args.data, args.datalist, work_dir),
            "device": common.device_override(device),
            "seed": args.seed,
            "intensity": args.intensity,
            "epochs": 1,
            "genesis_features": args.features,
            "patch_size": list(args.patch_size),
            "batch_size": args.batch_size,
            # enough cubes for warmup + steps from one volume; the timer stops the epoch there
            "cubes_per_volume": (args.warmup + args.steps + 1) * args.batch_size,
            "num_workers": workers,
            "corrupt_on_device": path == "batched",
            "train#handlers": [],
        }
        workflow = common.bundle_workflow(BUNDLE, work_dir, **overrides)
        trainer = workflow.parser.get_parsed_content("train#trainer")
        timer.attach(trainer)
        setup_s = clock()
        try:
            trainer.run()
        finally:
            shutil.rmtree(work_dir, ignore_errors=True)
    if len(timer.computes) < args.steps:
        raise ValueError(
            f"only {len(timer.computes)} of {args.steps} steps ran: the data gives too few batches; "
            "lower --batch-size or --steps."
        )
    wall = timer.measure_end - timer.measure_start
    wait = sum(timer.waits)
    result = {
        "path": path,
        "workers": workers,
        "steps": len(timer.computes),
        "setup_s": setup_s,
        "first_batch_s": timer.first_wait,
        "step_s": wall / len(timer.computes),
        "steps_per_s": len(timer.computes) / wall,
        "cubes_per_s": len(timer.computes) * args.batch_size / wall,
        "data_wait_s": wait,
        "data_wait_share": wait / wall,
        "peak_rss_gib": memory.tree_gib,
        "peak_rss_main_gib": memory.main_gib,
        "final_loss": float(trainer.state.output[0]["loss"]) if isinstance(trainer.state.output, list)
        else float(trainer.state.output["loss"]),
    }
    if device.type == "cuda":
        result["peak_gpu_memory_gib"] = torch.cuda.max_memory_allocated(torch.device(device).index or 0) / 2**30
    return result


def run_isolated(args, path: str, workers: int) -> dict:
    """Run one combination in a fresh Python process (its own peak memory) and read back its figures."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        cmd = [sys.executable, str(Path(__file__).resolve()), *args.argv, "--_one", path, str(workers), "--_out", str(out)]
        completed = subprocess.run(cmd, check=False, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if completed.returncode != 0 or not out.is_file():
            raise RuntimeError(f"the {path} run with {workers} workers failed:\n{completed.stdout[-4000:]}")
        return json.loads(out.read_text())


def table(rows: list[dict], device: torch.device) -> str:
    headers = ["path", "workers", "steps/s", "cubes/s", "step (s)", "data waiting", "peak RSS (GiB)"]
    if device.type == "cuda":
        headers.append("peak GPU mem (GiB)")
    lines = []
    for r in rows:
        line = [
            r["path"].replace("_", "-"),
            r["workers"],
            f"{r['steps_per_s']:.3f}",
            f"{r['cubes_per_s']:.2f}",
            f"{r['step_s']:.2f}",
            f"{100 * r['data_wait_share']:.1f}%",
            f"{r['peak_rss_gib']:.2f}",
        ]
        if device.type == "cuda":
            line.append(f"{r.get('peak_gpu_memory_gib', float('nan')):.2f}")
        lines.append(line)
    return common.markdown_table(headers, lines, ["l"] + ["r"] * (len(headers) - 1))


def check_acceptance(rows: list[dict], device: torch.device, workers: int = 2) -> dict | None:
    """The issue's criteria on a CPU with ``workers`` loader workers: data waiting <= 10% of the step time and
    peak RSS < 4 GiB, per path; ``None`` when no such row was measured."""
    chosen = [r for r in rows if r["workers"] == workers]
    if device.type != "cpu" or not chosen:
        return None
    checks = {
        r["path"]: {"data_wait_ok": r["data_wait_share"] <= 0.10, "peak_rss_ok": r["peak_rss_gib"] < 4.0} for r in chosen
    }
    passed = all(all(c.values()) for c in checks.values())
    parts = ", ".join(
        f"{r['path'].replace('_', '-')}: waiting {100 * r['data_wait_share']:.1f}%, peak RSS {r['peak_rss_gib']:.2f} GiB"
        for r in chosen
    )
    summary = (
        f"Criteria on CPU with {workers} workers (data waiting <= 10% of step time, peak RSS < 4 GiB): "
        f"{'met' if passed else 'NOT met'} ({parts})."
    )
    return {"workers": workers, "checks": checks, "passed": passed, "summary": summary}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--setting", choices=common.SETTINGS, default="reduced", help="size preset")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="a CT volume or a folder of volumes")
    parser.add_argument("--datalist", help="JSON datalist with a 'training' list (instead of --data)")
    parser.add_argument("--intensity", choices=INTENSITY_SETTINGS, default="ct", help="the bundle's intensity setting")
    parser.add_argument("--paths", nargs="+", choices=PATHS, default=list(PATHS), help="corruption paths to time")
    parser.add_argument("--workers", nargs="+", type=int, default=[0, 1, 2], help="data-loader worker counts")
    parser.add_argument("--features", type=int, help="U-Net width (32 = released network)")
    parser.add_argument("--patch-size", type=int, nargs=3, help="cube size, sides divisible by 8")
    parser.add_argument("--batch-size", type=int, help="cubes per step")
    parser.add_argument("--steps", type=int, help="steps measured per combination")
    parser.add_argument("--warmup", type=int, help="steps run before measuring")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--in-process", action="store_true", help="run every combination in this process (peak RSS is then cumulative)")
    parser.add_argument("--threads", type=int, help="torch threads of the main process (0: torch's default)")
    parser.add_argument("--results", default=str(common.DEFAULT_RESULTS), help="folder of the JSON and Markdown outputs")
    parser.add_argument("--tag", default="", help="suffix of the result file names")
    parser.add_argument("--work-dir", help="folder for temporary bundle roots (default: the system's temp folder)")
    parser.add_argument("--verbose", action="store_true", help="also show the bundle's own log")
    parser.add_argument("--_one", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--_out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.argv = [a for a in (sys.argv[1:] if argv is None else list(argv))]
    for key, value in PRESETS[args.setting].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if any(s % 8 for s in args.patch_size):
        raise ValueError(f"--patch-size sides must be divisible by 8 (three poolings), got {args.patch_size}.")
    if args.steps < 1 or args.warmup < 0 or args.batch_size < 1:
        raise ValueError("--steps and --batch-size must be at least 1, --warmup at least 0.")
    if any(w < 0 for w in args.workers):
        raise ValueError(f"--workers must be non-negative, got {args.workers}.")
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    common.set_threads(args.threads)
    if args._one:
        result = run_one(args, args._one[0], int(args._one[1]))
        Path(args._out).write_text(json.dumps(result))
        return result
    device = common.resolve_device(args.device)
    clock = common.Stopwatch()
    rows = []
    for path in args.paths:
        for workers in args.workers:
            logger.info(f"{path} path, {workers} workers ...")
            row = run_one(args, path, workers) if args.in_process else run_isolated(args, path, workers)
            logger.info(f"  {row['steps_per_s']:.3f} steps/s, data waiting {100 * row['data_wait_share']:.1f}%")
            rows.append(row)
    text = table(rows, device) + (
        f"\n\nSetting {args.setting}: genesis_pretrain, GenesisUNet features {args.features}, cubes "
        f"{'×'.join(map(str, args.patch_size))}, batch {args.batch_size}, {args.steps} steps measured after {args.warmup}, "
        f"{args.device} with {torch.get_num_threads()} torch threads in the training process; cubes read lazily from the "
        "bundle's volume store (prepared during setup); peak RSS summed over the process and its loader workers."
    )
    acceptance = check_acceptance(rows, device)
    if acceptance:
        text += "\n\n" + acceptance["summary"]
    payload = {
        "benchmark": "pretraining_throughput",
        "setting": args.setting,
        "command": common.command_line(__file__, args.argv),
        "machine": common.machine_info(device),
        "config": {
            "bundle": f"bundles/{BUNDLE}",
            "data": args.datalist or args.data,
            "loader": "volume store: StoreCubeDataset with collate_store_cubes, persistent workers",
            "intensity": args.intensity,
            "features": args.features,
            "patch_size": list(args.patch_size),
            "batch_size": args.batch_size,
            "steps": args.steps,
            "warmup": args.warmup,
            "seed": args.seed,
            "isolated_processes": not args.in_process,
        },
        "results": rows,
        "acceptance": acceptance,
        "total_seconds": clock(),
    }
    name = common.results_name("pretraining_throughput", args.setting, device, args.tag)
    json_path, md_path = common.write_results(args.results, name, payload, text)
    print(text)
    logger.info(f"wrote {json_path} and {md_path} in {clock():.0f} s")
    return payload


if __name__ == "__main__":
    # only as a script: configuring logging inside main() would change it for whoever imports the module
    common.setup_logging("--verbose" in sys.argv)
    main()
