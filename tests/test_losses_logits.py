import math

import pytest
import torch
import torch.nn.functional as F

from distillkit.losses import distillation_loss, hard_label_loss, soft_target_loss


def test_kl_of_a_distribution_with_itself_is_zero():
    logits = torch.randn(8, 5)
    for temperature in (0.5, 1.0, 4.0):
        assert soft_target_loss(logits, logits.clone(), temperature).abs().item() < 1e-6


def test_soft_loss_matches_the_formula_with_batchmean():
    torch.manual_seed(0)
    s, t = torch.randn(6, 3), torch.randn(6, 3)
    temperature = 3.0
    p_t = F.softmax(t / temperature, dim=-1)
    expected = (p_t * (p_t.log() - F.log_softmax(s / temperature, dim=-1))).sum() / 6 * temperature**2
    assert soft_target_loss(s, t, temperature).item() == pytest.approx(expected.item(), rel=1e-5)
    # and torch's own batchmean KL agrees
    ref = F.kl_div(F.log_softmax(s / temperature, -1), p_t, reduction="batchmean") * temperature**2
    assert soft_target_loss(s, t, temperature).item() == pytest.approx(ref.item(), rel=1e-5)


def _soft_grad_norm(temperature: float, scale_t2: bool = True) -> float:
    torch.manual_seed(1)
    s = (torch.randn(64, 4) * 2).requires_grad_()
    t = torch.randn(64, 4) * 2
    loss = soft_target_loss(s, t, temperature)
    if not scale_t2:
        loss = loss / temperature**2
    loss.backward()
    return s.grad.norm().item()


def test_t_squared_keeps_the_gradient_scale_across_temperatures():
    norms = {T: _soft_grad_norm(T) for T in (1.0, 2.0, 4.0)}
    for T in (2.0, 4.0):
        ratio = norms[T] / norms[1.0]
        assert 1 / 3 < ratio < 3, norms
    # without the T^2 factor the gradient would shrink roughly like 1/T^2: that is what the factor undoes
    unscaled = {T: _soft_grad_norm(T, scale_t2=False) for T in (1.0, 4.0)}
    assert unscaled[4.0] / unscaled[1.0] < 0.15


def test_alpha_zero_is_exactly_cross_entropy():
    torch.manual_seed(2)
    s, t, y = torch.randn(10, 3), torch.randn(10, 3), torch.randint(0, 3, (10,))
    assert torch.equal(distillation_loss(s, t, y, alpha=0.0, temperature=2.0), F.cross_entropy(s, y))


def test_alpha_mixes_soft_and_hard():
    torch.manual_seed(3)
    s, t, y = torch.randn(10, 3), torch.randn(10, 3), torch.randint(0, 3, (10,))
    mixed = distillation_loss(s, t, y, alpha=0.3, temperature=2.0)
    expected = 0.3 * soft_target_loss(s, t, 2.0) + 0.7 * F.cross_entropy(s, y)
    assert mixed.item() == pytest.approx(expected.item(), rel=1e-6)


def test_alpha_one_needs_no_labels_and_other_alphas_do():
    s, t = torch.randn(4, 2), torch.randn(4, 2)
    assert distillation_loss(s, t, None, alpha=1.0, temperature=2.0).item() == pytest.approx(
        soft_target_loss(s, t, 2.0).item()
    )
    with pytest.raises(ValueError, match="no labels"):
        distillation_loss(s, t, None, alpha=0.5)


def test_masked_positions_change_nothing():
    torch.manual_seed(4)
    s, t = torch.randn(2, 6, 3), torch.randn(2, 6, 3)
    mask = torch.tensor([[1, 1, 1, 1, 0, 0], [1, 1, 0, 0, 0, 0]])
    before = soft_target_loss(s, t, 2.0, mask)
    s2, t2 = s.clone(), t.clone()
    s2[mask == 0] = torch.randn(int((mask == 0).sum()), 3) * 10
    t2[mask == 0] = torch.randn(int((mask == 0).sum()), 3) * 10
    assert soft_target_loss(s2, t2, 2.0, mask).item() == pytest.approx(before.item(), rel=1e-6)
    # the mean is over the 6 unmasked positions only
    per_pos = [soft_target_loss(s[b, i : i + 1], t[b, i : i + 1], 2.0) for b, i in zip(*mask.nonzero(as_tuple=True))]
    assert before.item() == pytest.approx(sum(per_pos).item() / 6, rel=1e-5)


@pytest.mark.parametrize("temperature", [0.0, -1.0, math.nan])
def test_bad_temperature_is_refused(temperature):
    with pytest.raises(ValueError, match="temperature must be > 0"):
        soft_target_loss(torch.randn(2, 2), torch.randn(2, 2), temperature)


def test_label_count_mismatch_is_refused():
    with pytest.raises(ValueError, match="label count"):
        soft_target_loss(torch.randn(2, 3), torch.randn(2, 2))


def test_hard_loss_ignores_minus_100_and_does_regression():
    s = torch.randn(4, 3)
    y = torch.tensor([0, -100, 2, -100])
    assert hard_label_loss(s, y).item() == pytest.approx(F.cross_entropy(s[[0, 2]], y[[0, 2]]).item(), rel=1e-6)
    r, target = torch.randn(5, 1), torch.randn(5)
    assert hard_label_loss(r, target).item() == pytest.approx(F.mse_loss(r.squeeze(-1), target).item(), rel=1e-6)
