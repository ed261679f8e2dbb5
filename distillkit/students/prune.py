"""Students cut from the teacher: structured pruning of layers, heads, head dimensions, FFN neurons and width.

The student is the teacher's own architecture with an ordinary config (the same number of heads, head width and FFN
neurons in every layer), so it loads with `AutoModelForSequenceClassification.from_pretrained` and no distillkit.
What is kept is chosen per layer by first-order Taylor importance (Molchanov et al. 2019; Michel et al. 2019 for
heads): the estimated change of the task loss when a unit is removed, |sum over a sequence of activation x
gradient|, summed over `samples` training examples. Supported: BERT, RoBERTa-style and MPNet encoders.
"""

from __future__ import annotations

import copy
import logging
import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ..data.unlabeled import NO_LABEL
from ..losses.layer_map import CutMap
from ..tasks.base import TARGET_COLUMNS
from .importance import _LAYOUTS, Importance, _layout, measure_importance
from .init import spread_layers

logger = logging.getLogger(__name__)


@dataclass
class PruneShape:
    """What to keep: layers, heads per layer, dimensions per head, FFN neurons per layer, hidden width."""

    num_layers: int
    num_heads: int
    hidden_size: int
    intermediate_size: int

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads


def check_shape(teacher: nn.Module, shape: PruneShape) -> None:
    """A target no larger than the teacher in any dimension, with heads that fit the width."""
    _layout(teacher)
    config = teacher.config
    limits = {"num_layers": config.num_hidden_layers, "num_heads": config.num_attention_heads,
              "hidden_size": config.hidden_size, "intermediate_size": config.intermediate_size}  # fmt: skip
    check_limits(shape, limits)
    teacher_head_dim = config.hidden_size // config.num_attention_heads
    if shape.hidden_size % shape.num_heads or shape.head_dim > teacher_head_dim:
        raise ValueError(
            f"--num_heads {shape.num_heads} does not fit --hidden_size {shape.hidden_size}: each head is width / heads "
            f"wide, which must be a whole number no larger than the teacher's head width {teacher_head_dim} (here "
            f"{shape.hidden_size / shape.num_heads:g}); choose a number of heads that divides the width and is at "
            f"least {math.ceil(shape.hidden_size / teacher_head_dim)}."
        )


def check_limits(shape: Any, limits: dict[str, int]) -> None:
    """Every dimension of a pruned `shape` between 1 and the teacher's (`limits`: flag name -> teacher's value)."""
    for name, limit in limits.items():
        value = getattr(shape, name)
        if not 1 <= value <= limit:
            raise ValueError(
                f"a pruned student keeps part of the teacher: --{name} {value} must be between 1 and the teacher's "
                f"{limit}."
            )


def _top(values: Tensor, k: int) -> Tensor:
    """Indices of the k largest values, in their original order (ties: the earlier index)."""
    order = sorted(range(len(values)), key=lambda j: (-float(values[j]), j))[:k]
    return torch.tensor(sorted(order), dtype=torch.long)


@dataclass
class Plan:
    layers: list[int]
    heads: list[list[int]]  # per kept layer: teacher head indices
    qk_dims: list[list[Tensor]]  # per kept layer, per kept head: the dimensions kept inside the head
    v_dims: list[list[Tensor]]
    neurons: list[Tensor]
    hidden: Tensor


LAYER_CHOICES = ("spread", "importance")


def plan(teacher: nn.Module, shape: PruneShape, scores: Importance | None, layers_by: str = "spread") -> Plan:
    """What to keep. Without scores: the first units of each kind (used to check a run before any teacher stage).

    layers_by "spread": layers evenly spread over the depth, the first and the last included (as teacher:K and
    DistilBERT keep them); "importance": the layers of highest Taylor score. Spread is the default because a
    first-order score predicts the removal of one layer, not of most of them: on SST-2 (MPNet teacher at 92.3%),
    keeping the 4 layers of highest score (1, 2, 4, 5) left the teacher at chance (50.9%), keeping 4 spread layers
    at 73.2%, and the whole 4 x 312 cut started at 65.5% with spread layers against 50.9%."""
    if layers_by not in LAYER_CHOICES:
        raise ValueError(f"prune_layers must be one of {LAYER_CHOICES} (got {layers_by!r}).")
    kind, _, _ = _layout(teacher)
    config = teacher.config
    num_layers, heads = config.num_hidden_layers, config.num_attention_heads
    dh = config.hidden_size // heads
    if scores is None:
        scores = Importance(
            layers=-torch.arange(num_layers).float(), heads=-torch.arange(heads).repeat(num_layers, 1).float(),
            qk_dims=-torch.arange(dh).float().expand(num_layers, heads, dh),
            v_dims=-torch.arange(dh).float().expand(num_layers, heads, dh),
            neurons=-torch.arange(config.intermediate_size).float().expand(num_layers, -1),
            hidden=-torch.arange(config.hidden_size).float(),
        )  # fmt: skip
    if layers_by == "spread":
        layers = spread_layers(num_layers, shape.num_layers)
    else:
        layers = _top(scores.layers, shape.num_layers).tolist()
    if kind == "mpnet":  # one relative-position bias per head, shared by every layer: the same heads everywhere
        shared = _top(scores.heads[layers].sum(dim=0), shape.num_heads).tolist()
        heads_kept = [shared for _ in layers]
    else:
        heads_kept = [_top(scores.heads[i], shape.num_heads).tolist() for i in layers]
    d = shape.head_dim
    return Plan(
        layers=layers,
        heads=heads_kept,
        qk_dims=[[_top(scores.qk_dims[i, h], d) for h in hs] for i, hs in zip(layers, heads_kept)],
        v_dims=[[_top(scores.v_dims[i, h], d) for h in hs] for i, hs in zip(layers, heads_kept)],
        neurons=[_top(scores.neurons[i], shape.intermediate_size) for i in layers],
        hidden=_top(scores.hidden, shape.hidden_size),
    )


def prune(
    teacher: nn.Module, shape: PruneShape, scores: Importance | None = None, layers_by: str = "spread"
) -> nn.Module:
    """The student: the teacher's architecture with `shape`, its weights cut from the teacher's per `scores`
    (layers chosen as `plan` says for `layers_by`)."""
    check_shape(teacher, shape)
    kind, base, layers = _layout(teacher)
    keep = plan(teacher, shape, scores, layers_by)
    config = copy.deepcopy(teacher.config)
    config.num_hidden_layers, config.num_attention_heads = shape.num_layers, shape.num_heads
    config.hidden_size, config.intermediate_size = shape.hidden_size, shape.intermediate_size
    student = type(teacher)(config).to(dtype=next(teacher.parameters()).dtype)
    s_kind, s_base, s_layers = _layout(student)
    dh = teacher.config.hidden_size // teacher.config.num_attention_heads
    scale = math.sqrt(dh / shape.head_dim)  # softmax(q k / sqrt(d)) unchanged in expectation with fewer dims per head
    hidden = keep.hidden
    layout = _LAYOUTS[kind]
    with torch.no_grad():
        for j, i in enumerate(keep.layers):
            t_layer, s_layer = layers[i], s_layers[j]
            qk = torch.cat([h * dh + dims for h, dims in zip(keep.heads[j], keep.qk_dims[j])])
            v = torch.cat([h * dh + dims for h, dims in zip(keep.heads[j], keep.v_dims[j])])
            cuts = {"q": (qk, hidden), "k": (qk, hidden), "v": (v, hidden), "o": (hidden, v),
                    "ffn_in": (keep.neurons[j], hidden), "ffn_out": (hidden, keep.neurons[j])}  # fmt: skip
            for part, (rows, cols) in cuts.items():
                src, dst = t_layer.get_submodule(layout[part]), s_layer.get_submodule(layout[part])
                dst.weight.copy_(src.weight[rows][:, cols] * (scale if part == "q" else 1.0))
                dst.bias.copy_(src.bias[rows] * (scale if part == "q" else 1.0))
            _copy_norms(t_layer, s_layer, hidden)
        for name, module in base.embeddings.named_children():
            target = s_base.embeddings.get_submodule(name)
            if isinstance(module, nn.Embedding):
                target.weight.copy_(module.weight[:, hidden])
            elif isinstance(module, nn.LayerNorm):
                target.weight.copy_(module.weight[hidden])
                target.bias.copy_(module.bias[hidden])
        for name, buffer in base.embeddings.named_buffers():  # position ids, token type ids
            s_base.embeddings.get_buffer(name).copy_(buffer)
        if kind == "mpnet":
            s_base.encoder.relative_attention_bias.weight.copy_(
                base.encoder.relative_attention_bias.weight[:, keep.heads[0]]
            )
        _copy_head(teacher, student, hidden)
    student.config.architectures = [type(student).__name__]
    notes = [
        f"pruned from the teacher ({teacher.config.num_hidden_layers} x {teacher.config.hidden_size}, "
        f"{teacher.config.num_attention_heads} heads, FFN {teacher.config.intermediate_size}) to {shape.num_layers} x "
        f"{shape.hidden_size}, {shape.num_heads} heads of {shape.head_dim}, FFN {shape.intermediate_size}: teacher "
        f"layers {[i + 1 for i in keep.layers]} kept"
        + (
            f", by first-order Taylor importance on {scores.samples} training examples"
            if scores
            else ", the first units of each kind (no importance measured)"
        )  # fmt: skip
    ]
    if kind == "mpnet":
        notes.append(f"MPNet shares its relative-position bias: the same heads {keep.heads[0]} kept in every layer")
    student.distillkit_init_notes = notes
    student.distillkit_prune_plan = keep
    student.distillkit_cut = cut_map(keep)
    return student


def cut_map(keep: Plan) -> CutMap:
    """Where each layer, head and channel of the student came from (what `--layer_map pruned` and the hidden
    projections' selection start read)."""
    return CutMap(layers=[i + 1 for i in keep.layers], heads=[list(h) for h in keep.heads], hidden=keep.hidden.tolist())


def _copy_norms(src: nn.Module, dst: nn.Module, hidden: Tensor) -> None:
    for module, target in zip(src.modules(), dst.modules()):
        if isinstance(module, nn.LayerNorm):
            target.weight.copy_(module.weight[hidden])
            target.bias.copy_(module.bias[hidden])


def _copy_head(teacher: nn.Module, student: nn.Module, hidden: Tensor) -> None:
    """The pooler (BERT) and the classification head: square layers cut on both sides, the output layer on its input."""
    width = teacher.config.hidden_size
    base_names = {n for n, _ in teacher.base_model.named_modules()}
    prefix = teacher.base_model_prefix
    for name, module in teacher.named_modules():
        if not isinstance(module, nn.Linear):
            continue
        inside_base = name.startswith(prefix + ".") and name.removeprefix(prefix + ".") in base_names
        if inside_base and ".pooler." not in f".{name}.":
            continue  # the encoder's layers are cut above
        target = student.get_submodule(name)
        rows = hidden if module.out_features == width else slice(None)
        if module.in_features != width:
            raise ValueError(f"cannot prune {type(teacher).__name__}: its head layer {name} does not read the width.")
        target.weight.copy_(module.weight[rows][:, hidden])
        if module.bias is not None:
            target.bias.copy_(module.bias[rows])


def parameter_count(
    teacher_config: Any, shape: PruneShape, task_type: Any, kind: str = "bert", pooler: bool = True
) -> int:
    """The pruned student's parameters in closed form (embeddings, layers, and the task's head:
    `task_type.head_parameters`)."""
    c, d, i, n = teacher_config, shape.hidden_size, shape.intermediate_size, shape.num_layers
    types = getattr(c, "type_vocab_size", 0) if kind == "bert" else 0
    embeddings = (c.vocab_size + c.max_position_embeddings + types) * d + 2 * d
    layer = 4 * (d * d + d) + 2 * d * i + i + d + 4 * d  # q, k, v, o; FFN in and out; two layer norms
    bias = c.relative_attention_num_buckets * shape.num_heads if kind == "mpnet" else 0
    head = task_type.head_parameters(c, d, pooler)
    return embeddings + n * layer + bias + head


def prune_on_data(
    teacher: nn.Module,
    student: nn.Module,
    dataset: Any,
    collator: Any,
    samples: int,
    batch_size: int = 32,
    evaluate: Any = None,
    layers_by: str = "spread",
    shape: PruneShape | None = None,
) -> tuple[nn.Module, dict[str, Any]]:
    """Cut `teacher` to `student`'s shape (or to `shape`), choosing by importance on the first `samples` labelled
    rows of `dataset` (the teacher's tokenization). Returns (the student, a report of what was kept). With
    `evaluate(model) -> scores` (the validation metrics), the report also has the teacher's score with each dimension
    pruned alone to its target (`pruned_alone`), the pruned student's before any training, and the teacher's."""
    if shape is None:
        c = student.config
        shape = PruneShape(c.num_hidden_layers, c.num_attention_heads, c.hidden_size, c.intermediate_size)
    targets = [c for c in TARGET_COLUMNS if c in dataset.column_names]  # `labels`, or a span head's two
    labels = dataset[targets[0]] if targets else []
    # not the teacher-only rows (-100 / NaN; a tagged sentence: no tagged token)
    labelled = [i for i, y in enumerate(labels)
                if (any(t != NO_LABEL for t in y) if isinstance(y, list) else y == y and y != NO_LABEL)]  # fmt: skip
    if not labelled:
        raise ValueError("--student pruned scores the teacher's units on gold labels, and the training data has none.")
    rows = dataset.select(labelled[:samples])
    columns = [k for k in ("input_ids", "attention_mask", "token_type_ids", *targets) if k in rows.column_names]
    rows = [{k: r[k] for k in columns} for r in rows]
    batches = [collator(rows[i : i + batch_size]) for i in range(0, len(rows), batch_size)]
    scores = measure_importance(teacher, batches)
    pruned = prune(teacher, shape, scores, layers_by)
    keep = pruned.distillkit_prune_plan
    report = {
        "teacher": {"layers": teacher.config.num_hidden_layers, "heads": teacher.config.num_attention_heads,
                    "hidden_size": teacher.config.hidden_size, "intermediate_size": teacher.config.intermediate_size,
                    "parameters": teacher.num_parameters()},
        "student": {"layers": shape.num_layers, "heads": shape.num_heads, "head_dim": shape.head_dim,
                    "hidden_size": shape.hidden_size, "intermediate_size": shape.intermediate_size,
                    "parameters": pruned.num_parameters()},
        "criterion": "first-order Taylor: |sum over positions of activation x gradient of the task loss|, summed "
                     "over examples",
        "samples": scores.samples,
        "layers_kept": [i + 1 for i in keep.layers],
        "layers_chosen_by": layers_by,
        "layer_importance": [round(float(v), 6) for v in scores.layers],
        "heads_kept": {str(i + 1): hs for i, hs in zip(keep.layers, keep.heads)},
        "hidden_dims_kept": keep.hidden.tolist(),
        "notes": pruned.distillkit_init_notes,
    }  # fmt: skip
    if evaluate is not None:
        full = PruneShape(teacher.config.num_hidden_layers, teacher.config.num_attention_heads,
                          teacher.config.hidden_size, teacher.config.intermediate_size)  # fmt: skip
        report["teacher_score"] = evaluate(teacher)
        report["pruned_alone"] = {}
        for name in ("num_layers", "num_heads", "hidden_size", "intermediate_size"):
            alone = PruneShape(**{**full.__dict__, name: getattr(shape, name)})
            if getattr(alone, name) == getattr(full, name) or alone.hidden_size % alone.num_heads:
                continue
            if alone.head_dim > teacher.config.hidden_size // teacher.config.num_attention_heads:
                continue  # that dimension alone would need wider heads than the teacher has
            report["pruned_alone"][name] = evaluate(prune(teacher, alone, scores, layers_by).eval())
        report["student_score_before_training"] = evaluate(pruned)
    return pruned, report
