import itertools
import math

import pytest
import torch

from skmoby.backbones import CNN, MLP
from skmoby.network import MoBYv2Network, ProjectionHead, cosine_momentum, momentum_update


def _net(queue_size=8, proj=4):
    torch.manual_seed(0)
    return MoBYv2Network(
        MLP(5, hidden=6), 6, n_classes=3, projection_dim=proj, queue_size=queue_size
    )


def test_cosine_schedule_first_last_and_middle():
    assert cosine_momentum(0, 1000, 0.99) == pytest.approx(0.99)
    assert cosine_momentum(1000, 1000, 0.99) == pytest.approx(1.0)
    assert cosine_momentum(500, 1000, 0.99) == pytest.approx(0.995)
    # After the last step the momentum stays at 1; it never decreases.
    assert cosine_momentum(5000, 1000, 0.99) == pytest.approx(1.0)
    values = [cosine_momentum(t, 50, 0.9) for t in range(51)]
    assert all(b >= a for a, b in itertools.pairwise(values))
    t, T = 13, 50
    assert values[t] == pytest.approx(1 - 0.1 * (math.cos(math.pi * t / T) + 1) / 2)
    with pytest.raises(ValueError, match="total_steps"):
        cosine_momentum(0, 0)


def test_momentum_update_is_an_ema_of_parameters():
    torch.manual_seed(0)
    a, b = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    a0, b0 = a.weight.detach().clone(), b.weight.detach().clone()
    momentum_update(a, b, 0.9)
    torch.testing.assert_close(a.weight, 0.9 * a0 + 0.1 * b0)
    torch.testing.assert_close(b.weight, b0)  # source untouched


def test_key_branch_starts_as_copy_and_has_no_grad():
    net = _net()
    for (n1, p1), (_, p2) in zip(
        net.encoder.named_parameters(), net.key_encoder.named_parameters(), strict=True
    ):
        assert torch.equal(p1, p2), n1
        assert p1.requires_grad and not p2.requires_grad
    assert all(not p.requires_grad for p in net.key_parameters())


def test_update_keys_moves_only_key_branch():
    net = _net()
    with torch.no_grad():
        for p in net.encoder.parameters():
            p.add_(1.0)
    before = [p.clone() for p in net.key_encoder.parameters()]
    net.update_keys(0.5)
    for b, k, q in zip(before, net.key_encoder.parameters(), net.encoder.parameters(), strict=True):
        torch.testing.assert_close(k, 0.5 * b + 0.5 * q)


def test_queue_is_a_ring_buffer():
    net = _net(queue_size=5, proj=2)
    keys = torch.arange(14, dtype=torch.float32).view(7, 2)
    net.enqueue(keys[:3], -keys[:3])
    assert int(net.queue_ptr) == 3
    torch.testing.assert_close(net.queue_weak[:3], keys[:3])
    torch.testing.assert_close(net.queue_strong[:3], -keys[:3])
    net.enqueue(keys[3:7], -keys[3:7])  # wraps: rows 3, 4, then 0, 1
    assert int(net.queue_ptr) == 2
    torch.testing.assert_close(net.queue_weak[[3, 4, 0, 1]], keys[3:7])
    torch.testing.assert_close(net.queue_weak[2], keys[2])
    # More keys than the queue holds: only the newest survive.
    big = torch.arange(24, dtype=torch.float32).view(12, 2) + 100
    net.enqueue(big, big)
    assert sorted(net.queue_weak[:, 0].tolist()) == sorted(big[-5:, 0].tolist())


def test_queues_and_key_branch_are_in_state_dict():
    keys = _net().state_dict().keys()
    assert {"queue_weak", "queue_strong", "queue_ptr"} <= set(keys)
    assert any(k.startswith("key_encoder.") for k in keys)
    assert any(k.startswith("key_projector.") for k in keys)


def test_contrastive_terms_shapes_and_queue_untouched():
    torch.manual_seed(0)
    net = MoBYv2Network(CNN(1, width=4), 16, n_classes=2, projection_dim=8, queue_size=16)
    q0 = net.queue_weak.clone()
    x = torch.rand(4, 1, 8, 8)
    loss, f, kw, ks = net.contrastive_terms(x, x.flip(-1), 0.2)
    assert loss.shape == (4,) and f.shape == (4, 16) and kw.shape == ks.shape == (4, 8)
    torch.testing.assert_close(kw.norm(dim=1), torch.ones(4))
    assert torch.equal(net.queue_weak, q0)
    assert not kw.requires_grad


def _kinds(head):
    return [type(m).__name__ for m in head.layers]


def test_projection_head_endings():
    assert _kinds(ProjectionHead((7, 3), end="bn-relu")) == ["Linear", "BatchNorm1d", "ReLU"]
    linear = ProjectionHead((7, 3), end="linear")
    assert _kinds(linear) == ["Linear"] and linear.layers[0].bias is not None
    # Hidden layers keep batch norm and ReLU; only the last layer follows `end`.
    assert _kinds(ProjectionHead((7, 5, 3), end="linear")) == [
        "Linear",
        "BatchNorm1d",
        "ReLU",
        "Linear",
    ]
    # A bn-relu head maps into the non-negative orthant; a linear one does not.
    torch.manual_seed(0)
    x = torch.randn(16, 7)
    assert (ProjectionHead((7, 3), end="bn-relu")(x) >= 0).all()
    assert (linear(x) < 0).any()
    with pytest.raises(ValueError, match="dims"):
        ProjectionHead((4,))
    with pytest.raises(ValueError, match="end must be one of"):
        ProjectionHead((4, 2), end="relu")


@pytest.mark.parametrize("end", ["linear", "bn-relu"])
def test_network_projection_head_argument(end):
    torch.manual_seed(0)
    net = MoBYv2Network(
        MLP(5, hidden=6), 6, n_classes=3, projection_dim=4, queue_size=8, projection_head=end
    )
    expected = ["Linear"] if end == "linear" else ["Linear", "BatchNorm1d", "ReLU"]
    for head in (net.projector, net.predictor, net.key_projector):
        assert _kinds(head) == expected
    with pytest.raises(ValueError, match="projection_head must be one of"):
        MoBYv2Network(MLP(5, hidden=6), 6, n_classes=3, projection_head="mlp")


def test_default_projection_head_is_the_papers():
    """The paper's single layer with batch norm and ReLU won the documented ablation."""
    assert _kinds(_net().projector) == ["Linear", "BatchNorm1d", "ReLU"]
    assert _kinds(ProjectionHead((7, 3))) == ["Linear", "BatchNorm1d", "ReLU"]


def _bn_net():
    torch.manual_seed(0)
    return MoBYv2Network(
        CNN(1, width=4), 16, n_classes=2, projection_dim=8, queue_size=16, projection_head="bn-relu"
    )


def test_contrastive_terms_normalize_each_view_on_its_own():
    """Batch norm sees one view per forward pass (MoBY and the authors' code): the result
    equals running each view alone, and differs from one concatenated batch."""
    from skmoby.losses import symmetric_info_nce

    torch.manual_seed(1)
    weak, strong = torch.rand(6, 1, 8, 8), torch.rand(6, 1, 8, 8) * 0.5 + 0.5
    net = _bn_net()
    net.train()
    loss, f_weak, k_weak, k_strong = net.contrastive_terms(weak, strong, 0.2)

    ref = _bn_net()  # same weights, fresh batch-norm statistics
    ref.train()
    f_alone, q_weak = ref.query(weak)
    _, q_strong = ref.query(strong)
    kw_alone, ks_alone = ref.key(weak), ref.key(strong)
    expected = symmetric_info_nce(
        q_weak, q_strong, kw_alone, ks_alone, ref.queue_weak, ref.queue_strong, 0.2
    )
    torch.testing.assert_close(f_weak, f_alone)
    torch.testing.assert_close(k_weak, kw_alone)
    torch.testing.assert_close(k_strong, ks_alone)
    torch.testing.assert_close(loss, expected)

    mixed = _bn_net()
    mixed.train()
    f_mixed, _ = mixed.query(torch.cat([weak, strong]))
    assert not torch.allclose(f_mixed[:6], f_weak, atol=1e-4)


def test_joint_loss_decreases_with_per_view_batch_norm():
    torch.manual_seed(0)
    net = _bn_net()
    net.train()
    x, y = torch.rand(32, 1, 8, 8), torch.randint(0, 2, (32,))
    opt = torch.optim.SGD([p for p in net.parameters() if p.requires_grad], lr=0.1, momentum=0.9)
    losses = []
    for step in range(40):
        weak = x + 0.05 * torch.randn_like(x)
        strong = (x.flip(-1) + 0.2 * torch.randn_like(x)).clamp(0, 1)
        con, f_weak, k_weak, k_strong = net.contrastive_terms(weak, strong, 0.2)
        loss = 0.5 * con.mean() + torch.nn.functional.cross_entropy(net.head(f_weak), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        net.update_keys(cosine_momentum(step, 40))
        net.enqueue(k_weak, k_strong)
        losses.append(float(loss))
    assert sum(losses[-5:]) / 5 < 0.9 * sum(losses[:5]) / 5


def test_estimator_routes_projection_head_to_the_network(digits):
    from sklearn.base import clone

    from tests.conftest import small_clf

    X, y = digits
    clf = small_clf(max_epochs=1, module__projection_head="bn-relu")
    assert clone(clf).get_params()["module__projection_head"] == "bn-relu"
    clf.fit(X[:64], y[:64], X_unlabeled=X[64:128])
    assert _kinds(clf.module_.projector) == ["Linear", "BatchNorm1d", "ReLU"]
    clf.set_params(module__projection_head="linear").fit(X[:64], y[:64])
    assert _kinds(clf.module_.predictor) == ["Linear"]
