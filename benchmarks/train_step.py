"""Training throughput of ``MoBYv2Classifier.fit`` against an authors'-style reference loop.

The reference does the same work per step (a weak and a strong view of every image, query
and key branches, symmetric InfoNCE against two queues, cross-entropy, SGD step, EMA update,
enqueue) the way the MoBYv2AL authors' code does it: per-sample PIL augmentations with
torchvision transforms inside DataLoader worker processes, a Python loop over parameters
for the EMA, fp32. Both run in the same process on the same synthetic images, and the
script prints images per second and the ratio skmoby / reference.

Rows: the reference; "network only" (skmoby's network, augmentations and SGD on uint8
tensors already on the device, no estimator: the bound for ``fit``); ``fit`` at default
settings; on CUDA, ``fit`` at each precision with and without CUDA-graph capture; and
the supervised-only fit (``lambda_c=0``) of the runner's baselines.

Examples::

    uv run python benchmarks/train_step.py                       # CPU, LeNet-5, 32x32 RGB
    uv run python benchmarks/train_step.py --backbone resnet18 --device cuda --n 8192
"""

from __future__ import annotations

import argparse
from contextlib import nullcontext

import harness
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from skorch.callbacks import Callback
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms as T

from skmoby import MoBYv2Classifier
from skmoby.augment import StrongAugment, WeakAugment
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
        self.strong = T.Compose(
            [
                T.RandomResizedCrop(size, scale=(0.2, 1.0)),
                T.RandomHorizontalFlip(),
                T.RandomApply([T.ColorJitter(0.4, 0.4, 0.2, 0.1)], p=0.8),
                T.RandomGrayscale(p=0.2),
                T.RandomApply([T.GaussianBlur(kernel, sigma=(0.1, 2.0))], p=0.2),
                T.RandomSolarize(128, p=0.2),
                *norm,
            ]
        )

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i):
        img = Image.fromarray(
            self.images[i].squeeze(-1) if self.images.shape[-1] == 1 else self.images[i]
        )
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
    loader = DataLoader(
        _PILPairs(images, labels, mean, std),
        batch_size=args.batch_size,
        shuffle=True,
        num_workers=args.workers,
        drop_last=False,
        persistent_workers=args.workers > 0,
    )
    total = args.epochs * len(loader)
    step = 0
    with harness.Stopwatch(device) as sw:
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
                    for pq, pk in zip(
                        net.encoder.parameters(), net.key_encoder.parameters(), strict=True
                    ):
                        pk.data = pk.data * m + pq.data * (1.0 - m)
                    for pq, pk in zip(
                        net.projector.parameters(), net.key_projector.parameters(), strict=True
                    ):
                        pk.data = pk.data * m + pq.data * (1.0 - m)
                net.enqueue(k_w, k_s)
                step += 1
    return sw.seconds


def network_only(images, labels, args, device, precision="fp32", channels_last=False) -> float:
    """skmoby's network, augmentations and optimizer on uint8 tensors already on the
    device: no estimator, no data loader, no callbacks. The bound the estimator aims at."""
    torch.manual_seed(0)
    X = torch.from_numpy(np.ascontiguousarray(np.moveaxis(images, -1, 1))).to(device)
    y = torch.from_numpy(labels).to(device)
    c = X.shape[1]
    encoder = make_backbone(args.backbone, tuple(X.shape[1:]))
    net = MoBYv2Network(encoder, encoder.feature_dim, 10, queue_size=args.queue).to(device)
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    params = [p for p in net.parameters() if p.requires_grad]
    opt = torch.optim.SGD(
        params,
        lr=0.01,
        momentum=0.9,
        weight_decay=5e-4,
        **({"fused": True} if device.type == "cuda" else {}),
    )
    weak_fn, strong_fn = WeakAugment(), StrongAugment()
    g = torch.Generator(device=device).manual_seed(0)
    mean = torch.full((1, c, 1, 1), 0.5, device=device)
    std = torch.full((1, c, 1, 1), 0.25, device=device)
    amp = (
        torch.autocast(device.type, dtype=torch.bfloat16) if precision == "bf16" else nullcontext()
    )
    n_batch = -(-len(X) // args.batch_size)
    total, step, ptr = args.epochs * n_batch, 0, 0
    with harness.Stopwatch(device) as sw:
        for _ in range(args.epochs):
            perm = torch.randperm(len(X), generator=g, device=device)
            for i in range(n_batch):
                idx = perm[i * args.batch_size : (i + 1) * args.batch_size]
                x = X.index_select(0, idx).float().div_(255)
                weak = (weak_fn(x, g) - mean) / std
                strong = (strong_fn(x, g) - mean) / std
                if channels_last:
                    weak = weak.contiguous(memory_format=torch.channels_last)
                    strong = strong.contiguous(memory_format=torch.channels_last)
                with amp:
                    con, f_weak, k_w, k_s = net.contrastive_terms(weak, strong, 0.2)
                    logits = net.head(f_weak).float()
                loss = F.cross_entropy(logits, y.index_select(0, idx)) + 0.5 * con.float().mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                net.update_keys(cosine_momentum(step, total, 0.99))
                ptr = net.enqueue(k_w, k_s, ptr=ptr)
                step += 1
    return sw.seconds


class ReadsBatches(Callback):
    """Reads each batch's loss as it ends (as ProgressBar does)."""

    def on_batch_end(self, net, **kwargs):
        float(net.history[-1, "batches", -1, "train_loss"])


def skmoby_fit(images, labels, args, device, **extra) -> float:
    X = np.ascontiguousarray(np.moveaxis(images, -1, 1))  # uint8 (n, C, H, W)
    clf = MoBYv2Classifier(
        args.backbone,
        max_epochs=args.epochs,
        batch_size=args.batch_size,
        queue_size=args.queue,
        random_state=0,
        device=str(device),
        **extra,
    )
    with harness.Stopwatch(device) as sw:
        clf.fit(X, labels)
    return sw.seconds


def measure_rows(images, labels, args, device) -> list[tuple[str, float]]:
    """Seconds of each loop, the reference first and network only (fp32) second."""
    cuda = device.type == "cuda"
    rows = [
        ("reference (PIL workers, loop EMA, fp32)", reference_fit(images, labels, args, device))
    ]
    fast = {"precision": "bf16", "channels_last": True} if cuda else {}
    rows.append(("network only (fp32)", network_only(images, labels, args, device)))
    if cuda:
        rows.append(
            (
                "network only (bf16, channels_last)",
                network_only(images, labels, args, device, **fast),
            )
        )
    rows.append(("fit, defaults", skmoby_fit(images, labels, args, device)))
    if cuda:
        for name, kw in [
            ("fit, fp32, eager", dict(precision="fp32", capture=False)),
            ("fit, fp32, captured", dict(precision="fp32", capture=True)),
            ("fit, bf16, eager", dict(precision="bf16", capture=False)),
            ("fit, bf16, captured", dict(precision="bf16", capture=True)),
            ("fit, fp16, eager", dict(precision="fp16", capture=False)),
        ]:
            rows.append((name, skmoby_fit(images, labels, args, device, **kw)))
    # A callback that reads batch rows gets float losses: one host sync per step.
    rows.append(
        (
            "fit, defaults, a batch callback",
            skmoby_fit(images, labels, args, device, callbacks=[ReadsBatches()]),
        )
    )
    # The supervised baselines (lambda_c=0) skip the strong view and the key branch.
    rows.append(
        (
            "fit, defaults, lambda_c=0 (supervised only)",
            skmoby_fit(images, labels, args, device, lambda_c=0.0),
        )
    )
    return rows


def main() -> None:
    p = harness.parser(__doc__)
    p.add_argument("--backbone", default="lenet5")
    p.add_argument("--size", type=int, default=32, help="image side (32)")
    p.add_argument("--channels", type=int, default=3, choices=(1, 3))
    p.add_argument("--n", type=int, default=2048, help="images per epoch (2048)")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--queue", type=int, default=4096)
    p.add_argument("--workers", type=int, default=2, help="reference DataLoader workers")
    harness.add_device(p, "auto")
    args = p.parse_args()
    device = torch.device(
        "cuda"
        if args.device == "auto" and torch.cuda.is_available()
        else ("cpu" if args.device == "auto" else args.device)
    )
    rng = np.random.RandomState(0)
    images = rng.randint(0, 256, (args.n, args.size, args.size, args.channels), dtype=np.uint8)
    labels = rng.randint(0, 10, args.n)
    # Warm-up: first CUDA/cuDNN calls and worker start-up do not count.
    warm = argparse.Namespace(**{**vars(args), "epochs": 1})
    skmoby_fit(images[:256], labels[:256], warm, device)
    rows = measure_rows(images, labels, args, device)
    cuda = device.type == "cuda"
    n_img = args.n * args.epochs
    ref = n_img / rows[0][1]
    net_only = n_img / rows[2 if cuda else 1][1]
    print(
        f"device={device} backbone={args.backbone} images={args.n}x{args.epochs} "
        f"size={args.channels}x{args.size}x{args.size} batch={args.batch_size}"
    )
    cols = [
        harness.Column("loop", 46, align="<"),
        harness.Column("images/s", 10, ".1f"),
        harness.Column("x ref", 8, ".2f"),
        harness.Column("x net", 8, ".2f"),
    ]
    table = [
        [name, n_img / sec, harness.ratio(n_img / sec, ref), harness.ratio(n_img / sec, net_only)]
        for name, sec in rows
    ]
    print(harness.table(cols, table))
    print(
        f"'x net' is against the network-only row at the defaults' precision "
        f"({'bf16, channels_last' if cuda else 'fp32'})."
    )


if __name__ == "__main__":
    main()
