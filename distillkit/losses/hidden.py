"""Intermediate-layer matching: hidden states, embedding outputs and attention maps (TinyBERT, Jiao et al. 2020)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .logits import _masked_mean

HIDDEN_LOSS_KINDS = ("mse", "cosine", "ln_mse")
ATTENTION_LOSS_KINDS = ("kl", "mse")


def hidden_state_loss(
    student_hidden: Tensor,
    teacher_hidden: Tensor,
    mask: Tensor | None = None,
    kind: str = "mse",
) -> Tensor:
    """Distance between student and teacher hidden states of the same width (project the student first if needed).

    Shapes:
        student_hidden, teacher_hidden: (batch, seq, dim).
        mask: optional (batch, seq), 1 for real tokens and 0 for padding; padding contributes nothing.

    kind "mse": squared error averaged over the hidden dimension, then over unmasked tokens.
    kind "cosine": 1 - cosine similarity per token, averaged over unmasked tokens (scale-free).
    kind "ln_mse": MSE after a parameter-free layer norm of each token's state on both sides (zero mean, unit
        variance over the hidden dimension), so the loss does not depend on the teacher's activation scale: a
        teacher whose states are 100 times larger gives the same value (teachers differ widely: MPNet's states have
        a mean square of 0.02 to 0.12, BERT's are near 1), and the same weight means the same thing for any teacher.
    Returns a scalar.
    """
    if student_hidden.shape != teacher_hidden.shape:
        raise ValueError(
            f"hidden states differ in shape: student {tuple(student_hidden.shape)}, teacher "
            f"{tuple(teacher_hidden.shape)}; project the student's states to the teacher's width first."
        )
    s, t = student_hidden.float(), teacher_hidden.float()
    if kind == "mse":
        per_token = (s - t).pow(2).mean(dim=-1)  # (batch, seq)
    elif kind == "ln_mse":
        d = s.shape[-1]
        per_token = (F.layer_norm(s, (d,), eps=1e-6) - F.layer_norm(t, (d,), eps=1e-6)).pow(2).mean(dim=-1)
    elif kind == "cosine":
        per_token = 1.0 - F.cosine_similarity(s, t, dim=-1, eps=1e-8)  # (batch, seq)
    else:
        raise ValueError(f"hidden_loss must be one of {HIDDEN_LOSS_KINDS} (got {kind!r}).")
    return _masked_mean(per_token, mask)


def attention_loss(
    student_attn: Tensor,
    teacher_attn: Tensor,
    mask: Tensor | None = None,
    kind: str = "kl",
    teacher_heads: list[int] | None = None,
) -> Tensor:
    """Distance between attention maps (post-softmax probabilities, as returned with `output_attentions=True`).

    Shapes:
        student_attn: (batch, student_heads, seq, seq); teacher_attn: (batch, teacher_heads, seq, seq).
            When the head counts differ, each side is averaged over its heads first, so a 2-head student can learn
            from a 12-head teacher; with equal counts head h imitates head h.
        mask: optional (batch, seq), 1 for real tokens; padded query rows (and, for MSE, padded key columns) count
            for nothing.
        teacher_heads: for a student cut from the teacher, the teacher head each student head was cut from: student
            head h imitates teacher head teacher_heads[h] (the other teacher heads are not read).

    kind "kl": KL(teacher row || student row) for every query row (a distribution over keys), summed over keys and
        averaged over heads and unmasked rows.
    kind "mse": squared error averaged over unmasked (query, key) cells and heads (TinyBERT's choice).
    Returns a scalar.
    """
    if student_attn.shape[-2:] != teacher_attn.shape[-2:] or student_attn.shape[0] != teacher_attn.shape[0]:
        raise ValueError(
            f"attention maps differ in shape: student {tuple(student_attn.shape)}, teacher {tuple(teacher_attn.shape)}."
        )
    s, t = student_attn.float(), teacher_attn.float()
    if teacher_heads is not None:
        if len(teacher_heads) != s.shape[1]:
            raise ValueError(
                f"the student has {s.shape[1]} heads, but {len(teacher_heads)} teacher heads were named as theirs."
            )
        t = t[:, teacher_heads]
    if s.shape[1] != t.shape[1]:
        # (batch, 1, seq, seq): different head counts cannot be paired one to one
        s, t = s.mean(dim=1, keepdim=True), t.mean(dim=1, keepdim=True)
    heads = s.shape[1]
    row_mask = None if mask is None else mask[:, None, :].expand(-1, heads, -1)  # (batch, heads, seq)
    if kind == "kl":
        # xlogy gives 0 where the teacher puts no mass (padded keys); the clamp keeps log(student) finite there
        per_row = (torch.xlogy(t, t) - t * s.clamp(min=1e-12).log()).sum(dim=-1)  # (batch, heads, seq)
        return _masked_mean(per_row, row_mask)
    if kind == "mse":
        per_cell = (s - t).pow(2)  # (batch, heads, seq, seq)
        cell_mask = None if row_mask is None else row_mask[..., :, None] * row_mask[..., None, :]
        return _masked_mean(per_cell, cell_mask)
    raise ValueError(f"attention_loss must be one of {ATTENTION_LOSS_KINDS} (got {kind!r}).")


class HiddenProjection(nn.Module):
    """Learned linear maps from student width to teacher width, one per matched layer (TinyBERT's W_h).

    Where the widths are equal no projection is needed and the states pass through unchanged. These weights are
    trained with the student but are not part of it: the saved student never contains them.
    """

    def __init__(self, student_dim: int, teacher_dim: int, num_layers: int):
        super().__init__()
        self.student_dim, self.teacher_dim = student_dim, teacher_dim
        self.proj = nn.ModuleList(
            nn.Identity() if student_dim == teacher_dim else nn.Linear(student_dim, teacher_dim)
            for _ in range(num_layers)
        )

    def forward(self, index: int, hidden: Tensor) -> Tensor:
        """hidden: (batch, seq, student_dim) -> (batch, seq, teacher_dim), through the projection of pair `index`."""
        return self.proj[index](hidden)

    def start_as_selection(self, channels: list[int], fixed: bool = False) -> None:
        """For a student cut from the teacher: each projection starts as the map that puts student channel k back
        at the teacher channel `channels[k]` it was cut from (weight 1 there, 0 elsewhere, no bias), so that the
        student's states as cut are compared with the teacher's own channels from step 0; the teacher's channels
        the cut left out are compared with 0. `fixed`: the projections stay that selection (not trained)."""
        if len(channels) != self.student_dim or not all(0 <= c < self.teacher_dim for c in channels):
            raise ValueError(
                f"a selection from {self.student_dim} student channels into {self.teacher_dim} teacher channels needs "
                f"one teacher channel per student channel (got {len(channels)})."
            )
        for proj in self.proj:
            if isinstance(proj, nn.Identity):
                continue
            with torch.no_grad():
                proj.weight.zero_()
                proj.weight[torch.tensor(channels), torch.arange(self.student_dim)] = 1.0
                proj.bias.zero_()
            proj.requires_grad_(not fixed)
