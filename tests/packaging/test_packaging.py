import hashlib
import json
import os
import shutil
import time
import types
import urllib.request
import zipfile

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser, download, load, run
from monai.networks.nets import UNet

from monai_genesis.packaging import package
from tests.packaging.helpers import TINY_NET, make_tiny_bundle, run_cli


def _names(zip_path):
    with zipfile.ZipFile(zip_path) as zf:
        return sorted(zf.namelist())


def test_zip_layout_and_model_info(tmp_path):
    bundle = make_tiny_bundle(tmp_path / "src")
    (bundle / "runs").mkdir()
    (bundle / "runs" / "events.out").write_text("log")
    (bundle / "configs" / "__pycache__").mkdir()
    (bundle / "configs" / "__pycache__" / "x.pyc").write_bytes(b"\0")
    (bundle / "eval").mkdir()
    (bundle / "eval" / "pred.nii.gz").write_bytes(b"\0")
    (bundle / ".ipynb_checkpoints").mkdir()
    (bundle / ".ipynb_checkpoints" / "a.json").write_text("{}")
    (bundle / "models" / "resume_checkpoint_epoch=3.pt").write_bytes(b"\0")
    (bundle / "docs" / "notes.txt").write_text("left out by the exclude argument")

    zip_path = package(bundle, out=tmp_path / "dist", repo="someone/monai-genesis/v0.1.0", exclude=["notes.*"])

    assert os.path.basename(zip_path) == "tiny_restoration_v0.1.0.zip"
    assert _names(zip_path) == [
        "tiny_restoration/LICENSE",
        "tiny_restoration/configs/inference.json",
        "tiny_restoration/configs/metadata.json",
        "tiny_restoration/configs/train.json",
        "tiny_restoration/docs/README.md",
        "tiny_restoration/models/model.pt",
    ]
    with zipfile.ZipFile(zip_path) as zf:
        assert {i.date_time for i in zf.infolist()} == {(1980, 1, 1, 0, 0, 0)}
        assert zf.read("tiny_restoration/models/model.pt") == (bundle / "models" / "model.pt").read_bytes()
    info = json.loads((tmp_path / "dist" / "model_info.json").read_text())
    sha1 = hashlib.sha1(open(zip_path, "rb").read()).hexdigest()
    assert info == {
        "tiny_restoration_v0.1.0": {
            "checksum": sha1,
            "source": "https://github.com/someone/monai-genesis/releases/download/v0.1.0/tiny_restoration_v0.1.0.zip",
        }
    }


def test_reproducible_and_no_silent_overwrite(tmp_path):
    bundle = make_tiny_bundle(tmp_path / "src")
    first = open(package(bundle, out=tmp_path / "a"), "rb").read()
    past = time.time() - 86400
    for f in bundle.rglob("*"):
        os.utime(f, (past, past))
    # same content packed again, elsewhere and into the same place: same bytes, no error
    assert open(package(bundle, out=tmp_path / "b"), "rb").read() == first
    package(bundle, out=tmp_path / "a")

    (bundle / "docs" / "README.md").write_text("# tiny, changed\n")
    with pytest.raises(FileExistsError, match="overwrite"):
        package(bundle, out=tmp_path / "a")
    assert open(tmp_path / "a" / "tiny_restoration_v0.1.0.zip", "rb").read() == first
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["model_info.json", "tiny_restoration_v0.1.0.zip"]
    changed = package(bundle, out=tmp_path / "a", overwrite=True)
    assert open(changed, "rb").read() != first
    # model_info keeps one entry per version, and adds the next version beside it
    meta = json.loads((bundle / "configs" / "metadata.json").read_text())
    meta["version"] = "0.2.0"
    meta["changelog"] = {"0.2.0": "new docs", **meta["changelog"]}
    (bundle / "configs" / "metadata.json").write_text(json.dumps(meta))
    package(bundle, out=tmp_path / "a")
    info = json.loads((tmp_path / "a" / "model_info.json").read_text())
    assert sorted(info) == ["tiny_restoration_v0.1.0", "tiny_restoration_v0.2.0"]
    assert info["tiny_restoration_v0.2.0"]["source"].startswith("file://")


def test_metadata_checks(tmp_path):
    bundle = make_tiny_bundle(tmp_path / "src", with_weights=False)
    meta = json.loads((bundle / "configs" / "metadata.json").read_text())
    (bundle / "configs" / "metadata.json").write_text(json.dumps(dict(meta, version="0.3.0")))
    with pytest.raises(ValueError, match="version 0.3.0 .* no entry in its 'changelog'"):
        package(bundle, out=tmp_path / "dist")
    (bundle / "configs" / "metadata.json").write_text(json.dumps({k: v for k, v in meta.items() if k != "version"}))
    with pytest.raises(ValueError, match="needs a 'version'"):
        package(bundle, out=tmp_path / "dist")
    (bundle / "configs" / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="OWNER/REPO/TAG"):
        package(bundle, out=tmp_path / "dist", repo="someone/monai-genesis")
    (bundle / "LICENSE").unlink()
    with pytest.raises(ValueError, match="LICENSE"):
        package(bundle, out=tmp_path / "dist")
    assert not (tmp_path / "dist").exists() or not any((tmp_path / "dist").iterdir())
    odd = make_tiny_bundle(tmp_path / "src", name="genesis_vessel")
    with pytest.raises(ValueError, match="_v"):
        package(odd, out=tmp_path / "dist")


def test_large_files_resolved_or_kept(tmp_path):
    bundle = make_tiny_bundle(tmp_path / "src", with_weights=False)
    (bundle / "models").mkdir()
    weights = b"released weights"
    entry = {"path": "models/released.pt", "url": "https://example.org/released.pt",
             "hash_val": hashlib.sha256(weights).hexdigest(), "hash_type": "sha256"}
    (bundle / "large_files.json").write_text(json.dumps({"large_files": [entry]}))

    missing = package(bundle, out=tmp_path / "missing")
    assert "tiny_restoration/large_files.json" in _names(missing)
    assert "tiny_restoration/models/released.pt" not in _names(missing)

    (bundle / "models" / "released.pt").write_bytes(weights)
    resolved = package(bundle, out=tmp_path / "resolved", exclude="released.*")
    assert "tiny_restoration/large_files.json" not in _names(resolved)
    assert "tiny_restoration/models/released.pt" in _names(resolved)

    (bundle / "models" / "released.pt").write_bytes(b"something else")
    with pytest.raises(ValueError, match="does not match the sha256 hash"):
        package(bundle, out=tmp_path / "wrong")


def test_cli_pack_serve_download_load_and_run(tmp_path, serve_dir):
    """Pack with the project CLI, fetch over HTTP, load the network, and check inference used the packed weights."""
    bundle = make_tiny_bundle(tmp_path / "src")
    dist = tmp_path / "dist"
    run_cli(["-m", "monai_genesis", "package", "--bundle", str(bundle), "--out", str(dist)])
    assert (dist / "tiny_restoration_v0.1.0.zip").is_file()
    base = serve_dir(dist)

    downloads = tmp_path / "downloads"
    download(name="tiny_restoration", version="0.1.0", url=f"{base}/tiny_restoration_v0.1.0.zip",
             bundle_dir=downloads, progress=False)
    fetched = downloads / "tiny_restoration"
    assert (fetched / "models" / "model.pt").read_bytes() == (bundle / "models" / "model.pt").read_bytes()

    net = load(name="tiny_restoration", bundle_dir=downloads, device="cpu")
    expected = torch.load(bundle / "models" / "model.pt", weights_only=True)
    assert isinstance(net, UNet)
    got = net.state_dict()
    assert got.keys() == expected.keys()
    assert all(torch.equal(got[k], expected[k]) for k in expected)

    data = tmp_path / "data"
    data.mkdir()
    volume = np.random.default_rng(0).random((16, 16, 16), dtype=np.float32)
    nib.save(nib.Nifti1Image(volume, np.eye(4)), data / "case0.nii.gz")
    run(config_file=str(fetched / "configs" / "inference.json"), bundle_root=str(fetched), dataset_dir=str(data))
    pred = nib.load(fetched / "eval" / "case0_pred.nii.gz").get_fdata()
    reference = UNet(**{k: v for k, v in TINY_NET.items() if k != "_target_"})
    reference.load_state_dict(expected)
    with torch.no_grad():
        want = reference.eval()(torch.from_numpy(volume)[None, None])[0, 0].numpy()
    assert pred.shape == (16, 16, 16)
    np.testing.assert_allclose(pred, want, atol=1e-5)


@pytest.mark.parametrize("bundle", ["genesis_pretrain", "finetune_segmentation", "finetune_classification"])
def test_release_of_a_trained_bundle(bundle, tmp_path, repo_root, serve_dir):
    """Pack a training bundle with its weights, download the release, load the trained network, run inference."""
    if not (repo_root / "bundles" / bundle / "configs" / "inference.json").is_file():
        pytest.skip(f"{bundle} is absent")
    quick = repo_root / "configs" / "quick.json"
    src = shutil.copytree(repo_root / "bundles" / bundle, tmp_path / "src" / bundle,
                          ignore=shutil.ignore_patterns("models", "eval", "runs"))
    parser = ConfigParser()
    parser.read_config([str(src / "configs" / "train.json"), str(quick)])
    torch.manual_seed(11)
    trained = parser.get_parsed_content("network_def")
    with torch.no_grad():
        for p in trained.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    (src / "models").mkdir()
    torch.save(trained.state_dict(), src / "models" / "model.pt")

    package(src, out=tmp_path / "dist", repo="someone/monai-genesis/v0.1.0", fragments=repo_root / "configs")
    version = json.loads((src / "configs" / "metadata.json").read_text())["version"]
    base = serve_dir(tmp_path / "dist")
    downloads = tmp_path / "downloads"
    run_cli(["-m", "monai.bundle", "download", "--name", bundle, "--version", version, "--url",
             f"{base}/{bundle}_v{version}.zip", "--bundle_dir", str(downloads), "--progress", "False"])

    features = json.loads(quick.read_text())["genesis_features"]
    net = load(name=bundle, bundle_dir=downloads, device="cpu", net_override={"features": features})
    assert type(net) is type(trained)
    expected = trained.state_dict()
    got = net.state_dict()
    assert got.keys() == expected.keys() and all(torch.equal(got[k], expected[k]) for k in expected)

    fetched = downloads / bundle
    # the release carries every fragment its docs tell a user to merge, at the same relative path; the shared base is
    # merged into its train.json instead
    shared = sorted(p.relative_to(repo_root / "configs") for p in (repo_root / "configs").rglob("*.json"))
    shared = [rel for rel in shared if rel.parts[0] != "base"]
    assert shared and all((fetched / "configs" / rel).is_file() for rel in shared)
    assert not (fetched / "configs" / "base").exists() and (fetched / "configs" / "multi_gpu_train.json").is_file()
    train = json.loads((fetched / "configs" / "train.json").read_text())
    # the base builds the engine the recipe names
    assert train["train"]["trainer"]["_target_"] == "@train#engine" and train["train"]["engine"] == "SupervisedTrainer"
    assert train["validate"]["evaluator"]["_target_"] == "@validate#engine"
    quick = fetched / "configs" / "quick.json"
    data = tmp_path / "data"
    data.mkdir()
    scan = np.random.default_rng(0).uniform(-1000, 1000, (32, 32, 32)).astype(np.int16)
    nib.save(nib.Nifti1Image(scan, np.eye(4)), data / "scan.nii.gz")
    # classification reads labelled datalists only; without one it runs on its own small phantom patches
    data_args = [] if bundle == "finetune_classification" else ["--dataset_dir", str(data)]
    run_cli(["-m", "monai.bundle", "run", "--config_file", f"['{fetched / 'configs' / 'inference.json'}','{quick}']",
             "--bundle_root", str(fetched), *data_args])
    outputs = [p.name for p in (fetched / "eval").rglob("*") if p.is_file()]
    assert any(name.startswith("scan") or name.endswith(".csv") for name in outputs), outputs


def test_shared_fragments_are_found_and_never_shadow_a_bundle_config(tmp_path):
    from monai_genesis.packaging import bundle_files, shared_fragments

    project = tmp_path / "project"
    bundle = make_tiny_bundle(project / "bundles")
    (project / "configs" / "networks").mkdir(parents=True)
    (project / "configs" / "quick.json").write_text("{}")
    (project / "configs" / "networks" / "unet.json").write_text("{}")
    (project / "configs" / "networks" / "notes.txt").write_text("not a fragment")
    assert shared_fragments(bundle) == (project / "configs").resolve()
    names = [name for _, name in bundle_files(bundle)]
    assert "tiny_restoration/configs/quick.json" in names and "tiny_restoration/configs/networks/unet.json" in names
    assert not any(name.endswith("notes.txt") for name in names)
    assert not any("quick" in name for _, name in bundle_files(bundle, fragments=None))
    (bundle / "configs" / "quick.json").write_text("{}")
    with pytest.raises(ValueError, match="has the name of the shared fragment"):
        bundle_files(bundle)


def test_github_source_finds_latest_version_from_model_info(tmp_path, serve_dir, monkeypatch):
    """`download --source github` without a version reads model_info.json and fetches NAME_vVERSION.zip."""
    import monai.bundle.scripts as scripts

    bundle = make_tiny_bundle(tmp_path / "src")
    dist = tmp_path / "dist"
    package(bundle, out=dist, repo="someone/monai-genesis/v0.2.0")
    meta = json.loads((bundle / "configs" / "metadata.json").read_text())
    meta["version"] = "0.2.0"
    meta["changelog"] = {"0.2.0": "second release", **meta["changelog"]}
    (bundle / "configs" / "metadata.json").write_text(json.dumps(meta))
    package(bundle, out=dist, repo="someone/monai-genesis/v0.2.0")
    base = serve_dir(dist)
    requested = []

    class LocalResponse:
        def __init__(self, text):
            self.text = text

        def raise_for_status(self):
            pass

    def local_get(url, *args, **kwargs):
        # GitHub is not reachable from tests: answer its raw model_info.json address from the local dist/
        requested.append(url)
        with urllib.request.urlopen(f"{base}/model_info.json") as response:
            return LocalResponse(response.read().decode())

    def local_release(owner, repo, tag_name, filename):
        assert (owner, repo, tag_name) == ("someone", "monai-genesis", "v0.2.0")
        return f"{base}/{filename}"

    # MONAI reads model_info.json with `requests` (an optional dependency of MONAI) and GitHub's release addresses
    monkeypatch.setattr(scripts, "has_requests", True)
    monkeypatch.setattr(scripts, "requests", types.SimpleNamespace(get=local_get))
    monkeypatch.setattr(scripts, "_get_git_release_url", local_release)
    scripts.download(name="tiny_restoration", source="github", repo="someone/monai-genesis/v0.2.0",
                     bundle_dir=tmp_path / "downloads", progress=False)
    assert requested == ["https://raw.githubusercontent.com/someone/monai-genesis/v0.2.0/models/model_info.json"]
    fetched = json.loads((tmp_path / "downloads" / "tiny_restoration" / "configs" / "metadata.json").read_text())
    assert fetched["version"] == "0.2.0"
    assert (tmp_path / "downloads" / "tiny_restoration_v0.2.0.zip").is_file()


def test_release_leaves_out_run_outputs_and_data_and_runs_alone(tmp_path, repo_root, caplog):
    """A used bundle folder (store, logs, pictures, resume states, scans) packs into a zip of the bundle, its weights
    and configs only, readable by all, whose train.json (the recipe merged with the base) trains on its own."""
    import logging
    import stat

    from monai.bundle import ConfigWorkflow

    src = shutil.copytree(repo_root / "bundles" / "genesis_pretrain", tmp_path / "src" / "genesis_pretrain",
                          ignore=shutil.ignore_patterns("models", "eval", "runs", "store"))
    outputs = ["store/store.json", "store/a1b2.npy", "models/model.pt", "models/model_final.pt",
               "models/resume_checkpoint_epoch=2.pt", "eval/restorations.png", "eval/phantoms/phantom_000.nii.gz",
               "data/scan.nii.gz", "datalist.npz"]
    for rel in outputs:
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_bytes(b"\0")
    with caplog.at_level(logging.WARNING, logger="monai_genesis.packaging"):
        zip_path = package(src, out=tmp_path / "dist", fragments=repo_root / "configs")
    names = _names(zip_path)
    assert "genesis_pretrain/models/model.pt" in names and "genesis_pretrain/configs/train.json" in names
    left = [rel for rel in outputs if f"genesis_pretrain/{rel}" not in names]
    assert left == [rel for rel in outputs if rel != "models/model.pt"]
    message = " ".join(r.getMessage() for r in caplog.records if "left out of the release" in r.getMessage())
    for part in ("store/ (2 files)", "models/model_final.pt", "models/resume_checkpoint_epoch=2.pt", "eval/ (2 files)",
                 "data/ (1 files)", "datalist.npz"):
        assert part in message, message
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(os.stat(zip_path).st_mode) == 0o666 & ~umask

    unpacked = tmp_path / "unpacked"
    with zipfile.ZipFile(zip_path) as zf:
        zf.extractall(unpacked)
    configs = unpacked / "genesis_pretrain" / "configs"
    tiny = {"genesis_features": 2, "patch_size": [16, 16, 16], "phantom_size": [32, 32, 24], "num_phantoms": 3,
            "cubes_per_volume": 2, "val_cubes_per_volume": 2, "batch_size": 2, "num_workers": 0, "val_interval": 1}
    workflow = ConfigWorkflow(config_file=[str(configs / "train.json"), str(configs / "quick.json")],
                              workflow_type="train", logging_file=False, bundle_root=str(tmp_path / "run"), epochs=1,
                              **tiny)
    workflow.initialize()
    assert workflow.check_properties() == []
    workflow.run()
    assert (tmp_path / "run" / "models" / "model_final.pt").is_file()
    assert np.isfinite(workflow.evaluator.state.metrics["val_mse"])


def test_train_config_files_add_the_base_to_a_recipe_only(tmp_path, repo_root):
    from monai_genesis.packaging import train_config_files

    recipe = train_config_files(repo_root / "bundles" / "genesis_pretrain")
    assert recipe == [str(repo_root / "bundles" / "genesis_pretrain" / "configs" / "train.json"),
                      str((repo_root / "configs" / "base" / "train.json").resolve())]
    # the release's train.json is the merge a run makes, its knobs first and its workflow steps last
    from monai_genesis.packaging import flattened_train_config

    flattened = flattened_train_config(*recipe)
    assert flattened == ConfigParser.load_config_files(recipe)
    assert list(flattened)[:2] == ["imports", "bundle_root"] and list(flattened)[-3:] == ["initialize", "run", "finalize"]
    # a train.json with its own trainer is whole: nothing is merged into it
    bundle = make_tiny_bundle(tmp_path / "project" / "bundles")
    (tmp_path / "project" / "configs" / "base").mkdir(parents=True)
    (tmp_path / "project" / "configs" / "base" / "train.json").write_text("{}")
    whole = json.loads((bundle / "configs" / "train.json").read_text())
    whole["train"] = {"trainer": {"_target_": "SupervisedTrainer"}}
    (bundle / "configs" / "train.json").write_text(json.dumps(whole))
    assert train_config_files(bundle) == [str(bundle / "configs" / "train.json")]


def test_release_leaves_out_a_volume_store_wherever_it_lies(tmp_path, repo_root):
    """A store prepared into a folder of any name inside the bundle (its records name the source scans) stays out."""
    from pathlib import Path

    from monai_genesis.data import StoreSettings, VolumeStore

    src = shutil.copytree(repo_root / "bundles" / "genesis_pretrain", tmp_path / "src" / "genesis_pretrain",
                          ignore=shutil.ignore_patterns("models", "eval", "runs", "store"))
    scan = tmp_path / "scan.nii.gz"
    nib.save(nib.Nifti1Image(np.arange(24 * 20 * 12, dtype=np.int16).reshape(24, 20, 12), np.eye(4)), str(scan))
    store = VolumeStore.prepare([str(scan)], src / "my_cache", StoreSettings(), progress=False)
    written = sorted(p.name for p in Path(store.folder).iterdir())
    assert "index.json" in written and "settings.json" in written and len(written) >= 4
    names = _names(package(src, out=tmp_path / "dist", fragments=repo_root / "configs"))
    assert not [n for n in names if "my_cache" in n]
    assert "genesis_pretrain/configs/train.json" in names
