"""Several teachers distilled into one student (Hinton et al. 2015 distilled an ensemble).

The soft targets are the teachers' weighted mean **probabilities** at the temperature T (`ensemble_mode="probs"`,
the default): the mixture is the ensemble's own predictive distribution, so a teacher that is sure and one that is
unsure count as what they are. Averaging logits instead (`"logits"`) is a geometric mean of the distributions, which
sharpens where the teachers agree and lets one teacher with large logits dominate; it is offered for comparison.
The mixture is returned as logits, T * log(sum_k w_k softmax(z_k / T)), so that softmax(logits / T), which the
soft-target loss computes, is exactly the mixture. A regression head's targets are the weighted mean prediction.

Intermediate-layer losses read one teacher (`intermediate_teacher`), whose tokenizer must be the student's.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

ENSEMBLE_MODES = ("probs", "logits")


def ensemble_weights(weights: Sequence[float] | None, count: int) -> list[float]:
    """The teachers' weights, normalised to sum to 1 (equal when not given); bad weights are a ValueError."""
    if not weights:
        return [1.0 / count] * count
    weights = [float(w) for w in weights]
    if len(weights) != count:
        raise ValueError(
            f"--teacher_weights has {len(weights)} value(s) for {count} teacher(s): give one weight per teacher, in "
            "the order of --teacher."
        )
    if any(not w >= 0 for w in weights) or sum(weights) <= 0:
        raise ValueError(f"--teacher_weights {weights} must be >= 0 and not all 0 (they are normalised to sum to 1).")
    return [w / sum(weights) for w in weights]


def check_labels(configs: Sequence[Any], names: Sequence[str]) -> None:
    """Every teacher predicts the same labels, in the same order, as the first."""
    first = configs[0]
    for config, name in zip(configs[1:], names[1:]):
        if config.num_labels != first.num_labels:
            raise ValueError(
                f"the teachers' label counts differ: {names[0]!r} has {first.num_labels}, {name!r} has "
                f"{config.num_labels}. An ensemble's teachers must predict the same labels."
            )
        own, theirs = (
            [first.id2label[i] for i in range(first.num_labels)],
            [config.id2label[i] for i in range(config.num_labels)],
        )
        # LABEL_0, LABEL_1 ... are transformers' placeholders: a head named so is taken to follow the other's order
        generic = any(all(str(label).startswith("LABEL_") for label in labels) for labels in (own, theirs))
        if own != theirs and not generic:
            raise ValueError(
                f"the teachers' label sets differ: {names[0]!r} has {own}, {name!r} has {theirs}. An ensemble's "
                "teachers must predict the same labels in the same order."
            )


def combine(logits: Sequence[torch.Tensor], weights: Sequence[float], temperature: float, mode: str) -> torch.Tensor:
    """The ensemble's logits from the members' (each (batch, labels)); see the module docstring."""
    stacked = torch.stack([z.float() for z in logits])  # (teachers, batch, labels)
    w = torch.tensor(weights, dtype=stacked.dtype, device=stacked.device).view(-1, 1, 1)
    if stacked.shape[-1] == 1 or mode == "logits":  # a regression head, or the mean of logits
        return (w * stacked).sum(dim=0)
    if mode != "probs":
        raise ValueError(f"ensemble_mode must be one of {ENSEMBLE_MODES} (got {mode!r}).")
    log_probs = torch.log_softmax(stacked / temperature, dim=-1)
    with torch.no_grad():
        keep = w > 0  # a zero weight contributes nothing (and log 0 must not reach the sum)
    mixed = torch.logsumexp(torch.where(keep, log_probs + torch.log(w.clamp(min=1e-30)), -torch.inf), dim=0)
    return temperature * mixed


class TeacherEnsemble:
    """Frozen `Teacher`s run on the same batch, each on its own tokenization, returned as one teacher output: the
    combined logits, and the hidden states / attention maps of the intermediate teacher."""

    def __init__(self, teachers: Sequence[Any], weights: Sequence[float], temperature: float, mode: str = "probs",
                 intermediate: int = 0):  # fmt: skip
        if mode not in ENSEMBLE_MODES:
            raise ValueError(f"ensemble_mode must be one of {ENSEMBLE_MODES} (got {mode!r}).")
        self.teachers = list(teachers)
        self.weights = list(weights)
        self.temperature, self.mode, self.intermediate = temperature, mode, intermediate

    @property
    def model(self) -> Any:  # the teacher that the intermediate losses read
        return self.teachers[self.intermediate].model

    @property
    def config(self) -> Any:
        return self.model.config

    @property
    def device(self) -> torch.device:
        return self.teachers[self.intermediate].device

    def set_outputs(self, hidden_states: bool, attentions: bool) -> None:
        self.teachers[self.intermediate].set_outputs(hidden_states, attentions)

    def __call__(self, inputs: dict[str, Any]) -> Any:
        outputs = [
            teacher(inputs) if w > 0 or i == self.intermediate else None
            for i, (teacher, w) in enumerate(zip(self.teachers, self.weights))
        ]
        used = [(o.logits, w) for o, w in zip(outputs, self.weights) if o is not None and w > 0]
        logits = combine([z for z, _ in used], [w for _, w in used], self.temperature, self.mode)
        main = outputs[self.intermediate]  # its own output class (the task's), with the mixed logits
        main.logits = logits.to(main.logits.device)
        return main


def ensemble_members(
    members: Sequence[Any], tokenizers: Any, args: Any
) -> tuple[list[Any], list[Any], list[float], int]:
    """Check an ensemble given to `DistillTrainer(teacher=[...])`: (models, per-teacher tokenizer or None when it
    reads the student's tokenization, normalised weights, index of the intermediate teacher)."""
    from .frozen_teacher import Teacher

    if not members:
        raise ValueError("teacher=[] names no teacher: give one model, or a list of them.")
    models = [m.model if isinstance(m, Teacher) else m for m in members]
    if tokenizers is None or not isinstance(tokenizers, (list, tuple)):
        if tokenizers is not None:
            raise ValueError(
                "several teachers: teacher_processing_class must be a list with one entry per teacher (None where a "
                "teacher reads the student's tokenization)."
            )
        tokenizers = [None] * len(models)
    if len(tokenizers) != len(models):
        raise ValueError(f"teacher_processing_class has {len(tokenizers)} entries for {len(models)} teachers.")
    names = [str(getattr(m.config, "_name_or_path", "") or f"teacher {i + 1}") for i, m in enumerate(models)]
    check_labels([m.config for m in models], names)
    weights = ensemble_weights(args.teacher_weights, len(models))
    if not 1 <= args.intermediate_teacher <= len(models):
        raise ValueError(
            f"--intermediate_teacher {args.intermediate_teacher} is not among the {len(models)} teachers: give a "
            f"position from 1 to {len(models)} in the order of --teacher."
        )
    return models, list(tokenizers), weights, args.intermediate_teacher - 1


def ensemble_identity(models: Sequence[Any], weights: Sequence[float], args: Any) -> dict[str, Any]:
    """What an ensemble's cached logits depend on: every teacher's weights digest, the weights, the mode and (for
    mixed probabilities) the temperature."""
    from .cache import teacher_digest

    return {
        "ensemble": {
            "teachers": [teacher_digest(m) for m in models],
            "weights": [round(w, 8) for w in weights],
            "mode": args.ensemble_mode,
            "temperature": args.temperature if args.ensemble_mode == "probs" else None,
        }
    }


@torch.no_grad()
def evaluate_ensemble(
    ensemble: TeacherEnsemble, dataset: Any, collator: Any, compute_metrics: Any, batch_size: int
) -> dict[str, float]:
    """The ensemble's metrics on `dataset` (the student's rows, with each teacher's own columns), as teacher_eval_*.
    It predicts from its mixture at temperature 1, whatever temperature it distills at."""
    from transformers import EvalPrediction

    ensemble = TeacherEnsemble(ensemble.teachers, ensemble.weights, 1.0, ensemble.mode, ensemble.intermediate)
    columns = [c for c in dataset.column_names if c != "labels"]
    logits, labels = [], []
    for start in range(0, len(dataset), batch_size):
        rows = dataset[start : start + batch_size]
        count = len(rows["labels"])
        batch = collator([{c: rows[c][i] for c in columns} for i in range(count)])
        logits.append(ensemble(batch).logits.float().cpu())
        labels += rows["labels"]
    metrics = compute_metrics(
        EvalPrediction(predictions=torch.cat(logits).numpy(), label_ids=torch.tensor(labels).numpy())
    )
    return {f"teacher_eval_{k}": v for k, v in metrics.items()}
