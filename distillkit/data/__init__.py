"""Data: local files read exactly, the GLUE table, encoding for the trainer, and text only the teacher labels."""

from .encode import (
    TEACHER_PREFIX,
    class_label_encoder,
    infer_labels,
    member_prefix,
    same_tokenizer,
    teacher_part,
    teacher_view,
    tokenize_dataset,
)
from .files import FORMATS, load_files, read_delimited
from .glue import GLUE_TASKS, Task, get_task, load_task_data, resolve_columns

__all__ = [
    "FORMATS",
    "GLUE_TASKS",
    "TEACHER_PREFIX",
    "Task",
    "class_label_encoder",
    "get_task",
    "infer_labels",
    "load_files",
    "load_task_data",
    "read_delimited",
    "resolve_columns",
    "same_tokenizer",
    "member_prefix",
    "teacher_part",
    "teacher_view",
    "tokenize_dataset",
]
