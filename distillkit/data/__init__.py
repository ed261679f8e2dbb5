"""Data: tasks and their columns and labels, local files read exactly, tokenization for the trainer."""

from .files import FORMATS, load_files, read_delimited
from .tasks import (
    GLUE_TASKS,
    TEACHER_PREFIX,
    Task,
    get_task,
    infer_labels,
    load_task_data,
    member_prefix,
    resolve_columns,
    same_tokenizer,
    teacher_part,
    teacher_view,
    tokenize_dataset,
)

__all__ = [
    "FORMATS",
    "GLUE_TASKS",
    "TEACHER_PREFIX",
    "Task",
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
