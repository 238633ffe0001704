import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from skmoby.losses import info_nce, symmetric_info_nce


def _reference_nce(a, p, Q, tau):
    """Slow float64 reference: one sample at a time, straight from the formula."""
    a, p, Q = (np.asarray(t, dtype=np.float64) for t in (a, p, Q))
    out = []
    for ai, pi in zip(a, p, strict=True):
        pos = math.exp(ai @ pi / tau)
        neg = sum(math.exp(ai @ qj / tau) for qj in Q)
        out.append(-math.log(pos / (pos + neg)))
    return np.array(out)


@pytest.mark.parametrize("K", [1, 7, 64])
def test_identical_embeddings_give_log_k_plus_one(K):
    e = F.normalize(torch.randn(1, 16), dim=1)
    batch = e.expand(5, 16)
    loss = info_nce(batch, batch, e.expand(K, 16), temperature=0.2)
    np.testing.assert_allclose(loss.numpy(), np.full(5, math.log(K + 1)), rtol=1e-5)
    # The symmetric loss is the sum of two such terms.
    sym = symmetric_info_nce(batch, batch, batch, batch, e.expand(K, 16), e.expand(K, 16), 0.2)
    np.testing.assert_allclose(sym.numpy(), np.full(5, 2 * math.log(K + 1)), rtol=1e-5)


@pytest.mark.parametrize("tau", [0.07, 0.2, 1.0])
def test_matches_slow_reference(tau):
    g = torch.Generator().manual_seed(0)
    a = F.normalize(torch.randn(6, 8, generator=g, dtype=torch.float64), dim=1)
    p = F.normalize(torch.randn(6, 8, generator=g, dtype=torch.float64), dim=1)
    Q = F.normalize(torch.randn(20, 8, generator=g, dtype=torch.float64), dim=1)
    got = info_nce(a, p, Q, tau).numpy()
    np.testing.assert_allclose(got, _reference_nce(a, p, Q, tau), rtol=1e-5)


def test_symmetric_pairs_views_with_the_right_queue():
    g = torch.Generator().manual_seed(1)
    qw, qs, kw, ks = (F.normalize(torch.randn(4, 8, generator=g), dim=1) for _ in range(4))
    Qw, Qs = (F.normalize(torch.randn(10, 8, generator=g), dim=1) for _ in range(2))
    got = symmetric_info_nce(qw, qs, kw, ks, Qw, Qs, 0.2).numpy()
    want = _reference_nce(qs, kw, Qw, 0.2) + _reference_nce(qw, ks, Qs, 0.2)
    np.testing.assert_allclose(got, want, rtol=1e-4)


def test_gradient_flows_to_query_only_through_argument():
    q = F.normalize(torch.randn(3, 4), dim=1).requires_grad_(True)
    k = F.normalize(torch.randn(3, 4), dim=1)
    info_nce(q, k, F.normalize(torch.randn(5, 4), dim=1), 0.2).sum().backward()
    assert q.grad is not None and torch.isfinite(q.grad).all()
    assert q.grad.abs().sum() > 0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"temperature": 0.0}, "temperature"),
        ({"temperature": -1.0}, "temperature"),
        ({"queue": torch.zeros(5, 3)}, "queue"),
        ({"positive": torch.zeros(2, 4)}, "positive"),
    ],
)
def test_bad_arguments(kwargs, match):
    args = {
        "query": torch.zeros(3, 4),
        "positive": torch.zeros(3, 4),
        "queue": torch.zeros(5, 4),
        "temperature": 0.2,
    }
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        info_nce(**args)
