"""`build_student`: the one entry point that turns a student spec into a model with the teacher's head."""

from __future__ import annotations

import logging
from typing import Any

from transformers import AutoConfig, AutoModelForSequenceClassification, PreTrainedModel

logger = logging.getLogger(__name__)


def _head_kwargs(teacher_config: Any) -> dict[str, Any]:
    return {
        "num_labels": teacher_config.num_labels,
        "id2label": dict(teacher_config.id2label),
        "label2id": dict(teacher_config.label2id),
        "problem_type": getattr(teacher_config, "problem_type", None),
    }


def load_student(name_or_path: str, teacher: PreTrainedModel, trust_remote_code: bool = False) -> PreTrainedModel:
    """Load a student from a hub name or a local directory.

    A checkpoint that already has a sequence-classification head keeps it (and must match the teacher's label count);
    a bare encoder gets a fresh head with the teacher's labels.
    """
    config = AutoConfig.from_pretrained(name_or_path, trust_remote_code=trust_remote_code)
    has_head = any(a.endswith("ForSequenceClassification") for a in (config.architectures or []))
    kwargs = {} if has_head else _head_kwargs(teacher.config)
    return AutoModelForSequenceClassification.from_pretrained(
        name_or_path, trust_remote_code=trust_remote_code, use_safetensors=True, **kwargs
    )


def build_student(spec: str, teacher: PreTrainedModel, trust_remote_code: bool = False) -> PreTrainedModel:
    """Return the student named by `spec`: a local directory or a hub name."""
    return load_student(spec, teacher, trust_remote_code=trust_remote_code)
