"""Token-level LM losses (losses/lm.py): each divergence against its formula written out, and the chunked
computation from hidden states against the direct one from full logits: the same values and gradients (1e-5)."""

import math

import pytest
import torch

from distillkit.losses.lm import direct_lm_losses, fused_lm_losses, token_divergence


def _dists(v=7, n=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, v, generator=g, dtype=torch.float64), torch.randn(n, v, generator=g, dtype=torch.float64)


def _written_out(name, s, t, temperature, beta):
    """Per position, the sums over the vocabulary exactly as the docstring writes them."""
    out = []
    for srow, trow in zip(s.tolist(), t.tolist()):
        zq = [math.exp(x / temperature) for x in srow]
        zp = [math.exp(x / temperature) for x in trow]
        q = [x / sum(zq) for x in zq]
        p = [x / sum(zp) for x in zp]
        kl = lambda a, b: sum(ai * math.log(ai / bi) for ai, bi in zip(a, b))  # noqa: E731
        if name == "kd":
            value = kl(p, q)
        elif name == "reverse_kl":
            value = kl(q, p)
        else:
            m = [beta * pi + (1 - beta) * qi for pi, qi in zip(p, q)]
            value = beta * kl(p, m) + (1 - beta) * kl(q, m)
        out.append(value * temperature**2)
    return torch.tensor(out, dtype=torch.float64)


@pytest.mark.parametrize("name,beta", [("kd", 0.5), ("reverse_kl", 0.5), ("jsd", 0.5), ("jsd", 0.1), ("jsd", 0.9)])
@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_each_divergence_is_its_formula(name, beta, temperature):
    s, t = _dists()
    got = token_divergence(name, s, t, temperature, beta).double()
    assert torch.allclose(got, _written_out(name, s, t, temperature, beta), atol=1e-5)


def test_jsd_at_its_ends_is_the_two_kls_and_the_kls_are_asymmetric():
    s, t = _dists(seed=3)
    assert torch.allclose(token_divergence("jsd", s, t, 2.0, 0.0), token_divergence("kd", s, t, 2.0))
    assert torch.allclose(token_divergence("jsd", s, t, 2.0, 1.0), token_divergence("reverse_kl", s, t, 2.0))
    assert not torch.allclose(token_divergence("kd", s, t, 1.0), token_divergence("reverse_kl", s, t, 1.0))
    assert torch.allclose(token_divergence("kd", t, t, 1.0), torch.zeros(len(t), dtype=torch.float32), atol=1e-6)


def test_bad_beta_and_temperature_name_the_setting():
    s, t = _dists()
    with pytest.raises(ValueError, match="jsd_beta"):
        token_divergence("jsd", s, t, 1.0, 1.5)
    with pytest.raises(ValueError, match="temperature"):
        token_divergence("kd", s, t, 0.0)


def _models(v_s=40, v_t=40, h_s=8, h_t=12, n=37, bias=False, seed=0):
    torch.manual_seed(seed)
    head = torch.nn.Linear(h_s, v_s, bias=bias).double()
    teacher_head = torch.nn.Linear(h_t, v_t, bias=bias).double()
    hidden = torch.randn(n, h_s, dtype=torch.float64, requires_grad=True)
    teacher_hidden = torch.randn(n, h_t, dtype=torch.float64)
    targets = torch.randint(0, v_s, (n,))
    return head, teacher_head, hidden, teacher_hidden, targets


@pytest.mark.parametrize("weights", [{"kd": 0.7, "ce": 0.3}, {"reverse_kl": 1.0}, {"jsd": 0.5, "ce": 0.5}, {"ce": 1.0}])
@pytest.mark.parametrize("bias", [False, True])
def test_chunks_give_the_direct_values_and_gradients(weights, bias):
    head, teacher_head, hidden, teacher_hidden, targets = _models(bias=bias)
    total, terms = fused_lm_losses(
        hidden, head, targets, weights, teacher_hidden, teacher_head, temperature=2.0, beta=0.3, chunk_size=8
    )  # fmt: skip (37 positions: 4 full chunks and a partial)
    total.backward()
    fused = (hidden.grad.clone(), head.weight.grad.clone(), None if head.bias is None else head.bias.grad.clone())
    hidden.grad = None
    head.zero_grad()
    s_logits = head(hidden)
    with torch.no_grad():
        t_logits = teacher_head(teacher_hidden)
    ref_total, ref_terms = direct_lm_losses(s_logits, targets, weights, t_logits, temperature=2.0, beta=0.3)
    ref_total.backward()
    assert total.item() == pytest.approx(ref_total.item(), abs=1e-5)
    for name in weights:
        assert terms[name].item() == pytest.approx(ref_terms[name].item(), abs=1e-5)
    assert torch.allclose(fused[0], hidden.grad, atol=1e-5) and torch.allclose(fused[1], head.weight.grad, atol=1e-5)
    if bias:
        assert torch.allclose(fused[2], head.bias.grad, atol=1e-5)
    assert teacher_head.weight.grad is None  # the teacher is never trained


def test_a_tied_output_layer_gets_the_gradient_of_both_uses():
    torch.manual_seed(0)
    embed = torch.nn.Embedding(30, 8).double()
    head = torch.nn.Linear(8, 30, bias=False).double()
    head.weight = embed.weight  # tied, as Llama / SmolLM tie them
    ids, targets = torch.randint(0, 30, (11,)), torch.randint(0, 30, (11,))
    total, _ = fused_lm_losses(torch.tanh(embed(ids)), head, targets, {"ce": 1.0}, chunk_size=4)
    total.backward()
    fused = embed.weight.grad.clone()
    embed.zero_grad()
    direct_lm_losses(head(torch.tanh(embed(ids))), targets, {"ce": 1.0})[0].backward()
    assert torch.allclose(fused, embed.weight.grad, atol=1e-6)


def test_a_teacher_with_more_vocabulary_rows_is_compared_over_the_shared_ids():
    head, teacher_head, hidden, teacher_hidden, targets = _models(v_s=40, v_t=48)
    total, _ = fused_lm_losses(hidden, head, targets, {"kd": 1.0}, teacher_hidden, teacher_head, chunk_size=16)
    with torch.no_grad():
        t_logits = teacher_head(teacher_hidden)[:, :40]
    ref, _ = direct_lm_losses(head(hidden), targets, {"kd": 1.0}, t_logits)
    assert total.item() == pytest.approx(ref.item(), abs=1e-6)
    head, teacher_head, hidden, teacher_hidden, targets = _models(v_s=48, v_t=40)
    with pytest.raises(ValueError, match="larger than the teacher"):
        fused_lm_losses(hidden, head, targets, {"kd": 1.0}, teacher_hidden, teacher_head)


def test_bf16_hidden_states_get_a_bf16_gradient():
    head, teacher_head, hidden, teacher_hidden, targets = _models()
    head = head.float()
    hidden = hidden.detach().to(torch.bfloat16).requires_grad_(True)
    total, _ = fused_lm_losses(hidden, head, targets, {"kd": 0.5, "ce": 0.5}, teacher_hidden.float(),
                               teacher_head.float(), chunk_size=8)  # fmt: skip
    total.backward()
    assert hidden.grad.dtype == torch.bfloat16 and head.weight.grad.dtype == torch.float32
    assert torch.isfinite(hidden.grad.float()).all()
