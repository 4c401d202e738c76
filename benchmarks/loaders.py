"""Our volume store side by side with the loaders a user would pick instead, for 3D pretraining cubes and patches.

    python benchmarks/loaders.py [--volumes 4 16 64] [--shape 512 512 160] [--patches cube patch160]
        [--workers 0 2] [--loaders ours torchio monai_cache ...] [--real-copies 16] [--seconds 10]
        [--work DIR] [--keep] [--results DIR] [--tag TAG]

For every number of volumes N, patch setting (``cube``: 64×64×32 cubes in batches of 6, the Genesis recipe;
``patch160``: 160³ patches in batches of 2, masked image modelling) and loader worker count W, each loader runs in a
fresh process (its memory is its own) and gives float32 batches ``(B, 1, *patch)`` of CT windowed to [0, 1]:

- ``ours``: ``StoreCubeDataset`` over the uint16 volume store, ``collate_fn=collate_store_cubes`` (as the bundles);
- ``torchio``: ``SubjectsDataset`` of the NIfTI files + ``Queue`` + ``UniformSampler``, the intensity window as
  TorchIO transforms of the subject (``Clamp``, ``RescaleIntensity``), the queue's own W workers loading subjects and
  the outer ``DataLoader`` with none, as TorchIO documents;
- ``monai_cache`` / ``monai_cache_nocopy``: ``CacheDataset`` (every volume loaded, windowed and cached as float32
  at start-up) + ``RandSpatialCropSamplesd``, default ``copy_cache=True`` and the tuned ``copy_cache=False``;
- ``monai_persistent``: ``PersistentDataset`` (the windowed float32 volumes cached on disk as ``.pt``) +
  ``RandSpatialCropSamplesd``;
- ``nnssl_blosc2``: the volumes windowed and written as blosc2 ``.b2nd`` arrays, float32, ZSTD level 8, chunks and
  blocks chosen by nnU-Net's rule (blocks within the L1 cache, chunks within the L3 cache of one core, at most 1.5×
  the patch), opened memory-mapped with one decompression thread and cropped on read (one patch per item), the way
  nnU-Net v2 and nnssl read their preprocessed cases; the rule is re-implemented here, not copied.

Every run is a process forked from one server that imported torch, MONAI, monai_genesis, TorchIO and blosc2 once
(``multiprocessing``'s ``forkserver``): the same modules for every loader, no run timing its imports.
Figures per run: cubes/s counted in cubes (a MONAI item gives ``num_samples`` cubes, a TorchIO queue item one),
measured for ``--seconds`` after ``--warmup`` batches; the time to the first batch (data set built, workers started,
caches filled); the one-off preparation done once for all runs of a data-set size (store, persistent cache, blosc2
files: timed in this process, reported per volume); the peak RSS of the process tree (main process and workers,
``common.PeakMemory``: shared pages count once per process); the disk bytes the loader reads. Also the limit: the
cubes/s at which one core copies a cube's bytes out of the page cache (one ``pread`` of as many contiguous bytes as
the stored cube, from a warm file) and out of memory (``memcpy`` of its float32 bytes).

Choices that favour a loader (all stated in the result file too):

- every file a loader reads is read once before its run, so all read from the page cache, none from the disk;
- MONAI cuts K cubes from each volume it loads, K = the batch (6 or 2), TorchIO K = 32 (``samples_per_volume``,
  and ``max_length``): the per-volume load or copy is shared by K cubes, and a batch holds the cubes of fewer
  volumes than ours or blosc2's (one volume per cube);
- every loader's epoch holds N × 32 cubes (``--cubes-per-volume``; MONAI's through a ``RandomSampler`` of N × 32 / K
  items), so none restarts its epochs more often than ours;
- all use one torch / OpenMP thread per process, blosc2 one decompression thread (nnssl's setting);
- the positions are uniform everywhere in the volume (``border=0`` for ours, ``UniformSampler``,
  ``RandSpatialCropSamplesd``): no lung filter or label sampling, which only ours would pay for here;
- MONAI and TorchIO loaders get persistent workers where the API allows (TorchIO's queue restarts its subject
  workers every epoch, its documented behaviour).

The peers (extra ``benchmark``) install without touching torch as::

    pip install --no-deps torchio blosc2 simpleitk deprecated wrapt humanize jaxtyping wadler-lindig scipy rich \
        markdown-it-py mdurl pygments typer click shellingham msgpack ndindex threadpoolctl httpx httpcore h11 anyio \
        sniffio pydantic pydantic-core annotated-types typing-inspection

The full setting (64 volumes of 512×512×160, 80 MiB each as int16) needs 5 GiB of NIfTI, 5 GiB of store, 10 GiB of
persistent cache, about 5 GiB of blosc2 files per patch setting and 10 GiB of RAM for the volumes of a
``CacheDataset`` (computed from the sizes, not measured); pass a smaller ``--shape`` on a small machine
(the run in ``benchmarks/results/`` says which it used). 160 slices, not the CT's usual 128: a 160³ patch does not fit
in 128 slices without padding.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import shutil
import sys
import time
import traceback
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import common

logger = logging.getLogger("benchmarks.loaders")

PATCHES = {
    "cube": {"size": (64, 64, 32), "batch": 6, "label": "64×64×32 cubes, batch 6"},
    "patch160": {"size": (160, 160, 160), "batch": 2, "label": "160³ patches, batch 2"},
}
LOADERS = {
    "ours": "ours: StoreCubeDataset (uint16 store, collate_store_cubes)",
    "torchio": "TorchIO SubjectsDataset + Queue + UniformSampler",
    "monai_cache": "MONAI CacheDataset + RandSpatialCropSamplesd",
    "monai_cache_nocopy": "MONAI CacheDataset(copy_cache=False) + RandSpatialCropSamplesd",
    "monai_persistent": "MONAI PersistentDataset + RandSpatialCropSamplesd",
    "nnssl_blosc2": "blosc2 memory-mapped crop, nnssl's way (float32, ZSTD 8)",
}
# the CT window of the Genesis recipe, applied by every loader
WINDOW = (-1000.0, 1000.0)
# nnU-Net's cache sizes for the blosc2 chunk rule: the L1 and L3 cache of one core, and its safety factor
L1_BYTES, L3_BYTES, CACHE_SAFETY = 32768, 1441792, 0.8
FAVOURS = [
    "every file a loader reads is read once before its run: all read from the page cache, none from the disk",
    ("MONAI cuts K = batch cubes from each volume it loads (num_samples), TorchIO K = 32 (samples_per_volume, the "
    "queue's max_length too): the load or copy of a volume is shared by K cubes, and their batches hold cubes of "
    "fewer volumes"),
    ("every loader's epoch holds N × 32 cubes (MONAI's through a RandomSampler of N × 32 / K items), so none pays its "
    "epoch restarts more often than ours"),
    "one torch/OpenMP thread per process and one blosc2 decompression thread (nnssl's setting) for every loader",
    ("uniform positions for all (border 0 for ours, UniformSampler, RandSpatialCropSamplesd): no lung filter or "
    "label sampling, which only ours would pay for here"),
    ("persistent loader workers wherever the API allows (TorchIO's queue restarts its subject workers every epoch, "
    "as documented)"),
    ("one-off preparations (store, persistent cache, blosc2 files) are timed apart from the runs, once per data set; "
    "the blosc2 file of the real CT is compressed once and linked for its copies"),
]


# -- blosc2 files as nnssl reads them ---------------------------------------------------------------------------------


def blosc2_layout(image_shape, patch, itemsize: int = 4) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Blocks and chunks of a channel-first array of ``image_shape`` read in ``patch`` crops, by nnU-Net's rule:
    blocks of power-of-two sides that fit in the L1 cache of a core, chunks of whole blocks up to the L3 cache of a
    core and at most 1.5× the patch on average."""
    spatial = list(image_shape[1:])
    block = [min(2 ** max(0, math.ceil(math.log2(p))), s) for p, s in zip(patch, spatial)]
    while np.prod(block) * image_shape[0] * itemsize > L1_BYTES * CACHE_SAFETY:
        # halve the side that is largest against the patch
        axis = max((a for a in range(len(block)) if block[a] > 1), key=lambda a: block[a] / patch[a])
        block[axis] = max(1, block[axis] // 2)
    chunk = list(block)
    while np.prod(chunk) * image_shape[0] * itemsize < L3_BYTES * CACHE_SAFETY and chunk != spatial:
        # add one block along the axis holding the fewest blocks (that can still grow)
        axis = min((a for a in range(len(chunk)) if chunk[a] < spatial[a]), key=lambda a: chunk[a] / block[a])
        grown = min(chunk[axis] + block[axis], spatial[axis])
        if np.mean([(grown if a == axis else c) / p for a, (c, p) in enumerate(zip(chunk, patch))]) > 1.5:
            break
        chunk[axis] = grown
    return (image_shape[0], *block), (image_shape[0], *chunk)


def windowed(path: str) -> np.ndarray:
    """A NIfTI CT as channel-first float32 in [0, 1] (the window every loader applies)."""
    import nibabel as nib

    values = np.asarray(nib.load(path).dataobj, dtype=np.float32)
    return np.clip((values - WINDOW[0]) / (WINDOW[1] - WINDOW[0]), 0, 1)[None]


def write_blosc2(paths, folder: Path, patch) -> list[str]:
    import blosc2

    blosc2.set_nthreads(1)
    folder.mkdir(parents=True, exist_ok=True)
    out, written = [], {}
    for path in paths:
        target = folder / (Path(path).name.split(".")[0] + ".b2nd")
        source = os.path.realpath(path)
        if not target.is_file() and source in written:
            # a copy of a volume written already (the real CT under several names): linked, not compressed again
            os.link(written[source], target)
        if not target.is_file():
            data = windowed(path)
            blocks, chunks = blosc2_layout(data.shape, patch)
            tmp = target.with_suffix(".tmp.b2nd")
            # written with every core (nnssl preprocesses in parallel too); read with one thread
            blosc2.asarray(data, urlpath=str(tmp), chunks=chunks, blocks=blocks, mode="w",
                           cparams={"codec": blosc2.Codec.ZSTD, "clevel": 8, "nthreads": os.cpu_count() or 1})
            os.replace(tmp, target)
        written.setdefault(source, str(target))
        out.append(str(target))
    return out


class Blosc2Crops:
    """Random crops of blosc2 files opened memory-mapped (once per process), one patch per item, as nnssl."""

    def __init__(self, files, patch, length: int, seed: int = 0) -> None:
        self.files, self.patch, self.length, self.seed = list(files), tuple(patch), int(length), seed
        self._open: dict[int, object] = {}
        self._rng = None

    def __len__(self) -> int:
        return self.length

    def __getstate__(self):
        return {**self.__dict__, "_open": {}, "_rng": None}

    def __getitem__(self, index: int):
        import blosc2
        import torch

        if self._rng is None:
            worker = torch.utils.data.get_worker_info()
            self._rng = np.random.default_rng((self.seed, worker.id + 1 if worker else 0))
        k = index % len(self.files)
        if k not in self._open:
            self._open[k] = blosc2.open(self.files[k], mode="r", mmap_mode="r", dparams={"nthreads": 1})
        array = self._open[k]
        starts = [int(self._rng.integers(0, s - p + 1)) for s, p in zip(array.shape[1:], self.patch)]
        crop = array[(slice(None), *(slice(s, s + p) for s, p in zip(starts, self.patch)))]
        return torch.from_numpy(np.ascontiguousarray(crop))


# -- one loader run (in its own process) ------------------------------------------------------------------------------


def monai_transform(patch, k: int):
    from monai.transforms import (
        Compose,
        EnsureChannelFirstd,
        LoadImaged,
        RandSpatialCropSamplesd,
        ScaleIntensityRanged,
    )

    return Compose([
        LoadImaged(keys="image", image_only=True),
        EnsureChannelFirstd(keys="image"),
        ScaleIntensityRanged(keys="image", a_min=WINDOW[0], a_max=WINDOW[1], b_min=0.0, b_max=1.0, clip=True),
        RandSpatialCropSamplesd(keys="image", roi_size=patch, num_samples=k, random_size=False),
    ])


def build_loader(spec: dict):
    """The batches of ``spec["loader"]`` as an iterable over one epoch, and a function giving a batch's float32
    tensor."""
    import torch
    from monai.data import DataLoader

    name, workers, patch, batch = spec["loader"], spec["workers"], tuple(spec["patch"]), spec["batch"]
    paths = spec["paths"]
    persistent = dict(num_workers=workers, persistent_workers=workers > 0)
    if name == "ours":
        from monai_genesis.data import StoreCubeDataset, VolumeStore
        from monai_genesis.data.store_cubes import collate_store_cubes

        store = VolumeStore(spec["store"])
        dataset = StoreCubeDataset(store, data=paths, cube_size=patch, cubes_per_volume=spec["cubes_per_volume"],
                                   border=0)
        return DataLoader(dataset, batch_size=batch, shuffle=True, drop_last=True, collate_fn=collate_store_cubes,
                          **persistent), lambda b: b["image"]
    if name == "torchio":
        import torchio as tio

        transform = tio.Compose([tio.Clamp(*WINDOW), tio.RescaleIntensity(out_min_max=(0, 1), in_min_max=WINDOW)])
        subjects = tio.SubjectsDataset([tio.Subject(image=tio.ScalarImage(p)) for p in paths], transform=transform)
        per_volume = spec["cubes_per_volume"]
        queue = tio.Queue(subjects, max_length=per_volume, samples_per_volume=per_volume,
                          sampler=tio.UniformSampler(patch), num_workers=workers)
        return torch.utils.data.DataLoader(queue, batch_size=batch, num_workers=0), \
            lambda b: b["image"][tio.DATA].float()
    data = [{"image": p} for p in paths]
    transform = monai_transform(patch, batch)
    if name in ("monai_cache", "monai_cache_nocopy"):
        from monai.data import CacheDataset

        dataset = CacheDataset(data, transform, progress=False, copy_cache=name == "monai_cache")
    elif name == "monai_persistent":
        from monai.data import PersistentDataset

        dataset = PersistentDataset(data, transform, cache_dir=spec["persistent"])
    elif name == "nnssl_blosc2":
        dataset = Blosc2Crops(spec["blosc2"], patch, length=len(paths) * spec["cubes_per_volume"])
        return DataLoader(dataset, batch_size=batch, shuffle=True, drop_last=True, **persistent), lambda b: b
    else:
        raise ValueError(f"unknown loader {name!r}; choose from {sorted(LOADERS)}.")
    # one item is one volume cut into ``batch`` cubes; epochs as long as the others' (N × cubes_per_volume cubes)
    sampler = torch.utils.data.RandomSampler(dataset, num_samples=len(paths) * spec["cubes_per_volume"] // batch)
    return DataLoader(dataset, batch_size=1, sampler=sampler, **persistent), lambda b: b["image"]


def run_child(spec: dict) -> dict:
    import torch

    torch.set_num_threads(1)
    torch.manual_seed(0)
    np.random.seed(0)
    patch, expected = tuple(spec["patch"]), spec["batch"]
    # imported before the clock: the first batch times the loader, not the imports
    import monai.data
    import monai.transforms  # noqa: F401

    import monai_genesis.data  # noqa: F401
    if spec["loader"] in ("torchio", "nnssl_blosc2"):
        __import__({"torchio": "torchio", "nnssl_blosc2": "blosc2"}[spec["loader"]])
    with common.PeakMemory() as memory:
        clock = time.perf_counter()
        loader, tensor = build_loader(spec)
        batches = iter(loader)
        first = tensor(next(batches))
        startup = time.perf_counter() - clock
        if first.dtype != torch.float32 or tuple(first.shape) != (expected, 1, *patch):
            raise RuntimeError(f"{spec['loader']} gave a {first.dtype} batch of {tuple(first.shape)}, "
                               f"not float32 {(expected, 1, *patch)}.")
        if not 0.0 <= float(first.min()) <= float(first.max()) <= 1.0:
            raise RuntimeError(f"{spec['loader']} gave values outside [0, 1].")

        def stream():
            nonlocal batches
            while True:
                for b in batches:
                    yield tensor(b)
                batches = iter(loader)

        source = stream()
        for _ in range(spec["warmup"]):
            next(source)
        load = os.getloadavg()[0]
        cubes, start = 0, time.perf_counter()
        while time.perf_counter() - start < spec["seconds"]:
            cubes += next(source).shape[0]
        seconds = time.perf_counter() - start
    return {
        "loader": spec["loader"], "volumes": len(spec["paths"]), "patch": spec["patch_name"],
        "workers": spec["workers"], "batch": spec["batch"], "data": spec["data"], "cubes": cubes,
        "seconds": seconds, "cubes_per_s": cubes / seconds, "startup_s": startup,
        "peak_tree_gib": memory.tree_gib, "load_average": [load, os.getloadavg()[0]],
    }


# imported once by the fork server that starts every run, so that no run spends its time importing
PRELOAD = ["torch", "nibabel", "monai.data", "monai.transforms", "monai_genesis.data", "torchio", "blosc2",
           "benchmarks.loaders"]
_SERVER: list = []


def child_entry(spec: dict, out: str) -> None:
    """One run in a process of its own; its figures (or its traceback) written to ``out``."""
    import multiprocessing

    # loader workers are forked from this process, as from any training script (not started by a fork server)
    multiprocessing.set_start_method("fork", force=True)
    try:
        result = run_child(spec)
    except BaseException:  # noqa: BLE001 - the parent reports the run as failed, with this traceback
        result = {"error": traceback.format_exc()}
    Path(out).write_text(json.dumps(result))


def fork_server():
    """The ``forkserver`` context whose server has imported :py:data:`PRELOAD` (one thread per process)."""
    if not _SERVER:
        import importlib.util
        import multiprocessing

        os.environ["OMP_NUM_THREADS"] = "1"
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload([m for m in PRELOAD if importlib.util.find_spec(m.split(".")[0])])
        _SERVER.append(context)
    return _SERVER[0]


def run_isolated(spec: dict, work: Path) -> dict:
    """Run ``spec`` in a fresh process forked from the fork server (its memory is its own); its figures."""
    from benchmarks import loaders  # the target is found by its module name in the server

    out = work / "run.json"
    out.unlink(missing_ok=True)
    process = fork_server().Process(target=loaders.child_entry, args=(spec, str(out)))
    process.start()
    process.join()
    result = json.loads(out.read_text()) if out.is_file() else {"error": f"exit code {process.exitcode}"}
    if "error" in result:
        raise RuntimeError(f"the {spec['loader']} run failed:\n{result['error'][-4000:]}")
    return result


# -- preparation, the copy limit ----------------------------------------------------------------------------------------


def warm(files) -> None:
    """Read ``files`` once, so the runs read them from the page cache."""
    for name in files:
        with open(name, "rb") as f:
            while f.read(1 << 24):
                pass


def files_under(folder: Path) -> list[str]:
    return [str(p) for p in folder.rglob("*") if p.is_file()]


def nbytes(files) -> int:
    return sum(os.path.getsize(f) for f in files)


def copy_limit(store_file: str, patch, seconds: float = 2.0) -> dict:
    """Cubes/s of one core copying a cube's bytes: one ``pread`` of the stored cube's bytes (uint16) from a warm
    file, and a ``memcpy`` of its float32 bytes in memory."""
    raw = int(np.prod(patch)) * 2
    size = os.path.getsize(store_file)
    if size < raw + 4096:
        return {"bytes_stored": raw}
    buffer = np.empty(raw, np.uint8)
    rng = np.random.default_rng(0)
    fd = os.open(store_file, os.O_RDONLY)
    try:
        count, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            os.preadv(fd, [buffer], int(rng.integers(0, size - raw)) & ~4095)
            count += 1
        pread = count / (time.perf_counter() - start)
    finally:
        os.close(fd)
    source = np.random.default_rng(0).random((16, int(np.prod(patch))), dtype=np.float32)
    target = np.empty(int(np.prod(patch)), np.float32)
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        np.copyto(target, source[count % 16])
        count += 1
    memcpy = count / (time.perf_counter() - start)
    return {"pread_cubes_per_s": pread, "memcpy_float32_cubes_per_s": memcpy, "bytes_stored": raw}


def prepare(args, paths: list[str], work: Path, patches: list[str], loaders: list[str]) -> dict:
    """The one-off preparations every run of this data set shares, timed: the store, the persistent cache, blosc2."""
    import torch

    from monai_genesis.data import StoreSettings, VolumeStore

    done: dict = {"volumes": len(paths)}
    if "ours" in loaders:
        clock = time.perf_counter()
        store = VolumeStore.prepare(paths, str(work / "store"), StoreSettings(intensity="ct"), progress=False)
        done["ours"] = {"seconds": time.perf_counter() - clock, "bytes": store.nbytes(),
                        "files": [store[p].path for p in paths]}
    if "monai_persistent" in loaders:
        from monai.data import PersistentDataset

        cache = work / "persistent"
        clock = time.perf_counter()
        torch.set_num_threads(1)
        dataset = PersistentDataset([{"image": p} for p in paths], monai_transform((8, 8, 8), 1), cache_dir=cache)
        for i in range(len(dataset)):
            dataset[i]
        done["monai_persistent"] = {"seconds": time.perf_counter() - clock, "bytes": nbytes(files_under(cache)),
                                    "files": files_under(cache)}
    if "nnssl_blosc2" in loaders:
        done["nnssl_blosc2"] = {}
        for name in patches:
            clock = time.perf_counter()
            files = write_blosc2(paths, work / f"blosc2_{name}", PATCHES[name]["size"])
            done["nnssl_blosc2"][name] = {"seconds": time.perf_counter() - clock, "bytes": nbytes(files),
                                          "files": files}
    for name in ("torchio", "monai_cache", "monai_cache_nocopy"):
        if name in loaders:
            done[name] = {"seconds": 0.0, "bytes": nbytes(paths), "files": list(paths)}
    return done


def prepared(done: dict, loader: str, patch: str) -> dict:
    entry = done[loader]
    return entry[patch] if loader == "nnssl_blosc2" else entry


# -- the whole comparison ------------------------------------------------------------------------------------------------


def data_sets(args, work: Path) -> list[dict]:
    """The data sets of the runs: the synthetic CTs (every ``--volumes``) and the copies of the real chest CT."""
    from benchmarks.pretraining_scale import write_volumes

    sets = []
    if args.volumes:
        paths = write_volumes(work / "volumes", max(args.volumes), args.shape)
        sets = [{"data": "synthetic", "shape": list(args.shape), "paths": paths[:n]} for n in sorted(args.volumes)]
    real = common.SHARED_DATA / "chest_ct" / "chest_ct_0.nii.gz"
    if args.real_copies and real.is_file():
        import nibabel as nib

        folder = work / "real"
        folder.mkdir(parents=True, exist_ok=True)
        copies = []
        for i in range(args.real_copies):
            # a link per copy: every loader sees (and caches) a separate volume, the bytes are read from one file
            link = folder / f"chest_ct_{i:02d}.nii.gz"
            if not link.exists():
                link.symlink_to(real.resolve())
            copies.append(str(link))
        sets.append({"data": "real chest CT", "shape": list(nib.load(str(real)).shape), "paths": copies})
    return sets


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--volumes", type=int, nargs="*", default=[4, 16, 64],
                        help="synthetic data-set sizes (none: only the real chest CT)")
    parser.add_argument("--shape", type=int, nargs=3, default=[512, 512, 160], help="size of each synthetic CT")
    parser.add_argument("--patches", nargs="+", choices=sorted(PATCHES), default=list(PATCHES))
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2], help="loader worker counts")
    parser.add_argument("--loaders", nargs="+", choices=list(LOADERS), default=list(LOADERS))
    parser.add_argument("--real-copies", type=int, default=16,
                        help="copies of the real chest CT of ../shared/data as one more data set (cubes only, it has "
                        "141 slices); 0 leaves it out")
    parser.add_argument("--real-workers", type=int, nargs="+", help="worker counts of the real chest CT runs "
                        "(default: --workers)")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds per run")
    parser.add_argument("--warmup", type=int, default=3, help="batches before the measurement")
    parser.add_argument("--cubes-per-volume", type=int, default=32,
                        help="epoch length of ours and blosc2 in cubes per volume")
    parser.add_argument("--work", default="/tmp/monai_genesis_loaders", help="folder of the volumes and caches")
    parser.add_argument("--keep", action="store_true", help="keep the volumes and caches afterwards")
    parser.add_argument("--results", default=str(common.DEFAULT_RESULTS), help="folder of the result files")
    parser.add_argument("--tag", default="", help="suffix of the result file names")
    args = parser.parse_args(argv)
    if "patch160" in args.patches and min(args.shape) < 160:
        raise SystemExit(f"--shape {args.shape} is smaller than a 160³ patch; give at least 160 on every axis or "
                         "--patches cube.")

    common.setup_logging()
    import torch

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    voxels = max(args.volumes, default=0) * int(np.prod(args.shape))
    need = voxels * (2 + 2 + 4 + 4 * len(args.patches))  # NIfTI, store, persistent cache, blosc2 at worst
    free = shutil.disk_usage(work).free
    if free < need * 1.1:
        raise SystemExit(f"{work} needs up to {need / 2**30:.1f} GiB of disk, {free / 2**30:.1f} GiB are free; pass "
                         "fewer --volumes or a smaller --shape.")
    clock = common.Stopwatch()
    load_before = [round(x, 2) for x in os.getloadavg()]
    results = {
        "benchmark": "loaders",
        "command": common.command_line(__file__, argv),
        "machine": common.machine_info(torch.device("cpu")),
        "load_average_before": load_before,
        "config": {"volumes": args.volumes, "shape": args.shape, "patches": {p: PATCHES[p] for p in args.patches},
                   "workers": args.workers, "seconds": args.seconds, "warmup_batches": args.warmup,
                   "cubes_per_volume": args.cubes_per_volume, "window": WINDOW, "favours": FAVOURS},
        "versions": versions(args.loaders),
        "preparation": [],
        "limit": {},
        "runs": [],
    }
    sets = data_sets(args, work)
    largest = max((d for d in sets if d["data"] == "synthetic"), key=lambda d: len(d["paths"]), default=None)
    for data in sorted(sets, key=lambda d: d is not largest):
        # the real CT has 141 slices: no 160³ patch fits without padding
        patches = [p for p in args.patches if all(s >= c for s, c in zip(data["shape"], PATCHES[p]["size"]))]
        done = prepare(args, data["paths"], work, patches, args.loaders)
        if data["data"] != "synthetic" or data is largest:
            # the smaller synthetic sets reuse the largest one's preparation: theirs is not timed again
            full = done
            results["preparation"].append({
                "data": data["data"], "volumes": len(data["paths"]),
                **{k: {kk: vv for kk, vv in v.items() if kk != "files"} if k != "nnssl_blosc2" else
                   {p: {kk: vv for kk, vv in e.items() if kk != "files"} for p, e in v.items()}
                   for k, v in done.items() if isinstance(v, dict)},
            })
        share = len(data["paths"]) / len(largest["paths"]) if data["data"] == "synthetic" else 1.0
        for loader in args.loaders:
            for patch in patches:
                entry, base = prepared(done, loader, patch), prepared(full, loader, patch)
                entry["seconds"] = base["seconds"] * share
                if loader == "monai_persistent":
                    # the cache folder holds the largest set's files: this set's share of its bytes
                    entry["bytes"] = base["bytes"] * share
        if "ours" in done and not results["limit"]:
            warm(done["ours"]["files"][:1])
            results["limit"] = {p: copy_limit(done["ours"]["files"][0], PATCHES[p]["size"]) for p in args.patches}
        for patch in patches:
            for workers in args.workers if data["data"] == "synthetic" else args.real_workers or args.workers:
                for loader in args.loaders:
                    files = prepared(done, loader, patch)
                    warm(files["files"])
                    spec = {
                        "loader": loader, "workers": workers, "patch": list(PATCHES[patch]["size"]),
                        "patch_name": patch, "batch": PATCHES[patch]["batch"], "paths": data["paths"],
                        "data": data["data"], "store": str(work / "store"), "persistent": str(work / "persistent"),
                        "blosc2": done.get("nnssl_blosc2", {}).get(patch, {}).get("files"),
                        "cubes_per_volume": args.cubes_per_volume, "seconds": args.seconds, "warmup": args.warmup,
                    }
                    try:
                        run = run_isolated(spec, work)
                    except RuntimeError as e:
                        logger.warning(str(e)[-2000:])
                        run = {"loader": loader, "volumes": len(data["paths"]), "patch": patch, "workers": workers,
                               "data": data["data"], "error": str(e)[-500:]}
                    run["disk_bytes"] = files["bytes"]
                    run["preparation_s"] = files["seconds"]
                    results["runs"].append(run)
                    logger.info(f"{data['data']} ×{len(data['paths'])} {patch} W={workers} {loader}: "
                                f"{run.get('cubes_per_s', float('nan')):.0f} cubes/s, "
                                f"{run.get('peak_tree_gib', float('nan')):.2f} GiB, {clock():.0f} s in")
    results["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    results["total_seconds"] = clock()
    results["ratios"] = ratios(results["runs"])
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    text = to_markdown(results)
    name = "_".join(p for p in ("loaders_cpu", args.tag) if p)
    json_path, _ = common.write_results(args.results, name, results, text)
    plot(results, json_path.with_suffix(".png"))
    print(text)
    logger.info(f"wrote {json_path} and its .md and .png in {clock():.0f} s")
    return results


def versions(loaders) -> dict:
    import monai

    found = {"monai": monai.__version__}
    for module in ("torchio", "blosc2"):
        try:
            found[module] = __import__(module).__version__
        except ImportError:
            found[module] = None
    return found


def ratios(runs: list[dict]) -> list[dict]:
    """Per cell (data, volumes, patch, workers): ours against the fastest peer of the same run."""
    cells: dict[tuple, dict[str, dict]] = {}
    for r in runs:
        if "cubes_per_s" in r:
            cells.setdefault((r["data"], r["volumes"], r["patch"], r["workers"]), {})[r["loader"]] = r
    out = []
    for (data, volumes, patch, workers), found in cells.items():
        peers = {k: v for k, v in found.items() if k != "ours"}
        if "ours" not in found or not peers:
            continue
        best = max(peers, key=lambda k: peers[k]["cubes_per_s"])
        out.append({"data": data, "volumes": volumes, "patch": patch, "workers": workers, "best_peer": best,
                    "ratio": found["ours"]["cubes_per_s"] / peers[best]["cubes_per_s"]})
    return out


def to_markdown(results: dict) -> str:
    limit = results["limit"]
    headers = ["data", "volumes", "patch", "workers", "loader", "cubes/s", "of the pread limit", "first batch (s)",
               "preparation, once (s/volume)", "peak RSS, tree (GiB)", "disk (MiB/volume)"]
    rows = []
    for r in results["runs"]:
        name = LOADERS[r["loader"]]
        base = [r["data"], r["volumes"], PATCHES[r["patch"]]["label"], r["workers"], name]
        if "error" in r:
            rows.append(base + ["failed: " + r["error"].strip().splitlines()[-1][:80]] + ["–"] * 5)
            continue
        cap = limit.get(r["patch"], {}).get("pread_cubes_per_s")
        rows.append(base + [
            f"{r['cubes_per_s']:,.0f}" if r["cubes_per_s"] >= 10 else f"{r['cubes_per_s']:.2f}",
            f"{100 * r['cubes_per_s'] / cap:.0f}%" if cap else "–",
            f"{r['startup_s']:.1f}",
            f"{r['preparation_s'] / r['volumes']:.2f}",
            f"{r['peak_tree_gib']:.2f}",
            f"{r['disk_bytes'] / r['volumes'] / 2**20:.1f}",
        ])
    table = common.markdown_table(headers, rows, ["l", "r", "l", "r", "l"] + ["r"] * 6)
    ratio = common.markdown_table(
        ["data", "volumes", "patch", "workers", "best peer", "ours / best peer"],
        [[r["data"], r["volumes"], PATCHES[r["patch"]]["label"], r["workers"], LOADERS[r["best_peer"]],
          f"{r['ratio']:.2f}×"] for r in results["ratios"]],
        ["l", "r", "l", "r", "l", "r"],
    )
    limits = "; ".join(
        f"{PATCHES[p]['label'].split(',')[0]}: one pread of the stored cube's {v['bytes_stored'] / 2**10:.0f} KiB "
        f"from a warm file {v['pread_cubes_per_s']:,.0f} cubes/s, a memcpy of its float32 bytes "
        f"{v['memcpy_float32_cubes_per_s']:,.0f} cubes/s" for p, v in limit.items() if "pread_cubes_per_s" in v)
    cfg = results["config"]
    notes = [
        f"Synthetic CT: {'×'.join(map(str, cfg['shape']))} int16 NIfTI (uncompressed); the real chest CT is one "
        "512×512×141 .nii.gz linked under several names. Each run is a fresh process: cubes/s over "
        f"{cfg['seconds']:g} s after {cfg['warmup_batches']} batches, one thread per process.",
        f"The copy limit (one core): {limits}.",
        "Choices that favour a loader: " + "; ".join(FAVOURS) + ".",
        f"Load average before the runs {results['load_average_before']}, after {results.get('load_average_after')}; "
        f"{results.get('total_seconds', 0) / 60:.0f} minutes in all. Versions: "
        + ", ".join(f"{k} {v}" for k, v in results["versions"].items()) + ".",
    ]
    return f"{table}\n\n{ratio}\n\n" + "\n\n".join(notes)


def plot(results: dict, out: Path) -> None:
    """PNG: cubes/s and peak RSS against the number of synthetic volumes, one panel per patch setting and figure, at
    the largest worker count."""
    from PIL import Image, ImageDraw, ImageFont

    from benchmarks.plot_learning_curves import COLOURS

    runs = [r for r in results["runs"] if r["data"] == "synthetic" and "cubes_per_s" in r]
    if not runs:
        return

    def text(s: str) -> str:
        # PIL's default font has no × or ³
        return s.replace("×", "x").replace("³", "^3")

    workers = max(r["workers"] for r in runs)
    patches = [p for p in PATCHES if any(r["patch"] == p for r in runs)]
    panel_w, panel_h, margin = 430, 300, 60
    image = Image.new("RGB", (panel_w * len(patches) + 20, 2 * panel_h + 150), "white")
    canvas = ImageDraw.Draw(image)
    font = ImageFont.load_default()
    canvas.text((10, 6), f"Loaders with {workers} workers, synthetic CT {'x'.join(map(str, results['config']['shape']))}"
                " (log-log axes)", fill="black", font=font)
    loaders = [name for name in LOADERS if any(r["loader"] == name for r in runs)]
    for col, patch in enumerate(patches):
        for row, (key, label) in enumerate((("cubes_per_s", "cubes/s"), ("peak_tree_gib", "peak RSS, tree (GiB)"))):
            chosen = [r for r in runs if r["patch"] == patch and r["workers"] == workers]
            if not chosen:
                continue
            left, top = col * panel_w + margin, 30 + row * panel_h + 20
            right, bottom = left + panel_w - margin - 20, top + panel_h - margin
            xs = sorted({r["volumes"] for r in chosen})
            ys = [max(r[key], 1e-3) for r in chosen]
            lx0, lx1 = math.log10(min(xs)), math.log10(max(xs)) if max(xs) > min(xs) else math.log10(min(xs)) + 1
            ly0, ly1 = math.floor(math.log10(min(ys))), math.ceil(math.log10(max(ys)) + 1e-9)
            ly1 = max(ly1, ly0 + 1)

            def xy(x, y):
                return (left + (math.log10(x) - lx0) / (lx1 - lx0) * (right - left),
                        bottom - (math.log10(max(y, 1e-3)) - ly0) / (ly1 - ly0) * (bottom - top))

            canvas.rectangle([left, top, right, bottom], outline="black")
            for e in range(ly0, ly1 + 1):
                for m in (1, 2, 5) if e < ly1 else (1,):
                    _, y = xy(xs[0], m * 10 ** e)
                    canvas.line([left, y, right, y], fill=(225, 225, 225) if m == 1 else (240, 240, 240))
                    canvas.text((left - 45, y - 6), f"{m * 10 ** e:g}", fill="black", font=font)
            for x in xs:
                px, _ = xy(x, 10 ** ly0)
                canvas.text((px - 6, bottom + 6), str(x), fill="black", font=font)
            canvas.text((left, top - 14), text(f"{PATCHES[patch]['label']}: {label}"), fill="black", font=font)
            canvas.text(((left + right) / 2 - 30, bottom + 20), "volumes", fill="black", font=font)
            for i, name in enumerate(loaders):
                points = sorted((r["volumes"], r[key]) for r in chosen if r["loader"] == name)
                colour = COLOURS[i % len(COLOURS)]
                if len(points) > 1:
                    canvas.line([xy(*p) for p in points], fill=colour, width=3)
                for p in points:
                    px, py = xy(*p)
                    canvas.ellipse([px - 3, py - 3, px + 3, py + 3], fill=colour)
    legend_top = 2 * panel_h + 70
    for i, name in enumerate(loaders):
        colour = COLOURS[i % len(COLOURS)]
        x, y = 20 + (i % 2) * 430, legend_top + (i // 2) * 16
        canvas.line([x, y + 6, x + 20, y + 6], fill=colour, width=3)
        canvas.text((x + 26, y), text(LOADERS[name]), fill="black", font=font)
    image.save(out)


if __name__ == "__main__":
    main()
