"""Distillation defaults: what the measured recipes use, applied to the fields a user did not set.

`transformers.Trainer`'s own defaults (batch 8, learning rate 5e-5, no warm-up) are made for fine-tuning a
pretrained model. A student built from random layers needs a learning rate ten times higher, and a live teacher in
every step is the slowest way to distil logits. `choose_defaults` fills in, for a run started from the command line
or a recipe, only the fields that neither set, each with its reason, from the SST-2 benchmark's recipes
(`recipes/sst2/`):

- learning_rate: 5e-4 for a student of new layers up to 256 wide (tiny.yaml), 3e-4 wider (tinybert4.yaml,
  albert.yaml), 5e-5 for teacher:K, the teacher's own layers (teacher6.yaml), 1e-4 for a pretrained student
  (minilm-factorized.yaml);
- per_device_train_batch_size 32, warmup_steps 0.06 (a fraction of the steps), weight_decay 0.01: every recipe;
- alpha 0.9 when there are gold labels: every student recipe;
- max_seq_length: the 99th percentile of the training text's token lengths, rounded up to 8, within the models'
  positions (the recipes set 64 for SST-2 by hand);
- teacher_cache: `<output_dir>/teacher_cache` when every loss reads only the teacher's logits;
- a decoder LM cut from the teacher (`pruned`): its layers by perplexity, on 32 calibration blocks.

A student cut from the teacher (`pruned`) gets the rate of new layers of its width: the benchmark's pruned rows ran
the tiny / tinybert4 recipes.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
from collections.abc import Sequence
from typing import Any

logger = logging.getLogger(__name__)

CACHE_DIR = "teacher_cache"
LENGTH_SAMPLE = 4000  # training rows whose token lengths choose max_seq_length
LENGTH_PERCENTILE = 0.99
LM_PRUNE_BLOCKS = 32  # a decoder's calibration blocks for --student pruned (Minitron used 1,024 on GPUs)


@dataclasses.dataclass
class Choice:
    """One default applied: the field, its value and why."""

    field: str
    value: Any
    reason: str

    def line(self) -> str:
        return f"{self.field} = {self.value}: {self.reason}"


def given_fields(argv: Sequence[str], parser: Any, recipe: dict[str, Any] | None = None) -> frozenset[str]:
    """The fields the command line (in any spelling argparse accepts: `--name value`, `--name=value`, `--no_name`,
    an abbreviation) or the recipe set: argv parsed again with every default suppressed, so that only given
    options land in the namespace."""
    import argparse

    saved = [(action, action.default, action.required) for action in parser._actions]
    try:
        for action in parser._actions:
            action.default, action.required = argparse.SUPPRESS, False
        namespace, _ = parser.parse_known_args(list(argv))
    finally:
        for action, default, required in saved:
            action.default, action.required = default, required
    return frozenset(set(recipe or ()) | set(vars(namespace)))


def student_kind(spec: str | None, presets: Any) -> str:
    """new (a preset or custom shape: new layers), pruned, teacher-layers (teacher:K), pretrained (a model)."""
    spec = spec or ""
    if spec in presets or spec == "custom":
        return "new"
    if spec == "pruned":
        return "pruned"
    if spec.startswith("teacher:"):
        return "teacher-layers"
    return "pretrained"


def learning_rate_for(kind: str, width: int) -> tuple[float, str]:
    """The learning rate the SST-2 recipes measured for a student of this kind and width, and why."""
    if kind in ("new", "pruned"):
        what = "cut from the teacher" if kind == "pruned" else "with new layers"
        if width <= 256:
            return 5e-4, f"a student {what}, {width} wide (recipes/sst2/tiny.yaml)"
        return 3e-4, f"a student {what}, {width} wide (recipes/sst2/tinybert4.yaml)"
    if kind == "teacher-layers":
        return 5e-5, "a student of the teacher's own layers (recipes/sst2/teacher6.yaml)"
    return 1e-4, "a pretrained student (recipes/sst2/minilm-factorized.yaml)"


def sequence_length(lengths: Sequence[int], limit: int) -> tuple[int, str]:
    """The 99th percentile of `lengths`, rounded up to a multiple of 8, at most `limit`; and why."""
    ordered = sorted(lengths)
    p99 = ordered[min(len(ordered) - 1, math.ceil(LENGTH_PERCENTILE * len(ordered)) - 1)]
    value = min(limit, max(8, 8 * math.ceil(p99 / 8)))
    longer = sum(n > value for n in ordered)
    reason = (f"99% of {len(ordered):,} training rows have at most {p99} tokens (the longest {ordered[-1]}; "
              f"{longer} of them would be cut), the models read {limit}")  # fmt: skip
    return value, reason


def token_lengths(rows: Any, tokenizer: Any, text_column: str | None, pair_column: str | None) -> list[int]:
    """Token lengths (special tokens included) of up to LENGTH_SAMPLE training rows: texts, pairs or word lists."""
    rows = rows.select(range(min(LENGTH_SAMPLE, len(rows))))
    if "tokens" in rows.column_names and isinstance(rows[0]["tokens"], list):
        encoded = tokenizer(list(rows["tokens"]), is_split_into_words=True, truncation=False)
    elif pair_column:
        encoded = tokenizer(list(rows[text_column]), list(rows[pair_column]), truncation=False)
    else:
        encoded = tokenizer(list(rows[text_column]), truncation=False)
    return [len(ids) for ids in encoded["input_ids"]]


def logits_only(args: Any) -> bool:
    """Whether every active loss reads only the teacher's logits (what the cache holds) in every step."""
    from .config import INTERMEDIATE_WEIGHTS

    return not any(getattr(args, name) > 0 for name in INTERMEDIATE_WEIGHTS) and "kd" in args.loss_weights()


def choose_defaults(recipe: Any) -> list[Choice]:
    """Apply the defaults to the fields `recipe.args.distillkit_given` does not hold; returns what was chosen.

    A run whose arguments were not parsed from a command line or a recipe (no `distillkit_given`) is left as built:
    a program that builds `DistillConfig` itself gets exactly what it wrote."""
    from .students.presets import PRESETS

    args, data_args, model_args = recipe.args, recipe.data_args, recipe.model_args
    given = getattr(args, "distillkit_given", None)
    if given is None:
        return []
    chosen: list[Choice] = []

    def choose(name: str, value: Any, reason: str, target: Any = None) -> None:
        if name in given:
            return
        setattr(target or args, name, value)
        chosen.append(Choice(name, value, reason))

    kind = student_kind(model_args.student, PRESETS)
    width = (model_args.hidden_size if kind == "pruned" and model_args.hidden_size else
             recipe.student.config.hidden_size)  # fmt: skip
    lr, why = learning_rate_for(kind, width)
    choose("learning_rate", lr, why)
    choose("per_device_train_batch_size", 32, "the recipes' batch (the Trainer's 8 is for fine-tuning)")
    choose("warmup_steps", 0.06, "6% of the steps warm up, as in every recipe")
    choose("weight_decay", 0.01, "as in every recipe")
    columns = recipe.raw["train"].column_names
    if (data_args.label_column and data_args.label_column in columns) or "tags" in columns:  # gold labels
        choose("alpha", 0.9, "mostly the teacher's soft targets, a tenth gold labels, as in every student recipe")
    has_text = "tokens" in columns or all(c in columns for c in (recipe.text_column, recipe.pair_column) if c)
    if recipe.task_type.chunked_lm_losses:  # packed text: the block is a choice, not a property of the documents
        has_text = False
        if "max_seq_length" not in given and not getattr(data_args, "block_size", None):
            from .checks import lowest_position_limit

            lowest = lowest_position_limit({"teacher": recipe.teacher.config, "student": recipe.student.config})
            value = min(512, lowest[1]) if lowest else 512
            choose("max_seq_length", value, f"blocks of {value} packed tokens (512, capped at the models' positions; "
                   "--block_size sets it)", target=data_args)  # fmt: skip
    if "max_seq_length" not in given and has_text:  # a missing column is refused by the tokenize step, with its fix
        from .checks import lowest_position_limit

        lowest = lowest_position_limit({"teacher": recipe.teacher.config, "student": recipe.student.config})
        lengths = token_lengths(recipe.raw["train"], recipe.tokenizer, recipe.text_column, recipe.pair_column)
        value, why = sequence_length(lengths, lowest[1] if lowest else 512)
        choose("max_seq_length", value, why, target=data_args)
    if recipe.task_type.chunked_lm_losses and kind == "pruned":
        choose("prune_layers", "perplexity", "a decoder's layers kept by the perplexity lost without each (measured, "
               "not estimated: first-order scores chose layers badly on SST-2)", target=model_args)  # fmt: skip
        choose("prune_samples", LM_PRUNE_BLOCKS, f"{LM_PRUNE_BLOCKS} calibration blocks: one pass for the units and "
               "one per teacher layer for the perplexity criterion", target=model_args)  # fmt: skip
    cacheable = recipe.task_type.supports("teacher_cache")
    if "teacher_cache" not in given and logits_only(args) and not args.teacher_cache and cacheable:
        path = os.path.join(args.output_dir, CACHE_DIR)
        choose("teacher_cache", path, "every loss reads only the teacher's logits: scored once, reused by every "
               "epoch and by a resumed run (--teacher_cache none: the live teacher)")  # fmt: skip
    for choice in chosen:
        logger.info("default %s", choice.line())
    return chosen
