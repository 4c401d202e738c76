import pytest
import torch
from monai.networks.nets import BasicUNet

from monai_genesis.networks import NetWithActivation, make_activation


@pytest.mark.slow
def test_net_with_activation_keeps_names_and_applies_activation():
    torch.manual_seed(0)
    net = BasicUNet(3, 1, 2, features=(4, 4, 8, 8, 16, 4))
    pretrain = NetWithActivation(net, "sigmoid").eval()
    finetune = NetWithActivation(net, None).eval()
    assert list(pretrain.state_dict()) == list(finetune.state_dict())
    assert all(k.startswith("net.") for k in pretrain.state_dict())
    x = torch.rand(1, 1, 32, 32, 32)
    with torch.no_grad():
        logits = finetune(x)
        assert torch.allclose(pretrain(x), torch.sigmoid(logits))
        assert torch.allclose(torch.jit.script(pretrain)(x), torch.sigmoid(logits), atol=1e-6)


def test_make_activation():
    assert isinstance(make_activation(None), torch.nn.Identity)
    assert isinstance(make_activation("sigmoid"), torch.nn.Sigmoid)
    with pytest.raises(ValueError, match="unknown output activation"):
        make_activation("sigmoidal")
