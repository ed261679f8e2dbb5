"""Fast teacher scoring for the cache: the teacher's logits through PyTorch, PyTorch dynamic int8, or onnxruntime.

Building the teacher cache is the teacher's forward pass over every training row, which on a CPU is what limits how
much text can be scored. The backends trade a little fidelity for speed:

- `torch`: the teacher as it is (fp32, or `--teacher_dtype`);
- `int8`: every `nn.Linear` dynamically quantized to int8 (`torch.ao.quantization.quantize_dynamic`: int8 weights,
  activations quantized on the fly), on a copy of the teacher;
- `onnx`: the teacher exported to ONNX and run in onnxruntime (fp32);
- `onnx-int8`: that export quantized by `onnxruntime.quantization.quantize_dynamic`.

Each backend is a function `score(batch) -> logits (batch, num_labels)`, float32 on the CPU. `scripts/bench_teacher.py`
measures their throughput, dev accuracy and distance from fp32. On SST-2 with MPNet-base (2 CPU cores): length-sorted
PyTorch fp32 3.0x the rows/s of random-order batches, onnx 5.6x with the same predictions (KL 0), onnx-int8 12.7x at
-2.0 accuracy points, and PyTorch dynamic int8 12.6x at -11.6 points: int8 is a choice to measure, not a default.

`auto` (the default) takes `onnx` where it can gain: a cache of at least `AUTO_ONNX_ROWS` rows, a teacher on the CPU
in fp32, and onnx, onnxscript and onnxruntime installed (`pip install onnx onnxscript onnxruntime`, or the clone's
extra: `pip install "path/to/distillkit[export]"`); else `torch`.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from .export import input_names, quantize_int8, write_onnx
from .latency import plain_copy
from .tasks.base import output_logits

BACKENDS = ("auto", "torch", "int8", "onnx", "onnx-int8")
AUTO_ONNX_ROWS = 2048  # below this the export (tens of seconds for a base model) costs more than it saves
Scorer = Callable[[dict[str, torch.Tensor]], torch.Tensor]


def check_backend(name: str) -> None:
    if name not in BACKENDS:
        raise ValueError(f"teacher_backend must be one of {BACKENDS} (got {name!r}).")


def resolve_backend(backend: str, model: nn.Module, rows: int) -> str:
    """The backend that `auto` stands for here (see the module docstring); any other name is returned as is."""
    check_backend(backend)
    if backend != "auto":
        return backend
    import importlib.util

    installed = all(importlib.util.find_spec(m) is not None for m in ("onnx", "onnxscript", "onnxruntime"))
    param = next(model.parameters(), None)
    on_cpu_fp32 = param is None or (param.device.type == "cpu" and param.dtype == torch.float32)
    return "onnx" if installed and on_cpu_fp32 and rows >= AUTO_ONNX_ROWS else "torch"


def make_scorer(
    backend: str, model: nn.Module, example: dict[str, torch.Tensor], work_dir: str | None = None
) -> Scorer:
    """A function that runs `model` through `backend` on a batch of its inputs and returns float32 CPU logits.

    `example` is one collated batch (it fixes the input names; ONNX export traces it with dynamic batch and length).
    `work_dir` receives the ONNX files (default: a temporary folder).
    """
    check_backend(backend)
    if backend == "auto":
        raise ValueError("resolve 'auto' with resolve_backend() before making a scorer.")
    names = [n for n in input_names(model, example) if n in example]
    if backend == "torch":
        model = model.eval()

        @torch.no_grad()
        def score(batch: dict[str, torch.Tensor]) -> torch.Tensor:
            return output_logits(model(**{n: batch[n] for n in names})).float().cpu()

        return score
    if backend == "int8":
        quantized = quantize_int8(plain_copy(model))

        @torch.no_grad()
        def score(batch: dict[str, torch.Tensor]) -> torch.Tensor:
            return output_logits(quantized(**{n: batch[n].cpu() for n in names})).float()

        return score
    return _onnx_scorer(model, example, names, quantize=backend == "onnx-int8", work_dir=work_dir)


def _onnx_scorer(
    model: nn.Module, example: dict[str, torch.Tensor], names: list[str], quantize: bool, work_dir: str | None
) -> Scorer:
    try:
        import onnxruntime
    except ImportError:
        raise ValueError(
            "teacher_backend onnx needs onnxruntime: pip install onnx onnxscript onnxruntime (or the export extra, "
            "pip install 'path/to/distillkit[export]'), or use --teacher_backend torch|int8."
        ) from None
    if work_dir is None:  # onnxruntime reads the files when the session is made: a temporary folder is enough
        with tempfile.TemporaryDirectory(prefix="distillkit-onnx-") as tmp:
            return _onnx_scorer(model, example, names, quantize, tmp)
    os.makedirs(work_dir, exist_ok=True)
    path = os.path.join(work_dir, "teacher.onnx")
    write_onnx(plain_copy(model), {n: example[n].cpu() for n in names}, names, path)
    if quantize:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        quantized = os.path.join(work_dir, "teacher-int8.onnx")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            quantize_dynamic(path, quantized, weight_type=QuantType.QInt8)
        path = quantized
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])

    def score(batch: dict[str, Any]) -> torch.Tensor:
        return torch.from_numpy(session.run(["logits"], {n: batch[n].cpu().numpy() for n in names})[0]).float()

    return score
