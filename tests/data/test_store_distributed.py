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
    real = store.prepare_store

    def counted(*args, **kwargs):
        calls.append(rank)
        return real(*args, **kwargs)

    store.prepare_store = counted
    if use_group:
        dist.init_process_group("gloo", init_method=f"file://{folder}/rendezvous", rank=rank, world_size=world)
    else:
        os.environ.update(RANK=str(rank), WORLD_SIZE=str(world))
    sources = sorted(str(p) for p in (folder / "src").iterdir())
    index = store.ensure_store({"training": sources[:2], "validation": sources[2:]}, str(folder / "store"),
                               progress=False)
    if use_group:
        dist.destroy_process_group()
    out = {"prepared": bool(calls), "volumes": sorted(index["volumes"])}
    (folder / f"rank{rank}.json").write_text(json.dumps(out))


@pytest.mark.slow
@pytest.mark.parametrize("use_group", [True, False], ids=["gloo barrier", "file marker"])
def test_rank_zero_prepares_the_others_read(tmp_path, use_group):
    """Two CPU ranks: rank 0 alone prepares the store, rank 1 waits and reads the same index."""
    (tmp_path / "src").mkdir()
    for i in range(3):
        hu = np.random.default_rng(i).integers(-1000, 1000, (24, 24, 12)).astype(np.int16)
        nib.save(nib.Nifti1Image(hu, np.eye(4)), str(tmp_path / "src" / f"ct{i}.nii.gz"))
    mp.spawn(_rank, args=(2, tmp_path, use_group), nprocs=2, join=True)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["prepared"] and not ranks[1]["prepared"]
    assert ranks[0]["volumes"] == ranks[1]["volumes"] and len(ranks[0]["volumes"]) == 3
    assert len(list((tmp_path / "store").glob("*.npy"))) == 3
    assert not list((tmp_path / "store").glob("*.tmp"))
