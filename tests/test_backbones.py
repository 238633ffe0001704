import pytest
import torch

from skmoby.backbones import BACKBONES, make_backbone


@pytest.mark.parametrize(
    ("name", "shape", "dim"),
    [
        ("vgg16", (3, 32, 32), 512),
        ("resnet18", (3, 32, 32), 512),
        ("resnet18", (1, 28, 28), 512),
        ("lenet5", (1, 28, 28), 400),
        ("lenet5", (3, 32, 32), 400),
        ("lenet5", (1, 8, 8), 400),
        ("cnn", (1, 8, 8), 128),
        ("mlp", (10,), 128),
        ("mlp", (1, 8, 8), 128),
        ("vgg16", (1, 8, 8), 512),
    ],
)
def test_feature_sizes(name, shape, dim):
    net = make_backbone(name, shape).eval()
    assert net.feature_dim == dim
    with torch.no_grad():
        out = net(torch.rand(2, *shape))
    assert out.shape == (2, dim)


@pytest.mark.slow
def test_wrn28_is_640_dimensional():
    net = make_backbone("wrn28", (3, 32, 32)).eval()
    with torch.no_grad():
        assert net(torch.rand(1, 3, 32, 32)).shape == (1, 640)


def test_registry_names():
    assert set(BACKBONES) == {"vgg16", "resnet18", "wrn28", "lenet5", "cnn", "mlp"}


def test_unknown_name_and_wrong_input_kind():
    with pytest.raises(ValueError, match="backbone must be one of"):
        make_backbone("resnet1000", (3, 32, 32))
    with pytest.raises(ValueError, match="backbone 'cnn' needs images"):
        make_backbone("cnn", (5,))
