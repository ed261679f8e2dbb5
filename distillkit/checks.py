"""Checks made before the first training step, for what would otherwise fail or mislead after the training time is
spent: evaluation without data, logging integrations that are not installed, inputs longer than a model's positions,
a "student" larger than its teacher, features that need each other. Checks of a task's labels and predictions live
in its task type (`tasks/`)."""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Callable
from typing import Any

import torch
from transformers.integrations import integration_utils

logger = logging.getLogger(__name__)

# models whose learned positions start after the padding index (RoBERTa's convention): pad_token_id + 1 fewer usable
_PADDING_OFFSET_TYPES = {"roberta", "xlm-roberta", "camembert", "mpnet", "longformer", "data2vec-text", "ernie_m"}

# report_to name -> (the transformers check, what to install)
_INTEGRATIONS: dict[str, tuple[Callable[[], bool], str]] = {
    "tensorboard": (integration_utils.is_tensorboard_available, "pip install tensorboard"),
    "wandb": (integration_utils.is_wandb_available, "pip install wandb"),
    "mlflow": (integration_utils.is_mlflow_available, "pip install mlflow"),
    "comet_ml": (integration_utils.is_comet_available, "pip install comet_ml"),
    "clearml": (integration_utils.is_clearml_available, "pip install clearml"),
    "trackio": (integration_utils.is_trackio_available, "pip install trackio"),
    "codecarbon": (integration_utils.is_codecarbon_available, "pip install codecarbon"),
    "dvclive": (integration_utils.is_dvclive_available, "pip install dvclive"),
    "swanlab": (integration_utils.is_swanlab_available, "pip install swanlab"),
    "neptune": (integration_utils.is_neptune_available, "pip install neptune"),
    "azure_ml": (integration_utils.is_azureml_available, "pip install azureml-core"),
    "dagshub": (integration_utils.is_dagshub_available, "pip install dagshub mlflow"),
}

DEFAULT_LOGGING_STEPS = 500  # TrainingArguments' own default


def cpu_has_fast_bf16() -> bool:
    """Whether this CPU computes bf16 in hardware (AVX-512 BF16 or AMX). Elsewhere torch emulates bf16 matmuls:
    on a 2-core AVX2 EPYC a 512 x 768 by 768 x 3072 product took 164 ms in bf16 against 30 ms in fp32."""
    probes = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    if any(probe is not None for probe in probes):
        return any(probe() for probe in probes if probe is not None)
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as f:
        flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
        return "avx512_bf16" in flags or "amx_bf16" in flags
    return False


def check_report_to(report_to: list[str] | str | None) -> None:
    """Each logging integration asked for (`--report_to`) must be installed; say what to install otherwise."""
    names = [report_to] if isinstance(report_to, str) else list(report_to or [])
    for name in names:
        if name in ("none", "all") or name not in _INTEGRATIONS:
            continue  # "all" means the installed ones; an unknown name is refused by TrainingArguments itself
        available, install = _INTEGRATIONS[name]
        if not available():
            raise ValueError(f"--report_to {name}: {name} is not installed. Install it ({install}) or drop the flag.")


def check_evaluation(args: Any, has_validation: bool) -> None:
    """Evaluation during training (or picking the best checkpoint) needs validation data."""
    strategy = getattr(args.eval_strategy, "value", args.eval_strategy)
    if has_validation:
        return
    if strategy not in (None, "no"):
        raise ValueError(
            f"--eval_strategy {strategy} evaluates during training, but no validation data was given: pass "
            "--validation_file (or a --task with a validation split), or set --eval_strategy no."
        )
    if args.load_best_model_at_end:
        raise ValueError("--load_best_model_at_end needs validation data: pass --validation_file or drop the flag.")


def position_limit(config: Any) -> int | None:
    """How many tokens the model can read (its learned absolute positions), or None when it has no such limit."""
    limit = getattr(config, "max_position_embeddings", None)
    if not limit or getattr(config, "position_embedding_type", "absolute") not in (None, "absolute"):
        return None
    if getattr(config, "model_type", None) in _PADDING_OFFSET_TYPES:
        limit -= (getattr(config, "pad_token_id", None) or 0) + 1
    return int(limit)


def lowest_position_limit(configs: dict[str, Any]) -> tuple[str, int] | None:
    """(name, positions) of the model that reads the fewest positions, or None when no config says."""
    limits = {name: limit for name, c in configs.items() if (limit := position_limit(c))}
    return min(limits.items(), key=lambda item: item[1]) if limits else None


def fit_max_seq_length(max_seq_length: int, configs: dict[str, Any]) -> int:
    """`max_seq_length`, capped (with a warning) at the smallest position limit of the models that will read it.

    Capping rather than refusing: `--max_seq_length` is a truncation length, and no token past a model's last
    position could ever be read, so the cap changes nothing that could have worked; without it the run would crash
    inside the embeddings at the first long batch.
    """
    if max_seq_length < 1:
        raise ValueError(f"max_seq_length must be >= 1 (got {max_seq_length}).")
    found = lowest_position_limit(configs)
    if found is None:
        return max_seq_length
    name, lowest = found
    if max_seq_length <= lowest:
        return max_seq_length
    logger.warning(
        "--max_seq_length %d is more than the %s can read (%d positions): inputs are truncated to %d tokens instead",
        max_seq_length,
        name,
        lowest,
        lowest,
    )
    return lowest


def warn_if_not_smaller(student_params: int, teacher_params: int) -> None:
    if student_params >= teacher_params:
        logger.warning(
            "the student (%s parameters) is not smaller than its teacher (%s): this run is no compression",
            f"{student_params:,}",
            f"{teacher_params:,}",
        )


def scaled_logging_steps(args: Any, train_rows: int) -> None:
    """Log often enough to see the loss terms in a short run: with the default 500 steps, about 25 logs per run
    (at least every step of a run shorter than 25), and the first step always logged."""
    if args.logging_steps != DEFAULT_LOGGING_STEPS or getattr(args.logging_strategy, "value", "steps") != "steps":
        return  # the user chose
    steps = total_steps(args, train_rows, args.per_device_train_batch_size, args.num_train_epochs, args.max_steps)
    args.logging_steps = max(1, min(DEFAULT_LOGGING_STEPS, steps // 25))
    args.logging_first_step = True


def total_steps(args: Any, rows: int, per_device_batch: int, epochs: float, max_steps: int = -1) -> int:
    """Optimisation steps of a stage (as the Trainer counts them): `max_steps` when set, else `epochs` over `rows`
    rows, each step taking `per_device_batch` rows on each of the `args` run's processes and accumulation steps."""
    if max_steps > 0:
        return int(max_steps)
    batch = per_device_batch * max(1, args.world_size) * args.gradient_accumulation_steps
    return max(1, math.ceil(epochs * math.ceil(rows / batch)))


def check_trim(model_args: Any, args: Any, ensemble: bool, cross: bool) -> None:
    """--trim_vocab cuts the teacher's vocabulary for a student that reads the teacher's tokens (one teacher). With a
    layer loss the teacher reads the student's tokens in its own ids, so that positions match (`with_teacher_ids`);
    without one it reads its own tokenization of the same text."""
    if ensemble:
        raise ValueError("--trim_vocab is not offered with several teachers yet; give one --teacher, or leave it out.")
    if cross:
        raise ValueError(
            f"--trim_vocab trims the teacher's vocabulary, but the student {model_args.student!r} has a tokenizer of "
            "its own; leave out --trim_vocab (or shrink its embeddings with --embedding_size)."
        )


def teacher_reads_student_tokens(model_args: Any, args: Any, own_encoding: bool = False) -> bool:
    """--trim_vocab: whether the teacher reads the student's tokens in its own ids, position for position
    (`students.vocab.with_teacher_ids`), rather than its own tokenization of the text
    (--trim_vocab_teacher_view). `own_encoding`: the task type encodes its own rows (a tagger's tags sit on the
    student's sub-word positions). Raises for 'own' where the positions must match."""
    view = model_args.trim_vocab_teacher_view
    needs = [reason for reason, on in (("an intermediate loss pairs the models' positions", args.pairs_positions()),
                                       ("the labels sit on the student's tokens", own_encoding)) if on]  # fmt: skip
    if view == "own" and needs:
        raise ValueError(
            f"--trim_vocab_teacher_view own: the teacher cannot read its own tokenization here ({'; '.join(needs)}); "
            "use --trim_vocab_teacher_view auto or student."
        )
    return view == "student" or (view == "auto" and bool(needs))
