"""The plan of a run, shown before its first step: what will run (the teacher stage or not, the teacher cache or
the live teacher, the steps, batch and learning rate, and why), with the time each part should take, from a probe
that times a few forward and backward passes of the real models on a real batch.

The probe leaves no trace: gradients are cleared, the models go back to their modes, and the random state is
restored, so that a run with a plan trains exactly as one without.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from dataclasses import dataclass, field
from typing import Any

import torch

from .checks import total_steps
from .config import INTERMEDIATE_WEIGHTS
from .progress import _minutes
from .tasks.base import TARGET_COLUMNS, output_logits

logger = logging.getLogger("distillkit")

_INPUTS = ("input_ids", "attention_mask", "token_type_ids", *TARGET_COLUMNS)


@dataclass
class Plan:
    """The plan's lines and its estimated seconds per part (`None` where nothing was timed)."""

    lines: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)

    def text(self) -> str:
        return "\n".join(f"  {line}" for line in self.lines)

    def total(self) -> float:
        return sum(self.seconds.values())


def probe_batch(dataset: Any, size: int, collator: Any, tokenizer: Any) -> dict[str, torch.Tensor]:
    """`size` training rows (the first ones) padded as the trainer pads them, model inputs only."""
    from transformers import DataCollatorWithPadding

    rows = dataset.select(range(min(size, len(dataset))))
    rows = rows.select_columns([c for c in _INPUTS if c in rows.column_names])
    collate = collator or DataCollatorWithPadding(tokenizer)
    return dict(collate([rows[i] for i in range(len(rows))]))


@contextlib.contextmanager
def _untouched(*models: Any):
    """Run a probe, then put back the models' modes, clear their gradients and restore the random state."""
    modes = [m.training for m in models]
    state = torch.get_rng_state()
    try:
        yield
    finally:
        torch.set_rng_state(state)
        for model, mode in zip(models, modes):
            model.train(mode)
            model.zero_grad(set_to_none=True)


def time_step(model: Any, batch: dict[str, torch.Tensor], backward: bool, bf16: bool = False, repeats: int = 2):
    """Seconds for one forward (and backward) pass of `model` on `batch`: the best of `repeats` after one warm-up."""
    device = next(model.parameters()).device
    batch = {k: v.to(device) for k, v in batch.items()}
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    best = math.inf
    with _untouched(model):
        model.train(backward)
        for i in range(repeats + 1):
            start = time.perf_counter()
            with torch.set_grad_enabled(backward), autocast:
                out = model(**batch)
                if backward:
                    output_logits(out).float().mean().backward()
            if i:  # the first pass warms up
                best = min(best, time.perf_counter() - start)
    return best


def load_note() -> str:
    """What the timing depends on: the load on the CPU when it was measured."""
    cores = os.cpu_count() or 1
    try:
        load = os.getloadavg()[0]
    except OSError:
        return ""
    busy = load > 0.75 * cores
    note = f"timed now, load average {load:.1f} on {cores} cores"
    return note + (": other work shares the CPU, on an idle machine the run is faster" if busy else "")


def weights_text(weights: dict[str, float]) -> str:
    """{'kd': 0.9, 'ce': 0.09999999999999998} -> kd 0.9 + ce 0.1"""
    return " + ".join(f"{name} {weight:.4g}" for name, weight in weights.items())


def build_plan(recipe: Any, probe: bool = True) -> Plan:
    """The plan of `recipe` (a `DistillRecipe` after its `check` step)."""
    args, teacher_args, plan = recipe.args, recipe.teacher_args, Plan()
    chosen = {c.field: c for c in getattr(recipe, "defaults", [])}
    train_rows = len(recipe.data["train"])
    collator = recipe.task_type.data_collator(recipe.tokenizer)
    student_collator = recipe.task_type.data_collator(recipe.student_tokenizer)
    batch_size = args.per_device_train_batch_size
    timed = probe and train_rows > 0
    first = recipe.setups[0]

    if first.needs_stage:
        stage_rows = len(recipe.teacher_data["train"])
        steps = total_steps(args, stage_rows, teacher_args.teacher_batch_size, teacher_args.teacher_num_train_epochs,
                            teacher_args.teacher_max_steps)  # fmt: skip
        if teacher_args.teacher_max_steps <= 0:
            steps = max(steps, teacher_args.teacher_min_steps)
        line = (f"teacher stage: {recipe.model_args.teacher} has no trained head for this task, so it is fine-tuned "
                f"first: {steps:,} steps at batch {teacher_args.teacher_batch_size}, learning rate "
                f"{teacher_args.teacher_learning_rate:g}{', bf16' if teacher_args.teacher_bf16 else ''}")  # fmt: skip
        if timed:
            batch = probe_batch(recipe.teacher_data["train"], teacher_args.teacher_batch_size, collator,
                                recipe.tokenizer)  # fmt: skip
            seconds = steps * time_step(recipe.teacher, batch, backward=True, bf16=teacher_args.teacher_bf16)
            plan.seconds["teacher stage"] = seconds
            line += f": about {_minutes(seconds)} (plus its evaluation)"
        plan.lines.append(line)
    else:
        plan.lines.append("teacher stage: none (the teacher has a trained head)")

    teacher_forward = None
    if timed:
        teacher_batch = probe_batch(recipe.teacher_data["train"], batch_size, collator, recipe.tokenizer)
        teacher_forward = time_step(recipe.teacher, teacher_batch, backward=False)
        if recipe.ensemble:
            teacher_forward *= len(recipe.setups)
    cache = args.teacher_cache
    why = " (the default: only the teacher's logits are distilled; --teacher_cache none for the live teacher)" if (
        "teacher_cache" in chosen
    ) else ""  # fmt: skip
    if cache and os.path.isfile(os.path.join(cache, "manifest.json")):
        plan.lines.append(f"teacher: read from the cache in {cache} when it fits this data{why}")
    elif cache:
        line = f"teacher: scores the {train_rows:,} training rows once into {cache}{why}"
        if teacher_forward is not None:
            seconds = teacher_forward / batch_size * train_rows
            plan.seconds["teacher cache"] = seconds
            line += f": about {_minutes(seconds)} with PyTorch (the onnx backend, when it is used, is faster)"
        plan.lines.append(line)
    else:
        inside = any(getattr(args, w) > 0 for w in INTERMEDIATE_WEIGHTS)
        live = "the losses read inside the teacher" if inside else "no --teacher_cache"
        plan.lines.append(f"teacher: runs live in every step ({live})")

    steps = total_steps(args, train_rows, batch_size, args.num_train_epochs, args.max_steps)
    length = f"{steps:,} steps" + ("" if args.max_steps > 0 else f" ({args.num_train_epochs:g} epochs of "
                                   f"{train_rows:,} rows at batch {batch_size})")  # fmt: skip
    lr = f"learning rate {args.learning_rate:g}"
    if "learning_rate" in chosen:
        lr += f" (the default for {chosen['learning_rate'].reason})"
    line = f"distillation: {length}, {lr}, losses {weights_text(args.loss_weights())}"
    if timed:
        student_batch = probe_batch(recipe.data["train"], batch_size, student_collator, recipe.student_tokenizer)
        per_step = time_step(recipe.student, student_batch, backward=True, bf16=args.bf16)
        if not cache and teacher_forward is not None:
            per_step += teacher_forward
        seconds = steps * per_step
        plan.seconds["distillation"] = seconds
        line += f": about {_minutes(seconds)} ({per_step:.2f} s a step)"
    plan.lines.append(line)
    if plan.seconds:
        note = load_note()
        plan.lines.append(f"in all: about {_minutes(plan.total())} before evaluation{'; ' + note if note else ''}")
    return plan
