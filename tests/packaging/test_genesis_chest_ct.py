import hashlib
import json
import shutil

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.bundle import ConfigWorkflow, download, load, verify_metadata, verify_net_in_out
from monai.bundle.properties import InferProperties
from monai.utils import BundleProperty, BundlePropertyConfig

from monai_genesis.networks import GenesisUNet
from monai_genesis.packaging import package
from monai_genesis.weights import GENESIS_CHEST_CT_SHA256, official_to_genesis_key
from tests.networks.official_format import KEYS_JSON
from tests.packaging.helpers import run_cli

NAME = "genesis_chest_ct"


@pytest.fixture(scope="module")
def released_checkpoint(tmp_path_factory, repo_root):
    """A checkpoint in the released format: 106 ``module.``-prefixed tensors, epoch and optimizer state."""
    spec = json.loads(KEYS_JSON.read_text())
    gen = torch.Generator().manual_seed(3)
    state_dict = {}
    for key, shape in zip(spec["keys"], spec["shapes"]):
        if key.endswith("num_batches_tracked"):
            state_dict[f"module.{key}"] = torch.tensor(17)
        else:
            state_dict[f"module.{key}"] = torch.randn(shape, generator=gen)
    assert len(state_dict) == 106
    optimizer = {"state": {}, "param_groups": [{"lr": 1.0, "momentum": 0.9, "params": list(range(106))}]}
    folder = tmp_path_factory.mktemp("hosted")
    path = folder / "Genesis_Chest_CT.pt"
    torch.save({"epoch": 42, "state_dict": state_dict, "optimizer_state_dict": optimizer}, path)
    return path, hashlib.sha256(path.read_bytes()).hexdigest(), state_dict


def _copy_bundle(repo_root, dest, url, hash_val):
    """Copy the bundle (without downloaded or produced files) and point its large file at ``url``."""
    bundle = shutil.copytree(repo_root / "bundles" / NAME, dest / NAME, ignore=shutil.ignore_patterns("models", "eval"))
    large = json.loads((bundle / "large_files.json").read_text())
    large["large_files"][0].update(url=url, hash_val=hash_val)
    (bundle / "large_files.json").write_text(json.dumps(large, indent=4))
    return bundle


def _assert_released_weights(net, state_dict):
    got = net.state_dict()
    assert len(got) == len(state_dict) == 106
    for key, value in state_dict.items():
        assert torch.equal(got[official_to_genesis_key(key[len("module.") :])], value), key


def test_bundle_declares_the_released_file(repo_root):
    bundle = repo_root / "bundles" / NAME
    assert not (bundle / "large_files.yml").exists() and not (bundle / "large_files.yaml").exists()
    (entry,) = json.loads((bundle / "large_files.json").read_text())["large_files"]
    assert entry == {
        "path": "models/Genesis_Chest_CT.pt",
        "url": "https://huggingface.co/MrGiovanni/ModelsGenesis/resolve/main/Genesis_Chest_CT.pt",
        "hash_val": GENESIS_CHEST_CT_SHA256,
        "hash_type": "sha256",
    }
    meta = json.loads((bundle / "configs" / "metadata.json").read_text())
    assert meta["version"] in meta["changelog"]
    assert "Zhou" in meta["authors"] and "LUNA16" in meta["data_source"]
    inference = json.loads((bundle / "configs" / "inference.json").read_text())
    assert inference["checkpoint_sha256"] == GENESIS_CHEST_CT_SHA256
    for name in ("LICENSE", "docs/README.md", "docs/data_license.txt", "configs/logging.conf"):
        assert (bundle / name).is_file(), name


def test_download_large_files_load_package_and_run(tmp_path, repo_root, serve_dir, released_checkpoint):
    """Fetch the weights with MONAI's downloader, check the network, then release, download and run the bundle."""
    path, sha256, state_dict = released_checkpoint
    base = serve_dir(path.parent)
    bundle = _copy_bundle(repo_root, tmp_path / "copy", f"{base}/Genesis_Chest_CT.pt", sha256)

    run_cli(["-m", "monai.bundle", "download_large_files", "--bundle_path", str(bundle)])
    assert (bundle / "models" / "Genesis_Chest_CT.pt").read_bytes() == path.read_bytes()
    workflow = ConfigWorkflow(
        config_file=str(bundle / "configs" / "inference.json"),
        workflow_type="inference",
        bundle_root=str(bundle),
        checkpoint_sha256=sha256,
        device="$torch.device('cpu')",
    )
    workflow.initialize()
    net = workflow.parser.get_parsed_content("network")
    assert isinstance(net, GenesisUNet)
    _assert_released_weights(net, state_dict)
    # the default config checks the hash of the released file, which this test file does not have
    default = ConfigWorkflow(config_file=str(bundle / "configs" / "inference.json"), workflow_type="inference",
                             bundle_root=str(bundle))
    default.initialize()
    with pytest.raises(RuntimeError) as err:
        default.parser.get_parsed_content("network")
    assert isinstance(err.value.__cause__, ValueError) and "SHA-256" in str(err.value.__cause__)

    # release zip: the weights are inside and large_files.json is left out
    zip_path = package(bundle, out=tmp_path / "dist")
    dist_base = serve_dir(tmp_path / "dist")
    downloads = tmp_path / "downloads"
    version = json.loads((bundle / "configs" / "metadata.json").read_text())["version"]
    download(name=NAME, version=version, url=f"{dist_base}/{NAME}_v{version}.zip", bundle_dir=downloads, progress=False)
    fetched = downloads / NAME
    assert not (fetched / "large_files.json").exists()
    assert (fetched / "models" / "Genesis_Chest_CT.pt").read_bytes() == path.read_bytes()
    assert zip_path.endswith(f"{NAME}_v{version}.zip")

    loaded = load(
        name=NAME,
        bundle_dir=downloads,
        workflow_type="inference",
        model_file="models/Genesis_Chest_CT.pt",
        key_in_ckpt="state_dict",
        device="cpu",
        copy_model_args={"filter_func": lambda k, v: (official_to_genesis_key(k[len("module.") :]), v)},
    )
    _assert_released_weights(loaded, state_dict)

    data = tmp_path / "data"
    data.mkdir()
    hu = np.random.default_rng(0).uniform(-1200, 1200, (64, 64, 32)).astype(np.float32)
    nib.save(nib.Nifti1Image(hu, np.diag([0.7, 0.7, 2.5, 1.0])), data / "scan.nii.gz")
    run_cli(["-m", "monai.bundle", "run", "--config_file", str(fetched / "configs" / "inference.json"),
             "--bundle_root", str(fetched), "--dataset_dir", str(data), "--checkpoint_sha256", sha256,
             "--dataloader#num_workers", "0", "--device", "$torch.device('cpu')"])
    restored = nib.load(fetched / "eval" / "scan_restored.nii.gz")
    assert restored.shape == (64, 64, 32)
    np.testing.assert_allclose(restored.affine, np.diag([0.7, 0.7, 2.5, 1.0]))
    values = restored.get_fdata()
    with torch.no_grad():
        x = torch.from_numpy((np.clip(hu, -1000, 1000) + 1000) / 2000)[None, None].float()
        want = loaded.eval()(x)[0, 0].numpy()
    np.testing.assert_allclose(values, want, atol=1e-4)


def test_wrong_hash_stops_and_leaves_no_file(tmp_path, repo_root, serve_dir, released_checkpoint):
    path, sha256, _ = released_checkpoint
    base = serve_dir(path.parent)
    bundle = _copy_bundle(repo_root, tmp_path, f"{base}/Genesis_Chest_CT.pt", "0" * 64)

    proc = run_cli(["-m", "monai.bundle", "download_large_files", "--bundle_path", str(bundle)], check=False)
    assert proc.returncode != 0
    assert "hash check of downloaded file failed" in proc.stderr
    assert not (bundle / "models").exists() or not any((bundle / "models").iterdir())
    assert sorted(p.name for p in bundle.iterdir()) == ["LICENSE", "configs", "docs", "large_files.json"]


@pytest.mark.parametrize("bundle", ["finetune_segmentation", "finetune_classification"])
def test_fine_tuning_bundles_take_the_released_weights(bundle, repo_root, released_checkpoint):
    """The released file, as this bundle fetches it, is a valid ``pretrained`` of the fine-tuning bundles."""
    config = repo_root / "bundles" / bundle / "configs" / "train.json"
    if not config.is_file():
        pytest.skip(f"{bundle} is absent")
    path, _, state_dict = released_checkpoint
    base = repo_root / "configs" / "base" / "train.json"
    workflow = ConfigWorkflow(config_file=[str(config), str(base)], workflow_type="train", pretrained=str(path),
                              device="$torch.device('cpu')", logging_file=False)
    workflow.initialize()
    loader = workflow.parser.get_parsed_content("train#handlers#0")
    assert type(loader).__name__ == "PretrainedLoader" and loader.finetune == "full"
    loader(None)
    net = workflow.parser.get_parsed_content("network")
    target = net.state_dict()
    matching = {}
    for key, value in state_dict.items():
        ours = official_to_genesis_key(key[len("module.") :])
        if ours in target and target[ours].shape == value.shape:
            matching[ours] = value
    encoder = [k for k in matching if k.startswith("encoder.") and k.endswith("conv.weight")]
    assert len(encoder) == 8  # two convolutions in each of the four encoder levels
    assert all(torch.equal(target[k], v) for k, v in matching.items())
    assert loader.report.num_loaded >= len([k for k in matching if not k.endswith("num_batches_tracked")])
    if bundle == "finetune_segmentation":
        assert len(matching) == 104  # all but the output convolution, which has 3 classes here


def test_metadata_schema_and_network_io(repo_root, tmp_path):
    """The bundle's metadata passes the Model Zoo schema kept with the tests, and its network matches the declared I/O."""
    schema_src = repo_root / "tests" / "bundles" / "metadata_schema.json"
    if not schema_src.is_file():
        pytest.skip(f"{schema_src} is absent")
    configs = repo_root / "bundles" / NAME / "configs"
    schema = tmp_path / "schema.json"
    schema.write_bytes(schema_src.read_bytes())
    verify_metadata(meta_file=str(configs / "metadata.json"), filepath=str(schema),
                    hash_val=hashlib.md5(schema.read_bytes()).hexdigest())
    verify_net_in_out(net_id="network_def", meta_file=str(configs / "metadata.json"),
                      config_file=str(configs / "inference.json"), device="cpu", n=1)
    inference = json.loads((configs / "inference.json").read_text())
    required = [p[BundlePropertyConfig.ID] for p in InferProperties.values() if p[BundleProperty.REQUIRED]]
    assert required and [i for i in required if i not in inference] == []


def test_inference_encodes_with_the_released_weights(tmp_path, repo_root, released_checkpoint):
    path, sha256, state_dict = released_checkpoint
    bundle = _copy_bundle(repo_root, tmp_path / "copy", "unused", sha256)
    (bundle / "models").mkdir()
    shutil.copy(path, bundle / "models" / "Genesis_Chest_CT.pt")
    data = tmp_path / "data"
    data.mkdir()
    hu = np.random.default_rng(1).uniform(-1200, 1200, (64, 48, 32)).astype(np.float32)
    nib.save(nib.Nifti1Image(hu, np.diag([0.7, 0.7, 2.5, 1.0])), data / "scan.nii.gz")
    workflow = ConfigWorkflow(
        config_file=[str(bundle / "configs" / "inference.json"), str(bundle / "configs" / "encode.json")],
        meta_file=str(bundle / "configs" / "metadata.json"),
        workflow_type="inference",
        bundle_root=str(bundle),
        dataset_dir=str(data),
        checkpoint_sha256=sha256,
        device="$torch.device('cpu')",
    )
    workflow.initialize()
    workflow.run()
    features = nib.load(bundle / "eval" / "features" / "scan_features.nii.gz")
    assert features.shape == (8, 6, 4, 512)  # the 512-channel bottleneck at 1/8 of the resolution
    np.testing.assert_allclose(np.diag(features.affine)[:3], [5.6, 5.6, 20.0], rtol=1e-5)
    with torch.no_grad():
        x = torch.from_numpy((np.clip(hu, -1000, 1000) + 1000) / 2000)[None, None].float()
        net = workflow.parser.get_parsed_content("network").eval()
        assert net.encoder(x)[0].shape == (1, 512, 8, 6, 4)
    assert np.isfinite(features.get_fdata()).all() and features.get_fdata().std() > 0
