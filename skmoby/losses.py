"""Contrastive losses of MoBYv2AL.

The loss is the symmetric InfoNCE of MoBY (Xie et al., 2021) as used by MoBYv2AL
(Caramalau et al., BMVC 2022, Eq. 1): every query is contrasted against the key of the
other view of the same image (the positive) and against a queue of keys from earlier
batches (the negatives).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["info_nce", "symmetric_info_nce"]


def info_nce(query: Tensor, positive: Tensor, queue: Tensor, temperature: float) -> Tensor:
    r"""Per-sample InfoNCE loss of queries against one positive and a queue of negatives.

    .. math::

        \mathrm{NCE}(a, p, Q) = -\log \frac{\exp(a \cdot p / \tau)}
            {\exp(a \cdot p / \tau) + \sum_j \exp(a \cdot Q_j / \tau)}

    Parameters
    ----------
    query : Tensor of shape (n, d)
        L2-normalised queries ``a``.
    positive : Tensor of shape (n, d)
        L2-normalised positive keys ``p``, one per query. Gradients are not
        blocked here; callers pass keys computed without gradients.
    queue : Tensor of shape (K, d)
        L2-normalised negative keys ``Q``.
    temperature : float
        Softmax temperature ``tau`` (> 0).

    Returns
    -------
    Tensor of shape (n,)
        The loss of every query, unreduced.

    Raises
    ------
    ValueError
        If ``temperature`` is not positive or the shapes do not agree.

    Examples
    --------
    When every embedding is the same unit vector, each term equals ``log(K + 1)``:

    >>> import math, torch
    >>> e = torch.nn.functional.normalize(torch.ones(4, 8), dim=1)
    >>> loss = info_nce(e, e, e[:1].expand(16, 8), temperature=0.2)
    >>> bool(torch.allclose(loss, torch.full((4,), math.log(17.0))))
    True
    """
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature!r}")
    if query.ndim != 2 or positive.shape != query.shape:
        raise ValueError(
            f"query and positive must both have shape (n, d); got {tuple(query.shape)} "
            f"and {tuple(positive.shape)}"
        )
    if queue.ndim != 2 or queue.shape[1] != query.shape[1]:
        raise ValueError(f"queue must have shape (K, {query.shape[1]}); got {tuple(queue.shape)}")
    pos = (query * positive).sum(dim=1, keepdim=True)
    neg = query @ queue.t()
    logits = torch.cat([pos, neg], dim=1) / temperature
    # The positive sits in column 0 of every row.
    target = torch.zeros(query.shape[0], dtype=torch.long, device=query.device)
    return F.cross_entropy(logits.float(), target, reduction="none")


def symmetric_info_nce(
    q_weak: Tensor,
    q_strong: Tensor,
    k_weak: Tensor,
    k_strong: Tensor,
    queue_weak: Tensor,
    queue_strong: Tensor,
    temperature: float,
) -> Tensor:
    """Per-sample MoBY loss ``NCE(q', k, Q_weak) + NCE(q, k', Q_strong)``.

    The strong-view query is pulled towards the weak-view key (negatives from the
    queue of weak keys) and the weak-view query towards the strong-view key
    (negatives from the queue of strong keys).

    Parameters
    ----------
    q_weak, q_strong : Tensor of shape (n, d)
        L2-normalised predictor outputs of the query branch for the weak view ``q``
        and the strong view ``q'``.
    k_weak, k_strong : Tensor of shape (n, d)
        L2-normalised projector outputs of the key branch for the weak view ``k``
        and the strong view ``k'``.
    queue_weak, queue_strong : Tensor of shape (K, d)
        Queues of earlier weak and strong keys.
    temperature : float
        Softmax temperature (> 0).

    Returns
    -------
    Tensor of shape (n,)
        The contrastive loss of every sample, unreduced.

    Examples
    --------
    >>> import torch
    >>> x = torch.nn.functional.normalize(torch.randn(3, 4), dim=1)
    >>> symmetric_info_nce(x, x, x, x, x, x, 0.2).shape
    torch.Size([3])
    """
    return info_nce(q_strong, k_weak, queue_weak, temperature) + info_nce(
        q_weak, k_strong, queue_strong, temperature
    )
