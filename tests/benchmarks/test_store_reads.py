"""The read-layout comparison, run as a user runs it: every reader returns the stored values (the script checks them
and stops otherwise), the result files, and the bytes each layout fetches for a region."""

from __future__ import annotations

import json

import pytest

from tests.conftest import REPO_ROOT
from tests.packaging.helpers import run_cli

pytestmark = pytest.mark.slow
pytest.importorskip("numba")


def test_store_reads_smoke(tmp_path):
    run_cli(["benchmarks/store_reads.py", "--shape", "160", "160", "160", "--volumes", "2", "--reads", "12",
             "--results", str(tmp_path)], cwd=REPO_ROOT)
    payload = json.loads((tmp_path / "store_reads_cpu.json").read_text())
    assert payload["command"].startswith("python benchmarks/store_reads.py")
    readers = ["rows (the store)", "mmap per read", "tiles 16³", "tiles 32³", "mmap, kept mapped"]
    assert [(r["region"], r["reader"]) for r in payload["runs"]] == [
        (region, reader) for region in ("cube", "patch160") for reader in readers
    ]
    runs = {(r["region"], r["reader"]): r for r in payload["runs"]}
    assert all(r["regions_per_s"] > 0 for r in payload["runs"])
    # rows: a 64×64×32 cube fetches whole 160-voxel rows (5× its bytes), a 160³ patch of a 160³ volume its own bytes
    assert runs[("cube", "rows (the store)")]["bytes_fetched_per_region"] == 64 * 64 * 160 * 2
    assert runs[("patch160", "rows (the store)")]["bytes_fetched_per_region"] == 160**3 * 2
    # tiles fetch whole tiles: at least the region, at most the tiles a region can touch
    cube = runs[("cube", "tiles 16³")]["bytes_fetched_per_region"]
    assert 64 * 64 * 32 * 2 <= cube <= 5 * 5 * 3 * 16**3 * 2
    assert "| region | reader | regions/s |" in (tmp_path / "store_reads_cpu.md").read_text()


def test_store_reads_refuses_a_shape_without_whole_tiles(tmp_path):
    proc = run_cli(["benchmarks/store_reads.py", "--shape", "170", "160", "160", "--results", str(tmp_path)],
                   cwd=REPO_ROOT, check=False)
    assert proc.returncode != 0 and "multiple of 32" in proc.stderr
    assert not list(tmp_path.iterdir())
