"""Runs that survive: complete-or-absent outputs, the newest complete checkpoint, interruption by signal.

A file is written under a temporary name in the same folder and renamed into place (`os.replace` is atomic on a
POSIX file system), so a crash leaves the old file or the new one, never half of either. A checkpoint is complete
when its marker file exists: the marker is written last, and `latest_checkpoint` ignores checkpoints without it.
"""

from __future__ import annotations

import contextlib
import glob
import json
import logging
import os
import re
import shutil
import signal
import tempfile
import time
from collections.abc import Callable
from typing import Any

import torch
from transformers import TrainerCallback
from transformers.trainer_pt_utils import LengthGroupedSampler

logger = logging.getLogger(__name__)

COMPLETE_MARKER = "distillkit_complete.json"
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


class NonFiniteLossError(RuntimeError):
    """A loss term became NaN or infinite; the run stops at that step and keeps its last good checkpoint."""


class InterruptedRun(RuntimeError):
    """SIGINT / SIGTERM arrived: a checkpoint was written and the run stopped. Exits with 128 + the signal number."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.exit_code = 128 + signum


def atomic_write_text(path: str, text: str) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=os.path.basename(path))
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes the file private (0600): give it the usual permissions
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0o022)  # reading the umask means setting it: put it straight back
    os.umask(mask)
    return mask


def save_then_move(output_dir: str, save: Callable[[str], Any], last: tuple[str, ...] = ("config.json",)) -> None:
    """Call `save(tmp_dir)` on a fresh folder inside `output_dir`, then rename each file into `output_dir`.

    If `save` fails, nothing in `output_dir` changed. Each rename is atomic; the files named in `last` (config.json,
    which is what marks a model directory) are moved after the weights, so a loader never finds a config whose
    weights are missing.
    """
    os.makedirs(output_dir, exist_ok=True)
    tmp = tempfile.mkdtemp(dir=output_dir, prefix=".tmp-save-")
    try:
        save(tmp)
        names = sorted(os.listdir(tmp), key=lambda n: (n in last, n))
        for name in names:
            target = os.path.join(output_dir, name)
            if os.path.isdir(os.path.join(tmp, name)) and os.path.isdir(target):
                shutil.rmtree(target)
            os.replace(os.path.join(tmp, name), target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def mark_complete(checkpoint_dir: str, step: int, **extra: Any) -> None:
    atomic_write_text(os.path.join(checkpoint_dir, COMPLETE_MARKER), json.dumps({"global_step": step, **extra}))


def checkpoint_marker(checkpoint_dir: str) -> dict[str, Any]:
    with open(os.path.join(checkpoint_dir, COMPLETE_MARKER), encoding="utf-8") as f:
        return json.load(f)


def is_complete(checkpoint_dir: str) -> bool:
    return os.path.isfile(os.path.join(checkpoint_dir, COMPLETE_MARKER))


def latest_checkpoint(output_dir: str) -> str | None:
    """The complete checkpoint with the highest step in `output_dir`, or None."""
    if not os.path.isdir(output_dir):
        return None
    steps = [
        (int(m.group(1)), name)
        for name in os.listdir(output_dir)
        if (m := _CHECKPOINT.match(name)) and is_complete(os.path.join(output_dir, name))
    ]
    return os.path.join(output_dir, max(steps)[1]) if steps else None


def resolve_resume(value: str | bool | None, output_dir: str) -> str | None:
    """`--resume_from_checkpoint latest` (or true) -> the newest complete checkpoint; a path must be complete."""
    if value in (None, False, "", "false", "False"):
        return None
    if value in (True, "latest", "true", "True"):
        found = latest_checkpoint(output_dir)
        if found is None and glob.glob(os.path.join(output_dir, "teacher*", "checkpoint-*", COMPLETE_MARKER)):
            logger.info("%s: the run stopped in its teacher stage, which resumes from its checkpoint", output_dir)
            return None
        if found is None and glob.glob(os.path.join(output_dir, "prune-step-*", "checkpoint-*", COMPLETE_MARKER)):
            logger.info("%s: the run stopped in a step of --prune_steps, which resumes from its checkpoint", output_dir)
            return None
        if found is None:
            raise ValueError(
                f"--resume_from_checkpoint latest: {output_dir!r} holds no complete checkpoint "
                "(checkpoint-N with its completion marker). Start afresh without the flag."
            )
        return found
    if not os.path.isdir(value):
        raise FileNotFoundError(f"checkpoint {value!r} does not exist; pass a checkpoint-N folder or 'latest'.")
    if not is_complete(value):
        raise ValueError(
            f"checkpoint {value!r} is incomplete (no {COMPLETE_MARKER}: it was being written when the "
            "run stopped); resume from an earlier one or use --resume_from_checkpoint latest."
        )
    return value


class MarkCheckpoints(TrainerCallback):
    """Writes the completion marker into each checkpoint a plain `Trainer` saves (the `DistillTrainer` does it
    itself), so that `latest_checkpoint` can resume from it."""

    def on_save(self, args, state, control, **kwargs):
        if args.should_save:
            checkpoint = os.path.join(args.output_dir, f"checkpoint-{state.global_step}")
            if os.path.isdir(checkpoint):
                mark_complete(checkpoint, state.global_step)


class TrainingClock(TrainerCallback):
    """Training seconds over all of a run's resumptions: each checkpoint's marker records the seconds spent up to it,
    and a run resumed from it starts counting from there (the steps after the last checkpoint, done again, count
    once). `seconds` is None when the checkpoint resumed from has no figure (written before this clock existed)."""

    def __init__(self, resumed_from: str | None = None):
        self.prior = checkpoint_marker(resumed_from).get("train_seconds") if resumed_from else 0.0
        self.start: float | None = None

    @property
    def seconds(self) -> float | None:
        if self.prior is None:
            return None
        return self.prior + (time.perf_counter() - self.start if self.start is not None else 0.0)

    def on_train_begin(self, args, state, control, **kwargs):
        self.start = time.perf_counter()

    def on_save(self, args, state, control, **kwargs):
        checkpoint = os.path.join(args.output_dir, f"checkpoint-{state.global_step}")
        if args.should_save and is_complete(checkpoint) and self.seconds is not None:
            mark_complete(checkpoint, state.global_step, train_seconds=round(self.seconds, 3))


class StopOnSignal(TrainerCallback):
    """On SIGINT or SIGTERM, finish the current step, write a checkpoint, and stop training.

    The handler only sets a flag: saving from inside a signal handler could interrupt a write in progress.
    """

    def __init__(self, signals: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM)):
        self.received: int | None = None
        self._signals = signals
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if self.received is not None:  # a second signal: give up at once
            raise KeyboardInterrupt
        self.received = signum
        logger.warning("signal %d received: finishing this step, then writing a checkpoint", signum)

    def on_train_begin(self, args, state, control, **kwargs):
        for sig in self._signals:
            with contextlib.suppress(ValueError):  # not the main thread: leave signals alone
                self._previous[sig] = signal.signal(sig, self._handle)

    def on_step_end(self, args, state, control, **kwargs):
        if self.received is not None:
            control.should_save = True
            control.should_training_stop = True
        return control

    def on_train_end(self, args, state, control, **kwargs):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()


def finished_run(output_dir: str, checkpoint: str) -> dict[str, Any] | None:
    """For a run asked to resume that had already finished: its results as saved (metrics, teacher_metrics,
    teacher_dir), so that nothing is trained or rewritten; None when there is something left to train."""
    final = os.path.join(output_dir, "trainer_state.json")
    if not (os.path.isfile(final) and os.path.isfile(os.path.join(output_dir, "train_results.json"))):
        return None

    def read(path: str) -> dict[str, Any]:
        with open(path, encoding="utf-8") as f:
            return json.load(f)

    state, at_checkpoint = read(final), read(os.path.join(checkpoint, "trainer_state.json"))
    if state["global_step"] < at_checkpoint["global_step"] or state["global_step"] < state.get("max_steps", 0):
        return None  # the checkpoint is newer than the finished reports, or the run stopped early
    logger.warning(
        "the run in %s had finished (step %d): nothing to resume; its student and reports are left as they were",
        output_dir,
        state["global_step"],
    )
    teacher_file = os.path.join(output_dir, "teacher_eval_results.json")
    teacher_dir = os.path.join(output_dir, "teacher")
    results = os.path.join(output_dir, "all_results.json")
    return {
        "metrics": read(results) if os.path.isfile(results) else {},
        "teacher_metrics": read(teacher_file) if os.path.isfile(teacher_file) else {},
        "teacher_dir": teacher_dir if os.path.isdir(teacher_dir) else None,
    }


class EpochSeededLengthSampler(LengthGroupedSampler):
    """`LengthGroupedSampler` whose order for epoch e comes from a generator seeded with seed + e (the Trainer calls
    `set_epoch`). transformers' own draws from the global RNG, whose state at the start of a later epoch differs
    between a straight run and one resumed mid-epoch: the resumed run would see other batches."""

    def __init__(self, batch_size: int, lengths: list[int], seed: int):
        super().__init__(batch_size, lengths=lengths)
        self.seed, self.epoch = seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        self.generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return super().__iter__()


class ExactResume:
    """A `Trainer` mixin: distillkit's default sampling (group_by_length) draws each epoch's order from a generator
    seeded with seed + epoch, so that a run resumed mid-epoch sees the batches the straight run saw."""

    def _get_train_sampler(self, train_dataset=None):
        sampler = super()._get_train_sampler(train_dataset)
        if type(sampler) is LengthGroupedSampler:
            seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
            sampler = EpochSeededLengthSampler(sampler.batch_size, sampler.lengths, seed)
        return sampler


def resume_requested(value: Any) -> bool:
    """Whether --resume_from_checkpoint asks to resume (a path, latest, true)."""
    return value not in (None, False, "", "false", "False")
