"""Batched weak and strong augmentations with per-sample random parameters.

MoBYv2AL gives each image a weak view (flip, padded crop) and a strong view (resized
crop, flip, colour jitter, grayscale, blur, solarize), as in MoBY/BYOL. Here every op
works on a whole batch on the batch's device (CPU or GPU), each sample drawing its own
parameters from one :class:`torch.Generator`, so a seeded generator makes the views
reproducible and no per-image Python loop or PIL round trip is needed.

Image augmentations take float tensors of shape ``(n, C, H, W)`` with values in
``[0, 1]`` (``C`` = 1 or 3; ``H, W >= 8``) and return the same shape and range.
Tabular augmentations take standardised ``(n, d)`` tensors.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "StrongAugment",
    "TabularStrongAugment",
    "TabularWeakAugment",
    "WeakAugment",
    "adjust_hue",
    "rgb_to_grayscale",
]

_LUMA = (0.299, 0.587, 0.114)


def _uniform(n: int, low: float, high: float, g: torch.Generator | None, like: Tensor) -> Tensor:
    return low + (high - low) * torch.rand(n, generator=g, device=like.device, dtype=like.dtype)


def _coin(n: int, p: float, g: torch.Generator | None, like: Tensor) -> Tensor:
    return torch.rand(n, generator=g, device=like.device) < p


def _check_images(x: Tensor) -> None:
    if not isinstance(x, Tensor) or x.ndim != 4:
        raise ValueError(f"x must be a tensor of shape (n, C, H, W); got {getattr(x, 'shape', x)}")
    if x.shape[1] not in (1, 3):
        raise ValueError(f"x must have 1 or 3 channels; got {x.shape[1]}")
    if min(x.shape[-2:]) < 8:
        raise ValueError(f"images must be at least 8x8; got {tuple(x.shape[-2:])}")
    if not x.is_floating_point():
        raise TypeError(f"x must be a floating point tensor in [0, 1]; got {x.dtype}")


def _affine(x: Tensor, theta: Tensor) -> Tensor:
    """Resample every image with its own 2x3 affine map (output -> input coordinates)."""
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def rgb_to_grayscale(x: Tensor) -> Tensor:
    """ITU-R 601 luma of RGB images ``(n, 3, H, W)``, shape ``(n, 1, H, W)``.

    Examples
    --------
    >>> import torch
    >>> rgb_to_grayscale(torch.ones(1, 3, 2, 2)).shape
    torch.Size([1, 1, 2, 2])
    """
    # Python scalars, not a weight tensor: nothing is copied from the host, so this
    # also runs inside a CUDA graph capture.
    r, g, b = x.split(1, dim=1)
    return _LUMA[0] * r + _LUMA[1] * g + _LUMA[2] * b


def _gray(x: Tensor) -> Tensor:
    return x if x.shape[1] == 1 else rgb_to_grayscale(x)


def adjust_hue(x: Tensor, shift: Tensor) -> Tensor:
    """Rotate the hue of RGB images in HSV space by ``shift`` (fraction of a turn, per sample).

    Parameters
    ----------
    x : Tensor of shape (n, 3, H, W)
        RGB images in ``[0, 1]``.
    shift : Tensor of shape (n,)
        Hue shift of every image, in ``[-0.5, 0.5]``.

    Returns
    -------
    Tensor of shape (n, 3, H, W)

    Examples
    --------
    >>> import torch
    >>> red = torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1, 1)
    >>> adjust_hue(red, torch.tensor([1 / 3])).flatten().round(decimals=4).tolist()
    [0.0, 1.0, 0.0]
    """
    r, g, b = x.unbind(dim=1)
    maxc, _ = x.max(dim=1)
    minc, _ = x.min(dim=1)
    v = maxc
    delta = maxc - minc
    s = torch.where(maxc > 0, delta / maxc.clamp_min(1e-12), torch.zeros_like(maxc))
    dsafe = delta.clamp_min(1e-12)
    rc, gc, bc = (maxc - r) / dsafe, (maxc - g) / dsafe, (maxc - b) / dsafe
    h = torch.where(maxc == r, bc - gc, torch.where(maxc == g, 2.0 + rc - bc, 4.0 + gc - rc))
    h = torch.where(delta > 0, (h / 6.0) % 1.0, torch.zeros_like(h))
    h = (h + shift.view(-1, 1, 1)) % 1.0
    # HSV -> RGB with the continuous formulation f(k) = v - v s max(0, min(k, 4 - k, 1)).
    out = []
    for n in (5.0, 3.0, 1.0):
        k = (n + h * 6.0) % 6.0
        out.append(v - v * s * torch.clamp(torch.minimum(k, 4.0 - k), 0.0, 1.0))
    return torch.stack(out, dim=1)


def _blend(a: Tensor, b: Tensor, factor: Tensor) -> Tensor:
    return (factor.view(-1, 1, 1, 1) * a + (1 - factor.view(-1, 1, 1, 1)) * b).clamp(0, 1)


def _gaussian_blur(x: Tensor, sigma: Tensor, max_sigma: float) -> Tensor:
    """Separable Gaussian blur with one sigma per sample, reflect padding.

    The kernel spans 3 ``max_sigma`` on each side (capped by the image), a size known
    without reading ``sigma`` on the host.
    """
    n, c, h, w = x.shape
    k = min(2 * math.ceil(3 * max_sigma) + 1, (min(h, w) - 1) // 2 * 2 + 1)
    k = max(k, 3)
    t = torch.arange(k, device=x.device, dtype=x.dtype) - (k - 1) / 2
    kern = torch.exp(-(t.view(1, -1) ** 2) / (2 * sigma.view(-1, 1).to(x.dtype) ** 2))
    kern = kern / kern.sum(dim=1, keepdim=True)  # (n, k)
    kern = kern.repeat_interleave(c, dim=0)  # (n*c, k)
    y = x.reshape(1, n * c, h, w)
    y = F.pad(y, (k // 2, k // 2, k // 2, k // 2), mode="reflect")
    y = F.conv2d(y, kern.view(n * c, 1, k, 1), groups=n * c)
    y = F.conv2d(y, kern.view(n * c, 1, 1, k), groups=n * c)
    return y.reshape(n, c, h, w)


def _check_prob(name: str, v: object) -> None:
    if isinstance(v, bool) or not isinstance(v, numbers.Real) or not 0.0 <= v <= 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1]; got {v!r}")


def _check_strength(name: str, v: object, top: float = math.inf) -> None:
    if isinstance(v, bool) or not isinstance(v, numbers.Real) or not 0.0 <= v <= top:
        where = "a number >= 0" if top == math.inf else f"a number in [0, {top}]"
        raise ValueError(f"{name} must be {where}; got {v!r}")


def _check_range(name: str, v: object) -> None:
    ok = (
        isinstance(v, tuple | list)
        and len(v) == 2
        and all(isinstance(b, numbers.Real) and not isinstance(b, bool) for b in v)
        and 0.0 < v[0] <= v[1] < math.inf
    )
    if not ok:
        raise ValueError(f"{name} must be a pair (low, high) with 0 < low <= high; got {v!r}")


@dataclass
class WeakAugment:
    """Weak view: random padded crop then random horizontal flip.

    Parameters
    ----------
    padding : int or "auto", default="auto"
        Zero padding on each side before cropping back to the input size; the crop
        offset is uniform over the ``(2 * padding + 1) ** 2`` integer positions.
        ``"auto"`` keeps the paper's proportion, 4 pixels on 32x32 images: one eighth
        of the shorter side, rounded, at least 1 (4 for 28x28 and 32x32, 2 for 16x16,
        1 for 8x8). A fixed 4-pixel shift would move an 8x8 image by half its size.
    flip_p : float, default=0.5
        Probability of a horizontal flip (set 0 for data that is not mirror
        symmetric, such as digits or text).

    Examples
    --------
    >>> import torch
    >>> g = torch.Generator().manual_seed(0)
    >>> WeakAugment()(torch.rand(5, 3, 16, 16), generator=g).shape
    torch.Size([5, 3, 16, 16])
    >>> WeakAugment().padding_for(8, 8), WeakAugment().padding_for(32, 32)
    (1, 4)
    """

    padding: int | str = "auto"
    flip_p: float = 0.5

    def __post_init__(self) -> None:
        self.padding_for(8, 8)
        _check_prob("flip_p", self.flip_p)

    def padding_for(self, height: int, width: int) -> int:
        """The padding in pixels used for images of size ``height`` x ``width``."""
        if isinstance(self.padding, str) and self.padding == "auto":
            return max(1, int(min(height, width) / 8 + 0.5))
        if (
            isinstance(self.padding, bool)
            or not isinstance(self.padding, numbers.Integral)
            or self.padding < 0
        ):
            raise ValueError(f"padding must be 'auto' or an int >= 0; got {self.padding!r}")
        return int(self.padding)

    def __call__(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        _check_images(x)
        n, _, h, w = x.shape
        g = generator
        pad = self.padding_for(h, w)
        flip = torch.where(_coin(n, self.flip_p, g, x), -1.0, 1.0).to(x)
        dx = torch.randint(-pad, pad + 1, (n,), generator=g, device=x.device)
        dy = torch.randint(-pad, pad + 1, (n,), generator=g, device=x.device)
        theta = torch.zeros(n, 2, 3, device=x.device, dtype=x.dtype)
        theta[:, 0, 0] = flip
        theta[:, 1, 1] = 1.0
        theta[:, 0, 2] = 2.0 * dx.to(x.dtype) / w
        theta[:, 1, 2] = 2.0 * dy.to(x.dtype) / h
        return _affine(x, theta)


@dataclass
class StrongAugment:
    """Strong view of MoBY/BYOL: resized crop, flip, colour jitter, grayscale, blur, solarize.

    Colour jitter applies brightness, contrast, saturation and hue in that fixed order
    (torchvision draws a random order per image; the fixed order keeps the op batched).
    Saturation, hue and grayscale leave 1-channel images unchanged, as torchvision does.

    Parameters
    ----------
    scale : tuple of float, default=(0.2, 1.0)
        Range of the crop's area as a fraction of the image.
    ratio : tuple of float, default=(3/4, 4/3)
        Range of the crop's aspect ratio (drawn log-uniformly).
    flip_p : float, default=0.5
        Probability of a horizontal flip.
    jitter_p : float, default=0.8
        Probability of colour jitter.
    brightness, contrast, saturation : float, default=0.4, 0.4, 0.2
        Jitter strengths (>= 0): factors drawn from ``[max(0, 1 - s), 1 + s]``, as
        torchvision's ``ColorJitter``.
    hue : float, default=0.1
        Hue shift drawn from ``[-hue, hue]`` (fraction of a turn, at most 0.5).
    grayscale_p : float, default=0.2
        Probability of converting to grayscale.
    blur_p : float, default=0.2
        Probability of a Gaussian blur.
    blur_sigma : tuple of float, default=(0.1, 2.0)
        Range of the blur's standard deviation in pixels.
    solarize_p : float, default=0.2
        Probability of solarizing (values >= ``solarize_threshold`` are inverted).
    solarize_threshold : float, default=0.5
        Solarize threshold on the ``[0, 1]`` scale.

    Examples
    --------
    >>> import torch
    >>> g = torch.Generator().manual_seed(0)
    >>> out = StrongAugment()(torch.rand(4, 1, 8, 8), generator=g)
    >>> out.shape, bool(out.min() >= 0), bool(out.max() <= 1)
    (torch.Size([4, 1, 8, 8]), True, True)
    """

    scale: tuple[float, float] = (0.2, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip_p: float = 0.5
    jitter_p: float = 0.8
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.2
    hue: float = 0.1
    grayscale_p: float = 0.2
    blur_p: float = 0.2
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    solarize_p: float = 0.2
    solarize_threshold: float = 0.5

    def __post_init__(self) -> None:
        for name in ("scale", "ratio", "blur_sigma"):
            _check_range(name, getattr(self, name))
        for name in ("flip_p", "jitter_p", "grayscale_p", "blur_p", "solarize_p"):
            _check_prob(name, getattr(self, name))
        _check_strength("solarize_threshold", self.solarize_threshold, 1.0)
        for name in ("brightness", "contrast", "saturation"):
            _check_strength(name, getattr(self, name))
        _check_strength("hue", self.hue, 0.5)

    def crop_maps(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """The affine maps of the random resized crop and flip, one per image.

        These are the maps :meth:`__call__` resamples ``x`` with, drawn from
        ``generator`` in the same order, so they show the crops a view takes without
        making it.

        Parameters
        ----------
        x : Tensor of shape (n, C, H, W)
            Images; only their number, size, device and dtype are read.
        generator : torch.Generator or None, default=None
            Source of the random draws.

        Returns
        -------
        Tensor of shape (n, 2, 3)
            Maps from output to input coordinates in ``[-1, 1]``: ``[:, 0, 0]`` is the
            crop's width as a fraction of the image's, negative when the image is
            flipped, ``[:, 1, 1]`` its height, ``[:, :, 2]`` its center.

        Examples
        --------
        >>> import torch
        >>> g = torch.Generator().manual_seed(0)
        >>> theta = StrongAugment(scale=(1.0, 1.0), ratio=(1.0, 1.0)).crop_maps(
        ...     torch.zeros(2, 1, 8, 8), generator=g
        ... )
        >>> theta.shape, theta[:, 0, 0].abs().tolist(), theta[:, 1, 1].tolist()
        (torch.Size([2, 2, 3]), [1.0, 1.0], [1.0, 1.0])
        """
        _check_images(x)
        n, _, h, w = x.shape
        g = generator
        area = _uniform(n, self.scale[0], self.scale[1], g, x)
        log_r = _uniform(n, math.log(self.ratio[0]), math.log(self.ratio[1]), g, x)
        r = torch.exp(log_r)
        # Crop sides as fractions of the image's width and height.
        cw = torch.sqrt(area * r * h / w).clamp(max=1.0)
        ch = torch.sqrt(area / r * w / h).clamp(max=1.0)
        cx = (2 * torch.rand(n, generator=g, device=x.device, dtype=x.dtype) - 1) * (1 - cw)
        cy = (2 * torch.rand(n, generator=g, device=x.device, dtype=x.dtype) - 1) * (1 - ch)
        flip = torch.where(_coin(n, self.flip_p, g, x), -1.0, 1.0).to(x)
        theta = torch.zeros(n, 2, 3, device=x.device, dtype=x.dtype)
        theta[:, 0, 0] = cw * flip
        theta[:, 1, 1] = ch
        theta[:, 0, 2] = cx
        theta[:, 1, 2] = cy
        return theta

    def _resized_crop(self, x: Tensor, g: torch.Generator | None) -> Tensor:
        return _affine(x, self.crop_maps(x, g)).clamp(0, 1)

    def _jitter(self, x: Tensor, g: torch.Generator | None) -> Tensor:
        n = x.shape[0]
        # factors below 0 would invert the image: torchvision starts the ranges at 0 too
        b = _uniform(n, max(0.0, 1 - self.brightness), 1 + self.brightness, g, x)
        c = _uniform(n, max(0.0, 1 - self.contrast), 1 + self.contrast, g, x)
        s = _uniform(n, max(0.0, 1 - self.saturation), 1 + self.saturation, g, x)
        hshift = _uniform(n, -self.hue, self.hue, g, x)
        y = (x * b.view(-1, 1, 1, 1)).clamp(0, 1)
        mean = _gray(y).mean(dim=(1, 2, 3), keepdim=True)
        y = _blend(y, mean.expand_as(y), c)
        if y.shape[1] == 3:
            y = _blend(y, rgb_to_grayscale(y).expand_as(y), s)
            y = adjust_hue(y, hshift)
        return y

    def __call__(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        _check_images(x)
        n = x.shape[0]
        g = generator
        x = self._resized_crop(x, g)
        jitter = _coin(n, self.jitter_p, g, x).view(-1, 1, 1, 1)
        x = torch.where(jitter, self._jitter(x, g), x)
        gray = _coin(n, self.grayscale_p, g, x).view(-1, 1, 1, 1)
        if x.shape[1] == 3:
            x = torch.where(gray, rgb_to_grayscale(x).expand_as(x), x)
        blur = _coin(n, self.blur_p, g, x).view(-1, 1, 1, 1)
        sigma = _uniform(n, self.blur_sigma[0], self.blur_sigma[1], g, x)
        # Every image is blurred and the coin picks the result: no host read of the
        # coins and no data-dependent shapes, so the view can run in a CUDA graph.
        blurred = _gaussian_blur(x, sigma, float(self.blur_sigma[1])).clamp(0, 1)
        x = torch.where(blur, blurred, x)
        sol = _coin(n, self.solarize_p, g, x).view(-1, 1, 1, 1)
        x = torch.where(sol & (x >= self.solarize_threshold), 1 - x, x)
        return x


@dataclass
class TabularWeakAugment:
    """Weak view of standardised tabular rows: small Gaussian noise.

    Parameters
    ----------
    noise : float, default=0.1
        Standard deviation of the added noise (in standard deviations of each feature).

    Examples
    --------
    >>> import torch
    >>> TabularWeakAugment()(torch.zeros(3, 4)).shape
    torch.Size([3, 4])
    """

    noise: float = 0.1

    def __post_init__(self) -> None:
        _check_strength("noise", self.noise)

    def __call__(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        if x.ndim != 2:
            raise ValueError(f"x must be a tensor of shape (n, d); got {tuple(x.shape)}")
        eps = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        return x + self.noise * eps


@dataclass
class TabularStrongAugment:
    """Strong view of standardised tabular rows: feature masking plus Gaussian noise.

    Each feature of each row is replaced by 0 (the feature's mean after
    standardisation) with probability ``mask_p``, then noise is added.

    Parameters
    ----------
    mask_p : float, default=0.3
        Probability of masking each feature.
    noise : float, default=0.3
        Standard deviation of the added noise.

    Examples
    --------
    >>> import torch
    >>> TabularStrongAugment()(torch.ones(3, 4)).shape
    torch.Size([3, 4])
    """

    mask_p: float = 0.3
    noise: float = 0.3

    def __post_init__(self) -> None:
        _check_prob("mask_p", self.mask_p)
        _check_strength("noise", self.noise)

    def __call__(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        if x.ndim != 2:
            raise ValueError(f"x must be a tensor of shape (n, d); got {tuple(x.shape)}")
        keep = torch.rand(x.shape, generator=generator, device=x.device) >= self.mask_p
        eps = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        return torch.where(keep, x, torch.zeros_like(x)) + self.noise * eps
