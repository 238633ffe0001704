"""The MoBYv2AL network: query and key branches, classification head, and key queues.

Figure 1 of Caramalau et al. (BMVC 2022): a query branch (encoder ``f_q``, projector
``f'_q``, predictor ``g_q``) trained by gradient descent, a key branch (``f_k``,
``f'_k``) that follows it as an exponential moving average, a linear classifier ``h`` on
``f_q``, and one queue of past keys per view type.
"""

from __future__ import annotations

import copy
import itertools
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .losses import symmetric_info_nce

__all__ = ["MoBYv2Network", "ProjectionHead", "cosine_momentum", "momentum_update"]


def cosine_momentum(step: int | Tensor, total_steps: int, base: float = 0.99) -> float | Tensor:
    """Key-encoder momentum at a training step: ``1 - (1 - base) (cos(pi t / T) + 1) / 2``.

    Rises from ``base`` at step 0 to 1 at step ``total_steps`` (and stays at 1 after it).

    Parameters
    ----------
    step : int or Tensor
        Current step ``t`` (0-based). A 0-d device tensor (the step counter of a
        captured training step) gives the momentum as a 0-d tensor, computed on the
        device without reading the step back.
    total_steps : int
        Number of training steps ``T`` (> 0).
    base : float, default=0.99
        Momentum at the first step.

    Returns
    -------
    float or Tensor

    Examples
    --------
    >>> cosine_momentum(0, 100), cosine_momentum(100, 100)
    (0.99, 1.0)
    """
    if total_steps <= 0:
        raise ValueError(f"total_steps must be > 0, got {total_steps}")
    if isinstance(step, Tensor):
        cos = torch.cos(math.pi * torch.clamp(step, min=0, max=total_steps) / total_steps)
    else:
        cos = math.cos(math.pi * min(max(step, 0), total_steps) / total_steps)
    return 1.0 - (1.0 - base) * (cos + 1.0) / 2.0


@torch.no_grad()
def momentum_update(target: nn.Module, source: nn.Module, momentum: float | Tensor) -> None:
    """In place ``theta_target <- m theta_target + (1 - m) theta_source`` over parameters.

    Only parameters move; buffers such as batch-norm statistics are kept by each module
    (the key branch updates its own statistics when it runs in training mode).

    Parameters
    ----------
    target, source : torch.nn.Module
        Modules of identical structure.
    momentum : float or Tensor
        ``m`` in ``[0, 1]``, a number or a 0-d device tensor (a captured training step's
        momentum, which the host does not know).

    Examples
    --------
    >>> import torch
    >>> a, b = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    >>> momentum_update(a, b, 0.0)
    >>> bool(torch.equal(a.weight, b.weight))
    True
    """
    t_params = list(target.parameters())
    if not t_params:
        return
    s_params = list(source.parameters())
    if isinstance(momentum, Tensor):  # m theta_t + (1 - m) theta_s with a device scalar
        torch._foreach_mul_(t_params, momentum)
        torch._foreach_add_(t_params, torch._foreach_mul(s_params, 1.0 - momentum))
    else:  # theta_t + (1 - m) (theta_s - theta_t), one fused kernel per group
        torch._foreach_lerp_(t_params, s_params, 1.0 - momentum)


#: Endings of :class:`ProjectionHead` (and of ``MoBYv2Network(projection_head=...)``).
HEAD_ENDINGS = ("bn-relu", "linear")


class ProjectionHead(nn.Module):
    """Projector or predictor: ``Linear -> BatchNorm1d -> ReLU`` blocks, ending as chosen.

    Hidden blocks are always ``Linear -> BatchNorm1d -> ReLU``. The last layer is either
    a plain ``Linear`` with bias (``end="linear"``: MoBY's heads, and the single linear
    layers of the authors' code) or another ``Linear -> BatchNorm1d -> ReLU`` block
    (``end="bn-relu"``: the paper's sentence "a single layer with batch normalisation and
    ReLU", whose outputs are non-negative before the L2 normalisation).

    Parameters
    ----------
    dims : sequence of int
        Layer sizes ``(in, hidden..., out)``; the paper uses one layer, ``(in, 128)``.
    end : {"bn-relu", "linear"}, default="bn-relu"
        The last layer, see above.

    Examples
    --------
    >>> import torch
    >>> ProjectionHead((512, 128))(torch.randn(4, 512)).shape
    torch.Size([4, 128])
    >>> [type(m).__name__ for m in ProjectionHead((8, 4)).layers]
    ['Linear', 'BatchNorm1d', 'ReLU']
    >>> [type(m).__name__ for m in ProjectionHead((8, 4), end="linear").layers]
    ['Linear']
    """

    def __init__(self, dims: tuple[int, ...] | list[int], end: str = "bn-relu") -> None:
        super().__init__()
        if len(dims) < 2:
            raise ValueError(f"dims needs at least an input and an output size; got {dims}")
        if end not in HEAD_ENDINGS:
            raise ValueError(f"end must be one of {list(HEAD_ENDINGS)}; got {end!r}")
        pairs = list(itertools.pairwise(dims))
        blocks: list[nn.Module] = []
        for i, (d_in, d_out) in enumerate(pairs):
            if i == len(pairs) - 1 and end == "linear":
                blocks.append(nn.Linear(d_in, d_out))
            else:
                blocks += [nn.Linear(d_in, d_out, bias=False), nn.BatchNorm1d(d_out), nn.ReLU(True)]
        self.layers = nn.Sequential(*blocks)

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)


class MoBYv2Network(nn.Module):
    """Query/key encoders with projector, predictor, classifier and two key queues.

    ``forward(x)`` returns class logits ``h(f_q(x))``; ``features(x)`` returns ``f_q(x)``.
    The key branch and the queues are registered parameters (without gradients) and
    buffers, so they are saved in ``state_dict`` checkpoints and moved with ``.to()``.

    Parameters
    ----------
    encoder : torch.nn.Module
        Query encoder ``f_q``; the key encoder is a deep copy of it.
    feature_dim : int
        Size of the encoder's output.
    n_classes : int
        Number of classes of the linear head ``h``.
    projection_dim : int, default=128
        Output size of projector and predictor.
    queue_size : int, default=4096
        Number of keys kept in each queue.
    projection_head : {"bn-relu", "linear"}, default="bn-relu"
        How the projector ``f'`` and the predictor ``g_q`` (one layer each) end:
        ``Linear -> BatchNorm1d -> ReLU`` (the paper's text) or a plain linear layer
        (MoBY, the authors' code); see :class:`ProjectionHead`. The default won the
        ablation in the documentation (:doc:`/reproducing`). From the estimator:
        ``MoBYv2Classifier(module__projection_head="linear")``.

    Examples
    --------
    >>> import torch
    >>> from skmoby.backbones import CNN
    >>> net = MoBYv2Network(CNN(1), 128, n_classes=10, queue_size=32)
    >>> net(torch.rand(2, 1, 8, 8)).shape
    torch.Size([2, 10])
    """

    def __init__(
        self,
        encoder: nn.Module,
        feature_dim: int,
        n_classes: int,
        projection_dim: int = 128,
        queue_size: int = 4096,
        projection_head: str = "bn-relu",
    ) -> None:
        super().__init__()
        if projection_head not in HEAD_ENDINGS:
            raise ValueError(
                f"projection_head must be one of {list(HEAD_ENDINGS)}; got {projection_head!r}"
            )
        self.encoder = encoder
        self.projector = ProjectionHead((feature_dim, projection_dim), end=projection_head)
        self.predictor = ProjectionHead((projection_dim, projection_dim), end=projection_head)
        self.head = nn.Linear(feature_dim, n_classes)
        self.key_encoder = copy.deepcopy(encoder)
        self.key_projector = copy.deepcopy(self.projector)
        for p in self.key_parameters():
            p.requires_grad_(False)
        self.queue_size = queue_size
        self.register_buffer(
            "queue_weak", F.normalize(torch.randn(queue_size, projection_dim), dim=1)
        )
        self.register_buffer(
            "queue_strong", F.normalize(torch.randn(queue_size, projection_dim), dim=1)
        )
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))

    def key_parameters(self):
        """Parameters of the key branch (not trained by gradients)."""
        yield from self.key_encoder.parameters()
        yield from self.key_projector.parameters()

    def features(self, x: Tensor) -> Tensor:
        """Query-encoder features ``f_q(x)``, shape ``(n, feature_dim)``."""
        return self.encoder(x)

    def forward(self, x: Tensor) -> Tensor:
        """Class logits ``h(f_q(x))``, shape ``(n, n_classes)``."""
        return self.head(self.encoder(x))

    def query(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Features ``f_q(x)`` and normalised predictions ``norm(g_q(f'_q(f_q(x))))``."""
        f = self.encoder(x)
        return f, F.normalize(self.predictor(self.projector(f)), dim=1)

    @torch.no_grad()
    def key(self, x: Tensor) -> Tensor:
        """Normalised keys ``norm(f'_k(f_k(x)))`` (no gradients)."""
        return F.normalize(self.key_projector(self.key_encoder(x)), dim=1)

    def contrastive_terms(
        self, weak: Tensor, strong: Tensor, temperature: float
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Per-sample contrastive loss of two views, with the weak features and both keys.

        Each view passes through each encoder as a batch of its own, so batch-norm
        statistics (in training mode) are those of that view alone.

        Returns
        -------
        loss : Tensor of shape (n,)
            ``NCE(q', k, Q_weak) + NCE(q, k', Q_strong)``.
        features_weak : Tensor of shape (n, feature_dim)
            ``f_q`` of the weak view (input to the classifier).
        k_weak, k_strong : Tensor of shape (n, projection_dim)
            Keys to enqueue after the step.
        """
        # One forward pass per view, in the query and in the key branch, as MoBY and the
        # authors' code do: batch norm then normalises each view with its own batch
        # statistics instead of statistics mixed over weak and strong images.
        f_weak, q_weak = self.query(weak)
        _, q_strong = self.query(strong)
        k_weak, k_strong = self.key(weak), self.key(strong)
        loss = symmetric_info_nce(
            q_weak,
            q_strong,
            k_weak,
            k_strong,
            self.queue_weak.clone(),
            self.queue_strong.clone(),
            temperature,
        )
        return loss, f_weak, k_weak, k_strong

    @torch.no_grad()
    def update_keys(self, momentum: float | Tensor) -> None:
        """Move the key branch towards the query branch with momentum ``m``."""
        momentum_update(self.key_encoder, self.encoder, momentum)
        momentum_update(self.key_projector, self.projector, momentum)

    @torch.no_grad()
    def enqueue(
        self, k_weak: Tensor, k_strong: Tensor, ptr: int | Tensor | None = None
    ) -> int | Tensor:
        """Write keys into the ring buffers, overwriting the oldest ones.

        Parameters
        ----------
        k_weak, k_strong : Tensor of shape (n, projection_dim)
            Keys of the weak and strong views.
        ptr : int or Tensor, optional
            The current write position, when the caller keeps it: an int on the host
            (as the training loop does: the next position is known there, so nothing
            is read from the device) or a 0-d device tensor (a captured step). ``None``
            reads ``queue_ptr``.

        Returns
        -------
        int or Tensor
            The new write position (also stored in ``queue_ptr``), of the type of
            ``ptr``.
        """
        n = k_weak.shape[0]
        size = self.queue_size
        if n >= size:  # only the newest `size` keys survive
            k_weak, k_strong, n = k_weak[-size:], k_strong[-size:], size
        if ptr is None:
            ptr = int(self.queue_ptr)
        idx = (ptr + torch.arange(n, device=k_weak.device)) % size
        self.queue_weak.index_copy_(0, idx, k_weak.to(self.queue_weak.dtype))
        self.queue_strong.index_copy_(0, idx, k_strong.to(self.queue_strong.dtype))
        new = (ptr + n) % size
        if isinstance(new, Tensor):
            self.queue_ptr.copy_(new)
        else:
            self.queue_ptr.fill_(new)
        return new

    @torch.no_grad()
    def follow_query(
        self, k_weak: Tensor, k_strong: Tensor, momentum: float | Tensor, ptr: int | Tensor
    ) -> int | Tensor:
        """The key branch's part of a training step, after the optimizer step: move it
        towards the query branch (:meth:`update_keys`), then :meth:`enqueue` the step's
        keys at ``ptr``. Returns the new write position.

        Eager and captured training steps both call this; a captured step passes the
        momentum and the position as 0-d device tensors.
        """
        self.update_keys(momentum)
        return self.enqueue(k_weak, k_strong, ptr=ptr)
