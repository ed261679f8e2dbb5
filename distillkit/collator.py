"""Batches for distillation: dynamic padding, and the teacher's own tokenization padded with its own tokenizer."""

from __future__ import annotations

from typing import Any

from transformers import DataCollatorWithPadding

from .data import TEACHER_PREFIX, teacher_part


class DistillCollator:
    """Pads each batch to its longest example. Columns named `teacher_*` (the teacher's tokenization, when teacher
    and student tokenize differently) are padded separately with the teacher's tokenizer and keep their prefix, so
    one batch carries both encodings of the same examples, row for row."""

    def __init__(self, tokenizer: Any, teacher_tokenizer: Any = None, pad_to_multiple_of: int | None = None,
                 student_collator: Any = None):  # fmt: skip
        # the student's columns: the task type's collator where it has one (a tagger's pads its labels with -100)
        self.student = student_collator or DataCollatorWithPadding(tokenizer, pad_to_multiple_of=pad_to_multiple_of)
        # {column prefix: tokenizer}: one teacher's ("teacher_"), or an ensemble's members' ("teacher_2_", ...)
        others = teacher_tokenizer if isinstance(teacher_tokenizer, dict) else {TEACHER_PREFIX: teacher_tokenizer}
        self.teachers = {
            prefix: DataCollatorWithPadding(other or tokenizer, pad_to_multiple_of=pad_to_multiple_of)
            for prefix, other in others.items()
        }

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        student = [{k: v for k, v in f.items() if not k.startswith(TEACHER_PREFIX)} for f in features]
        batch = self.student(student)
        for prefix, collate in self.teachers.items():
            if teacher_part(features[0], prefix):
                teacher = collate([teacher_part(f, prefix) for f in features])
                batch.update({prefix + k: v for k, v in teacher.items()})
        return batch
