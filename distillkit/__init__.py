"""distillkit: knowledge distillation for Hugging Face Transformers."""

from .config import DataArguments, DistillConfig, ModelArguments, TeacherArguments
from .data import load_files, tokenize_dataset
from .losses import (
    attention_loss,
    build_layer_map,
    distillation_loss,
    hard_label_loss,
    hidden_state_loss,
    register_loss,
    soft_target_loss,
)
from .recipes import load_recipe, parse_args
from .students import build_student, size_report
from .teacher import Teacher, check_teacher_student
from .trainer import DistillTrainer

__version__ = "0.1.0"

__all__ = [
    "DataArguments",
    "DistillConfig",
    "DistillTrainer",
    "ModelArguments",
    "Teacher",
    "TeacherArguments",
    "attention_loss",
    "build_layer_map",
    "build_student",
    "check_teacher_student",
    "distillation_loss",
    "hard_label_loss",
    "hidden_state_loss",
    "load_files",
    "load_recipe",
    "parse_args",
    "register_loss",
    "size_report",
    "soft_target_loss",
    "tokenize_dataset",
]
