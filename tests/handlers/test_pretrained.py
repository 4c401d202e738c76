import pytest
import torch
from ignite.engine import Engine

from monai_genesis.handlers import PretrainedLoader
from monai_genesis.networks import GenesisClassifier, GenesisUNet


@pytest.fixture
def unet_checkpoint(tmp_path):
    path = tmp_path / "model.pt"
    torch.save(GenesisUNet(features=2).state_dict(), path)
    return path


def test_full_loads_and_reports(unet_checkpoint):
    net = GenesisUNet(features=2, out_channels=3, out_activation=None)
    loader = PretrainedLoader(net, str(unet_checkpoint), finetune="full")
    engine = Engine(lambda e, b: None)
    loader.attach(engine)
    engine.run([0], max_epochs=1)
    source = torch.load(unet_checkpoint, weights_only=True)
    assert loader.report.num_loaded == len(source) - 2
    torch.testing.assert_close(net.state_dict()["encoder.down1.0.conv.weight"], source["encoder.down1.0.conv.weight"])
    assert all(p.requires_grad for p in net.parameters())


def test_frozen_encoder_freezes_only_the_encoder(unet_checkpoint):
    net = GenesisClassifier(features=2)
    loader = PretrainedLoader(net, str(unet_checkpoint), finetune="frozen_encoder")
    loader()
    frozen = {n for n, p in net.named_parameters() if not p.requires_grad}
    assert frozen and all(n.startswith("encoder.") for n in frozen)
    assert all(p.requires_grad for n, p in net.named_parameters() if n.startswith("head"))
    with pytest.raises(ValueError, match="encoder_prefix"):
        PretrainedLoader(GenesisClassifier(features=2), str(unet_checkpoint), "frozen_encoder", encoder_prefix="backbone.")()


def test_scratch_loads_nothing(unet_checkpoint):
    net = GenesisUNet(features=2)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    loader = PretrainedLoader(net, "", finetune="scratch")
    loader()
    assert loader.report is None
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


def test_bad_settings_error_when_made(tmp_path, unet_checkpoint):
    net = GenesisUNet(features=2)
    with pytest.raises(ValueError, match="does not exist"):
        PretrainedLoader(net, str(tmp_path / "missing.pt"))
    with pytest.raises(ValueError, match="needs a checkpoint"):
        PretrainedLoader(net, "", finetune="full")
    with pytest.raises(ValueError, match="finetune must be one of"):
        PretrainedLoader(net, str(unet_checkpoint), finetune="partial")
    with pytest.raises(ValueError, match="scratch"):
        PretrainedLoader(net, str(unet_checkpoint), finetune="scratch")


def test_nothing_matching_is_an_error(tmp_path):
    path = tmp_path / "other.pt"
    torch.save(torch.nn.Linear(3, 3).state_dict(), path)
    with pytest.raises(ValueError, match="tensor"):
        PretrainedLoader(GenesisUNet(features=2), str(path))()
