"""Token-level divergences between a teacher's and a student's next-token distributions, and their computation in
chunks of positions straight from the models' last hidden states (causal language models).

Notation, per counted position (a token whose next token is a target): teacher logits t, student logits s, both
(V,); temperature T; p = softmax(t / T), q = softmax(s / T).

- `kd` (forward KL, the default):      T^2 * sum_v p_v (log p_v - log q_v)            = T^2 KL(p || q)
- `reverse_kl`:                        T^2 * sum_v q_v (log q_v - log p_v)            = T^2 KL(q || p)
- `jsd` (generalised Jensen-Shannon, GKD: Agarwal et al. 2024, as TRL's GKDTrainer computes it), with
  beta in [0, 1] (`--jsd_beta`) and the mixture m = beta p + (1 - beta) q:
                                       T^2 * (beta KL(p || m) + (1 - beta) KL(q || m))
  for 0 < beta < 1; beta = 0 is the forward KL and beta = 1 the reverse KL (the mixture formula itself tends to 0 at
  both ends, which is why TRL, and this code, take the two KLs there).
- the hard loss: the next-token cross-entropy -log softmax(s)_y on the same positions (T = 1).

Reduction: the mean over the counted positions of the batch, not a mean of per-sequence means. Packed blocks have
no sequence boundaries of their own, an instruction's completion may be 3 tokens or 300, and the hard loss (the
language model's own loss) weights every token once: per token keeps the soft and the hard terms on one scale.

`fused_lm_losses` computes the terms without ever holding a (batch, length, vocab) tensor: the counted positions'
hidden states go through each model's output layer `chunk_size` positions at a time; each chunk's gradient with
respect to the student's logits is taken at once (autograd on that chunk alone) and turned into gradients for the
student's hidden states and output layer, which the backward pass then only scales. The peak memory is one chunk's
logits (chunk_size x V per model) instead of the whole batch's, and no logits are recomputed: the same approach as
Liger-Kernel's fused linear cross-entropy and torchtune's chunked output losses, here in plain PyTorch.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor

from .logits import _check_temperature

DIVERGENCES = ("kd", "reverse_kl", "jsd")


def _check_beta(beta: float) -> None:
    if not 0.0 <= beta <= 1.0:
        raise ValueError(f"jsd_beta must be in [0, 1] (got {beta}): 0 is the forward KL, 1 the reverse KL.")


def token_divergence(name: str, student_logits: Tensor, teacher_logits: Tensor, temperature: float,
                     beta: float = 0.5) -> Tensor:  # fmt: skip
    """The divergence `name` ("kd", "reverse_kl", "jsd") at each position: logits (..., V) -> (...), with T^2."""
    _check_temperature(temperature)
    log_q = F.log_softmax(student_logits.float() / temperature, dim=-1)
    log_p = F.log_softmax(teacher_logits.float() / temperature, dim=-1)
    if name == "jsd":
        _check_beta(beta)
        if beta in (0.0, 1.0):
            name = "kd" if beta == 0.0 else "reverse_kl"
    if name == "kd":
        value = (log_p.exp() * (log_p - log_q)).sum(-1)
    elif name == "reverse_kl":
        value = (log_q.exp() * (log_q - log_p)).sum(-1)
    elif name == "jsd":
        b = torch.tensor(beta, dtype=log_q.dtype, device=log_q.device)
        log_m = torch.logsumexp(torch.stack([log_p + torch.log(b), log_q + torch.log1p(-b)]), dim=0)
        value = beta * (log_p.exp() * (log_p - log_m)).sum(-1) + (1 - beta) * (log_q.exp() * (log_q - log_m)).sum(-1)
    else:
        raise ValueError(f"unknown divergence {name!r}; known: {', '.join(DIVERGENCES)}.")
    return value * temperature**2


def masked_token_mean(values: Tensor, mask: Tensor | None) -> Tensor:
    """The mean of per-position values over the positions `mask` counts (all of them when None)."""
    if mask is None:
        return values.mean()
    mask = mask.to(values.dtype)
    return (values * mask).sum() / mask.sum().clamp_min(1.0)


def _chunk_terms(s_logits: Tensor, t_logits: Tensor | None, targets: Tensor, weights: Mapping[str, float],
                 temperature: float, beta: float,
                 cached: tuple[Tensor, ...] | None = None) -> dict[str, Tensor]:  # fmt: skip
    """The summed (not averaged) terms of one chunk of positions; the teacher as logits, or as its cached top-k
    entries (`cached`: ids, log-probabilities at T, the rest of the mass; `lm_cache.topk_divergence`)."""
    terms = {}
    for name in weights:
        if name == "ce":
            terms[name] = F.cross_entropy(s_logits.float(), targets, reduction="sum")
        elif cached is not None:
            from ..lm_cache import topk_divergence

            terms[name] = topk_divergence(name, s_logits, *cached, temperature, beta).sum()
        else:
            terms[name] = token_divergence(name, s_logits, t_logits, temperature, beta).sum()
    return terms


class _FusedLMLoss(torch.autograd.Function):
    """forward(student hidden (N, H), student head weight (V, H), head bias or None, teacher logits function's
    inputs...) -> the weighted total; the per-term means are returned detached through `ctx_terms`."""

    @staticmethod
    def forward(ctx, hidden, weight, bias, teacher_hidden, teacher_weight, teacher_bias, targets, spec):
        weights, temperature, beta, chunk, out_terms, cached = spec
        count = max(int(targets.numel()), 1)
        grad_hidden = torch.zeros_like(hidden, dtype=torch.float32)
        grad_weight = torch.zeros_like(weight, dtype=torch.float32)
        grad_bias = torch.zeros_like(bias, dtype=torch.float32) if bias is not None else None
        sums = {name: torch.zeros((), dtype=torch.float32, device=hidden.device) for name in weights}
        for start in range(0, hidden.shape[0], chunk):
            h = hidden[start : start + chunk]
            with torch.enable_grad():
                s_logits = F.linear(h.to(weight.dtype), weight, bias).detach().requires_grad_(True)
                t_logits = None
                if teacher_hidden is not None:
                    t_rows = teacher_hidden[start : start + chunk].to(teacher_weight.dtype)
                    t_logits = F.linear(t_rows, teacher_weight, teacher_bias).float()
                part = None if cached is None else tuple(x[start : start + chunk] for x in cached)
                terms = _chunk_terms(s_logits, t_logits, targets[start : start + chunk], weights, temperature, beta,
                                     part)  # fmt: skip
                total = sum(weights[n] * terms[n] for n in terms) / count
                (grad_logits,) = torch.autograd.grad(total, s_logits)
            grad_logits = grad_logits.to(torch.float32)
            grad_hidden[start : start + chunk] = grad_logits @ weight.float()
            grad_weight += grad_logits.T @ h.float()
            if grad_bias is not None:
                grad_bias += grad_logits.sum(0)
            for name, value in terms.items():
                sums[name] += value.detach()
        for name, value in sums.items():
            out_terms[name] = value / count
        # each gradient in its input's dtype (bf16 hidden states under autocast, an fp32 head)
        grad_hidden, grad_weight = grad_hidden.to(hidden.dtype), grad_weight.to(weight.dtype)
        grad_bias = None if grad_bias is None else grad_bias.to(bias.dtype)
        ctx.save_for_backward(grad_hidden, grad_weight, *(() if grad_bias is None else (grad_bias,)))
        ctx.has_bias = grad_bias is not None
        return sum(weights[n] * out_terms[n] for n in weights).to(hidden.dtype)

    @staticmethod
    def backward(ctx, grad_output):
        saved = ctx.saved_tensors
        grad_hidden, grad_weight = saved[0], saved[1]
        grad_bias = saved[2] * grad_output if ctx.has_bias else None
        return (grad_hidden * grad_output, grad_weight * grad_output, grad_bias, None, None, None, None, None)


def fused_lm_losses(
    hidden: Tensor,
    head: torch.nn.Linear,
    targets: Tensor,
    weights: Mapping[str, float],
    teacher_hidden: Tensor | None = None,
    teacher_head: torch.nn.Linear | None = None,
    temperature: float = 1.0,
    beta: float = 0.5,
    chunk_size: int = 1024,
    cached: tuple[Tensor, Tensor, Tensor] | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """The weighted sum of the token-level terms `weights` ({"kd" | "reverse_kl" | "jsd" | "ce": weight}) over the
    counted positions, computed `chunk_size` positions at a time.

    Args:
        hidden: the student's last hidden states at the counted positions, (N, H) (after the final norm).
        head: the student's output layer (its `weight` (V, H), tied to the input embeddings or not, and `bias`).
        targets: the next token at each counted position, (N,) int64.
        teacher_hidden / teacher_head: the teacher's, (N, H_t) and (V_t, H_t); required by every term but "ce".
            Vocabularies of different sizes are compared over the first min(V, V_t) ids (see `shared_vocabulary`).
        cached: instead of the teacher's states, its cached top-k entries at each counted position (ids (N, k),
            log-probabilities at T (N, k), the rest of the mass (N,): `lm_cache.TopKCache.gather`).
    Returns:
        (the weighted sum of the terms' means, {name: its mean, detached}); the gradients reach `hidden` and the
        head's parameters, equal to those of the direct computation.
    """
    _check_temperature(temperature)
    if any(n != "ce" for n in weights) and cached is None and (teacher_hidden is None or teacher_head is None):
        raise ValueError(f"the terms {sorted(n for n in weights if n != 'ce')} need the teacher's hidden states.")
    weight, bias = head.weight, head.bias
    t_weight = t_bias = None
    if teacher_head is not None:
        t_weight, t_bias = (
            teacher_head.weight.detach(),
            None if teacher_head.bias is None else teacher_head.bias.detach(),
        )
        shared = min(weight.shape[0], t_weight.shape[0])
        if t_weight.shape[0] != shared:  # the teacher's extra rows (padding, added tokens) are not compared
            t_weight = t_weight[:shared]
            t_bias = None if t_bias is None else t_bias[:shared]
        if weight.shape[0] != shared:
            raise ValueError(f"the student's vocabulary ({weight.shape[0]} rows) is larger than the teacher's "
                             f"({shared}): the student would have outputs the teacher never scores.")  # fmt: skip
        teacher_hidden = teacher_hidden.detach()
    if not (torch.is_grad_enabled() and (hidden.requires_grad or weight.requires_grad)):  # evaluation: no gradients
        count = max(int(targets.numel()), 1)
        sums: dict[str, Tensor] = {}
        with torch.no_grad():
            for start in range(0, hidden.shape[0], chunk_size):
                t_logits = None
                if teacher_hidden is not None:
                    t_rows = teacher_hidden[start : start + chunk_size].to(t_weight.dtype)
                    t_logits = F.linear(t_rows, t_weight, t_bias).float()
                s_logits = F.linear(hidden[start : start + chunk_size].to(weight.dtype), weight, bias)
                cut = None if cached is None else tuple(x[start : start + chunk_size] for x in cached)
                part = _chunk_terms(s_logits, t_logits, targets[start : start + chunk_size], weights, temperature, beta,
                                    cut)  # fmt: skip
                for name, value in part.items():
                    sums[name] = sums.get(name, 0.0) + value
        means = {n: torch.as_tensor(v, dtype=torch.float32) / count for n, v in sums.items()}
        return sum(weights[n] * means[n] for n in weights), means
    terms: dict[str, Tensor] = {}
    spec = (dict(weights), temperature, beta, chunk_size, terms, cached)
    total = _FusedLMLoss.apply(hidden, weight, bias, teacher_hidden, t_weight, t_bias, targets, spec)
    return total, terms


def direct_lm_losses(student_logits: Tensor, targets: Tensor, weights: Mapping[str, float],
                     teacher_logits: Tensor | None = None, temperature: float = 1.0,
                     beta: float = 0.5) -> tuple[Tensor, dict[str, Tensor]]:  # fmt: skip
    """The same terms from full logits at the counted positions ((N, V) each): the reference the fused computation
    is tested against, and what `bench_lm_memory.py` measures as the direct step."""
    count = max(int(targets.numel()), 1)
    if teacher_logits is not None and teacher_logits.shape[-1] != student_logits.shape[-1]:
        teacher_logits = teacher_logits[..., : student_logits.shape[-1]]
    terms = {n: v / count for n, v in _chunk_terms(student_logits, teacher_logits, targets, weights, temperature,
                                                  beta).items()}  # fmt: skip
    total = sum(weights[n] * terms[n] for n in terms)
    return total, {n: v.detach() for n, v in terms.items()}


@torch.no_grad()
def chunked_token_statistics(hidden: Tensor, head: torch.nn.Linear, labels: Tensor, chunk_size: int = 1024,
                             teacher_rows: Tensor | None = None,
                             teacher_head: torch.nn.Linear | None = None) -> Tensor:  # fmt: skip
    """(batch, seq, H) last hidden states and (batch, seq) labels -> (batch, seq, 3): the negative log-likelihood of
    the next token, the predicted next token and the teacher's predicted next token (-1 without a teacher) at each
    counted position (zeros elsewhere), computed `chunk_size` positions at a time: what evaluation keeps
    (`tasks.causal_lm.token_statistics` from full logits gives the first two). `teacher_rows`: the teacher's last
    hidden states at the counted positions, (N, H_t)."""
    batch, seq = labels.shape
    stats = torch.zeros(batch, seq, 3, dtype=torch.float32, device=hidden.device)
    counted = torch.zeros_like(labels, dtype=torch.bool)
    counted[:, :-1] = labels[:, 1:] != -100
    rows = hidden[counted]
    targets = labels[:, 1:][counted[:, :-1]]
    nll, top, teacher_top = [], [], []
    for start in range(0, rows.shape[0], chunk_size):
        logits = F.linear(rows[start : start + chunk_size], head.weight, head.bias).float()
        nll.append(F.cross_entropy(logits, targets[start : start + chunk_size], reduction="none"))
        top.append(logits.argmax(-1).float())
        if teacher_rows is not None:
            t_logits = F.linear(teacher_rows[start : start + chunk_size], teacher_head.weight, teacher_head.bias)
            teacher_top.append(t_logits[:, : logits.shape[-1]].argmax(-1).float())
        else:
            teacher_top.append(torch.full_like(top[-1], -1.0))
    if nll:
        stats[counted] = torch.stack([torch.cat(nll), torch.cat(top), torch.cat(teacher_top)], dim=-1)
    return stats
