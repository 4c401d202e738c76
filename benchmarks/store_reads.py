"""Ways to read a cube out of a stored volume, side by side: the store's row layout against tiled layouts and maps.

    python benchmarks/store_reads.py [--shape 192 192 160] [--volumes 8] [--reads 300] [--results DIR] [--tag TAG]

The volume store keeps each volume as one C-ordered ``.npy`` array and reads a region with one ``os.preadv`` per row
of its first spatial axis (whole along the last axis, cut afterwards, or in place when the region is whole along the
last axes). This script writes the same uint16 values in other layouts and reads the same random regions (64×64×32
cubes, 160³ patches) from each, one core, every file in the page cache:

- ``rows`` — the store's own reader, ``StoredVolume.read_raw``;
- ``tiles T`` — the volume cut into T³-voxel tiles (tiles in C order, the voxels of a tile contiguous), a region read
  as one ``preadv`` per run of tiles along the last axis, then gathered into the output by a compiled loop (Numba);
- ``mmap`` — each volume memory-mapped once and kept mapped, a region copied out with NumPy; ``mmap per read`` maps
  only the rows of the region for each read and unmaps them.

Figures: regions per second, bytes copied out of the page cache per region (what the reads fetch, against the
region's own bytes), and for ``mmap`` the growth of the process's resident memory (pages of a map count in it, the
page cache read by ``preadv`` does not). The regions are the same for every reader, drawn uniformly over all volumes.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import common

logger = logging.getLogger("benchmarks.store_reads")

REGIONS = {"cube": (64, 64, 32), "patch160": (160, 160, 160)}
TILES = (16, 32)


def _gather_kernel():
    import numba

    @numba.njit(nogil=True, cache=False)
    def gather(buf, tile, lo, out):
        # buf (nx, ny, nz, t, t, t): the tiles over the region; lo: the region's offset in its first tile
        nx, ny, nz = buf.shape[:3]
        size_x, size_y, size_z = out.shape
        for ix in range(nx):
            xa, xb = max(ix * tile - lo[0], 0), min((ix + 1) * tile - lo[0], size_x)
            for iy in range(ny):
                ya, yb = max(iy * tile - lo[1], 0), min((iy + 1) * tile - lo[1], size_y)
                for iz in range(nz):
                    za, zb = max(iz * tile - lo[2], 0), min((iz + 1) * tile - lo[2], size_z)
                    oz = za + lo[2] - iz * tile
                    for x in range(xa, xb):
                        ox = x + lo[0] - ix * tile
                        for y in range(ya, yb):
                            oy = y + lo[1] - iy * tile
                            out[x, y, za:zb] = buf[ix, iy, iz, ox, oy, oz : oz + zb - za]

    return gather


class TiledReader:
    """Volumes of ``shape`` (each axis a multiple of ``tile``) written as tiles; ``read`` cuts a region from them."""

    def __init__(self, arrays, shape, tile: int, folder: str) -> None:
        self.tile, self.grid = tile, [s // tile for s in shape]
        self.fds = []
        for k, array in enumerate(arrays):
            g = self.grid
            tiled = array.reshape(g[0], tile, g[1], tile, g[2], tile).transpose(0, 2, 4, 1, 3, 5)
            path = os.path.join(folder, f"tiles{tile}_{k}.bin")
            np.ascontiguousarray(tiled).tofile(path)
            self.fds.append(os.open(path, os.O_RDONLY))
        self.gather = _gather_kernel()
        self.buffers: dict = {}
        self.bytes_read = 0

    def read(self, k: int, start, size, out) -> None:
        t, g = self.tile, self.grid
        first = [s // t for s in start]
        last = [(s + n - 1) // t for s, n in zip(start, size)]
        n = tuple(b - a + 1 for a, b in zip(first, last))
        if n not in self.buffers:
            self.buffers[n] = np.empty(n + (t, t, t), dtype=np.uint16)
        buf = self.buffers[n]
        tile_bytes = t**3 * 2
        for i in range(n[0]):
            for j in range(n[1]):
                position = (((first[0] + i) * g[1] + first[1] + j) * g[2] + first[2]) * tile_bytes
                got = os.preadv(self.fds[k], [memoryview(buf[i, j]).cast("B")], position)
                if got != buf[i, j].nbytes:
                    raise OSError(f"short read of a tile run ({got} bytes)")
                self.bytes_read += got
        self.gather(buf, t, np.array([s % t for s in start]), out)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", type=int, nargs=3, default=[192, 192, 160],
                        help="size of each volume (each axis a multiple of 32)")
    parser.add_argument("--volumes", type=int, default=8, help="stored volumes the regions are drawn from")
    parser.add_argument("--reads", type=int, default=300, help="regions timed per reader and region size")
    parser.add_argument("--results", default=str(common.DEFAULT_RESULTS), help="folder of the result files")
    parser.add_argument("--tag", default="", help="suffix of the result file names")
    args = parser.parse_args(argv)
    common.setup_logging()
    if any(s % max(TILES) for s in args.shape):
        parser.error(f"--shape {args.shape}: every axis must be a multiple of {max(TILES)} (the largest tile)")
    if any(s < max(r) for s in args.shape for r in REGIONS.values()):
        parser.error(f"--shape {args.shape}: every axis must hold a 160³ patch (at least 160)")
    import mmap

    import torch

    from benchmarks.pretraining_scale import write_volumes
    from monai_genesis.data import StoreSettings, VolumeStore

    torch.set_num_threads(1)
    load_before = os.getloadavg()
    runs = []
    with tempfile.TemporaryDirectory() as folder:
        paths = write_volumes(Path(folder) / "volumes", args.volumes, args.shape)
        store = VolumeStore.prepare(paths, os.path.join(folder, "store"), StoreSettings(intensity="ct"), progress=False)
        volumes = [store[p] for p in paths]
        arrays = [v.read_raw()[0] for v in volumes]
        fds = [v.open() for v in volumes]
        offsets = [v.data_offset(fd) for v, fd in zip(volumes, fds)]
        tiled = {t: TiledReader(arrays, args.shape, t, folder) for t in TILES}
        for name, size in REGIONS.items():
            rng = np.random.default_rng(0)
            regions = [(int(rng.integers(len(paths))), [int(rng.integers(0, s - c + 1)) for s, c in zip(args.shape, size)])
                       for _ in range(args.reads)]
            region_bytes = int(np.prod(size)) * 2

            def rows(k, start, out, size=size):
                volumes[k].read_raw((slice(None),) + tuple(slice(a, a + c) for a, c in zip(start, size)), out[None],
                                    fds[k])

            maps: dict = {}

            def mapped(k, start, out, size=size, maps=maps):
                if k not in maps:
                    maps[k] = np.memmap(volumes[k].path, np.uint16, "r", offsets[k], (1, *args.shape))
                np.copyto(out, maps[k][0][tuple(slice(a, a + c) for a, c in zip(start, size))])

            row = args.shape[1] * args.shape[2] * 2
            page = mmap.ALLOCATIONGRANULARITY

            def mapped_per_read(k, start, out, size=size, row=row, page=page):
                first = offsets[k] + start[0] * row
                base = first // page * page
                m = mmap.mmap(fds[k], first - base + size[0] * row, prot=mmap.PROT_READ, offset=base)
                view = np.frombuffer(m, np.uint16, size[0] * row // 2, first - base).reshape(size[0], *args.shape[1:])
                np.copyto(out, view[:, start[1] : start[1] + size[1], start[2] : start[2] + size[2]])
                del view
                m.close()

            # the kept maps last: a page mapped by a live map makes a later map's faults cheaper
            readers = {"rows (the store)": rows, "mmap per read": mapped_per_read}
            for t, reader in tiled.items():
                readers[f"tiles {t}³"] = lambda k, start, out, r=reader, size=size: r.read(k, start, size, out)
            readers["mmap, kept mapped"] = mapped
            expected = {i: arrays[k][tuple(slice(a, a + c) for a, c in zip(start, size))]
                        for i, (k, start) in enumerate(regions[:5])}
            for label, read in readers.items():
                out = np.empty(size, dtype=np.uint16)
                for i, (k, start) in enumerate(regions[:5]):
                    read(k, start, out)
                    if not np.array_equal(out, expected[i]):
                        raise AssertionError(f"{label} read other values than the stored ones")
                rss = common._rss_bytes(os.getpid())
                for k, start in regions:  # every page of the regions in the page cache (and mapped)
                    read(k, start, out)
                for r in tiled.values():
                    r.bytes_read = 0
                clock = time.perf_counter()
                for k, start in regions:
                    read(k, start, out)
                seconds = time.perf_counter() - clock
                fetched = None
                if label.startswith("tiles"):
                    fetched = tiled[int(label.split()[1][:-1])].bytes_read / len(regions)
                elif label.startswith("rows"):
                    whole_last = max(size[2], args.shape[2])
                    fetched = size[0] * size[1] * whole_last * 2
                runs.append({
                    "region": name, "size": list(size), "reader": label, "regions_per_s": len(regions) / seconds,
                    "bytes_fetched_per_region": fetched, "region_bytes": region_bytes,
                    "rss_growth_mib": (common._rss_bytes(os.getpid()) - rss) / 2**20,
                })
                logger.info("%s %s: %.0f regions/s", name, label, runs[-1]["regions_per_s"])
            maps.clear()
        for fd in fds:
            os.close(fd)
    results = {
        "benchmark": "store_reads",
        "command": common.command_line(__file__, argv),
        "machine": common.machine_info(torch.device("cpu")),
        "config": {"shape": args.shape, "volumes": args.volumes, "reads": args.reads, "tiles": list(TILES)},
        "load_average_before": list(load_before),
        "load_average_after": list(os.getloadavg()),
        "runs": runs,
    }
    table = common.markdown_table(
        ["region", "reader", "regions/s", "bytes fetched / region's bytes", "resident memory growth (MiB)"],
        [[r["region"] + " " + "×".join(map(str, r["size"])), r["reader"], f"{r['regions_per_s']:,.0f}",
          f"{r['bytes_fetched_per_region'] / r['region_bytes']:.2f}" if r["bytes_fetched_per_region"] else "–",
          f"{r['rss_growth_mib']:.0f}"]
         for r in runs],
    )
    table += (f"\n\n{args.volumes} uint16 volumes of {'×'.join(map(str, args.shape))}, {args.reads} regions per row, "
              f"one core, page cache warm. Load average {load_before[0]:.1f} before, {os.getloadavg()[0]:.1f} after. "
              "Resident memory growth: over the reads of one row, pages of a kept map count in it.")
    print(table)
    common.write_results(args.results, "store_reads_cpu" + (f"_{args.tag}" if args.tag else ""), results, table)
    return results


if __name__ == "__main__":
    main()
