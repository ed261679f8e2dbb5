"""The two-stage schedule (`intermediate_epochs`, TinyBERT's task distillation) as a `DistillTrainer` mixin.

Stage 1 (the first `stage1_steps` optimizer steps) trains the intermediate terms alone, stage 2 the prediction-layer
terms. The stage follows from the global step, so a checkpoint of either stage resumes in that stage. The Trainer's
step counts put stage 1's epochs before the usual run, and the learning-rate schedule runs once per stage.
"""

from __future__ import annotations

import math

import torch
from torch.optim.lr_scheduler import LambdaLR
from transformers import get_scheduler

from .progress import announce


class TwoStageSchedule:
    """Mixed into `DistillTrainer`, which sets `stage_weights` ({stage: weights}, or None for joint training) and
    `stage1_steps`."""

    stage_weights: dict[str, dict[str, float]] | None = None
    stage1_steps: int = 0

    def stage_at(self, step: int) -> str | None:
        """The stage that the step after `step` belongs to (None without the two-stage schedule)."""
        if self.stage_weights is None:
            return None
        return "intermediate" if step < self.stage1_steps else "prediction"

    def set_initial_training_values(self, args, dataloader):
        """The Trainer's step counts, with stage 1's `intermediate_epochs` put before the usual run (stage 2:
        `num_train_epochs`, or `max_steps` when set)."""
        values = super().set_initial_training_values(args, dataloader)
        if self.stage_weights is None:
            return values
        _, per_epoch, examples, _, batch_size, steps_in_epoch, max_steps = values
        self.stage1_steps = max(1, math.ceil(args.intermediate_epochs * per_epoch))
        total = self.stage1_steps + max_steps
        announce(
            "distillation stage 1/2",
            f"intermediate layers {self.stage_weights['intermediate']}, steps 1-{self.stage1_steps} "
            f"({args.intermediate_epochs:g} epochs); stage 2: prediction layer, steps {self.stage1_steps + 1}-{total}",
        )
        return math.ceil(total / per_epoch), per_epoch, examples, total * batch_size, batch_size, steps_in_epoch, total

    def create_scheduler(self, num_training_steps: int, optimizer=None):
        """Two stages: the configured schedule (warm-up included) run once over each stage's steps."""
        if self.stage_weights is None or self.lr_scheduler is not None:
            return super().create_scheduler(num_training_steps, optimizer)
        first = self.stage1_steps
        parts = []
        for steps in (first, num_training_steps - first):
            probe = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
            schedule = get_scheduler(
                self.args.lr_scheduler_type, optimizer=probe, num_warmup_steps=self.args.get_warmup_steps(steps),
                num_training_steps=steps, scheduler_specific_kwargs=self.args.lr_scheduler_kwargs,
            )  # fmt: skip
            if not isinstance(schedule, LambdaLR):
                raise ValueError(
                    f"lr_scheduler_type {self.args.lr_scheduler_type!r} cannot be run once per stage of the two-stage "
                    "schedule; use linear, cosine, constant or constant_with_warmup, or intermediate_epochs 0."
                )
            parts.append(schedule.lr_lambdas[0])
        self.lr_scheduler = LambdaLR(
            optimizer or self.optimizer, lambda step: parts[0](step) if step < first else parts[1](step - first)
        )
        self._created_lr_scheduler = True
        return self.lr_scheduler
