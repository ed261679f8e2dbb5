"""What the benchmark measures besides accuracy: CPU latency at batch 1 (fp32, int8, ONNX), the machine, the size of
the saved weights."""

from __future__ import annotations

import contextlib
import functools
import os
import platform
import tempfile
from collections.abc import Callable, Collection
from importlib.util import find_spec
from typing import Any

import numpy as np
import torch

from ..export import export_int8, export_onnx
from ..latency import batches, dir_size_mb, latency_ms, model_latency_ms

# (predict: token-id batch -> logits, the tokenizer) -> {metric: value}
Scorer = Callable[[Callable[[dict[str, torch.Tensor]], np.ndarray], Any], dict[str, float]]


def export_kinds(config: Any) -> dict[str, Callable[..., Any]]:
    """The exports a benchmark times and scores, by the suffix of their record keys (`latency_int8_ms`,
    `accuracy_int8`): dynamic int8 with one weight scale a tensor; int8 per channel with the feed-forward output
    layers kept float (`int8_ffn`, `export --int8_scheme ffn-float`; models whose config has intermediate_size);
    ONNX in onnxruntime (fp32; only where onnxruntime is installed: the `export` extra). `config`: the model's (a
    saved model's is read without loading its weights)."""
    kinds: dict[str, Callable[..., Any]] = {"int8": export_int8}
    if getattr(config, "intermediate_size", None):
        kinds["int8_ffn"] = functools.partial(export_int8, scheme="ffn-float")
    if find_spec("onnxruntime"):
        kinds["onnx"] = export_onnx
    return kinds


def cpu_latencies(model: torch.nn.Module, tokenizer: Any, texts: list[str], max_length: int,
                  pairs: list[str] | None = None, score: Scorer | None = None, timed: bool | Collection[str] = True,
                  kinds: Collection[str] | None = None) -> dict[str, Any]:  # fmt: skip
    """ms per example at batch 1 on the CPU: the float model (`fp32`) and its exports (`export_kinds`). `pairs`: the
    second texts (a question's context), truncated with the first to `max_length` tokens. `score`: each export is
    also scored on the dev set (`accuracy_int8`, `accuracy_onnx`: a speed-up counts only if the export keeps the
    student's accuracy). `kinds`: only these of fp32 and the exports (all by default); `timed`: time all of them,
    none (score only), or those named."""
    model = model.float().cpu().eval()
    inputs = batches(tokenizer, texts, 1, max_length, pairs)
    exports = export_kinds(getattr(model, "config", None))
    wanted = set(kinds) if kinds is not None else {"fp32", *exports}
    clocked = (wanted if timed else set()) if isinstance(timed, bool) else set(timed) & wanted
    figures: dict[str, Any] = {}
    if "fp32" in clocked:
        figures["latency_fp32_ms"] = round(model_latency_ms(model, inputs), 3)
    for name, export in exports.items():
        if name not in wanted:
            continue
        with tempfile.TemporaryDirectory() as tmp:
            runner = export(model, inputs[0], tmp)
            if name in clocked:
                figures[f"latency_{name}_ms"] = round(latency_ms(runner.predict, inputs), 3)
            if score is not None:
                scores = score(runner.predict, tokenizer)
                figures.update({f"{metric}_{name}": value for metric, value in scores.items()})
    return figures


def accuracy_scorer(texts: list[str], labels: list[int], max_length: int, batch_size: int = 64) -> Scorer:
    """Dev accuracy of a predict function (batches of token ids -> logits), its inputs tokenized by the tokenizer
    that the model was trained with (a trimmed vocabulary has its own)."""

    def score(predict: Callable[[dict[str, torch.Tensor]], np.ndarray], tokenizer: Any) -> dict[str, float]:
        predicted = np.concatenate([predict(b).argmax(-1) for b in batches(tokenizer, texts, batch_size, max_length)])
        return {"accuracy": round(float((predicted == np.asarray(labels)).mean()), 4)}

    return score


def machine() -> dict[str, Any]:
    """What a run was timed on: the CPU's model name, its cores, torch's threads, and the GPU if one trained it."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as f:
        cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"cpu": cpu, "cores": os.cpu_count(), "threads": torch.get_num_threads(), "gpu": gpu}


def weights_mb(directory: str) -> float:
    """The saved model's weights: the folder's own safetensors files (not those of checkpoints inside it)."""
    files = [os.path.join(directory, f) for f in os.listdir(directory) if f.endswith(".safetensors")]
    return round(sum(dir_size_mb(f) for f in files), 2)
