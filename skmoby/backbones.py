"""Feature encoders ``f_q`` used by MoBYv2AL, and a registry to build them by name.

Every backbone maps a batch to feature vectors of shape ``(n, feature_dim)`` and
stores that size in its ``feature_dim`` attribute. Image backbones end with global
average pooling, so they accept any image size they can downsample (CIFAR-style
networks were designed for 32x32; they also run on smaller images down to 8x8).
"""

from __future__ import annotations

import copy
import numbers
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

__all__ = [
    "BACKBONES",
    "CNN",
    "MLP",
    "VGG16",
    "LeNet5",
    "ResNet18",
    "WideResNet28",
    "build_encoder",
    "make_backbone",
]


class _Pool(nn.Module):
    """2x2 max pooling that leaves maps of size 1 alone (tiny inputs)."""

    def forward(self, x: Tensor) -> Tensor:
        if min(x.shape[-2:]) < 2:
            return x
        return nn.functional.max_pool2d(x, 2, ceil_mode=True)


class VGG16(nn.Module):
    """CIFAR-style VGG-16 with batch norm: 13 conv layers, global pooling, 512-d features.

    Parameters
    ----------
    in_channels : int, default=3
        Number of input channels.

    Examples
    --------
    >>> import torch
    >>> VGG16(in_channels=1)(torch.zeros(2, 1, 32, 32)).shape
    torch.Size([2, 512])
    """

    _cfg: Sequence[int | str] = (
        64,
        64,
        "M",
        128,
        128,
        "M",
        256,
        256,
        256,
        "M",
        512,
        512,
        512,
        "M",
        512,
        512,
        512,
        "M",
    )

    def __init__(self, in_channels: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = in_channels
        for v in self._cfg:
            if v == "M":
                layers.append(_Pool())
            else:
                layers += [
                    nn.Conv2d(c, int(v), 3, padding=1, bias=False),
                    nn.BatchNorm2d(int(v)),
                    nn.ReLU(inplace=True),
                ]
                c = int(v)
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.feature_dim = 512

    def forward(self, x: Tensor) -> Tensor:
        return self.features(x)


class _BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out)
            )

    def forward(self, x: Tensor) -> Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class ResNet18(nn.Module):
    """CIFAR-style ResNet-18 (3x3 stem, no max pool), 512-d features.

    Parameters
    ----------
    in_channels : int, default=3
        Number of input channels.

    Examples
    --------
    >>> import torch
    >>> ResNet18(in_channels=3)(torch.zeros(2, 3, 16, 16)).shape
    torch.Size([2, 512])
    """

    def __init__(self, in_channels: int = 3) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.ReLU(True)
        )
        blocks: list[nn.Module] = []
        c = 64
        for width, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            blocks += [_BasicBlock(c, width, stride), _BasicBlock(width, width, 1)]
            c = width
        self.layers = nn.Sequential(*blocks)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.feature_dim = 512

    def forward(self, x: Tensor) -> Tensor:
        return self.pool(self.layers(self.stem(x)))


class _WideBlock(nn.Module):
    """Pre-activation wide residual block (Zagoruyko & Komodakis, 2016)."""

    def __init__(self, c_in: int, c_out: int, stride: int, dropout: float) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Conv2d(c_in, c_out, 1, stride, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        o = torch.relu(self.bn1(x))
        out = self.conv1(o)
        out = self.conv2(self.dropout(torch.relu(self.bn2(out))))
        shortcut = x if isinstance(self.shortcut, nn.Identity) else self.shortcut(o)
        return out + shortcut


class WideResNet28(nn.Module):
    """WideResNet-28-``widen`` for CIFAR; 640-d features with the default ``widen=10``.

    Parameters
    ----------
    in_channels : int, default=3
        Number of input channels.
    widen : int, default=10
        Widening factor ``k``; the feature size is ``64 * k``.
    dropout : float, default=0.0
        Dropout rate inside the residual blocks.

    Examples
    --------
    >>> import torch
    >>> WideResNet28(widen=1)(torch.zeros(2, 3, 8, 8)).shape
    torch.Size([2, 64])
    """

    def __init__(self, in_channels: int = 3, widen: int = 10, dropout: float = 0.0) -> None:
        super().__init__()
        n = 4  # (28 - 4) / 6 blocks per group
        widths = (16 * widen, 32 * widen, 64 * widen)
        self.stem = nn.Conv2d(in_channels, 16, 3, 1, 1, bias=False)
        blocks: list[nn.Module] = []
        c = 16
        for width, stride in zip(widths, (1, 2, 2), strict=True):
            for i in range(n):
                blocks.append(_WideBlock(c, width, stride if i == 0 else 1, dropout))
                c = width
        self.layers = nn.Sequential(*blocks)
        self.head = nn.Sequential(
            nn.BatchNorm2d(c), nn.ReLU(True), nn.AdaptiveAvgPool2d(1), nn.Flatten()
        )
        self.feature_dim = c

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.layers(self.stem(x)))


class LeNet5(nn.Module):
    """LeNet-5 convolutional trunk with 400-d features (16 maps of 5x5).

    The first convolution pads by 2, so 28x28 inputs (FashionMNIST) follow the classic
    32x32 geometry; an adaptive pooling to 5x5 keeps the feature size at 400 for any
    input size, and the second convolution pads when the maps are too small for it.

    Parameters
    ----------
    in_channels : int, default=1
        Number of input channels.

    Examples
    --------
    >>> import torch
    >>> LeNet5(in_channels=1)(torch.zeros(2, 1, 28, 28)).shape
    torch.Size([2, 400])
    """

    def __init__(self, in_channels: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 6, 5, padding=2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.pool = nn.AdaptiveAvgPool2d(5)
        self.feature_dim = 400

    def forward(self, x: Tensor) -> Tensor:
        x = _Pool()(torch.relu(self.conv1(x)))
        pad = 2 if min(x.shape[-2:]) < 5 else 0
        x = torch.relu(nn.functional.conv2d(x, self.conv2.weight, self.conv2.bias, padding=pad))
        x = _Pool()(x)
        return torch.flatten(self.pool(x), 1)


class CNN(nn.Module):
    """A small 3-layer CNN (32-64-128 channels), 128-d features; fast on CPU.

    Parameters
    ----------
    in_channels : int, default=3
        Number of input channels.
    width : int, default=32
        Channels of the first layer; the feature size is ``4 * width``.

    Examples
    --------
    >>> import torch
    >>> CNN(in_channels=1)(torch.zeros(2, 1, 8, 8)).shape
    torch.Size([2, 128])
    """

    def __init__(self, in_channels: int = 3, width: int = 32) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = in_channels
        for i, w in enumerate((width, 2 * width, 4 * width)):
            layers += [
                nn.Conv2d(c, w, 3, padding=1, bias=False),
                nn.BatchNorm2d(w),
                nn.ReLU(inplace=True),
            ]
            if i < 2:
                layers.append(_Pool())
            c = w
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.feature_dim = c

    def forward(self, x: Tensor) -> Tensor:
        return self.features(x)


class MLP(nn.Module):
    """Two hidden layers with batch norm for tabular data (or flattened images).

    Parameters
    ----------
    in_features : int
        Number of input features (the product of all non-batch dimensions).
    hidden : int, default=128
        Width of both hidden layers, and the feature size.

    Examples
    --------
    >>> import torch
    >>> MLP(in_features=5)(torch.zeros(3, 5)).shape
    torch.Size([3, 128])
    """

    def __init__(self, in_features: int, hidden: int = 128) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Flatten(),
            nn.Linear(in_features, hidden),
            nn.BatchNorm1d(hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, hidden),
            nn.BatchNorm1d(hidden),
            nn.ReLU(inplace=True),
        )
        self.feature_dim = hidden

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


def _prod(shape: Sequence[int]) -> int:
    out = 1
    for s in shape:
        out *= int(s)
    return out


#: Backbone names and factories ``(sample_shape) -> nn.Module``; ``sample_shape`` is the
#: shape of one input sample, ``(C, H, W)`` for images or ``(d,)`` for tabular data.
BACKBONES: dict[str, Callable[[tuple[int, ...]], nn.Module]] = {
    "vgg16": lambda shape: VGG16(in_channels=shape[0]),
    "resnet18": lambda shape: ResNet18(in_channels=shape[0]),
    "wrn28": lambda shape: WideResNet28(in_channels=shape[0]),
    "lenet5": lambda shape: LeNet5(in_channels=shape[0]),
    "cnn": lambda shape: CNN(in_channels=shape[0]),
    "mlp": lambda shape: MLP(in_features=_prod(shape)),
}

_IMAGE_ONLY = frozenset({"vgg16", "resnet18", "wrn28", "lenet5", "cnn"})


def make_backbone(name: str, sample_shape: tuple[int, ...]) -> nn.Module:
    """Build a registered backbone for samples of a given shape.

    Parameters
    ----------
    name : str
        One of ``"vgg16"``, ``"resnet18"``, ``"wrn28"``, ``"lenet5"``, ``"cnn"``, ``"mlp"``.
    sample_shape : tuple of int
        Shape of one sample: ``(C, H, W)`` for images, ``(d,)`` for tabular data.

    Returns
    -------
    torch.nn.Module
        The backbone, with a ``feature_dim`` attribute.

    Raises
    ------
    ValueError
        If ``name`` is unknown, or an image backbone is asked for tabular samples.

    Examples
    --------
    >>> make_backbone("lenet5", (1, 28, 28)).feature_dim
    400
    """
    if not isinstance(name, str) or name not in BACKBONES:
        raise ValueError(
            f"backbone must be one of {sorted(BACKBONES)} or an nn.Module; got {name!r}"
        )
    if name in _IMAGE_ONLY and len(sample_shape) != 3:
        raise ValueError(
            f"backbone {name!r} needs images of shape (n, C, H, W) or (n, H, W); got samples "
            f"of shape {tuple(sample_shape)}. Use backbone='mlp' for tabular data."
        )
    return BACKBONES[name](tuple(sample_shape))


def build_encoder(
    backbone: str | nn.Module, sample_shape: tuple[int, ...]
) -> tuple[nn.Module, int]:
    """The query encoder for ``backbone`` and its feature size.

    A module is deep-copied (the caller's stays untouched); its feature size is its
    integer ``feature_dim`` attribute or, failing that, the width of its output on two
    zero samples in eval mode.

    Parameters
    ----------
    backbone : str or torch.nn.Module
        A registered name (see :func:`make_backbone`) or a module.
    sample_shape : tuple of int
        Shape of one input sample.

    Returns
    -------
    encoder : torch.nn.Module
    feature_dim : int

    Examples
    --------
    >>> build_encoder("cnn", (1, 8, 8))[1]
    128
    """
    if isinstance(backbone, nn.Module):
        encoder = copy.deepcopy(backbone)
    else:
        encoder = make_backbone(backbone, sample_shape)
    dim = getattr(encoder, "feature_dim", None)
    if not isinstance(dim, numbers.Integral) or isinstance(dim, bool):
        was_training = encoder.training
        encoder.eval()
        first = next(encoder.parameters(), None)
        probe = torch.zeros((2, *sample_shape), device=first.device if first is not None else "cpu")
        with torch.no_grad():
            out = encoder(probe)
        encoder.train(was_training)
        if not isinstance(out, torch.Tensor) or out.ndim != 2:
            raise ValueError(
                "backbone must map a batch to features of shape (n, d); got output "
                f"of shape {getattr(out, 'shape', type(out))}. Wrap it, e.g. "
                "nn.Sequential(model, nn.AdaptiveAvgPool2d(1), nn.Flatten())."
            )
        dim = out.shape[1]
    return encoder, int(dim)
