"""Students: loading a given model, or building one for size from the teacher."""

from .build import build_student

__all__ = ["build_student"]
