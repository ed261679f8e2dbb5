"""The benchmark plan (`recipes/sst2/benchmark.yaml`): the teacher, the students and their recipes, and profiles
that override them (gpu, cpu, cpu-full)."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import yaml

from ..checks import cpu_has_fast_bf16

logger = logging.getLogger(__name__)


def load_plan(path: str, profile: str | None, on_cpu: bool = False, fast_bf16: bool | None = None) -> dict[str, Any]:
    """The plan with the profile's overrides applied; recipe paths made absolute. Training `on_cpu` on a CPU without
    bf16 in hardware (`fast_bf16`, detected when None), the plan's bf16 settings run in fp32: see `fp32_here`."""
    plan_path = Path(path)
    if not plan_path.is_file():
        raise FileNotFoundError(f"benchmark plan {path!r} not found; see recipes/sst2/benchmark.yaml.")
    plan = yaml.safe_load(plan_path.read_text(encoding="utf-8")) or {}
    for key in ("teacher", "teacher_recipe", "students"):
        if key not in plan:
            raise ValueError(f"the benchmark plan {path} has no {key!r}.")
    profiles = plan.pop("profiles", {}) or {}
    overrides: dict[str, Any] = {}
    if profile:
        if profile not in profiles:
            raise ValueError(f"unknown profile {profile!r}; the plan has {sorted(profiles)}.")
        overrides = dict(profiles[profile] or {})
    per_student = overrides.pop("students", {}) or {}
    plan["profile"] = profile
    plan["overrides"] = overrides
    plan["teacher_recipe"] = str(plan_path.parent / plan["teacher_recipe"])
    names = [s["name"] for s in plan["students"]]
    unknown = sorted(set(per_student) - set(names))
    if unknown:
        raise ValueError(f"profile {profile!r} names students {unknown} that the plan does not have ({names}).")
    for student in plan["students"]:
        student["recipe"] = str(plan_path.parent / student["recipe"])
        extra = dict(per_student.get(student["name"], {}) or {})
        if "baseline" in extra:  # a profile may compare a student with another baseline (its own epochs differ)
            student["baseline"] = extra.pop("baseline")
        student["seeds"] = extra.pop("seeds", student.get("seeds", overrides.get("seeds", plan.get("seeds", [0]))))
        student["train_samples"] = extra.pop("train_samples", overrides.get("train_samples"))
        # the profile's settings, then the student's own `flags`, then the profile's entry for this student
        shared = {k: v for k, v in overrides.items() if k not in PLAN_KEYS}
        student["flags"] = {**shared, **(student.get("flags") or {}), **extra}
    if on_cpu or overrides.get("use_cpu"):
        fp32_here(plan, cpu_has_fast_bf16() if fast_bf16 is None else fast_bf16)
    return plan


def fp32_here(plan: dict[str, Any], fast_bf16: bool) -> None:
    """A profile must not depend on a feature the machine lacks: on a CPU that emulates bf16 (no AVX-512 BF16 or
    AMX: several times slower than fp32), the plan's `bf16`, `teacher_bf16` and `teacher_dtype: bfloat16` become
    fp32, and `plan["precision_note"]` says so for the results' header. Figures then differ from a bf16 machine's
    in rounding only."""
    if fast_bf16:
        return
    changed: set[str] = set()
    for flags in [plan["overrides"], *(student["flags"] for student in plan["students"])]:
        for key in ("bf16", "teacher_bf16"):
            if flags.get(key) is True:
                flags[key] = False
                changed.add(key)
        if flags.get("teacher_dtype") == "bfloat16":
            flags["teacher_dtype"] = "float32"
            changed.add("teacher_dtype")
    if changed:
        plan["precision_note"] = (
            f"this CPU has no AVX-512 BF16 or AMX: the plan's {', '.join(sorted(changed))} ran in fp32 here"
        )
        logger.warning("%s (bf16 would be emulated, several times slower)", plan["precision_note"])


def precision_note(plan: dict[str, Any]) -> str:
    """`fp32_here`'s note as a results header says it ("" when the plan ran as written)."""
    return f"; {plan['precision_note']}" if plan.get("precision_note") else ""


PLAN_KEYS = {"seeds", "train_samples", "teacher_train_samples"}


def local_name(name: str, local_models: str | None) -> str:
    """`sentence-transformers/X` -> `<local_models>/X` when that folder exists (machines without a hub)."""
    if local_models and not os.path.isdir(name):
        candidate = os.path.join(local_models, name.rsplit("/", 1)[-1])
        if os.path.isdir(candidate):
            return candidate
    return name


def flag_list(values: dict[str, Any]) -> list[str]:
    out = []
    for key, value in values.items():
        out += [f"--{key}", str(value).lower() if isinstance(value, bool) else str(value)]
    return out
