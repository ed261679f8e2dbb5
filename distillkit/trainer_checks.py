"""What `DistillTrainer` checks before it builds anything: the teacher and student fit (vocabulary, and the task
type's head check), the loss names, the layer map, the teacher cache against the losses, and labels for the losses
that need them. The pipeline calls the same checks before it writes anything."""

from __future__ import annotations

from typing import Any

from transformers import PreTrainedModel

from .config import INTERMEDIATE_WEIGHTS, DistillConfig
from .frozen_teacher import check_vocabularies
from .losses.layer_map import LayerMap, build_layer_map
from .losses.registry import LossSpec, get_loss
from .losses.relations import find_qkv
from .tasks import TARGET_COLUMNS, TaskType, resolve_task_type

_LABEL_COLUMNS = (*TARGET_COLUMNS, "label", "label_ids")


def check_setup(
    model: PreTrainedModel,
    teacher_config: Any,
    args: DistillConfig,
    train_dataset: Any = None,
    cross_tokenizer: bool = False,
    task_type: str | TaskType | None = None,
    cut_from_this_teacher: bool = True,
    aligned_teacher_tokens: bool = False,
) -> tuple[dict[str, float], dict[str, LossSpec], LayerMap]:
    """Every check that can fail before training, without building anything: teacher / student fit, the loss
    names, the layer map, and labels for the losses that need them. Returns (weights, loss specs, layer map).
    `cut_from_this_teacher`: False where a student cut from one teacher matches the layers of another (an
    ensemble's --intermediate_teacher), so that its cut does not pair layers. `aligned_teacher_tokens`: the teacher's
    columns hold the student's own tokens in the teacher's ids, position for position (a trimmed vocabulary,
    `students.vocab.with_teacher_ids`), so the intermediate losses can pair positions although the tokenizers
    differ."""
    check_models(teacher_config, model.config, cross_tokenizer, resolve_task_type(task_type, model))
    weights = args.loss_weights()
    specs = {name: get_loss(name) for name in weights}
    cut = getattr(model, "distillkit_cut", None) if cut_from_this_teacher else None  # its layers' sources
    layer_map = build_layer_map(args.layer_map, model.config.num_hidden_layers, teacher_config.num_hidden_layers, cut)
    needing = [n for n, s in specs.items() if s.pairs_positions]
    if cross_tokenizer and needing and not aligned_teacher_tokens:
        raise ValueError(
            f"the teacher and the student use different tokenizers, so their token positions do not line up and "
            f"the intermediate-layer losses {needing} cannot be computed. Set their weights to 0 "
            f"({' '.join(f'--{w} 0' for w in INTERMEDIATE_WEIGHTS)}) to distill the logits only, or use "
            "a student that shares the teacher's tokenizer (a preset, custom or teacher:K student)."
        )
    # with two stages the cache serves the prediction stage only (stage 1 runs the teacher live)
    cached = [n for n in needing if args.intermediate_epochs == 0 or n in args.loss_weights("prediction")]
    if args.teacher_cache and cached:
        raise ValueError(
            f"--teacher_cache holds the teacher's logits only, but the losses {cached} need its hidden states "
            "or attention maps; turn those losses off, train without the cache, or train them in stage 1 of "
            "the two-stage schedule (--intermediate_epochs E)."
        )
    if "minilm" in specs:
        heads = args.minilm_heads or model.config.num_attention_heads
        widths = {"student": model.config.hidden_size, "teacher": teacher_config.hidden_size}
        if any(w % heads for w in widths.values()):
            raise ValueError(
                f"minilm_heads={heads} must divide both widths {widths}: the relations re-split Q, K and V into "
                "that many heads. Set --minilm_heads to a common divisor."
            )
        args.minilm_heads = heads
        find_qkv(model)  # an architecture without query / key / value projections is refused here
    needs_labels = [name for name, spec in specs.items() if spec.needs_labels]
    columns = getattr(train_dataset, "column_names", None)
    if needs_labels and columns is not None and not any(c in columns for c in _LABEL_COLUMNS):
        raise ValueError(
            f"the losses {needs_labels} need gold labels, but the training data has no label column (columns: "
            f"{columns}). Add a 'labels' column (--label_column NAME) or distill from the teacher alone with "
            "alpha=1.0."
        )
    return weights, specs, layer_map


def check_models(teacher_config: Any, student_config: Any, cross_tokenizer: bool, task_type: TaskType) -> None:
    """The student reads the teacher's batches (same vocabulary, unless each has its own tokenizer) and its head
    predicts what the teacher's does (`task_type.check_compatible`)."""
    if not task_type.shared_vocabulary:  # a language model's vocabularies are compared over their shared ids
        check_vocabularies(teacher_config, student_config, cross_tokenizer)
    task_type.check_compatible(teacher_config, student_config)
