"""`build_student`: the one entry point that turns a student spec into a model with the teacher's head (the head
of the task type it is handed)."""

from __future__ import annotations

import logging
import os
import re
from typing import Any

from transformers import AlbertConfig, BertConfig, PreTrainedModel

from ..loading import load_student, model_class
from .init import cut_teacher, init_embeddings, init_shared_layers, log_notes
from .presets import KNOWN_SPECS, PRESETS, StudentShape, resolve_shape
from .prune import PruneShape, prune
from .prune_lm import LMPruneShape, check_lm_layout, full_shape, is_decoder_lm, prune_lm

logger = logging.getLogger(__name__)

MAX_POSITIONS = 512


def student_config(shape: StudentShape, teacher_config: Any, task_type: Any) -> BertConfig | AlbertConfig:
    """The student's config: its own shape, the teacher's vocabulary, head fields (`task_type.head_config`),
    activation and usable positions."""
    # RoBERTa-style teachers have 514 positions (two reserved), BERT-style students count from 0: 512 serves both
    positions = min(getattr(teacher_config, "max_position_embeddings", MAX_POSITIONS), MAX_POSITIONS)
    act = getattr(teacher_config, "hidden_act", "gelu")
    common = dict(
        vocab_size=teacher_config.vocab_size,
        hidden_size=shape.hidden_size,
        num_hidden_layers=shape.num_layers,
        num_attention_heads=shape.num_heads,
        intermediate_size=shape.intermediate_size,
        max_position_embeddings=positions,
        type_vocab_size=max(1, getattr(teacher_config, "type_vocab_size", 2) or 2),
        hidden_act=act if isinstance(act, str) else "gelu",
        hidden_dropout_prob=0.1,
        attention_probs_dropout_prob=0.1,
        **task_type.head_config(teacher_config),
    )
    if getattr(teacher_config, "pad_token_id", None) is not None:
        common["pad_token_id"] = teacher_config.pad_token_id
    if not shape.is_albert:
        return BertConfig(**common)
    return AlbertConfig(
        **common,
        embedding_size=shape.embedding_size or shape.hidden_size,
        # without sharing every layer is its own group: ALBERT code, BERT-like weights, factorized embeddings
        num_hidden_groups=shape.num_hidden_groups if shape.share_layers else shape.num_layers,
        inner_group_num=1,
        classifier_dropout_prob=0.1,
    )


def _parse_teacher_spec(spec: str) -> int | None:
    match = re.fullmatch(r"teacher:(\d+)", spec.strip())
    return int(match.group(1)) if match else None


def build_student(
    spec: str,
    teacher: PreTrainedModel,
    *,
    task_type: Any,
    num_layers: int | None = None,
    hidden_size: int | None = None,
    num_heads: int | None = None,
    intermediate_size: int | None = None,
    embedding_size: int | None = None,
    share_layers: bool = False,
    num_hidden_groups: int = 1,
    init_from_teacher: bool = True,
    trust_remote_code: bool = False,
    allow_pickle: bool = False,
    num_key_value_heads: int | None = None,
) -> PreTrainedModel:
    """Build (or load) the student named by `spec`, with the teacher's vocabulary and head.

    `distillkit.build_student` is this function with `task_type` optional (inferred from the teacher's head).

    Args:
        spec: "tiny" | "mini" | "small" | "medium": a preset (2x128, 4x256, 4x512, 8x512; heads = width / 64,
            intermediate = 4 x width), whose fields num_layers / hidden_size / num_heads / intermediate_size
            override; "custom": an explicit shape from num_layers and hidden_size (and optionally heads and
            intermediate size); "teacher:K": the teacher's own architecture and width with K of its layers;
            "pruned": the teacher cut to the given shape (see `students/prune.py`; a decoder LM:
            `students/prune_lm.py`); anything else: a local directory or hub name to load.
        teacher: the (fine-tuned) teacher model.
        task_type: the `TaskType` whose head the student gets (`distillkit.get_task_type(name)`).
        num_layers, hidden_size, num_heads, intermediate_size: the student's shape (override a preset's).
        num_key_value_heads: a decoder student's key-value heads (pruned; default the teacher's grouping).
        embedding_size: factorized embeddings (vocab -> embedding_size -> hidden_size), <= hidden_size.
        share_layers: ALBERT-style cross-layer sharing; num_hidden_groups: one set of weights per group.
        init_from_teacher: start from the teacher's weights where shapes allow (layers for teacher:K, embeddings
            by truncated SVD, shared layers from teacher layers of the same width, the task's head); what was done
            is logged and kept in `model.distillkit_init_notes`.
        trust_remote_code: allow custom modelling code for a student loaded by name (off unless asked).
        allow_pickle: load a pickle checkpoint when no safetensors exist (only for files you trust).

    Returns:
        With sharing or factorization an `Albert...` model of the task type, else a `Bert...` one (or the
        teacher's own class for teacher:K and pruned); each loads with plain transformers.
    """
    if spec == "pruned":
        if embedding_size is not None or share_layers:
            raise ValueError(
                "--student pruned keeps the teacher's architecture: factorized embeddings and layer sharing are not "
                "offered for it yet; leave out --embedding_size and --share_layers."
            )
        c = teacher.config
        if getattr(task_type, "chunked_lm_losses", False) or is_decoder_lm(teacher):
            check_lm_layout(teacher)  # the first units here; the pipeline cuts again by activations on the text
            full = full_shape(c)
            heads = num_heads or full.num_heads
            kv = num_key_value_heads or max(1, heads // (full.num_heads // full.num_key_value_heads))
            shape = LMPruneShape(num_layers or full.num_layers, hidden_size or full.hidden_size, heads, kv,
                                 intermediate_size or full.intermediate_size)  # fmt: skip
            student = prune_lm(teacher, shape)
            student.distillkit_init_notes = log_notes(student.distillkit_init_notes)
            return student
        shape = PruneShape(num_layers or c.num_hidden_layers, num_heads or c.num_attention_heads,
                           hidden_size or c.hidden_size, intermediate_size or c.intermediate_size)  # fmt: skip
        student = prune(teacher, shape)  # the first units; the pipeline cuts again by importance on the task's data
        student.distillkit_init_notes = log_notes(student.distillkit_init_notes)
        return student
    k = _parse_teacher_spec(spec)
    if k is not None:
        if (
            share_layers
            or embedding_size is not None
            or any(v is not None for v in (num_layers, hidden_size, num_heads, intermediate_size))
        ):
            raise ValueError(
                "teacher:K keeps the teacher's architecture and width; sharing, factorized embeddings "
                "and explicit shapes need a preset or 'custom' student instead."
            )
        if k > teacher.config.num_hidden_layers:
            raise ValueError(
                f"teacher:{k} asks for more layers than the teacher has "
                f"({teacher.config.num_hidden_layers}); use teacher:K with K <= "
                f"{teacher.config.num_hidden_layers}."
            )
        student, notes = cut_teacher(teacher, k, copy_weights=init_from_teacher)
        student.distillkit_init_notes = log_notes(notes)
        return student

    if spec not in PRESETS and spec != "custom":
        if os.path.isdir(spec) or "/" in spec or not re.fullmatch(r"[a-z_]+", spec):
            loaded = load_student(spec, teacher, task_type=task_type, trust_remote_code=trust_remote_code,
                                  allow_pickle=allow_pickle)  # fmt: skip
            if embedding_size is None and not share_layers:
                return loaded
            return albertize(loaded, embedding_size, share_layers, num_hidden_groups, init_from_teacher, task_type)
        raise ValueError(f"unknown student preset {spec!r}; known: {KNOWN_SPECS}.")

    shape = resolve_shape(
        spec,
        num_layers=num_layers,
        hidden_size=hidden_size,
        num_heads=num_heads,
        intermediate_size=intermediate_size,
        embedding_size=embedding_size,
        share_layers=share_layers,
        num_hidden_groups=num_hidden_groups,
    )
    own = task_type.student_config(spec, shape, teacher.config)  # a language model: the teacher's architecture
    if own is not None:
        if num_key_value_heads is not None:
            if not hasattr(own, "num_key_value_heads") or own.num_attention_heads % num_key_value_heads:
                raise ValueError(f"--num_key_value_heads {num_key_value_heads} must divide the student's "
                                 f"{own.num_attention_heads} heads (grouped-query attention; a "
                                 f"{type(teacher).__name__} student).")  # fmt: skip
            own.num_key_value_heads = num_key_value_heads
        student = type(teacher)(own)
        student.distillkit_init_notes = log_notes([f"{type(teacher).__name__} at the custom shape, randomly "
                                                   "initialised"])  # fmt: skip
        return student
    config = student_config(shape, teacher.config, task_type)
    student = model_class(task_type, config)(config)
    if init_from_teacher:
        notes = _init_from(student, teacher, shape, task_type)
    else:
        notes = ["random initialisation (init_from_teacher is off)"]
    student.distillkit_init_notes = log_notes(notes)
    return student


def _init_from(student: PreTrainedModel, source: PreTrainedModel, shape: StudentShape, task_type: Any) -> list[str]:
    """Start `student` from `source` where shapes allow: embeddings always (copied or by SVD); shared ALBERT layers
    and the task's head (`task_type.init_head`) at equal width. Returns what was done."""
    notes = init_embeddings(student, source)
    if shape.is_albert and shape.hidden_size == source.config.hidden_size:
        notes += init_shared_layers(student, source)
    if shape.hidden_size == source.config.hidden_size:
        notes += task_type.init_head(student, source)
    return notes


def albertize(
    source: PreTrainedModel,
    embedding_size: int | None,
    share_layers: bool = False,
    num_hidden_groups: int = 1,
    init_from_source: bool = True,
    task_type: Any = None,
) -> PreTrainedModel:
    """A pretrained BERT-shaped student made smaller: the same depth and width as ALBERT, with factorized embeddings
    (rank-E truncated SVD of its own word embeddings) and/or shared layer groups, started from its own weights.

    Its vocabulary and tokenizer stay the source's (which may differ from the teacher's: see cross-tokenizer
    distillation); its labels are the ones `load_student` gave it (the teacher's).
    """
    config = source.config
    for name in ("num_hidden_layers", "hidden_size", "num_attention_heads", "intermediate_size", "vocab_size"):
        if not isinstance(getattr(config, name, None), int):
            raise ValueError(
                f"{type(source).__name__} has no {name} in its config: factorized embeddings and layer sharing "
                "need a BERT-shaped student (or a preset)."
            )
    shape = StudentShape(
        num_layers=config.num_hidden_layers,
        hidden_size=config.hidden_size,
        num_heads=config.num_attention_heads,
        intermediate_size=config.intermediate_size,
        embedding_size=embedding_size,
        share_layers=share_layers,
        num_hidden_groups=num_hidden_groups,
    ).validate()
    if task_type is None:
        raise ValueError("albertize needs the task_type whose head the student keeps (distillkit.get_task_type).")
    albert_config = student_config(shape, config, task_type)
    student = model_class(task_type, albert_config)(albert_config)
    notes = [f"factorized / shared copy of the pretrained {type(source).__name__}"]
    if init_from_source:  # same width by construction: embeddings, layers and the head all carry over
        notes += _init_from(student, source, shape, task_type)
    student.distillkit_init_notes = log_notes([n.replace("teacher", "source") for n in notes])
    return student
