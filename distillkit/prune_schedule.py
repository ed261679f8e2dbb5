"""Pruning in steps while distilling (`--student pruned --prune_steps N`): the fine-tuned teacher is cut towards the
target shape in N steps, each step's student distilled (logits, and layers when their weights are on) before it is
cut again, the last step landing on the target. The pruning literature's advice (cut in small steps and retrain
between them; CoFi prunes while distilling layer by layer) in the form of ordinary runs: every intermediate student
is the teacher's architecture with an ordinary config.

- **Shapes**: each dimension (layers, heads, head width, FFN neurons) shrinks by the same factor at every step
  (geometric: step k of N keeps teacher x (target / teacher)^(k / N), rounded), so that each step removes the same
  fraction of what is left; the width is heads x head width.
- **Training steps**: the one-shot run's optimizer steps (`--num_train_epochs` or `--max_steps`) split evenly over the
  N steps, so that a schedule and a one-shot cut are compared at equal total training. Each step is a fresh
  `DistillTrainer` (its own warm-up and decay, as retraining between cuts does) with the data order seeded
  `seed + k - 1`, so that the steps do not see the same first batches again.
- **Importance**: the first cut is scored on the teacher, each later one on the student of the step before (its own
  head and gold labels, first-order Taylor as for one cut). Layers, heads and channels are traced back to the
  teacher (`CutMap.then`), so that `--layer_map pruned` and the hidden projections' selection pair each student unit
  with its teacher source at every step.
- **Folders and resuming**: step k < N trains in `<output_dir>/prune-step-k/` (its checkpoints there, the student
  saved there with `prune_step.json` written last: complete or absent); the last step is the run's own training in
  `<output_dir>`. A run started again reads the finished steps whose `prune_step.json` matches this run (shapes,
  steps, seed, data) instead of training them, and resumes an unfinished step from its last checkpoint when asked to
  resume (`--resume_from_checkpoint latest`): the same weights as a straight run.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import time
from typing import Any

from transformers import DataCollatorWithPadding

from .losses.layer_map import CutMap
from .progress import announce
from .resilience import InterruptedRun, atomic_write_text, latest_checkpoint, resume_requested
from .students.dropout import set_attention_dropout
from .students.prune import PruneShape, prune_on_data

logger = logging.getLogger(__name__)

STEP_DIR = "prune-step-{k}"
STEP_RECORD = "prune_step.json"  # written last in a step's folder: the step is finished


def step_shapes(teacher_config: Any, student: Any, steps: int) -> list[PruneShape]:
    """The shape after each of `steps` cuts from the teacher to `student`'s shape (the last one is that shape)."""
    c, s = teacher_config, student.config
    target = PruneShape(s.num_hidden_layers, s.num_attention_heads, s.hidden_size, s.intermediate_size)
    if steps < 1:
        raise ValueError(f"prune_steps must be >= 1 (got {steps}): 1 cuts the teacher once, N in N steps.")
    if steps == 1:
        return [target]
    head_dim = c.hidden_size // c.num_attention_heads

    def at(full: int, last: int, k: int) -> int:
        return max(last, min(full, round(full * (last / full) ** (k / steps))))

    shapes = []
    for k in range(1, steps):
        heads, width = at(c.num_attention_heads, target.num_heads, k), at(head_dim, target.head_dim, k)
        shapes.append(PruneShape(at(c.num_hidden_layers, target.num_layers, k), heads, heads * width,
                                 at(c.intermediate_size, target.intermediate_size, k)))  # fmt: skip
    return [*shapes, target]


def total_steps(args: Any, rows: int) -> int:
    """The optimizer steps of the one-shot run on `rows` training rows (as the Trainer counts them, one process)."""
    if args.max_steps > 0:
        return args.max_steps
    batch = args.per_device_train_batch_size * max(1, args.world_size)
    per_epoch = max(1, math.ceil(rows / batch) // args.gradient_accumulation_steps)
    return math.ceil(args.num_train_epochs * per_epoch)


def step_shares(total: int, steps: int) -> list[int]:
    """`total` optimizer steps split over `steps` cuts (the last takes the remainder)."""
    if total < steps:
        raise ValueError(
            f"--prune_steps {steps} needs at least one training step per cut, and the run has {total}: train longer "
            "or cut in fewer steps."
        )
    share = total // steps
    return [share] * (steps - 1) + [total - share * (steps - 1)]


def _identity(recipe: Any, shapes: list[PruneShape], shares: list[int], k: int) -> dict[str, Any]:
    """What makes step k's student: a finished step is read back only for the same run."""
    a = recipe.args
    return {
        "step": k,
        "steps": len(shapes),
        "shapes": [dataclasses.asdict(s) for s in shapes[:k]],
        "train_steps": shares[:k],
        "seed": a.seed,
        "learning_rate": a.learning_rate,
        "losses": a.loss_weights(),
        "train_rows": len(recipe.data["train"]),
        "data": getattr(recipe.data["train"], "_fingerprint", None),
        "teacher": recipe.teacher.config.name_or_path,
    }


def _read_step(folder: str, identity: dict[str, Any], model_class: Any) -> tuple[Any, float] | None:
    """Step k's trained student (and its training seconds) from its folder if it finished for this run, else None."""
    record_path = os.path.join(folder, STEP_RECORD)
    if not os.path.isfile(record_path):
        return None
    with open(record_path, encoding="utf-8") as f:
        record = json.load(f)
    if record.get("identity") != json.loads(json.dumps(identity)):
        logger.warning("%s was trained for another run (shapes, seed or data differ): training it again", folder)
        return None
    student = model_class.from_pretrained(folder)
    student.distillkit_cut = CutMap(**record["cut"])
    student.distillkit_init_notes = record.get("notes", [])
    return student, record.get("train_s", 0.0)


def run_prune_steps(recipe: Any) -> None:
    """Steps 1..N-1 of the schedule: train each, cut it to the next shape. Leaves `recipe.student` cut to the target,
    `recipe.args` set for the last step's share, and the steps in `recipe.prune_report["steps"]`."""
    model_args, args = recipe.model_args, recipe.args
    shapes, steps = recipe.prune_shapes, model_args.prune_steps
    shares = step_shares(total_steps(args, len(recipe.data["train"])), steps)
    report = {"schedule": "geometric", "steps": steps, "train_steps": shares,
              "shapes": [dataclasses.asdict(s) for s in shapes], "cuts": [recipe.prune_report],
              "train_s": []}  # fmt: skip
    student = recipe.student
    resume = resume_requested(args.resume_from_checkpoint) or getattr(recipe, "resume_steps", False)
    collator = recipe.task_type.data_collator(recipe.student_tokenizer) or DataCollatorWithPadding(
        recipe.student_tokenizer
    )
    for k in range(1, steps):
        folder = os.path.join(args.output_dir, STEP_DIR.format(k=k))
        identity = _identity(recipe, shapes, shares, k)
        done = _read_step(folder, identity, type(student))
        if done is not None:
            announce("pruning", f"step {k} of {steps}: read back from {folder}")
            student, seconds = done
        else:
            shape = shapes[k - 1]
            announce("pruning", f"step {k} of {steps}: {shape.num_layers} x {shape.hidden_size}, {shape.num_heads} "
                     f"heads, FFN {shape.intermediate_size}: {shares[k - 1]:,} training steps")  # fmt: skip
            step_args = dataclasses.replace(
                args, output_dir=folder, max_steps=shares[k - 1], data_seed=args.seed + k - 1, eval_strategy="no",
                load_best_model_at_end=False, resume_from_checkpoint=None,
            )  # fmt: skip
            trainer = recipe.new_trainer(student, step_args)
            checkpoint = latest_checkpoint(folder) if resume else None
            start = time.perf_counter()
            trainer.train(resume_from_checkpoint=checkpoint)
            seconds = time.perf_counter() - start  # of this start (a resumed step: since its checkpoint)
            if recipe.stop.received is not None:
                raise InterruptedRun(
                    f"interrupted in step {k} of --prune_steps: its checkpoint {latest_checkpoint(folder)} stays; "
                    "start the run again with --resume_from_checkpoint latest",
                    recipe.stop.received,
                )
            trainer.save_model(folder)
            cut = student.distillkit_cut
            record = {"identity": identity, "cut": dataclasses.asdict(cut), "train_s": round(seconds, 1),
                      "notes": getattr(student, "distillkit_init_notes", [])}  # fmt: skip
            atomic_write_text(os.path.join(folder, STEP_RECORD), json.dumps(record, indent=2))
            del trainer
        report["train_s"].append(round(seconds, 1))
        parent_cut = student.distillkit_cut
        student, cut_report = prune_on_data(
            student, None, recipe.data["train"], collator, model_args.prune_samples,
            layers_by=model_args.prune_layers, shape=shapes[k],
        )  # fmt: skip
        student.distillkit_cut = parent_cut.then(student.distillkit_cut)
        student.distillkit_init_notes = [f"cut in {steps} steps while distilling (--prune_steps {steps}); step "
                                         f"{k + 1}: " + "; ".join(student.distillkit_init_notes)]  # fmt: skip
        cut_report["layers_kept_of_teacher"] = student.distillkit_cut.layers
        report["cuts"].append(cut_report)
        if model_args.attention_dropout is not None:
            set_attention_dropout(student, model_args.attention_dropout)
    recipe.student = student
    recipe.prune_report = report
    args.max_steps, args.data_seed = shares[-1], args.seed + steps - 1
    announce("pruning", f"step {steps} of {steps}: the target shape, {shares[-1]:,} training steps")
