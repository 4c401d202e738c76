"""Fraction of voxels changed and mean absolute change of each corruption, beside the reference table.

    python benchmarks/faithfulness.py --image ../shared/data/chest_ct/chest_ct_0.nii.gz [--cubes 64] [--json OUT]

Cubes of 64×64×32 are cut at random as in section 2.7 of the reference (CT clipped to [-1000, 1000] HU and
scaled to [0, 1], x/y at least 100 voxels from the border, any z); each corruption is forced on, by
``monai_genesis.transforms`` and by the literal loop of ``tests/oracle/loop_baseline.py``. Prints a Markdown table
(mean ± std over the cubes).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.oracle import loop_baseline
from tests.oracle.chest_ct import cut_cubes
from monai_genesis.transforms import RandInpaint, RandLocalPixelShuffle, RandNonlinearIntensity, RandOutpaint

# section 2.7 of the reference: the authors' functions on 64 cubes of the same chest CT
REFERENCE = {
    "local shuffle": ("0.779 ± 0.005", "0.031 ± 0.007"),
    "non-linear": ("0.999 ± 0.006", "0.25 ± 0.18"),
    "in-painting": ("0.055 ± 0.021", "0.017 ± 0.007"),
    "out-painting": ("0.68 ± 0.06", "0.21 ± 0.03"),
}


def stats(fn, cubes) -> tuple[str, str]:
    changed, mac = [], []
    for cube in cubes:
        out = np.asarray(fn(cube), dtype=np.float64)
        changed.append(np.mean(out != cube))
        mac.append(np.mean(np.abs(out - cube)))
    return f"{np.mean(changed):.3f} ± {np.std(changed):.3f}", f"{np.mean(mac):.3f} ± {np.std(mac):.3f}"


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image", required=True, help="a CT volume in HU")
    parser.add_argument("--cubes", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="also write the table to this JSON file")
    args = parser.parse_args(argv)
    random.seed(args.seed)
    np.random.seed(args.seed)
    cubes = cut_cubes(args.image, args.cubes, args.seed)
    ours = {
        "local shuffle": RandLocalPixelShuffle(prob=1.0),
        "non-linear": RandNonlinearIntensity(prob=1.0),
        "in-painting": RandInpaint(),
        "out-painting": RandOutpaint(),
    }
    loop = {
        "local shuffle": lambda x: loop_baseline.local_shuffle(x, prob=1.0),
        "non-linear": lambda x: loop_baseline.nonlinear(x, prob=1.0),
        "in-painting": loop_baseline.inpaint,
        "out-painting": loop_baseline.outpaint,
    }
    results = {"input_mean": float(cubes.mean()), "cubes": len(cubes), "rows": {}}
    lines = [
        f"input mean {cubes.mean():.3f}, {len(cubes)} cubes of 64×64×32",
        "",
        "| corruption | changed: monai_genesis | literal loop | reference | mean abs. change: monai_genesis | literal loop | reference |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, transform in ours.items():
        transform.set_random_state(args.seed)
        mine, theirs = stats(transform, cubes), stats(loop[name], cubes)
        results["rows"][name] = {"monai_genesis": mine, "loop": theirs, "reference": REFERENCE[name]}
        lines.append(f"| {name} | {mine[0]} | {theirs[0]} | {REFERENCE[name][0]} | {mine[1]} | {theirs[1]} | {REFERENCE[name][1]} |")
    print("\n".join(lines))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
