"""Fine-tuning the segmentation and classification bundles from an ``mae_pretrain`` model: encoder and stem only."""

import logging

import pytest
import torch
from monai.bundle import ConfigParser

from monai_genesis.networks import ResEncClassifier, ResEncUNet
from monai_genesis.weights import load_pretrained
from tests.bundles.workflows import BASE, REPO, TINY, config, run_workflow

NETWORKS = REPO / "configs" / "networks"
MAE = {k: TINY["mae_pretrain"][k] for k in ("resenc_features", "resenc_strides", "patch_size")}
TINY_NET = {"features": MAE["resenc_features"], "strides": MAE["resenc_strides"]}


@pytest.fixture(scope="module")
def mae_model(tmp_path_factory):
    root = tmp_path_factory.mktemp("mae_for_finetuning")
    run_workflow("mae_pretrain", "train", root, epochs=1)
    return root / "models" / "model.pt"


def _encoder_keys(net):
    return [k for k in net.state_dict() if k.startswith("encoder.")]


def test_encoder_only_with_the_stem_repeated_over_the_input_channels():
    torch.manual_seed(0)
    source = ResEncUNet(in_channels=1, **TINY_NET)
    target = ResEncUNet(in_channels=3, out_channels=2, **TINY_NET)
    decoder_before = {k: v.clone() for k, v in target.state_dict().items() if not k.startswith("encoder.")}
    report = load_pretrained(target, source.state_dict(), include_prefixes="encoder.", repeat_input_channels=True)
    assert sorted(report.loaded) == sorted(_encoder_keys(target))
    stem = "encoder.stem.conv.conv.weight"
    assert report.repeated_input_channels == [stem]
    expected = source.state_dict()[stem].repeat(1, 3, 1, 1, 1) / 3
    torch.testing.assert_close(target.state_dict()[stem], expected)
    assert all(torch.equal(target.state_dict()[k], v) for k, v in decoder_before.items())
    assert all(why.startswith("not under include_prefixes") for k, why in report.skipped.items())
    # an input of three equal channels gives the pretrained stem's response
    x = torch.randn(1, 1, 16, 16, 16)
    torch.testing.assert_close(target.encoder.stem.conv(x.repeat(1, 3, 1, 1, 1)), source.encoder.stem.conv(x))


def test_without_the_option_a_one_channel_stem_is_skipped_for_its_shape():
    source = ResEncUNet(in_channels=1, **TINY_NET)
    target = ResEncUNet(in_channels=2, **TINY_NET)
    report = load_pretrained(target, source.state_dict())
    assert "encoder.stem.conv.conv.weight" in report.shape_mismatched and not report.repeated_input_channels


def test_classifier_takes_the_encoder_by_name():
    source = ResEncUNet(**TINY_NET)
    classifier = ResEncClassifier(num_classes=3, **TINY_NET)
    report = load_pretrained(classifier, source.state_dict())
    assert sorted(report.loaded) == sorted(_encoder_keys(classifier)) and len(report.loaded) > 100
    assert tuple(classifier.train()(torch.randn(2, 1, 16, 16, 16)).shape) == (2, 3)


def _loader(workflow):
    return next(h for h in workflow.parser.get_parsed_content("train#handlers") if hasattr(h, "finetune"))


def test_segmentation_fine_tunes_from_the_mae_model(mae_model, tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="monai_genesis"):
        workflow = run_workflow(
            "finetune_segmentation", "train", tmp_path,
            [str(NETWORKS / "resenc_l.json"), str(REPO / "configs" / "finetune_mae.json")],
            pretrained=str(mae_model), **MAE,
        )
    report = _loader(workflow).report
    network = workflow.parser.get_parsed_content("network")
    encoder = _encoder_keys(network)
    assert len(encoder) > 100 and sorted(k for k in report.loaded if k.startswith("encoder.")) == sorted(encoder)
    assert not [k for k in report.loaded if not k.startswith("encoder.")]  # the decoder starts fresh
    assert f"{len(encoder)} of the {len(encoder)} encoder tensors" in caplog.text
    assert (tmp_path / "models" / "model_final.pt").is_file()


def test_classification_fine_tunes_from_the_mae_model(mae_model, tmp_path):
    workflow = run_workflow(
        "finetune_classification", "train", tmp_path,
        [str(NETWORKS / "resenc_classifier.json"), str(REPO / "configs" / "finetune_mae.json")],
        pretrained=str(mae_model), **MAE,
    )
    network = workflow.parser.get_parsed_content("network")
    assert type(network).__name__ == "ResEncClassifier"
    assert sorted(_loader(workflow).report.loaded) == sorted(_encoder_keys(network))


@pytest.mark.parametrize("bundle", ["finetune_segmentation", "finetune_classification"])
@pytest.mark.parametrize("schedule,name", [("finetune_warmup", "WarmupPolySchedule"),
                                           ("finetune_sawtooth", "SawtoothWarmupPolySchedule")])
def test_warm_up_schedules_are_override_files(bundle, schedule, name):
    parser = ConfigParser()
    parser.read_config([config(bundle, "train"), BASE, str(NETWORKS / "resenc_l.json" if bundle == "finetune_segmentation"
                                                             else NETWORKS / "resenc_classifier.json"),
                        str(REPO / "configs" / f"{schedule}.json")])
    parser.update({"resenc_features": MAE["resenc_features"], "epochs": 200})
    optimizer = parser.get_parsed_content("optimizer")
    assert type(optimizer).__name__ == "SGD" and optimizer.param_groups[0]["nesterov"] is True
    assert optimizer.param_groups[0]["lr"] == 1e-3 and optimizer.param_groups[0]["momentum"] == 0.99
    scheduler = parser.get_parsed_content("lr_scheduler")
    assert type(scheduler).__name__ == name
    # the base's schedule handler, switched on by the schedule the override file sets
    (index,) = [i for i, h in enumerate(parser["train"]["handlers"]) if h["_target_"] == "LrScheduleHandler"]
    assert parser.get_parsed_content(f"train#handlers#{index}#_disabled_") is False
    if name == "SawtoothWarmupPolySchedule":
        # the encoder rests while the decoder warms up
        assert [g["name"] for g in optimizer.param_groups] == ["encoder", "decoder"]
        assert [g["lr"] for g in optimizer.param_groups] == [0.0, pytest.approx(1e-3 / 25)]
