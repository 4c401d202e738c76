"""Pretraining from the volume store at data-set scale: peak memory against the number of volumes, the loader's
speed with and without workers, and the store's bytes against float32.

    python benchmarks/pretraining_scale.py [--volumes 4 16 64] [--shape 512 512 128] [--work DIR] [--keep]
        [--loader-cubes 3000] [--loader-paths batched items] [--results DIR]

Synthetic CT volumes (int16 HU: air, a body ellipse with two lungs and noise, each volume shifted and seeded
differently) are written as NIfTI under ``--work`` and prepared once into a uint16 store
(``monai_genesis.data.VolumeStore.prepare``). Then, each in a fresh process so its memory is its own:

- ``train N``: one epoch of a quick-setting pretraining (``configs/quick.json``: a U-Net of ``features`` 8,
  32×32×16 cubes, 12 cubes per volume, batch 6, 2 persistent loader workers, corruption on the device by
  ``GenesisPrepareBatch``) over the first N volumes, read lazily by ``StoreCubeDataset`` through the bundle's
  ``collate_fn=collate_store_cubes``, and a validation pass over fixed cubes of one volume; peak resident memory of
  the process tree (main process and workers) sampled every 0.1 s;
- ``loader W path``: the loader alone over all volumes, 64×64×32 cubes shuffled across the volumes, batch 32,
  W = 0 and 2 persistent workers, cubes/s of float32 batches over two epochs after the workers started, with the
  load average over the run. ``batched`` is the bundle's loader (``collate_fn=collate_store_cubes``: whole batches
  read in one call, moved from the workers as uint16 through reused shared buffers, scaled to float32 on arrival);
  ``items`` is the same data set with ``monai.data.DataLoader``'s default collate (one float32 item at a time).
  The store is read once beforehand, so that every loader run reads from the page cache alike.
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
LOADER_PATHS = {
    "batched": "batched (`collate_store_cubes`, the bundle's)",
    "batched_plain": "batched, float32 batches made in the worker (PyTorch's shared-memory hand-over)",
    "items": "one item at a time (default collate)",
}


def collate_in_worker(batch):
    """The batched path without ``monai_genesis.data.worker_batches``: the float32 batch is made in the worker and
    moved as PyTorch moves any tensor (a fresh shared-memory file per batch)."""
    from monai_genesis.data.store_cubes import StoreCubeBatch

    return batch.to_batch() if isinstance(batch, StoreCubeBatch) else None
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

    from monai_genesis.data import StoreCubeDataset, VolumeStore
    from monai_genesis.data.store_cubes import collate_store_cubes
    from monai_genesis.engines import GenesisPrepareBatch
    from monai_genesis.networks import GenesisUNet

    torch.set_num_threads(1)
    set_determinism(0)
    index = VolumeStore(store_dir)
    keys = sorted(index.keys)[:count]
    cube = dict(cube_size=QUICK["patch_size"], border=(100, 100, 30))
    with common.PeakMemory() as memory:
        clock = time.perf_counter()
        train = StoreCubeDataset(index, keys, cubes_per_volume=QUICK["cubes_per_volume"], **cube)
        val = StoreCubeDataset(index, keys[:1], cubes_per_volume=QUICK["val_cubes_per_volume"], fixed=True, **cube)
        loader = DataLoader(train, batch_size=QUICK["batch_size"], shuffle=True, drop_last=True, num_workers=2,
                            persistent_workers=True, collate_fn=collate_store_cubes)
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
            for batch in DataLoader(val, batch_size=1, collate_fn=collate_store_cubes):
                x, y = prepare(batch, torch.device("cpu"))
                net(x)
        seconds = time.perf_counter() - clock
    Path(out).write_text(json.dumps({
        "volumes": count, "steps": steps, "seconds": seconds, "peak_tree_gib": memory.tree_gib,
        "peak_main_gib": memory.main_gib,
    }))


def loader_child(store_dir: str, workers: int, cubes: int, path: str, out: str) -> None:
    """Cubes/s of the loader alone with ``workers`` persistent workers on ``path`` (``batched`` or ``items``);
    writes its figures to ``out``."""
    import torch
    from monai.data import DataLoader
    from monai.utils import set_determinism

    from monai_genesis.data import StoreCubeDataset
    from monai_genesis.data.store_cubes import collate_store_cubes

    torch.set_num_threads(1)
    set_determinism(0)
    ds = StoreCubeDataset(store_dir, cubes_per_volume=1, cube_size=(64, 64, 32), border=(100, 100, 30))
    ds.cubes_per_volume = max(1, cubes // len(ds))
    extra = {"batched": {"collate_fn": collate_store_cubes}, "batched_plain": {"collate_fn": collate_in_worker}}.get(path, {})
    with common.PeakMemory() as memory:
        loader = DataLoader(ds, batch_size=32, shuffle=True, num_workers=workers, persistent_workers=workers > 0,
                            **extra)
        # start the workers and open the first volumes outside the timing
        first = next(iter(loader))
        if first["image"].dtype != torch.float32:
            raise RuntimeError(f"the loader gave {first['image'].dtype} batches, not float32.")
        counted, load, clock = 0, os.getloadavg()[0], time.perf_counter()
        for _ in range(2):
            for batch in loader:
                counted += batch["image"].shape[0]
        seconds = time.perf_counter() - clock
    Path(out).write_text(json.dumps({
        "workers": workers, "path": path, "cubes": counted, "seconds": seconds, "cubes_per_s": counted / seconds,
        "load_average": [load, os.getloadavg()[0]], "peak_tree_gib": memory.tree_gib,
    }))


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
    parser.add_argument("--loader-paths", nargs="+", choices=tuple(LOADER_PATHS), default=["batched", "items"],
                        help="loader paths to time: the bundle's batched one, the same without the reused shared "
                             "buffers (batched_plain), and one float32 item at a time")
    parser.add_argument("--skip-train", action="store_true", help="time the loader only (no training runs)")
    parser.add_argument("--results", default=str(common.DEFAULT_RESULTS), help="folder of the result files")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        kind, *rest = args.child
        if kind == "train":
            train_child(rest[0], int(rest[1]), rest[2])
        else:
            loader_child(rest[0], int(rest[1]), int(rest[2]), rest[3], rest[4])
        return {}

    common.setup_logging()
    import torch

    from monai_genesis.data import StoreSettings, VolumeStore

    work = Path(args.work)
    free = shutil.disk_usage(work.parent if work.parent.exists() else "/").free
    need = max(args.volumes) * int(np.prod(args.shape)) * 4  # int16 NIfTI + uint16 store
    if free < need * 1.2:
        raise SystemExit(f"{work} needs about {need / 2**30:.1f} GiB of disk, {free / 2**30:.1f} GiB are free; "
                         "pass fewer --volumes or a smaller --shape.")
    clock = common.Stopwatch()
    paths = write_volumes(work / "volumes", max(args.volumes), args.shape)
    logger.info(f"{len(paths)} volumes written in {clock():.0f} s")
    start, started = time.perf_counter(), time.time()
    index = VolumeStore.prepare(paths, str(work / "store"), StoreSettings(intensity="ct"))
    prepare_s = time.perf_counter() - start
    # a kept store (--keep) is reused: say how many volumes this run prepared itself
    fresh = sum(os.path.getmtime(v.path) >= started for v in index)
    stored = index.nbytes()
    float32 = sum(int(np.prod(v.shape)) * 4 for v in index)
    logger.info(f"store prepared in {prepare_s:.0f} s: {stored / 2**30:.2f} GiB, float32 {float32 / 2**30:.2f} GiB")

    results = {
        "command": common.command_line(__file__, argv),
        "machine": common.machine_info(torch.device("cpu")),
        "shape": args.shape,
        "store": {"volumes": len(paths), "bytes": stored, "float32_bytes": float32, "ratio": stored / float32,
                  "prepare_seconds": prepare_s, "prepared_in_this_run": fresh},
        "train": [],
        "loader": [],
    }
    for count in [] if args.skip_train else args.volumes:
        run = run_child(["train", str(work / "store"), str(count), str(work / f"train_{count}.json")])
        logger.info(f"train over {count} volumes: peak {run['peak_tree_gib']:.2f} GiB, {run['seconds']:.0f} s")
        results["train"].append(run)
    # the loader runs time reads from the page cache (the store fits in RAM here), not the first run's disk reads
    warm = time.perf_counter()
    for volume in index:
        with open(volume.path, "rb") as f:
            while f.read(1 << 24):
                pass
    results["store"]["page_cache_warm_seconds"] = time.perf_counter() - warm
    for path in args.loader_paths:
        for workers in (0, 2):
            run = run_child(["loader", str(work / "store"), str(workers), str(args.loader_cubes), path,
                             str(work / f"loader_{path}_{workers}.json")])
            logger.info(f"{path} loader with {workers} workers: {run['cubes_per_s']:.0f} cubes/s, load average "
                        f"{run['load_average'][0]:.1f}")
            results["loader"].append(run)
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)

    table = to_markdown(results)
    print(table)
    common.write_results(args.results, "pretraining_scale_cpu", results, table)
    return results


def to_markdown(results: dict) -> str:
    shape = "×".join(str(s) for s in results["shape"])
    base = results["train"][0]["peak_tree_gib"] if results["train"] else 1.0
    train = "" if not results["train"] else common.markdown_table(
        ["volumes (" + shape + ")", "steps", "seconds", "peak RSS, process tree (GiB)", "vs the smallest run"],
        [[r["volumes"], r["steps"], f"{r['seconds']:.0f}", f"{r['peak_tree_gib']:.2f}",
          f"{(r['peak_tree_gib'] / base - 1) * 100:+.0f}%"] for r in results["train"]],
    )
    loader = common.markdown_table(
        ["loader alone, 64×64×32 cubes, batch 32", "workers", "cubes/s", "load average (start, end)",
         "peak RSS, process tree (GiB)"],
        [[LOADER_PATHS[r.get("path", "items")], f"{r['workers']} persistent" if r["workers"] else "none",
          f"{r['cubes_per_s']:,.0f}", ", ".join(f"{v:.1f}" for v in r.get("load_average", [])),
          f"{r['peak_tree_gib']:.2f}" if "peak_tree_gib" in r else "–"] for r in results["loader"]],
    )
    s = results["store"]
    fresh = s.get("prepared_in_this_run", s["volumes"])
    prepared = (f"prepared in {s['prepare_seconds']:.0f} s" if fresh == s["volumes"] else
                f"{fresh} volumes prepared in this run ({s['prepare_seconds']:.0f} s), the others kept from an "
                "earlier run with the same settings (--keep)")
    store = (f"Store: {s['volumes']} volumes, {s['bytes'] / 2**30:.2f} GiB on disk against "
             f"{s['float32_bytes'] / 2**30:.2f} GiB as float32 ({s['ratio']:.2f}); {prepared}.")
    return f"{train}\n\n{loader}\n\n{store}"


if __name__ == "__main__":
    main()
