"""distillkit: knowledge distillation for Hugging Face Transformers."""

from .arguments import DataArguments, ModelArguments, TeacherArguments
from .config import DistillConfig
from .data import load_files, tokenize_dataset
from .frozen_teacher import Teacher
from .losses import (
    attention_loss,
    build_layer_map,
    distillation_loss,
    hard_label_loss,
    hidden_state_loss,
    register_loss,
    soft_target_loss,
)
from .models import build_student, check_teacher_student, load_teacher
from .recipe import DistillRecipe, RunResult
from .recipes import load_recipe, parse_args
from .students import size_report
from .tasks import TaskType, get_task_type, register_task_type
from .trainer import DistillTrainer

__version__ = "0.1.0"

__all__ = [
    "DataArguments",
    "DistillConfig",
    "DistillRecipe",
    "DistillTrainer",
    "ModelArguments",
    "RunResult",
    "TaskType",
    "Teacher",
    "TeacherArguments",
    "attention_loss",
    "build_layer_map",
    "build_student",
    "check_teacher_student",
    "distillation_loss",
    "get_task_type",
    "hard_label_loss",
    "hidden_state_loss",
    "load_files",
    "load_recipe",
    "load_teacher",
    "parse_args",
    "register_loss",
    "register_task_type",
    "size_report",
    "soft_target_loss",
    "tokenize_dataset",
]
