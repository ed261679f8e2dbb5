"""Losses on the output logits: the soft-target KL of Hinton et al. (2015), the hard-label loss, and their mix."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def _check_temperature(temperature: float) -> None:
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0 (got {temperature}); 1.0 is the plain softmax, 2-4 is usual.")


def _masked_mean(values: Tensor, mask: Tensor | None) -> Tensor:
    """Mean of `values` (any shape) over the positions where `mask` (same shape) is true; plain mean without a mask."""
    if mask is None:
        return values.mean()
    mask = mask.to(dtype=values.dtype)
    # clamp: an all-masked batch gives 0, not NaN
    return (values * mask).sum() / mask.sum().clamp(min=1.0)


def soft_target_loss(
    student_logits: Tensor,
    teacher_logits: Tensor,
    temperature: float = 1.0,
    mask: Tensor | None = None,
) -> Tensor:
    """KL(softmax(teacher / T) || softmax(student / T)) * T^2.

    Shapes:
        student_logits, teacher_logits: (batch, num_labels) for sequence tasks, or (batch, seq, num_labels) for token
            tasks; the last dimension is the class dimension.
        mask: optional, the logits' shape without the class dimension ((batch,) or (batch, seq)); true (or 1) marks
            the positions that count. Masked positions contribute nothing.

    Reduction: "batchmean", i.e. the KL summed over classes and averaged over examples (over unmasked positions when
    a mask is given). Returns a scalar.

    The T^2 factor (Hinton et al. 2015, section 2): the gradient of the softened KL with respect to a student logit is
    (p_s - p_t) / T, and for large T, p_s - p_t shrinks like 1/T again; multiplying by T^2 keeps the soft term's
    gradient scale roughly independent of T, so changing T does not silently change its weight against the hard loss.
    """
    _check_temperature(temperature)
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(
            f"student logits {tuple(student_logits.shape)} and teacher logits {tuple(teacher_logits.shape)} differ in "
            "shape: the student needs the teacher's label count."
        )
    # log-probabilities at temperature T, of shape (..., num_labels); computed in fp32 for a stable softmax
    student_log_p = F.log_softmax(student_logits.float() / temperature, dim=-1)
    teacher_log_p = F.log_softmax(teacher_logits.float() / temperature, dim=-1)
    # per-position KL(t || s) = sum_c p_t (log p_t - log p_s), of shape (...)
    kl = (teacher_log_p.exp() * (teacher_log_p - student_log_p)).sum(dim=-1)
    return _masked_mean(kl, mask) * temperature**2


def hard_label_loss(student_logits: Tensor, labels: Tensor, ignore_index: int = -100) -> Tensor:
    """The ordinary supervised loss against the gold labels.

    Shapes:
        student_logits: (batch, num_labels) or (batch, seq, num_labels).
        labels: (batch,) or (batch, seq) class indices; positions equal to `ignore_index` are left out.
            With a single output (num_labels == 1, regression such as STS-B) labels are floats of shape (batch,)
            and the loss is the mean squared error.

    Reduction: mean over the labelled positions (rows the teacher alone labels carry `ignore_index`, or NaN for a
    regression target); a batch without any labelled position gives 0. Returns a scalar.
    """
    if student_logits.shape[-1] == 1 and labels.is_floating_point():
        keep = ~torch.isnan(labels)
        if not keep.any():
            return student_logits.sum() * 0.0
        return F.mse_loss(student_logits.squeeze(-1).float()[keep], labels.float()[keep])
    if not (labels != ignore_index).any():
        return student_logits.sum() * 0.0
    return F.cross_entropy(
        student_logits.reshape(-1, student_logits.shape[-1]).float(), labels.reshape(-1), ignore_index=ignore_index
    )


def distillation_loss(
    student_logits: Tensor,
    teacher_logits: Tensor,
    labels: Tensor | None = None,
    alpha: float = 0.5,
    temperature: float = 1.0,
    mask: Tensor | None = None,
) -> Tensor:
    """`alpha * soft_target_loss + (1 - alpha) * hard_label_loss`.

    `alpha = 1` is pure distillation and needs no labels; `alpha = 0` is exactly the hard-label loss (the soft term is
    not computed at all). Shapes as in `soft_target_loss` and `hard_label_loss`; returns a scalar.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1] (got {alpha}): 1 = teacher only, 0 = labels only.")
    if alpha == 0.0:
        if labels is None:
            raise ValueError("alpha = 0 trains on labels only, but no labels were given.")
        return hard_label_loss(student_logits, labels)
    soft = soft_target_loss(student_logits, teacher_logits, temperature, mask)
    if alpha == 1.0:
        return soft
    if labels is None:
        raise ValueError(f"alpha = {alpha} mixes in the hard-label loss, but no labels were given; use alpha = 1.0.")
    return alpha * soft + (1.0 - alpha) * hard_label_loss(student_logits, labels)


def regression_distill_loss(student_logits: Tensor, teacher_logits: Tensor) -> Tensor:
    """Soft targets for a regression head (num_labels == 1): the MSE between student and teacher outputs.

    A single output has no distribution to soften, so the temperature does not apply. Shapes (batch, 1); mean.
    """
    return F.mse_loss(student_logits.float(), teacher_logits.float())


__all__ = [
    "soft_target_loss",
    "hard_label_loss",
    "distillation_loss",
    "regression_distill_loss",
]
