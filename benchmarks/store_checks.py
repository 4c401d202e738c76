"""Cost of the checks the volume store makes of what it reuses.

    python benchmarks/store_checks.py [--shape 512 512 128] [--volumes 8] [--results DIR]

Every preparation (and so every bundle start) checks each reused file's header against its record and its size
against the header; ``verify=True`` (``prepare --verify``) also hashes every source and computes the CRC-32 of every
stored file. This times both on uint16 volumes of ``--shape`` written into a temporary store, read from the page cache
(the second pass of each), and gives the time for 40 000 such volumes.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import common  # noqa: E402

logger = logging.getLogger("benchmarks.store_checks")


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", type=int, nargs=3, default=[512, 512, 128], help="size of each stored volume")
    parser.add_argument("--volumes", type=int, default=8, help="volumes timed")
    parser.add_argument("--results", default=str(common.DEFAULT_RESULTS), help="folder of the result files")
    args = parser.parse_args(argv)
    common.setup_logging()
    import os

    import torch

    from monai_genesis.data.store import _file_crc32, _header_problem

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as folder:
        paths = []
        for i in range(args.volumes):
            path = os.path.join(folder, f"v{i}.npy")
            np.save(path, rng.integers(0, 65535, (1, *args.shape), dtype=np.uint16))
            paths.append(path)
        record = {"shape": [1, *args.shape], "dtype": "uint16"}
        timings = {}
        for name, check in (("header and size", lambda p: _header_problem(p, record)), ("CRC-32", _file_crc32)):
            for p in paths:  # the page-cache pass
                check(p)
            start = time.perf_counter()
            for p in paths:
                check(p)
            timings[name] = (time.perf_counter() - start) / len(paths)
        nbytes = os.path.getsize(paths[0])
    load = os.getloadavg()[0]
    results = {
        "command": common.command_line(__file__, argv),
        "machine": common.machine_info(torch.device("cpu")),
        "shape": args.shape,
        "volume_bytes": nbytes,
        "seconds_per_volume": timings,
        "load_average": load,
    }
    rows = [
        [name, f"{seconds * 1e3:.3f}", f"{nbytes / seconds / 2**30:.2f}" if name == "CRC-32" else "–",
         f"{seconds * 40000 / 60:.1f}"]
        for name, seconds in timings.items()
    ]
    table = common.markdown_table(
        ["check of a reused " + "×".join(map(str, args.shape)) + " uint16 volume", "ms per volume", "GiB/s",
         "minutes for 40 000 volumes"],
        rows,
    )
    table += f"\n\nLoad average at the end: {load:.1f}."
    print(table)
    common.write_results(args.results, "store_checks_cpu", results, table)
    return results


if __name__ == "__main__":
    main()
