"""Measuring what a deployed model costs: size on disk and CPU latency per example."""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch


def dir_size_mb(path: str, patterns: Sequence[str] = (".safetensors", ".onnx", ".pt", ".data")) -> float:
    """Megabytes (10^6 bytes) of the weight files in a directory (or of one file)."""
    if os.path.isfile(path):
        return os.path.getsize(path) / 1e6
    total = 0
    for root, _, files in os.walk(path):
        total += sum(os.path.getsize(os.path.join(root, f)) for f in files if f.endswith(tuple(patterns)))
    return total / 1e6


def batches(tokenizer: Any, texts: Sequence[str], batch_size: int, max_length: int, pairs: Sequence[str] | None = None):
    """Padded input batches of `batch_size` texts (the last one may be smaller), as dicts of int64 tensors."""
    out = []
    for i in range(0, len(texts), batch_size):
        second = list(pairs[i : i + batch_size]) if pairs is not None else None
        enc = tokenizer(list(texts[i : i + batch_size]), second, truncation=True, max_length=max_length,
                        padding=True, return_tensors="pt")  # fmt: skip
        out.append({k: v for k, v in enc.items() if k in ("input_ids", "attention_mask", "token_type_ids")})
    return out


@torch.no_grad()
def latency_ms(
    run: Callable[[dict[str, torch.Tensor]], Any],
    inputs: Sequence[dict[str, torch.Tensor]],
    warmup: int = 3,
    repeats: int = 3,
) -> float:
    """Median over `repeats` passes of the time per example (ms), running `run` on each batch after a warm-up."""
    for batch in list(inputs)[:warmup]:
        run(batch)
    examples = sum(len(b["input_ids"]) for b in inputs)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for batch in inputs:
            run(batch)
        times.append((time.perf_counter() - start) * 1000 / examples)
    return statistics.median(times)


def model_latency_ms(model: torch.nn.Module, inputs: Sequence[dict[str, torch.Tensor]], **kw: Any) -> float:
    """CPU latency of a transformers model in eval mode (a CPU copy is timed when the model lives elsewhere)."""
    model = model.eval()
    if next(model.parameters()).device.type != "cpu":
        import copy

        model = copy.deepcopy(model).cpu()
    return latency_ms(lambda b: model(**b), inputs, **kw)


def threads_note(batch_size: int, examples: int) -> str:
    threads = torch.get_num_threads()
    return f"batch {batch_size}, {examples} validation examples, median of repeated runs, {threads} CPU threads"
