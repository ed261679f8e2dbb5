"""MiniLM self-attention relation distillation (Wang et al. 2020 MiniLM; 2021 MiniLMv2).

For one teacher layer and the student's last layer, the queries, keys and values (outputs of the attention's
query / key / value projections) are compared through their *relations*: for X in {Q, K, V}, concatenate all heads,
re-split into A_r relation heads of size d_r = width / A_r, and take R = softmax(X_a X_a^T / sqrt(d_r)) per relation
head a, a distribution over keys for each query position. The loss is

    sum over X in {Q, K, V} of  mean over relation heads and real query rows of  KL(R_teacher || R_student),

with padded keys masked out of both softmaxes. The relations are seq x seq whatever the widths, so no projection is
needed and the student may differ from the teacher in width and head count (A_r must divide both widths).

Q, K and V are read by forward hooks on the projection modules, so both models keep their SDPA (or flash) attention;
nothing switches to eager attention. `find_qkv` knows the usual module names (BERT, RoBERTa, ALBERT, ELECTRA:
query/key/value; MPNet: q/k/v; q_proj/k_proj/v_proj); a model without them is refused with a clear message.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

_NAMES = (("query", "key", "value"), ("q", "k", "v"), ("q_proj", "k_proj", "v_proj"))


def relation_kl(student: Tensor, teacher: Tensor, heads: int, mask: Tensor | None = None) -> Tensor:
    """KL(teacher relations || student relations) for one of Q, K, V.

    Shapes:
        student: (batch, seq, student_width); teacher: (batch, seq, teacher_width); both widths divisible by `heads`.
        mask: optional (batch, seq), 1 for real tokens; padded keys get no probability and padded query rows count
            for nothing.
    Reduction: summed over keys, averaged over relation heads and real query rows. Returns a scalar.
    """

    def log_relations(x: Tensor) -> Tensor:
        b, s, width = x.shape
        if width % heads:
            raise ValueError(f"minilm_heads={heads} must divide the width {width}; choose a common divisor.")
        d = width // heads
        x = x.float().view(b, s, heads, d).transpose(1, 2)  # (batch, heads, seq, d)
        scores = x @ x.transpose(-1, -2) / math.sqrt(d)  # (batch, heads, seq, seq)
        if mask is not None:
            scores = scores.masked_fill(mask[:, None, None, :] == 0, float("-inf"))
        return scores.log_softmax(dim=-1)

    log_t, log_s = log_relations(teacher), log_relations(student)
    p_t = log_t.exp()
    # where the teacher puts no mass (padded keys) the term is 0; nan_to_num guards -inf - -inf there
    per_row = torch.nan_to_num(p_t * (log_t - log_s), nan=0.0, posinf=0.0, neginf=0.0).sum(dim=-1)
    if mask is None:
        return per_row.mean()
    rows = mask[:, None, :].expand_as(per_row).float()  # (batch, heads, seq)
    return (per_row * rows).sum() / rows.sum().clamp(min=1.0)


def minilm_relation_loss(
    student_qkv: tuple[Tensor, Tensor, Tensor], teacher_qkv: tuple[Tensor, Tensor, Tensor], heads: int, mask=None
) -> Tensor:
    """Q-Q + K-K + V-V relation KL (MiniLMv2). Each entry: (batch, seq, width). Returns a scalar."""
    return sum(relation_kl(s, t, heads, mask) for s, t in zip(student_qkv, teacher_qkv))


def find_qkv(model: nn.Module) -> list[tuple[nn.Module, nn.Module, nn.Module]]:
    """The (query, key, value) projection modules of every attention block, in order of depth."""
    modules = dict(model.named_modules())
    found = []
    for prefix in modules:
        for names in _NAMES:
            triple = [modules.get(f"{prefix}.{n}" if prefix else n) for n in names]
            if all(isinstance(m, nn.Linear) for m in triple):
                found.append(tuple(triple))
    if not found:
        raise ValueError(
            f"the minilm loss reads the attention's query / key / value projections, and {type(model).__name__} has "
            f"none under the known names {[list(n) for n in _NAMES]}; drop --minilm_weight for this model."
        )
    return found


class QKVCapture:
    """Forward hooks that keep the query, key and value of one layer, between `start()` and `take()`.

    Outside that window (evaluation with a plain Trainer, latency timing, any other forward) the hooks keep nothing,
    so no activations pile up. `layer` is 1-based (1 = the first transformer layer), negative counts from the end
    (-1 = the last). A model whose layers share one attention block (ALBERT-style) calls it once per layer: the calls
    are counted.
    """

    def __init__(self, model: nn.Module, layer: int, num_layers: int):
        triples = find_qkv(model)
        index = layer - 1 if layer > 0 else num_layers + layer
        if not 0 <= index < num_layers:
            raise ValueError(f"minilm layer {layer} is out of range for a model of {num_layers} layers.")
        if len(triples) == num_layers:
            self.triple, self.call = triples[index], -1  # its own block: its latest call
        elif len(triples) == 1:
            self.triple, self.call = triples[0], index  # one shared block: the index-th call of the pass
        else:
            raise ValueError(
                f"{type(model).__name__} has {len(triples)} attention blocks for {num_layers} layers (grouped layer "
                "sharing): the minilm loss cannot tell which call is which layer; use one group of shared layers."
            )
        self.calls: list[list[Tensor]] = [[], [], []]
        self.active = False
        self.handles = [m.register_forward_hook(self._hook(i)) for i, m in enumerate(self.triple)]

    def _hook(self, position: int) -> Any:
        def hook(module, args, output):
            if self.active:
                self.calls[position].append(output)

        return hook

    def start(self) -> None:
        """Keep what the next forward pass computes (and nothing older)."""
        self.calls, self.active = [[], [], []], True

    def take(self) -> tuple[Tensor, Tensor, Tensor] | None:
        """(Q, K, V) of the layer, each (batch, seq, width), from the forward pass since `start`; stops keeping."""
        calls, self.calls, self.active = self.calls, [[], [], []], False
        if not all(calls):
            return None
        return tuple(c[self.call] for c in calls)

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()
