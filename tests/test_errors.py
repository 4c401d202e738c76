"""A run stopped by bad input ends on the project's message, printed last and once."""

import io
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

import monai_genesis.errors as errors
from monai_genesis.errors import GenesisInputError, find_input_error, format_input_error, install_excepthook
from monai_genesis.networks import GenesisUNet

REPO = Path(__file__).resolve().parents[1]
SEGMENTATION = REPO / "bundles" / "finetune_segmentation" / "configs"


def _wrapped(inner: BaseException) -> RuntimeError:
    """``inner`` inside MONAI's two wrappers, as ``monai.bundle run`` raises it."""
    try:
        try:
            try:
                raise inner
            except Exception as e:
                raise RuntimeError("applying transform <LoadVolumed>") from e
        except Exception as e:
            raise RuntimeError("Failed to instantiate component 'CacheDataset'") from e
    except RuntimeError as outer:
        return outer


def test_find_input_error_in_monai_wrappers():
    err = GenesisInputError("volume a.nii.gz could not be read; copy it again.")
    assert find_input_error(_wrapped(err)) is err
    assert find_input_error(RuntimeError("a bug")) is None
    assert find_input_error(_wrapped(KeyError("x"))) is None


def test_value_errors_raised_in_the_package_count_as_input_errors():
    from monai_genesis.handlers import check_pretrained

    try:
        check_pretrained("/nonexistent.pt", "full")
    except ValueError as e:
        raised = e
    assert find_input_error(_wrapped(raised)) is raised
    # a ValueError raised outside the package is not ours
    try:
        int("x")
    except ValueError as e:
        foreign = e
    assert find_input_error(_wrapped(foreign)) is None


def test_input_error_passed_on_by_a_dataloader_worker_as_text():
    text = (
        "Caught RuntimeError in DataLoader worker process 0.\nOriginal Traceback (most recent call last):\n"
        '  File "x.py", line 1, in f\nmonai_genesis.errors.GenesisInputError: volume b.nii.gz holds 3 NaN voxel(s).\n\n'
        "The above exception was the direct cause of the following exception:\n\nRuntimeError: applying transform"
    )
    found = find_input_error(RuntimeError(text))
    assert isinstance(found, GenesisInputError) and str(found) == "volume b.nii.gz holds 3 NaN voxel(s)."


def test_format_ends_with_the_message_once():
    outer = _wrapped(GenesisInputError("label l.nii.gz holds 253 value(s) that are not classes 0 … 2."))
    text = format_input_error(find_input_error(outer))
    lines = [line for line in text.splitlines() if line.strip()]
    assert lines[-1] == "GenesisInputError: label l.nii.gz holds 253 value(s) that are not classes 0 … 2."
    assert text.count("holds 253 value(s)") == 1 and "Failed to instantiate" not in text
    assert lines[0].startswith("The run stopped on bad input (MONAI_GENESIS_FULL_TRACEBACK=1")


def test_hook_prints_input_errors_and_passes_on_the_rest(monkeypatch):
    seen = []
    monkeypatch.setattr(sys, "excepthook", lambda *args: seen.append(args[1]))
    monkeypatch.setattr(errors._input_error_hook, "previous", sys.excepthook)
    install_excepthook()
    assert sys.excepthook is errors._input_error_hook
    install_excepthook()
    assert errors._input_error_hook.previous is not errors._input_error_hook
    stderr = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stderr)
    outer = _wrapped(GenesisInputError("datalist d.json does not exist; pass the path of a JSON datalist file."))
    sys.excepthook(type(outer), outer, outer.__traceback__)
    assert stderr.getvalue().rstrip().splitlines()[-1].endswith("d.json does not exist; pass the path of a JSON datalist file.")
    bug = RuntimeError("a bug")
    sys.excepthook(RuntimeError, bug, None)
    assert seen == [bug]
    monkeypatch.setenv(errors.FULL_TRACEBACK_ENV, "1")
    sys.excepthook(type(outer), outer, outer.__traceback__)
    assert seen == [bug, outer]


def test_log_records_repeating_the_error_are_dropped():
    err = GenesisInputError("volume v.nii.gz could not be read.")
    filt = errors._DropRepeatedInputErrors()
    record = logging.LogRecord("ignite", logging.ERROR, __file__, 1, "terminating due to exception: %s", (err,), None)
    other = logging.LogRecord("run", logging.WARNING, __file__, 1, "training stopped; no final model written.", (), None)
    try:
        raise _wrapped(err)
    except RuntimeError:
        assert not filt.filter(record) and filt.filter(other)
    # outside of the propagation nothing is dropped
    assert filt.filter(record)


def _bundle_run(tmp_path, *overrides, root="run"):
    command = [
        sys.executable, "-m", "monai.bundle", "run",
        "--config_file", json.dumps(
            [str(SEGMENTATION / "train.json"), str(REPO / "configs" / "base" / "train.json"),
             str(REPO / "configs" / "quick.json")]
        ),
        "--meta_file", str(SEGMENTATION / "metadata.json"),
        "--logging_file", str(SEGMENTATION / "logging.conf"),
        "--bundle_root", str(tmp_path / root),
        *overrides,
    ]
    env = dict(os.environ, PYTHONPATH=str(REPO), CUDA_VISIBLE_DEVICES="")
    env.pop(errors.FULL_TRACEBACK_ENV, None)
    return subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)


def _ends_with_once(result, message):
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines[-1].endswith(message), result.stderr[-3000:]
    assert (result.stdout + result.stderr).count(message) == 1
    assert "Failed to evaluate" not in result.stderr and "Failed to instantiate" not in result.stderr


@pytest.mark.slow
def test_bundle_run_ends_on_a_missing_pretrained_file(tmp_path):
    result = _bundle_run(tmp_path, "--pretrained", "/nonexistent.pt")
    _ends_with_once(result, "ValueError: pretrained checkpoint /nonexistent.pt does not exist; pass the path of a model.pt file.")


@pytest.mark.slow
def test_bundle_run_ends_on_a_volume_with_nan_and_on_a_checkpoint_of_another_width(tmp_path):
    image = np.full((40, 40, 20), -1000.0, np.float32)
    image[10:30, 10:30, 5:15] = 40.0
    label = (image > 0).astype(np.uint8)
    nib.save(nib.Nifti1Image(image, np.eye(4)), str(tmp_path / "good.nii.gz"))
    nib.save(nib.Nifti1Image(label, np.eye(4)), str(tmp_path / "label.nii.gz"))
    image[0, 0, 0] = np.nan
    nib.save(nib.Nifti1Image(image, np.eye(4)), str(tmp_path / "nan.nii.gz"))
    good = {"image": "good.nii.gz", "label": "label.nii.gz"}
    (tmp_path / "nan.json").write_text(
        json.dumps({"training": [good, {"image": "nan.nii.gz", "label": "label.nii.gz"}], "validation": [good]})
    )
    result = _bundle_run(tmp_path, "--datalist", str(tmp_path / "nan.json"))
    path = tmp_path / "nan.nii.gz"
    _ends_with_once(result, f"GenesisInputError: volume {path} holds 1 NaN or infinite voxel(s) of 32000 (1 NaN, 0 infinite); "
                    "replace them in the file or array (e.g. numpy.nan_to_num(x, nan=background, posinf=..., neginf=...) "
                    "with the background value, -1000 for CT) or leave the volume out of the data.")

    # quick.json builds a width-8 network; the checkpoint is width 32
    (tmp_path / "good.json").write_text(json.dumps({"training": [good], "validation": [good]}))
    torch.save(GenesisUNet(features=32, out_channels=3).state_dict(), tmp_path / "wide.pt")
    result = _bundle_run(
        tmp_path, "--datalist", str(tmp_path / "good.json"), "--pretrained", str(tmp_path / "wide.pt"), root="wide_run"
    )
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith(f"GenesisInputError: {tmp_path / 'wide.pt'}: only 0 learned weight tensor(s) match")
    assert lines[-1].endswith("or train from scratch.")
    assert (result.stdout + result.stderr).count("only 0 learned weight tensor(s)") == 1
