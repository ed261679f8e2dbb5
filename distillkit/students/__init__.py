"""Students built for size: presets, ALBERT-style sharing, factorized embeddings, initialisation from the teacher."""

from .build import build_student, load_student, student_config
from .init import cut_teacher, spread_layers, svd_factorize
from .presets import PRESETS, StudentShape, resolve_shape
from .size import format_size_table, size_report, write_size_report

__all__ = [
    "PRESETS",
    "StudentShape",
    "build_student",
    "cut_teacher",
    "format_size_table",
    "load_student",
    "resolve_shape",
    "size_report",
    "spread_layers",
    "student_config",
    "svd_factorize",
    "write_size_report",
]
