"""What a long run shows: each stage announced as it starts, and an estimate of its time from the measured step rate."""

from __future__ import annotations

import logging
import time

from transformers import TrainerCallback

logger = logging.getLogger("distillkit")


def announce(stage: str, detail: str = "") -> None:
    """One line when a stage starts (teacher stage, cache, distillation, evaluation, export)."""
    logger.info("== %s%s ==", stage, f": {detail}" if detail else "")


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 90 else f"{seconds:.0f} s"


class TimeEstimate(TrainerCallback):
    """Logs the stage's expected time once the first steps are timed (the first step, which warms up, is left out),
    and again at the half-way mark."""

    def __init__(self, stage: str, after_steps: int = 5):
        self.stage = stage
        self.after_steps = after_steps
        self._start: float | None = None
        self._first_step = 0
        self._said: set[str] = set()

    def on_step_end(self, args, state, control, **kwargs):
        if state.max_steps <= 0:
            return control
        now = time.perf_counter()
        if self._start is None:  # after the first step of this session (warm-up, or a resumed run's first)
            self._start, self._first_step = now, state.global_step
            return control
        done = state.global_step - self._first_step
        left = state.max_steps - state.global_step
        halfway = state.global_step >= state.max_steps // 2
        key = "first" if "first" not in self._said else ("half" if halfway and "half" not in self._said else None)
        if key and done >= min(self.after_steps, max(1, left)):
            per_step = (now - self._start) / done
            self._said.add(key)
            logger.info(
                "%s: step %d of %d, %.2f s/step: about %s left (%s in all)",
                self.stage,
                state.global_step,
                state.max_steps,
                per_step,
                _minutes(per_step * left),
                _minutes(per_step * state.max_steps),
            )
        return control
