"""What the benchmark measures besides accuracy: CPU latency at batch 1 (fp32, int8, ONNX), the machine, the size of
the saved weights."""

from __future__ import annotations

import contextlib
import os
import platform
import tempfile
from importlib.util import find_spec
from typing import Any

import torch

from ..export import export_int8, export_onnx
from ..latency import batches, dir_size_mb, latency_ms, model_latency_ms


def cpu_latencies(model: torch.nn.Module, tokenizer: Any, texts: list[str], max_length: int,
                  pairs: list[str] | None = None) -> dict[str, float]:  # fmt: skip
    """ms per example at batch 1 on the CPU: the float model, its dynamic int8 export, and its ONNX export in
    onnxruntime (fp32; only where onnxruntime is installed: the `export` extra). `pairs`: the second texts (a
    question's context), truncated with the first to `max_length` tokens."""
    model = model.float().cpu().eval()
    inputs = batches(tokenizer, texts, 1, max_length, pairs)
    fp32 = model_latency_ms(model, inputs)
    with tempfile.TemporaryDirectory() as tmp:
        runner = export_int8(model, inputs[0], tmp)
        int8 = latency_ms(runner.predict, inputs)
    timings = {"latency_fp32_ms": round(fp32, 3), "latency_int8_ms": round(int8, 3)}
    if find_spec("onnxruntime"):
        with tempfile.TemporaryDirectory() as tmp:
            runner = export_onnx(model, inputs[0], tmp)
            timings["latency_onnx_ms"] = round(latency_ms(runner.predict, inputs), 3)
    return timings


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
