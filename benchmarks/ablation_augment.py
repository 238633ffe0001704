"""Strong view: skmoby's random resized crop and blur against torchvision's / the authors'.

Measures, by sampling (no images are needed, seconds on a CPU):

* the crop area (fraction of the image) that :class:`skmoby.augment.StrongAugment`
  produces for ``scale=(0.2, 1)`` and ``ratio=(3/4, 4/3)``. skmoby draws area and aspect
  ratio once and clamps a side that would exceed the image; torchvision's
  ``RandomResizedCrop`` (the authors' code) redraws up to 10 times until the crop fits
  (then falls back to the whole image), rounding sides to pixels;
* how often the authors' strong view blurs: their ``load_dataset.py`` defines
  ``GaussianBlur`` twice, and the later class, which applies itself with probability 0.5,
  is the one wrapped in ``RandomApply(p=0.2)``.

Usage::

    uv run python benchmarks/ablation_augment.py
"""

from __future__ import annotations

import math

import harness
import numpy as np
import torch

from skmoby.augment import StrongAugment


def skmoby_crop_areas(n: int, aug: StrongAugment, seed: int = 0) -> tuple[np.ndarray, float]:
    """Areas of skmoby's crops, read off the affine maps ``StrongAugment`` samples, and
    the share of crops with a side clamped to the image's."""
    theta = aug.crop_maps(torch.zeros(n, 1, 32, 32), torch.Generator().manual_seed(seed))
    sides = torch.stack([theta[:, 0, 0].abs(), theta[:, 1, 1]], dim=1)
    clamped = float((sides >= 1 - 1e-6).any(dim=1).float().mean())
    return sides.prod(dim=1).numpy(), clamped


def torchvision_crop_areas(
    n: int, size: int, scale=(0.2, 1.0), ratio=(3 / 4, 4 / 3), seed: int = 0
) -> np.ndarray:
    """Areas of torchvision's ``RandomResizedCrop.get_params`` (same algorithm, NumPy)."""
    rng = np.random.default_rng(seed)
    out = np.empty(n)
    for i in range(n):
        for _ in range(10):
            target = size * size * rng.uniform(*scale)
            ar = math.exp(rng.uniform(math.log(ratio[0]), math.log(ratio[1])))
            cw, ch = round(math.sqrt(target * ar)), round(math.sqrt(target / ar))
            if 0 < cw <= size and 0 < ch <= size:
                out[i] = cw * ch / (size * size)
                break
        else:
            out[i] = 1.0
    return out


def main() -> None:
    p = harness.parser(__doc__)
    p.add_argument("--n", type=int, default=100_000)
    args = p.parse_args()
    aug = StrongAugment()
    sk, clamped = skmoby_crop_areas(args.n, aug)
    print(f"crop area, scale {aug.scale}, ratio (3/4, 4/3), {args.n} draws")
    print(
        f"  skmoby       mean {sk.mean():.3f}  median {np.median(sk):.3f}  "
        f"P(area > 0.9) {np.mean(sk > 0.9):.3f}  a side clamped {clamped:.3f}"
    )
    for size in (32, 28):
        tv = torchvision_crop_areas(args.n // 2, size)
        print(
            f"  torchvision  mean {tv.mean():.3f}  median {np.median(tv):.3f}  "
            f"P(area > 0.9) {np.mean(tv > 0.9):.3f}  ({size}x{size})"
        )
    print(f"blur probability: skmoby {aug.blur_p}; authors 0.2 x 0.5 = {0.2 * 0.5}")


if __name__ == "__main__":
    main()
