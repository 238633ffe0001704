"""Training throughput of ``MoBYv2Classifier.fit`` against an authors'-style reference loop.

The reference does the same work per step (a weak and a strong view of every image, query
and key branches, symmetric InfoNCE against two queues, cross-entropy, SGD step, EMA update,
enqueue) the way the MoBYv2AL authors' code does it: per-sample PIL augmentations with
torchvision transforms inside DataLoader worker processes, a Python loop over parameters
for the EMA, fp32. Both run in the same process on the same synthetic images, and the
script prints images per second and the ratio skmoby / reference.

Examples::

    uv run python benchmarks/train_step.py                       # CPU, LeNet-5, 32x32 RGB
    uv run python benchmarks/train_step.py --backbone resnet18 --device cuda --n 8192
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms as T

from skmoby import MoBYv2Classifier
from skmoby.backbones import make_backbone
from skmoby.network import MoBYv2Network, cosine_momentum


class _PILPairs(Dataset):
    """Per-sample PIL augmentation, as in the authors' data pipeline."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, mean, std) -> None:
        self.images, self.labels = images, labels  # uint8 (n, H, W, C)
        size = images.shape[1]
        norm = [T.ToTensor(), T.Normalize(mean, std)]
        kernel = max(3, (size // 10) | 1)
        self.weak = T.Compose([T.RandomCrop(size, padding=4), T.RandomHorizontalFlip(), *norm])
        self.strong = T.Compose([
            T.RandomResizedCrop(size, scale=(0.2, 1.0)),
            T.RandomHorizontalFlip(),
            T.RandomApply([T.ColorJitter(0.4, 0.4, 0.2, 0.1)], p=0.8),
            T.RandomGrayscale(p=0.2),
            T.RandomApply([T.GaussianBlur(kernel, sigma=(0.1, 2.0))], p=0.2),
            T.RandomSolarize(128, p=0.2),
            *norm,
        ])

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i):
        img = Image.fromarray(self.images[i].squeeze(-1) if self.images.shape[-1] == 1
                              else self.images[i])
        return self.weak(img), self.strong(img), int(self.labels[i])


def reference_fit(images, labels, args, device) -> float:
    """Train for args.epochs with the reference loop; return seconds."""
    torch.manual_seed(0)
    c = images.shape[-1]
    mean, std = [0.5] * c, [0.25] * c
    encoder = make_backbone(args.backbone, (c, images.shape[1], images.shape[2]))
    net = MoBYv2Network(encoder, encoder.feature_dim, 10, queue_size=args.queue).to(device)
    params = [p for p in net.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=0.01, momentum=0.9, weight_decay=5e-4)
    loader = DataLoader(_PILPairs(images, labels, mean, std), batch_size=args.batch_size,
                        shuffle=True, num_workers=args.workers, drop_last=False,
                        persistent_workers=args.workers > 0)
    total = args.epochs * len(loader)
    step = 0
    t0 = time.perf_counter()
    for _ in range(args.epochs):
        for weak, strong, y in loader:
            weak, strong, y = weak.to(device), strong.to(device), y.to(device)
            con, f_weak, k_w, k_s = net.contrastive_terms(weak, strong, 0.2)
            loss = F.cross_entropy(net.head(f_weak), y) + 0.5 * con.mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            m = cosine_momentum(step, total, 0.99)
            with torch.no_grad():  # the authors' per-parameter Python loop
                for pq, pk in zip(net.encoder.parameters(), net.key_encoder.parameters(),
                                  strict=True):
                    pk.data = pk.data * m + pq.data * (1.0 - m)
                for pq, pk in zip(net.projector.parameters(), net.key_projector.parameters(),
                                  strict=True):
                    pk.data = pk.data * m + pq.data * (1.0 - m)
            net.enqueue(k_w, k_s)
            step += 1
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def skmoby_fit(images, labels, args, device, **extra) -> float:
    X = np.ascontiguousarray(np.moveaxis(images, -1, 1))  # uint8 (n, C, H, W)
    clf = MoBYv2Classifier(args.backbone, max_epochs=args.epochs, batch_size=args.batch_size,
                           queue_size=args.queue, random_state=0, device=str(device), **extra)
    t0 = time.perf_counter()
    clf.fit(X, labels)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backbone", default="lenet5")
    p.add_argument("--size", type=int, default=32, help="image side (32)")
    p.add_argument("--channels", type=int, default=3, choices=(1, 3))
    p.add_argument("--n", type=int, default=2048, help="images per epoch (2048)")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--queue", type=int, default=4096)
    p.add_argument("--workers", type=int, default=2, help="reference DataLoader workers")
    p.add_argument("--device", default="auto")
    args = p.parse_args()
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available()
                          else ("cpu" if args.device == "auto" else args.device))
    rng = np.random.RandomState(0)
    images = rng.randint(0, 256, (args.n, args.size, args.size, args.channels), dtype=np.uint8)
    labels = rng.randint(0, 10, args.n)
    # Warm-up: first CUDA/cuDNN calls and worker start-up do not count.
    warm = argparse.Namespace(**{**vars(args), "epochs": 1})
    skmoby_fit(images[:256], labels[:256], warm, device)
    n_img = args.n * args.epochs
    rows = [("reference (PIL workers, loop EMA, fp32)", reference_fit(images, labels, args,
                                                                        device))]
    rows.append(("skmoby fit (fp32)", skmoby_fit(images, labels, args, device)))
    if device.type == "cuda":
        rows.append(("skmoby fit (bf16, channels_last)",
                     skmoby_fit(images, labels, args, device, precision="bf16",
                                channels_last=True)))
    # The supervised baselines (lambda_c=0) skip the strong view and the key branch.
    supervised = skmoby_fit(images, labels, args, device, lambda_c=0.0)
    ref = n_img / rows[0][1]
    print(f"device={device} backbone={args.backbone} images={args.n}x{args.epochs} "
          f"size={args.channels}x{args.size}x{args.size} batch={args.batch_size}")
    print(f"{'loop':<42}{'images/s':>10}{'ratio':>8}")
    for name, sec in rows:
        ips = n_img / sec
        print(f"{name:<42}{ips:>10.1f}{ips / ref:>8.2f}")
    print(f"skmoby fit, lambda_c=0 (supervised only): {n_img / supervised:.1f} images/s, "
          f"{rows[1][1] / supervised:.2f}x the rate of skmoby's joint fit (fp32)")


if __name__ == "__main__":
    main()
