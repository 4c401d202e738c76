"""Cubes per second of each Genesis corruption and of the whole pipeline, beside a literal loop baseline.

    python benchmarks/transforms.py [--cubes 16] [--repeats 3] [--image VOLUME --window -1000 1000] [--json OUT]

On one CPU thread, 64×64×32 float32 cubes: the per-sample transforms of ``monai_genesis.transforms`` and the
loop-per-block rendering of the same recipe in ``tests/oracle/loop_baseline.py``, measured in the same run. When a
GPU is present, the batched path (``PretextPrepareBatch`` of ``RandGenesisCorruption``) on batches of 32 and 256
cubes too. Prints a Markdown
table; ``--json`` also writes the figures. The CPU rows use the backend ``backend_for("cpu")`` chooses: the compiled
kernels when Numba is installed; ``MONAI_GENESIS_NUMBA=0`` measures the torch code alone.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.oracle import loop_baseline
from monai_genesis.engines import PretextPrepareBatch
from monai_genesis.transforms import (
    RandGenesisCorruption,
    RandInpaint,
    RandLocalPixelShuffle,
    RandNonlinearIntensity,
    RandOutpaint,
    kernels,
)
from monai_genesis.transforms.backend import backend_for

SHAPE = (1, 64, 64, 32)


def make_cubes(n: int, image: str | None, window) -> list[np.ndarray]:
    """``n`` cubes of 64×64×32 in [0, 1]: cut at random from ``image``, or smooth synthetic ones."""
    rng = np.random.RandomState(0)
    if image:
        from monai.transforms import LoadImage

        vol = np.asarray(LoadImage(image_only=True)(image), dtype=np.float32)
        low, high = window if window else np.percentile(vol, [0.5, 99.5])
        vol = (np.clip(vol, low, high) - low) / (high - low)
        starts = [[rng.randint(0, s - c + 1) for s, c in zip(vol.shape, SHAPE[1:])] for _ in range(n)]
        return [vol[x : x + 64, y : y + 64, z : z + 32][None].copy() for x, y, z in starts]
    cubes = []
    for _ in range(n):
        noise = rng.rand(*SHAPE)
        for axis in (1, 2, 3):
            noise = (noise + np.roll(noise, 1, axis) + np.roll(noise, -1, axis)) / 3
        cubes.append(((noise - noise.min()) / (noise.max() - noise.min())).astype(np.float32))
    return cubes


def cpu_model() -> str:
    """The processor's model name (``/proc/cpuinfo`` on Linux), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def rate(fn, inputs, repeats: int, min_seconds: float = 1.0, sync=None) -> float:
    """Calls per second of ``fn`` over ``inputs``: all calls of ``repeats`` runs of at least ``min_seconds`` each,
    over their whole time (a mean, not the luckiest run: the pipeline's cost varies with its random branches)."""
    fn(inputs[0])
    count, elapsed = 0, 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        while True:
            for x in inputs:
                fn(x)
            count += len(inputs)
            if sync:
                sync()
            if time.perf_counter() - start >= min_seconds:
                break
        elapsed += time.perf_counter() - start
    return count / elapsed


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cubes", type=int, default=16, help="distinct cubes cycled through")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per entry")
    parser.add_argument("--min-seconds", type=float, default=3.0, help="shortest timed run")
    parser.add_argument("--image", help="cut the cubes from this volume instead of synthetic ones")
    parser.add_argument("--window", type=float, nargs=2, help="intensity window of --image, e.g. -1000 1000")
    parser.add_argument("--gpu-batches", type=int, nargs="*", default=[32, 256], help="batch sizes on the GPU")
    parser.add_argument("--skip-cpu", action="store_true", help="only the batched GPU rows")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args(argv)

    torch.set_num_threads(1)
    random.seed(0)
    np.random.seed(0)
    cubes = make_cubes(args.cubes, args.image, args.window)
    tensors = [torch.from_numpy(c) for c in cubes]

    def seeded(t):
        t.set_random_state(0)
        return t

    pipeline = seeded(RandGenesisCorruption())
    rows = [
        ("non-linear intensity", lambda x: loop_baseline.nonlinear(x, prob=1.0), seeded(RandNonlinearIntensity(prob=1.0))),
        ("local pixel shuffle", lambda x: loop_baseline.local_shuffle(x, prob=1.0), seeded(RandLocalPixelShuffle(prob=1.0))),
        ("in-painting", loop_baseline.inpaint, seeded(RandInpaint())),
        ("out-painting", loop_baseline.outpaint, seeded(RandOutpaint())),
        ("full pipeline", lambda x: loop_baseline.generate_pair(x), pipeline),
    ]
    results = {"machine": cpu_model(), "threads": 1, "torch": torch.__version__, "cpu": {}}
    # the compiled CPU kernels (MONAI_GENESIS_NUMBA=0 measures the torch code alone)
    results["numba"] = importlib.metadata.version("numba") if kernels.enabled() else None
    results["cpu_backend"] = type(backend_for("cpu")).__name__
    # other work on the machine slows both columns, memory-bound kernels more than the loop
    results["load_average_before"] = list(os.getloadavg())
    for name, baseline, ours in [] if args.skip_cpu else rows:
        loop = rate(baseline, cubes, args.repeats, args.min_seconds)
        fast = rate(ours, tensors, args.repeats, args.min_seconds)
        results["cpu"][name] = {"loop": loop, "monai_genesis": fast, "speedup": fast / loop}

    if torch.cuda.is_available():
        device = torch.device("cuda")
        results["gpu"] = {"device": torch.cuda.get_device_name(device)}
        for batch in args.gpu_batches:
            prepare = PretextPrepareBatch(RandGenesisCorruption(), seed=0)
            data = torch.from_numpy(np.stack([cubes[i % len(cubes)] for i in range(batch)])).to(device)
            per_batch = rate(
                lambda b, prepare=prepare: prepare({"image": b}, device),
                [data],
                args.repeats,
                args.min_seconds,
                sync=torch.cuda.synchronize,
            )
            results["gpu"][f"batch {batch}"] = per_batch * batch

    results["load_average_after"] = list(os.getloadavg())
    print(to_markdown(results))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=2))
    return results


def to_markdown(results: dict) -> str:
    lines = []
    if results["cpu"]:
        lines += [
            "| corruption (64×64×32, 1 CPU thread) | literal loop, cubes/s | monai_genesis, cubes/s | speed-up |",
            "|---|---:|---:|---:|",
        ]
        for name, r in results["cpu"].items():
            lines.append(f"| {name} | {r['loop']:,.0f} | {r['monai_genesis']:,.0f} | {r['speedup']:.1f}× |")
        lines.append("")
    if "gpu" in results:
        lines += [f"| batched `PretextPrepareBatch` on {results['gpu']['device']} | cubes/s |", "|---|---:|"]
        for key, value in results["gpu"].items():
            if key != "device":
                lines.append(f"| full pipeline, {key} | {value:,.0f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
