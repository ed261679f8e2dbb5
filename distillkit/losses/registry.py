"""The one registry of distillation losses, and the built-in entries.

A registered loss is a function of `LossInputs` returning a scalar. `DistillTrainer` looks up the names that the
config turns on, asks the teacher for hidden states or attentions only when an active loss needs them, and sums the
terms with their weights. Adding a loss:

    from distillkit import register_loss

    @register_loss("logit_l1")
    def logit_l1(inputs):
        return (inputs.student_outputs.logits - inputs.teacher_outputs.logits).abs().mean()

then `DistillConfig(extra_losses=["logit_l1:0.5"])` adds it with weight 0.5, logged as `loss_logit_l1`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn

from .hidden import HiddenProjection, attention_loss, hidden_state_loss
from .layer_map import LayerMap
from .lm import masked_token_mean, token_divergence
from .logits import hard_label_loss, regression_distill_loss, soft_target_loss
from .relations import minilm_relation_loss


@dataclass
class LossInputs:
    """Everything a loss may look at for one batch.

    student_outputs / teacher_outputs: the models' outputs (`.logits`; `.hidden_states`, `.attentions` when some
        active loss asked for them). labels: (batch,) or None. attention_mask: (batch, seq) or None.
    args: the `DistillConfig`. layer_map: the resolved (student_layer, teacher_layer) pairs.
    module: what this loss's `build_module` returned (its learned projections), or None.
    """

    student_outputs: Any
    teacher_outputs: Any
    labels: Tensor | None
    attention_mask: Tensor | None
    args: Any
    layer_map: LayerMap
    module: nn.Module | None = None
    # for losses with needs_qkv: ((student Q, K, V), (teacher Q, K, V)), each (batch, seq, width), read by hooks
    qkv: tuple[tuple[Tensor, ...], tuple[Tensor, ...]] | None = None
    # a student cut from the teacher: per layer_map pair, the teacher heads its heads were cut from (None: not paired)
    head_map: list[list[int] | None] | None = None


@dataclass(frozen=True)
class LossSpec:
    name: str
    fn: Callable[[LossInputs], Tensor]
    needs_hidden_states: bool = False
    needs_attentions: bool = False
    needs_labels: bool = False
    # (student_config, teacher_config, layer_map) -> trainable module or None, built once when the trainer starts
    build_module: Callable[[Any, Any, LayerMap], nn.Module | None] | None = None
    needs_teacher: bool = True  # False: the term reads the student and the labels only (the teacher is not run)
    needs_qkv: bool = False  # True: the trainer hooks the attention projections (LossInputs.qkv)

    @property
    def pairs_positions(self) -> bool:
        """Whether the term compares the two models position by position (hidden states, attention maps, attention
        projections): the two must then read the same tokens at the same positions."""
        return self.needs_hidden_states or self.needs_attentions or self.needs_qkv


LOSS_REGISTRY: dict[str, LossSpec] = {}


def register_loss(
    name: str,
    *,
    needs_hidden_states: bool = False,
    needs_attentions: bool = False,
    needs_labels: bool = False,
    build_module: Callable[[Any, Any, LayerMap], nn.Module | None] | None = None,
    needs_teacher: bool = True,
    needs_qkv: bool = False,
) -> Callable[[Callable[[LossInputs], Tensor]], Callable[[LossInputs], Tensor]]:
    """Decorator: register `fn(inputs: LossInputs) -> scalar Tensor` under `name` (an existing name is an error).

    Args:
        name: the loss's name, as `DistillConfig(extra_losses=["name:weight"])` takes it; logged as `loss_<name>`.
        needs_hidden_states: the teacher and the student are asked for their hidden states.
        needs_attentions: ... for their attention maps (both switch to eager attention while the loss is active).
        needs_labels: the loss reads the gold labels (a batch without them is an error).
        build_module: `(student_config, teacher_config, layer_map) -> nn.Module | None`, built once when the
            trainer starts: learned projections, optimised with the student and saved in checkpoints only.
        needs_teacher: False when the loss reads the student and the labels alone (the teacher is not run).
        needs_qkv: the trainer hooks the attention projections and passes them as `LossInputs.qkv`.

    Returns:
        The decorator, which returns `fn` unchanged.
    """

    def decorator(fn: Callable[[LossInputs], Tensor]) -> Callable[[LossInputs], Tensor]:
        if name in LOSS_REGISTRY:
            raise ValueError(f"a loss named {name!r} is already registered; choose another name.")
        LOSS_REGISTRY[name] = LossSpec(
            name, fn, needs_hidden_states, needs_attentions, needs_labels, build_module, needs_teacher, needs_qkv
        )
        return fn

    return decorator


def get_loss(name: str) -> LossSpec:
    if name not in LOSS_REGISTRY:
        raise ValueError(
            f"unknown loss {name!r}; registered losses: {sorted(LOSS_REGISTRY)}. Register it first with "
            "@distillkit.register_loss(name)."
        )
    return LOSS_REGISTRY[name]


# ---- built-in losses ---------------------------------------------------------------------------------------------


def _token_mask(inputs: LossInputs, logits: Tensor) -> Tensor | None:
    # token-level logits (batch, seq, labels) are averaged over the labelled positions (labels != -100: each word's
    # first sub-word, the positions the hard loss and the metric read), else over the real tokens; sequence logits
    # need no mask
    if logits.dim() != 3:
        return None
    labels = inputs.labels
    if labels is not None and labels.dim() == 2 and labels.shape == logits.shape[:2] and bool((labels != -100).any()):
        return labels != -100
    return inputs.attention_mask


@register_loss("kd")
def _kd(inputs: LossInputs) -> Tensor:
    s, t = inputs.student_outputs.logits, inputs.teacher_outputs.logits
    if s.shape[-1] == 1:  # a regression head has no distribution to soften
        return regression_distill_loss(s, t)
    return soft_target_loss(s, t, inputs.args.temperature, _token_mask(inputs, s))


@register_loss("reverse_kl")
def _reverse_kl(inputs: LossInputs) -> Tensor:
    """KL(student || teacher) * T^2 per row or per counted token (losses/lm.py); `--kd_loss reverse_kl`."""
    s, t = inputs.student_outputs.logits, inputs.teacher_outputs.logits
    return masked_token_mean(token_divergence("reverse_kl", s, t, inputs.args.temperature), _token_mask(inputs, s))


@register_loss("jsd")
def _jsd(inputs: LossInputs) -> Tensor:
    """GKD's generalised Jensen-Shannon divergence with `--jsd_beta`, * T^2 (losses/lm.py); `--kd_loss jsd`."""
    s, t = inputs.student_outputs.logits, inputs.teacher_outputs.logits
    value = token_divergence("jsd", s, t, inputs.args.temperature, inputs.args.jsd_beta)
    return masked_token_mean(value, _token_mask(inputs, s))


@register_loss("ce", needs_labels=True, needs_teacher=False)
def _ce(inputs: LossInputs) -> Tensor:
    return hard_label_loss(inputs.student_outputs.logits, inputs.labels)


def _hidden_projection(student_config: Any, teacher_config: Any, layer_map: LayerMap) -> nn.Module:
    return HiddenProjection(student_config.hidden_size, teacher_config.hidden_size, len(layer_map))


@register_loss("hidden", needs_hidden_states=True, build_module=_hidden_projection)
def _hidden(inputs: LossInputs) -> Tensor:
    s_states, t_states = inputs.student_outputs.hidden_states, inputs.teacher_outputs.hidden_states
    terms = [
        hidden_state_loss(inputs.module(i, s_states[s]), t_states[t], inputs.attention_mask, inputs.args.hidden_loss)
        for i, (s, t) in enumerate(inputs.layer_map)
    ]
    return sum(terms) / len(terms)


def _embedding_projection(student_config: Any, teacher_config: Any, layer_map: LayerMap) -> nn.Module:
    return HiddenProjection(student_config.hidden_size, teacher_config.hidden_size, 1)


@register_loss("embedding", needs_hidden_states=True, build_module=_embedding_projection)
def _embedding(inputs: LossInputs) -> Tensor:
    # hidden_states[0] is the embedding output, (batch, seq, dim)
    s = inputs.module(0, inputs.student_outputs.hidden_states[0])
    return hidden_state_loss(s, inputs.teacher_outputs.hidden_states[0], inputs.attention_mask, inputs.args.hidden_loss)


@register_loss("attention", needs_attentions=True)
def _attention(inputs: LossInputs) -> Tensor:
    # layer 0 (embeddings) has no attention; a cut student's heads imitate the heads they were cut from
    heads = inputs.head_map or [None] * len(inputs.layer_map)
    pairs = [(s, t, h) for (s, t), h in zip(inputs.layer_map, heads) if s > 0 and t > 0]
    if not pairs:
        raise ValueError("the attention loss needs at least one layer pair above 0 in layer_map.")
    s_attn, t_attn = inputs.student_outputs.attentions, inputs.teacher_outputs.attentions
    kind = inputs.args.attention_loss
    terms = [attention_loss(s_attn[s - 1], t_attn[t - 1], inputs.attention_mask, kind, h) for s, t, h in pairs]
    return sum(terms) / len(terms)


@register_loss("minilm", needs_qkv=True)
def _minilm(inputs: LossInputs) -> Tensor:
    # MiniLM(v2) relations of the student's last layer against args.minilm_layer of the teacher (relations.py)
    (student_qkv, teacher_qkv), heads = inputs.qkv, inputs.args.minilm_heads
    return minilm_relation_loss(student_qkv, teacher_qkv, heads, inputs.attention_mask)
