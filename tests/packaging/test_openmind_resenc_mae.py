"""The OpenMind ResEnc-L MAE bundle: fetched with MONAI's downloader from 127.0.0.1, loaded, run, fine-tuned from."""

import json
import shutil

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.bundle import ConfigWorkflow

from monai_genesis.interop import reverse_spatial_axes
from monai_genesis.networks import ResEncUNet
from monai_genesis.weights import file_sha256, load_pretrained
from tests.packaging.helpers import run_cli

NAME = "openmind_resenc_mae"
NARROW = [4, 8, 16, 24, 32, 32]  # ResEnc-L's layout at a width that runs on a CPU in seconds


@pytest.fixture(scope="module")
def hosted(tmp_path_factory):
    """An nnssl release file written from the reference ResidualEncoderUNet (ResEnc-L's layout, narrow)."""
    pytest.importorskip("dynamic_network_architectures.architectures.unet")
    from tests.interop.reference import reference_unet, release_checkpoint

    ref = reference_unet(features=NARROW, strides=[[1, 1, 1]] + [[2, 2, 2]] * 5, kernels=[[3, 3, 3]] * 6)
    folder = tmp_path_factory.mktemp("hosted")
    path = folder / "checkpoint_final.pth"
    torch.save(release_checkpoint(ref.state_dict()), path)
    return path, ref


def _copy_bundle(repo_root, dest, url, hash_val=""):
    bundle = shutil.copytree(repo_root / "bundles" / NAME, dest / NAME, ignore=shutil.ignore_patterns("models", "eval"))
    large = json.loads((bundle / "large_files.json").read_text())
    large["large_files"][0].update(url=url, hash_val=hash_val)
    (bundle / "large_files.json").write_text(json.dumps(large, indent=4))
    return bundle


def test_bundle_declares_the_released_file(repo_root):
    bundle = repo_root / "bundles" / NAME
    (entry,) = json.loads((bundle / "large_files.json").read_text())["large_files"]
    assert entry == {
        "path": "models/checkpoint_final.pth",
        "url": "https://huggingface.co/MIC-DKFZ/ResEncL-OpenMind-MAE/resolve/main/checkpoint_final.pth",
        "hash_val": "",
        "hash_type": "sha256",
    }
    meta = json.loads((bundle / "configs" / "metadata.json").read_text())
    assert meta["version"] in meta["changelog"] and "Wald" in meta["authors"]
    assert json.loads((bundle / "configs" / "inference.json").read_text())["checkpoint_sha256"] is None
    for name in ("LICENSE", "docs/README.md", "docs/data_license.txt", "configs/logging.conf"):
        assert (bundle / name).is_file(), name
    assert "hash at the first download" in (bundle / "docs" / "README.md").read_text()


def test_fetch_load_run_and_fine_tune(tmp_path, repo_root, serve_dir, hosted):
    path, ref = hosted
    base = serve_dir(path.parent)
    bundle = _copy_bundle(repo_root, tmp_path, f"{base}/checkpoint_final.pth")
    run_cli(["-m", "monai.bundle", "download_large_files", "--bundle_path", str(bundle)])
    fetched = bundle / "models" / "checkpoint_final.pth"
    assert fetched.read_bytes() == path.read_bytes()

    # the hash recorded after the first download pins the file from then on
    sha256 = file_sha256(fetched)
    workflow = ConfigWorkflow(
        config_file=str(bundle / "configs" / "inference.json"), workflow_type="inference", bundle_root=str(bundle),
        resenc_features=NARROW, checkpoint_sha256=sha256, device="$torch.device('cpu')",
    )
    workflow.initialize()
    net = workflow.parser.get_parsed_content("network")
    assert isinstance(net, ResEncUNet) and not net.training
    stem = ref.state_dict()["encoder.stem.convs.0.all_modules.0.weight"]
    assert torch.equal(net.state_dict()["encoder.stem.conv.conv.weight"], reverse_spatial_axes(stem))
    assert torch.equal(net.state_dict()["out.conv.weight"], ref.state_dict()["decoder.seg_layers.4.weight"])
    wrong = ConfigWorkflow(config_file=str(bundle / "configs" / "inference.json"), workflow_type="inference",
                           bundle_root=str(bundle), resenc_features=NARROW, checkpoint_sha256="0" * 64)
    wrong.initialize()
    with pytest.raises(RuntimeError) as err:
        wrong.parser.get_parsed_content("network")
    assert "SHA-256" in str(err.value.__cause__) and str(fetched) in str(err.value.__cause__)

    # a reconstruction of a small MRI-like volume, resampled to 1 mm and z-scored
    data = tmp_path / "data"
    data.mkdir()
    volume = np.random.default_rng(0).gamma(2.0, 100.0, (32, 32, 16)).astype(np.float32)
    nib.save(nib.Nifti1Image(volume, np.diag([1.0, 1.0, 2.0, 1.0])), data / "scan.nii.gz")
    run_cli(["-m", "monai.bundle", "run", "--config_file", str(bundle / "configs" / "inference.json"),
             "--bundle_root", str(bundle), "--dataset_dir", str(data), "--resenc_features", json.dumps(NARROW),
             "--roi_size", "[64,64,64]", "--dataloader#num_workers", "0", "--device", "$torch.device('cpu')"])
    out = nib.load(bundle / "eval" / "scan_reconstructed.nii.gz")
    assert out.shape[:3] == (32, 32, 31)  # 1 mm along the third axis
    np.testing.assert_allclose(np.diag(out.affine)[:3], [1.0, 1.0, 1.0])
    assert np.isfinite(out.get_fdata()).all() and out.get_fdata().std() > 0

    # the fetched file is a --pretrained of the fine-tuning bundles: stem and encoder, 224 tensors
    target = ResEncUNet(features=NARROW, out_channels=3)
    report = load_pretrained(target, fetched)
    assert len(report.loaded) == 224 and all(k.startswith("encoder.") for k in report.loaded)
    assert report.pretraining.spacing == [1.0, 1.0, 1.0] and report.pretraining.zscore


def test_metadata_passes_the_model_zoo_schema(repo_root, tmp_path):
    import hashlib

    from monai.bundle import verify_metadata

    schema = tmp_path / "schema.json"
    schema.write_bytes((repo_root / "tests" / "bundles" / "metadata_schema.json").read_bytes())
    verify_metadata(meta_file=str(repo_root / "bundles" / NAME / "configs" / "metadata.json"), filepath=str(schema),
                    hash_val=hashlib.md5(schema.read_bytes()).hexdigest())
