import json
import os

import nibabel as nib
import numpy as np
import pytest
import torch.distributed as dist
import torch.multiprocessing as mp


def _rank(rank, world, folder, use_group):
    import monai_genesis.data.store as store

    calls = []
    real = store._Preparation.run

    def counted(self, *args, **kwargs):
        calls.append(rank)
        return real(self, *args, **kwargs)

    store._Preparation.run = counted
    if use_group:
        dist.init_process_group("gloo", init_method=f"file://{folder}/rendezvous", rank=rank, world_size=world)
    else:
        os.environ.update(RANK=str(rank), WORLD_SIZE=str(world))
    sources = sorted(str(p) for p in (folder / "src").iterdir())
    index = store.ensure_store({"training": sources[:2], "validation": sources[2:]}, str(folder / "store"),
                               progress=False)
    if use_group:
        dist.destroy_process_group()
    out = {"prepared": bool(calls), "volumes": sorted(index.keys), "files": sorted(index[k].path for k in index.keys)}
    (folder / f"rank{rank}.json").write_text(json.dumps(out))


@pytest.mark.slow
@pytest.mark.parametrize("use_group", [True, False], ids=["gloo barrier", "no process group"])
def test_rank_zero_prepares_the_others_read(tmp_path, use_group):
    """Two CPU ranks: with a process group rank 0 alone prepares the store and rank 1 reads what it wrote; without
    one, both prepare at once, and the store is the same, whole and without temporary files."""
    (tmp_path / "src").mkdir()
    for i in range(3):
        hu = np.random.default_rng(i).integers(-1000, 1000, (24, 24, 12)).astype(np.int16)
        nib.save(nib.Nifti1Image(hu, np.eye(4)), str(tmp_path / "src" / f"ct{i}.nii.gz"))
    mp.spawn(_rank, args=(2, tmp_path, use_group), nprocs=2, join=True)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["prepared"] and ranks[1]["prepared"] != use_group
    assert ranks[0]["volumes"] == ranks[1]["volumes"] and len(ranks[0]["volumes"]) == 3
    assert ranks[0]["files"] == ranks[1]["files"]
    assert len(list((tmp_path / "store").glob("*/*.npy"))) == 3
    assert not list((tmp_path / "store").glob("*/.*.tmp"))
    assert len(json.loads(next((tmp_path / "store").glob("*/index.json")).read_text())["volumes"]) == 3
