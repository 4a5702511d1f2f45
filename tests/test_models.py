import pytest
import torch

from rs_core.models.architectures import NormalizeLayer, cifar_resnet20, cifar_resnet110


def test_cifar_resnet20_state_dict_keys_follow_cohen_layout():
    keys = set(cifar_resnet20().state_dict())
    for k in ["1.conv1.weight", "1.bn1.running_mean", "1.layer1.0.conv1.weight", "1.layer1.0.bn2.bias",
              "1.layer2.0.downsample.0.weight", "1.layer2.0.downsample.1.running_var",
              "1.layer3.0.downsample.0.weight", "1.layer3.2.conv2.weight", "1.fc.weight", "1.fc.bias"]:
        assert k in keys
    assert not any(k.startswith("0.") for k in keys)  # normalization constants are not saved
    assert "1.layer1.0.downsample.0.weight" not in keys and "1.layer3.3.conv1.weight" not in keys


def test_resnet110_depth_and_output():
    model = cifar_resnet110().eval()
    assert "1.layer3.17.conv2.weight" in model.state_dict() and "1.layer3.18.conv1.weight" not in model.state_dict()
    with torch.inference_mode():
        assert model(torch.rand(2, 3, 32, 32)).shape == (2, 10)


def test_normalize_layer_normalizes_per_channel_and_follows_the_device():
    layer = NormalizeLayer([0.5, 0.25], [0.5, 0.25])
    x = torch.tensor([0.5, 0.75]).view(1, 2, 1, 1)
    assert torch.allclose(layer(x).flatten(), torch.tensor([0.0, 2.0]))
    assert layer.state_dict() == {}
    with pytest.raises(ValueError, match="^sds:"):
        NormalizeLayer([0.5], [0.0])
