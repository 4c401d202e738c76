"""Shared parts of the benchmark scripts: machine description, bundle workflows, timing of memory, result files."""

from __future__ import annotations

import json
import logging
import math
import os
import platform
import resource
import shlex
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
BUNDLES = REPO / "bundles"
SHARED_DATA = REPO.parent / "shared" / "data"
DEFAULT_RESULTS = REPO / "benchmarks" / "results"
SETTINGS = ("smoke", "reduced", "full")

logger = logging.getLogger("benchmarks")


def setup_logging(verbose: bool = False) -> None:
    """Log the benchmarks' progress to stderr; the bundles' own loggers only at warning level unless ``verbose``."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", datefmt="%H:%M:%S")
    if not verbose:
        for name in ("ignite", "monai", "monai_genesis", "py.warnings"):
            logging.getLogger(name).setLevel(logging.WARNING)


def resolve_device(name: str) -> torch.device:
    """The ``torch.device`` for ``--device``; ``"auto"`` picks the first GPU when there is one.

    Args:
        name: ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.

    Raises:
        ValueError: when a GPU is asked for but none is available.
    """
    if name == "auto":
        return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"--device {name}: no CUDA device is available; use --device cpu.")
        if device.index is None:
            device = torch.device("cuda:0")
    return device


def cpu_model() -> str:
    """The CPU's model name (from ``/proc/cpuinfo`` on Linux, else ``platform.processor()``)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info(device: torch.device) -> dict[str, Any]:
    """Where a benchmark ran: CPU, cores, threads, memory, library versions and the GPU when one is used."""
    import monai

    import monai_genesis

    info: dict[str, Any] = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_model": cpu_model(),
        "cpu_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "monai": monai.__version__,
        "monai_genesis": getattr(monai_genesis, "__version__", "unknown"),
        "device": str(device),
    }
    try:
        info["load_average_at_start"] = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        pass
    try:
        with open("/proc/meminfo") as f:
            total_kib = int(f.readline().split()[1])
        info["memory_gib"] = round(total_kib / 2**20, 1)
    except (OSError, ValueError, IndexError):
        pass
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["gpu_memory_gib"] = round(torch.cuda.get_device_properties(device).total_memory / 2**30, 1)
        info["cuda"] = torch.version.cuda
    return info


def command_line(script: str, argv: Sequence[str] | None = None) -> str:
    """The command line of a benchmark run, ready to paste into a shell.

    Args:
        script: the benchmark's file.
        argv: its arguments (default: this process's).
    """
    path = Path(script).resolve()
    try:
        path = path.relative_to(Path.cwd())
    except ValueError:
        pass
    return shlex.join(["python", str(path), *(sys.argv[1:] if argv is None else argv)])


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value) of finite ``values``."""
    values = [float(v) for v in values]
    if not values:
        return math.nan, math.nan
    mean = sum(values) / len(values)
    if len(values) == 1:
        return mean, 0.0
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], align: Sequence[str] | None = None) -> str:
    """A Markdown table; ``align`` holds ``"l"`` or ``"r"`` per column (text left, numbers right by default)."""
    if align is None:
        align = ["l"] + ["r"] * (len(headers) - 1)
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" if a == "l" else "---:" for a in align) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def write_results(results_dir: str | Path, name: str, payload: Mapping[str, Any], table: str) -> tuple[Path, Path]:
    """Write ``NAME.json`` (the payload) and ``NAME.md`` (the table under a heading) into ``results_dir``.

    Files of the same name from an earlier run of the same benchmark and setting are replaced; pass another
    ``--results`` folder or ``--tag`` to keep them.
    """
    folder = Path(results_dir)
    folder.mkdir(parents=True, exist_ok=True)
    json_path, md_path = folder / f"{name}.json", folder / f"{name}.md"
    json_path.write_text(json.dumps(payload, indent=2, allow_nan=True) + "\n")
    machine = payload.get("machine", {})
    where = machine.get("gpu") or f"{machine.get('cpu_model', '?')}, {machine.get('cpu_cores', '?')} cores"
    md_path.write_text(
        f"# {name}\n\n{table}\n\nMachine: {where}; torch {machine.get('torch')}, monai {machine.get('monai')}.\n\n"
        f"Command: `{payload.get('command', '')}`\n"
    )
    return json_path, md_path


def results_name(benchmark: str, setting: str, device: torch.device, tag: str = "") -> str:
    """File stem of a benchmark's results, e.g. ``finetune_brats_reduced_cpu``."""
    return "_".join(p for p in (benchmark, setting, device.type, tag) if p)


def bundle_config(bundle: str, name: str = "train") -> str:
    """Path of ``bundles/BUNDLE/configs/NAME.json``."""
    return str(BUNDLES / bundle / "configs" / f"{name}.json")


def read_bundle_item(bundle: str, item_id: str, name: str = "train") -> Any:
    """The raw (unparsed) content of ``item_id`` in a bundle's config, to derive an override from it."""
    from monai.bundle import ConfigParser

    from monai_genesis.packaging import train_config_files

    parser = ConfigParser()
    # a training config is read merged with the shared base it is a recipe over
    parser.read_config(train_config_files(BUNDLES / bundle) if name == "train" else bundle_config(bundle, name))
    return parser[item_id]


def train_handlers_without_progress(bundle: str) -> list:
    """The bundle's training handlers without the progress bar, which would flood the benchmark's log."""
    return [h for h in read_bundle_item(bundle, "train#handlers") if h.get("_target_") != "ignite.handlers.ProgressBar"]


def bundle_workflow(bundle: str, root: str | Path, extra_configs: Sequence[str] = (), **overrides: Any):
    """An initialised ``ConfigWorkflow`` of ``bundle``'s training config (plus ``extra_configs``) rooted at ``root``.

    Args:
        bundle: name of a folder under ``bundles/``.
        root: the workflow's ``bundle_root`` (checkpoints, logs and generated files go there).
        extra_configs: config files merged after ``train.json`` (e.g. ``configs/mri.json``).
        overrides: config ids and values, as ``--key value`` on the bundle's command line.
    """
    from monai.bundle import ConfigWorkflow

    from monai_genesis.packaging import train_config_files

    files = [*train_config_files(BUNDLES / bundle), *[str(c) for c in extra_configs]]
    workflow = ConfigWorkflow(
        config_file=files,
        meta_file=bundle_config(bundle, "metadata"),
        logging_file=False,
        workflow_type="train",
        bundle_root=str(root),
        **overrides,
    )
    workflow.initialize()
    return workflow


def add_norm_argument(parser) -> None:
    """``--norm``: override a fine-tuning bundle's ``genesis_norm`` (see :py:func:`run_norm`)."""
    from monai_genesis.networks import GENESIS_NORMS

    parser.add_argument(
        "--norm", choices=GENESIS_NORMS,
        help="normalisation of the fine-tuned network (default: the bundle's 'batch', running statistics at "
        "inference; 'genesis': the released network's, batch statistics also at inference)",
    )


def run_norm(bundle: str, norm: str | None) -> str:
    """The normalisation a benchmark run uses: ``--norm`` when given, else the bundle's ``genesis_norm``."""
    return norm or read_bundle_item(bundle, "genesis_norm")


def norm_layer(network: torch.nn.Module) -> str:
    """Class name of the first normalisation layer of ``network``, as a record of the norm a run really used."""
    for module in network.modules():
        if isinstance(module, (torch.nn.modules.batchnorm._NormBase, torch.nn.GroupNorm, torch.nn.LayerNorm)):
            return type(module).__name__
    return "none"


def device_override(device: torch.device) -> str:
    """The bundles' ``device`` id for ``device``, as a config expression."""
    return f"$torch.device('{device}')"


def _children(pid: int) -> list[int]:
    kids: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                kids += [int(p) for p in f.read().split()]
    except (OSError, ValueError):
        pass
    return kids


def _rss_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def process_tree_rss(pid: int | None = None) -> int:
    """Resident memory in bytes of a process and all its descendants (shared pages count once per process)."""
    pid = os.getpid() if pid is None else pid
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        total += _rss_bytes(current)
        todo += _children(current)
    return total


class PeakMemory:
    """Peak resident memory of this process and its data-loader workers while the ``with`` block runs.

    ``tree_gib``: the largest sum of RSS over the process tree, sampled every ``interval`` seconds (Linux;
    an upper bound, since pages shared by forked workers count once per process). ``main_gib``: the peak RSS
    of this process over its lifetime (``getrusage``), on any platform.

    Args:
        interval: seconds between samples.
    """

    def __init__(self, interval: float = 0.1) -> None:
        self.interval = float(interval)
        self.tree_peak = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.tree_peak = max(self.tree_peak, process_tree_rss())
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakMemory:  # noqa: PYI034
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.tree_peak = max(self.tree_peak, process_tree_rss())

    @property
    def main_gib(self) -> float:
        scale = 1 if sys.platform == "darwin" else 1024
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**30

    @property
    def tree_gib(self) -> float:
        return self.tree_peak / 2**30 if self.tree_peak else self.main_gib


class Stopwatch:
    """Seconds since it was made, to log progress and the total time of a benchmark."""

    def __init__(self) -> None:
        self.start = time.perf_counter()

    def __call__(self) -> float:
        return time.perf_counter() - self.start


def finite(value: Any) -> bool:
    """Whether ``value`` is a finite number."""
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def fmt(mean: float, std: float | None = None, digits: int = 3) -> str:
    """``mean ± std`` with ``digits`` decimals, or ``–`` for a missing value."""
    if not finite(mean):
        return "–"
    return f"{mean:.{digits}f}" if std is None else f"{mean:.{digits}f} ± {std:.{digits}f}"


def run_pretraining(root: str | Path, device: torch.device, verbose: bool = False, **overrides: Any) -> dict[str, Any]:
    """Pretrain with the ``genesis_pretrain`` bundle under ``root``; returns its checkpoint and figures.

    Args:
        root: the bundle root of the run (its ``models/`` receives the checkpoints).
        device: training device.
        verbose: keep the bundle's progress bar.
        overrides: config ids and values of the bundle (data, sizes, epochs, ...).

    Returns:
        ``{"checkpoint": path of the best-validation model (else the final one), "best_val_mse",
        "epochs_run", "seconds"}``.
    """
    clock = Stopwatch()
    if not verbose:
        overrides.setdefault("train#handlers", train_handlers_without_progress("genesis_pretrain"))
    workflow = bundle_workflow("genesis_pretrain", root, device=device_override(device), **overrides)
    workflow.run()
    evaluator = workflow.parser.get_parsed_content("validate#evaluator")
    trainer = workflow.parser.get_parsed_content("train#trainer")
    workflow.finalize()
    models = Path(root) / "models"
    checkpoint = models / "model.pt" if (models / "model.pt").is_file() else models / "model_final.pt"
    if not checkpoint.is_file():
        raise RuntimeError(f"the pretraining under {root} wrote no checkpoint in {models}.")
    return {
        "checkpoint": str(checkpoint),
        "best_val_mse": float(evaluator.state.best_metric),
        "epochs_run": int(trainer.state.epoch),
        "seconds": clock(),
    }


def set_threads(threads: int | None) -> None:
    """Use ``threads`` torch threads (0 or ``None``: torch's default).

    One thread is the reduced settings' choice: on a small CPU shared with other work, OpenMP threads that
    wait for each other made the same step several times slower and its time erratic.
    """
    if threads:
        torch.set_num_threads(int(threads))


def check_cspr_checkpoint(args) -> None:
    """Refuse ``--inits cspr`` without an existing ``--cspr-checkpoint`` (the fine-tuning benchmarks' CSPR arm)."""
    if "cspr" in args.inits and not (args.cspr_checkpoint and Path(args.cspr_checkpoint).is_file()):
        raise ValueError(
            f"--inits cspr needs --cspr-checkpoint, the models/model.pt of a cspr_pretrain run (got "
            f"{args.cspr_checkpoint!r}); train one with the command in bundles/cspr_pretrain/docs/README.md."
        )
