"""Domain adaptation blocks: gradient reversal, DANN, CORAL, MMD, CKA (tiny tensors)."""

from __future__ import annotations

import math

import pytest
import torch
from torch.nn import functional

from mer.models.domain import (
    DomainClassifier,
    GradientReversal,
    coral_distance,
    coral_loss,
    dann_loss,
    grad_reverse,
    linear_cka,
    mmd_loss,
)


def _randn(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _plain_domain_loss(classifier: DomainClassifier, source: torch.Tensor, target: torch.Tensor):
    """The same loss as dann_loss but through the inner layers, without the reversal layer."""
    source_logits = classifier.net(source).squeeze(-1)
    target_logits = classifier.net(target).squeeze(-1)
    return 0.5 * (
        functional.binary_cross_entropy_with_logits(source_logits, torch.zeros_like(source_logits))
        + functional.binary_cross_entropy_with_logits(target_logits, torch.ones_like(target_logits))
    )


# --- gradient reversal -------------------------------------------------------------------------


def test_grad_reverse_is_identity_forward_and_scales_gradient():
    x = _randn(4, 3).requires_grad_()
    assert torch.equal(grad_reverse(x, 0.5), x)
    (grad,) = torch.autograd.grad(grad_reverse(x, 0.5).sum(), x)
    assert torch.equal(grad, torch.full_like(x, -0.5))


def test_gradient_reversal_module_uses_coefficient():
    layer = GradientReversal(coefficient=1.0)
    layer.coefficient = 3.0
    x = _randn(2, 5).requires_grad_()
    out = layer(x)
    assert torch.equal(out, x)
    (grad,) = torch.autograd.grad((out * 2).sum(), x)
    assert torch.equal(grad, torch.full_like(x, -6.0))


@pytest.mark.parametrize("coefficient", [1.0, 0.5])
def test_gradient_reversal_flips_domain_classifier_feature_gradient(coefficient):
    torch.manual_seed(0)
    classifier = DomainClassifier(input_dim=6, hidden_dim=8, dropout=0.0)
    source, target = _randn(5, 6, seed=1).requires_grad_(), _randn(4, 6, seed=2).requires_grad_()
    params = list(classifier.parameters())

    reversed_loss = dann_loss(classifier, source, target, coefficient)
    reversed_grads = torch.autograd.grad(reversed_loss, [source, target, *params])
    plain_loss = _plain_domain_loss(classifier, source, target)
    plain_grads = torch.autograd.grad(plain_loss, [source, target, *params])

    assert torch.allclose(reversed_loss, plain_loss)  # forward unchanged
    for reversed_grad, plain_grad in zip(reversed_grads[:2], plain_grads[:2], strict=True):
        assert plain_grad.abs().sum() > 0
        assert torch.allclose(reversed_grad, -coefficient * plain_grad, atol=1e-7)
    # the classifier's own parameters still descend on the domain loss
    for reversed_grad, plain_grad in zip(reversed_grads[2:], plain_grads[2:], strict=True):
        assert torch.allclose(reversed_grad, plain_grad)


def test_domain_classifier_default_coefficient_and_shape():
    classifier = DomainClassifier(input_dim=3, hidden_dim=4, dropout=0.0)
    classifier.reversal.coefficient = 0.25
    features = _randn(7, 3).requires_grad_()
    logits = classifier(features)
    assert logits.shape == (7,)
    (grad_default,) = torch.autograd.grad(logits.sum(), features)
    (grad_explicit,) = torch.autograd.grad(classifier(features, coefficient=0.25).sum(), features)
    assert torch.allclose(grad_default, grad_explicit)


# --- dann_loss ---------------------------------------------------------------------------------


def test_dann_classifier_learns_while_features_are_pushed_to_confuse_it():
    torch.manual_seed(0)
    classifier = DomainClassifier(input_dim=4, hidden_dim=16, dropout=0.0)
    source, target = _randn(16, 4, seed=1) - 2.0, _randn(16, 4, seed=2) + 2.0

    optimizer = torch.optim.Adam(classifier.parameters(), lr=1e-2)
    initial = dann_loss(classifier, source, target).item()
    for _ in range(20):
        optimizer.zero_grad()
        dann_loss(classifier, source, target).backward()
        optimizer.step()
    trained = dann_loss(classifier, source, target).item()
    assert trained < initial - 0.1

    # the gradient the features receive points uphill on the (unreversed) domain loss
    source, target = source.requires_grad_(), target.requires_grad_()
    grad_source, grad_target = torch.autograd.grad(dann_loss(classifier, source, target), [source, target])
    with torch.no_grad():
        before = float(_plain_domain_loss(classifier, source, target))
        after = float(_plain_domain_loss(classifier, source - 0.1 * grad_source, target - 0.1 * grad_target))
    assert after > before


# --- coral -------------------------------------------------------------------------------------


def test_coral_loss_identical_noised_and_transformed():
    source = _randn(64, 4, seed=1)
    rotation, _ = torch.linalg.qr(_randn(4, 4, seed=2))
    assert float(coral_loss(source, source)) == pytest.approx(0.0, abs=1e-10)
    noised = float(coral_loss(source, source + 0.01 * _randn(64, 4, seed=3)))
    scaled = float(coral_loss(source, 3.0 * source @ rotation))
    assert scaled > 100 * noised


def test_coral_loss_exact_value():
    # unbiased covariances: (2/3) I and (8/3) I, so ||2 I||_F^2 / (4 * 2^2) = 8 / 16
    source = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]])
    assert float(coral_loss(source, 2 * source)) == pytest.approx(0.5)


def test_coral_loss_gradient_step_moves_target_covariance_towards_source():
    source = _randn(32, 4, seed=1)
    target = (2.0 * _randn(32, 4, seed=2) @ torch.diag(torch.tensor([1.0, 0.5, 3.0, 1.0]))).requires_grad_()
    before = coral_loss(source, target)
    (grad,) = torch.autograd.grad(before, target)
    after = coral_loss(source, target.detach() - 0.1 * grad)
    assert after.item() < before.item()


def test_coral_distance_matches_coral_loss():
    x, y = _randn(10, 3, seed=1), 2 * _randn(12, 3, seed=2)
    distance = coral_distance(x.clone().requires_grad_(), y)
    assert isinstance(distance, float)
    assert distance == pytest.approx(float(coral_loss(x, y)))


# --- mmd ---------------------------------------------------------------------------------------


def test_mmd_loss_identical_and_mean_shifted():
    source = _randn(32, 3, seed=1)
    target = _randn(32, 3, seed=2)
    assert abs(float(mmd_loss(source, source))) < 1e-5
    near, far = float(mmd_loss(source, target + 0.1)), float(mmd_loss(source, target + 3.0))
    assert near >= -1e-6
    assert far > near
    fixed = float(mmd_loss(source, target + 3.0, bandwidths=[1.0, 4.0]))
    assert fixed > float(mmd_loss(source, target + 0.1, bandwidths=[1.0, 4.0]))


def test_mmd_loss_exact_value():
    # one point each, unit distance, h = 1: K_ss + K_tt - 2 K_st = 2 - 2 / e
    value = mmd_loss(torch.tensor([[0.0, 0.0]]), torch.tensor([[1.0, 0.0]]), bandwidths=[1.0])
    assert float(value) == pytest.approx(2 - 2 * math.exp(-1))


def test_mmd_loss_gradient_step_reduces_it():
    source = _randn(24, 3, seed=1)
    target = (_randn(24, 3, seed=2) + 1.5).requires_grad_()
    before = mmd_loss(source, target)
    (grad,) = torch.autograd.grad(before, target)
    assert torch.isfinite(grad).all()
    after = mmd_loss(source, target.detach() - 1.0 * grad)
    assert after.item() < before.item()


# --- cka ---------------------------------------------------------------------------------------


def test_linear_cka_invariance_and_independence():
    x = _randn(40, 5, seed=1)
    orthogonal, _ = torch.linalg.qr(_randn(5, 5, seed=2))
    assert linear_cka(x, x @ orthogonal * 3) == pytest.approx(1.0, abs=1e-6)
    value = linear_cka(_randn(4000, 4, seed=3), _randn(4000, 6, seed=4))
    assert isinstance(value, float)
    assert 0.0 <= value < 0.02


# --- validation --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call",
    [
        lambda: coral_loss(torch.randn(4, 3), torch.randn(4, 2)),
        lambda: coral_loss(torch.randn(1, 3), torch.randn(4, 3)),
        lambda: coral_loss(torch.randn(4, 3), torch.randn(1, 3)),
        lambda: coral_loss(torch.randn(4), torch.randn(4)),
        lambda: coral_distance(torch.randn(4, 3), torch.randn(4, 2)),
        lambda: coral_distance(torch.randn(1, 3), torch.randn(1, 3)),
        lambda: mmd_loss(torch.randn(4, 3), torch.randn(4, 2)),
        lambda: mmd_loss(torch.randn(0, 3), torch.randn(4, 3)),
        lambda: mmd_loss(torch.randn(4, 3), torch.randn(4, 3), bandwidths=[1.0, 0.0]),
        lambda: linear_cka(torch.randn(4, 3), torch.randn(5, 3)),
        lambda: linear_cka(torch.randn(1, 3), torch.randn(1, 3)),
        lambda: linear_cka(torch.ones(4, 3), torch.randn(4, 3)),
        lambda: dann_loss(DomainClassifier(3), torch.randn(4, 3), torch.randn(4, 2)),
        lambda: dann_loss(DomainClassifier(3), torch.randn(4, 2), torch.randn(4, 2)),
        lambda: DomainClassifier(3)(torch.randn(4, 2)),
    ],
)
def test_invalid_inputs_raise_value_error(call):
    with pytest.raises(ValueError):
        call()
