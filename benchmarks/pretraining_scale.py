"""Pretraining from the volume store at data-set scale: peak memory against the number of volumes, the loader's
speed with and without workers, and the store's bytes against float32.

    python benchmarks/pretraining_scale.py [--volumes 4 16 64] [--shape 512 512 128] [--work DIR] [--keep]
        [--loader-cubes 3000] [--results DIR]

Synthetic CT volumes (int16 HU: air, a body ellipse with two lungs and noise, each volume shifted and seeded
differently) are written as NIfTI under ``--work`` and prepared once into a uint16 store
(``monai_genesis.data.prepare_store``). Then, each in a fresh process so its memory is its own:

- ``train N``: one epoch of a quick-setting pretraining (``configs/quick.json``: a U-Net of ``features`` 8,
  32×32×16 cubes, 12 cubes per volume, batch 6, 2 persistent loader workers, corruption on the device by
  ``GenesisPrepareBatch``) over the first N volumes, read lazily by ``StoreCubeDataset``, and a validation pass over
  fixed cubes of one volume; peak resident memory of the process tree (main process and workers) sampled every
  0.1 s;
- ``loader W``: the loader alone over all volumes, 64×64×32 cubes, batch 32, W = 0 and 2 persistent workers,
  cubes/s over two epochs after the workers started.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import common

logger = logging.getLogger("benchmarks.pretraining_scale")
QUICK = json.loads((common.REPO / "configs" / "quick.json").read_text())


def synthetic_ct(shape, seed: int) -> np.ndarray:
    """An int16 HU volume: air around a body ellipse of soft tissue holding two lungs, with noise."""
    rng = np.random.default_rng(seed)
    x, y = np.meshgrid(np.linspace(-1, 1, shape[0]), np.linspace(-1, 1, shape[1]), indexing="ij")
    dx, dy = rng.uniform(-0.05, 0.05, 2)
    body = ((x - dx) / 0.85) ** 2 + ((y - dy) / 0.65) ** 2 < 1
    lungs = (((np.abs(x - dx) - 0.4) / 0.3) ** 2 + ((y - dy) / 0.45) ** 2) < 1
    plane = np.where(body, 40, -1000).astype(np.int16)
    plane[lungs & body] = -850
    vol = np.repeat(plane[:, :, None], shape[2], axis=2)
    vol += rng.integers(-30, 30, size=shape, dtype=np.int16)
    return vol


def write_volumes(folder: Path, count: int, shape) -> list[str]:
    """``count`` synthetic CTs as NIfTI in ``folder`` (kept between runs of the same shape)."""
    import nibabel as nib

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        path = folder / f"ct_{i:03d}.nii"
        if not path.is_file():
            nib.save(nib.Nifti1Image(synthetic_ct(shape, i), np.diag([0.7, 0.7, 2.5, 1.0])), str(path))
        paths.append(str(path))
    return paths


def train_child(store_dir: str, count: int, out: str) -> None:
    """One quick epoch from the store over ``count`` volumes; writes its figures to ``out``."""
    import torch
    from monai.data import DataLoader
    from monai.utils import set_determinism

    from monai_genesis.data import StoreCubeDataset, load_store_index
    from monai_genesis.engines import GenesisPrepareBatch
    from monai_genesis.networks import GenesisUNet

    torch.set_num_threads(1)
    set_determinism(0)
    index = load_store_index(store_dir)
    keys = sorted(index["volumes"])[:count]
    cube = dict(cube_size=QUICK["patch_size"], border=(100, 100, 30))
    with common.PeakMemory() as memory:
        clock = time.perf_counter()
        train = StoreCubeDataset(index, keys, cubes_per_volume=QUICK["cubes_per_volume"], **cube)
        val = StoreCubeDataset(index, keys[:1], cubes_per_volume=QUICK["val_cubes_per_volume"], fixed=True, **cube)
        loader = DataLoader(train, batch_size=QUICK["batch_size"], shuffle=True, drop_last=True, num_workers=2,
                            persistent_workers=True)
        net = GenesisUNet(features=QUICK["genesis_features"])
        optimizer = torch.optim.SGD(net.parameters(), lr=1.0, momentum=0.9)
        prepare = GenesisPrepareBatch(seed=0)
        steps = 0
        for batch in loader:
            x, y = prepare(batch, torch.device("cpu"))
            loss = torch.nn.functional.mse_loss(net(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            steps += 1
        with torch.no_grad():
            for batch in DataLoader(val, batch_size=1):
                x, y = prepare(batch, torch.device("cpu"))
                net(x)
        seconds = time.perf_counter() - clock
    Path(out).write_text(json.dumps({
        "volumes": count, "steps": steps, "seconds": seconds, "peak_tree_gib": memory.tree_gib,
        "peak_main_gib": memory.main_gib,
    }))


def loader_child(store_dir: str, workers: int, cubes: int, out: str) -> None:
    """Cubes/s of the loader alone with ``workers`` persistent workers; writes its figures to ``out``."""
    import torch
    from monai.data import DataLoader
    from monai.utils import set_determinism

    from monai_genesis.data import StoreCubeDataset

    torch.set_num_threads(1)
    set_determinism(0)
    ds = StoreCubeDataset(store_dir, cubes_per_volume=1, cube_size=(64, 64, 32), border=(100, 100, 30))
    per_epoch = len(ds)
    ds.cubes_per_volume = max(1, cubes // per_epoch)
    loader = DataLoader(ds, batch_size=32, shuffle=True, num_workers=workers, persistent_workers=workers > 0)
    iter(loader).__next__() if workers == 0 else next(iter(loader))  # start the workers, map the first volumes
    counted, clock = 0, time.perf_counter()
    for _ in range(2):
        for batch in loader:
            counted += batch["image"].shape[0]
    seconds = time.perf_counter() - clock
    Path(out).write_text(json.dumps({"workers": workers, "cubes": counted, "seconds": seconds,
                                     "cubes_per_s": counted / seconds}))


def run_child(args: list[str]) -> dict:
    out = Path(args[-1])
    subprocess.run([sys.executable, __file__, "--child", *args], check=True,
                   env=dict(os.environ, OMP_NUM_THREADS="1"))
    return json.loads(out.read_text())


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--volumes", type=int, nargs="+", default=[4, 16, 64], help="data-set sizes of the runs")
    parser.add_argument("--shape", type=int, nargs=3, default=[512, 512, 128], help="size of each synthetic CT")
    parser.add_argument("--work", default="/tmp/monai_genesis_scale", help="folder of the volumes and the store")
    parser.add_argument("--keep", action="store_true", help="keep the volumes and the store afterwards")
    parser.add_argument("--loader-cubes", type=int, default=3000, help="cubes per epoch of the loader runs")
    parser.add_argument("--results", default=str(common.DEFAULT_RESULTS), help="folder of the result files")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        kind, *rest = args.child
        if kind == "train":
            train_child(rest[0], int(rest[1]), rest[2])
        else:
            loader_child(rest[0], int(rest[1]), int(rest[2]), rest[3])
        return {}

    common.setup_logging()
    import torch

    from monai_genesis.data import prepare_store

    work = Path(args.work)
    free = shutil.disk_usage(work.parent if work.parent.exists() else "/").free
    need = max(args.volumes) * int(np.prod(args.shape)) * 4  # int16 NIfTI + uint16 store
    if free < need * 1.2:
        raise SystemExit(f"{work} needs about {need / 2**30:.1f} GiB of disk, {free / 2**30:.1f} GiB are free; "
                         "pass fewer --volumes or a smaller --shape.")
    clock = common.Stopwatch()
    paths = write_volumes(work / "volumes", max(args.volumes), args.shape)
    logger.info(f"{len(paths)} volumes written in {clock():.0f} s")
    start = time.perf_counter()
    index = prepare_store(paths, str(work / "store"), intensity="ct")
    prepare_s = time.perf_counter() - start
    stored = sum(os.path.getsize(work / "store" / r["file"]) for r in index["volumes"].values())
    float32 = sum(int(np.prod(r["shape"])) * 4 for r in index["volumes"].values())
    logger.info(f"store prepared in {prepare_s:.0f} s: {stored / 2**30:.2f} GiB, float32 {float32 / 2**30:.2f} GiB")

    results = {
        "command": common.command_line(__file__, argv),
        "machine": common.machine_info(torch.device("cpu")),
        "shape": args.shape,
        "store": {"volumes": len(paths), "bytes": stored, "float32_bytes": float32, "ratio": stored / float32,
                  "prepare_seconds": prepare_s},
        "train": [],
        "loader": [],
    }
    for count in args.volumes:
        run = run_child(["train", str(work / "store"), str(count), str(work / f"train_{count}.json")])
        logger.info(f"train over {count} volumes: peak {run['peak_tree_gib']:.2f} GiB, {run['seconds']:.0f} s")
        results["train"].append(run)
    for workers in (0, 2):
        run = run_child(["loader", str(work / "store"), str(workers), str(args.loader_cubes),
                         str(work / f"loader_{workers}.json")])
        logger.info(f"loader with {workers} workers: {run['cubes_per_s']:.0f} cubes/s")
        results["loader"].append(run)
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)

    table = to_markdown(results)
    print(table)
    common.write_results(args.results, "pretraining_scale_cpu", results, table)
    return results


def to_markdown(results: dict) -> str:
    shape = "×".join(str(s) for s in results["shape"])
    base = results["train"][0]["peak_tree_gib"]
    train = common.markdown_table(
        ["volumes (" + shape + ")", "steps", "seconds", "peak RSS, process tree (GiB)", "vs the smallest run"],
        [[r["volumes"], r["steps"], f"{r['seconds']:.0f}", f"{r['peak_tree_gib']:.2f}",
          f"{(r['peak_tree_gib'] / base - 1) * 100:+.0f}%"] for r in results["train"]],
    )
    loader = common.markdown_table(
        ["loader alone, 64×64×32 cubes, batch 32", "cubes/s"],
        [[f"{r['workers']} persistent workers" if r["workers"] else "no worker", f"{r['cubes_per_s']:,.0f}"]
         for r in results["loader"]],
    )
    s = results["store"]
    store = (f"Store: {s['volumes']} volumes, {s['bytes'] / 2**30:.2f} GiB on disk against "
             f"{s['float32_bytes'] / 2**30:.2f} GiB as float32 ({s['ratio']:.2f}); prepared in "
             f"{s['prepare_seconds']:.0f} s.")
    return f"{train}\n\n{loader}\n\n{store}"


if __name__ == "__main__":
    main()
