"""Fast teacher scoring for the cache: the teacher's logits through PyTorch, PyTorch dynamic int8, or onnxruntime.

Building the teacher cache is the teacher's forward pass over every training row, which on a CPU is what limits how
much text can be scored. The backends trade a little fidelity for speed:

- `torch`: the teacher as it is (fp32, or `--teacher_dtype`);
- `int8`: every `nn.Linear` dynamically quantized to int8 (`torch.ao.quantization.quantize_dynamic`: int8 weights,
  activations quantized on the fly), on a copy of the teacher;
- `onnx`: the teacher exported to ONNX and run in onnxruntime (fp32);
- `onnx-int8`: that export quantized by `onnxruntime.quantization.quantize_dynamic`.

Each backend is a function `score(batch) -> logits (batch, num_labels)`, float32 on the CPU. `scripts/bench_teacher.py`
measures their throughput, dev accuracy and distance from fp32.
"""

from __future__ import annotations

import copy
import os
import tempfile
import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from .export import LogitsOnly, input_names

BACKENDS = ("torch", "int8", "onnx", "onnx-int8")
Scorer = Callable[[dict[str, torch.Tensor]], torch.Tensor]


def check_backend(name: str) -> None:
    if name not in BACKENDS:
        raise ValueError(f"teacher_backend must be one of {BACKENDS} (got {name!r}).")


def make_scorer(
    backend: str, model: nn.Module, example: dict[str, torch.Tensor], work_dir: str | None = None
) -> Scorer:
    """A function that runs `model` through `backend` on a batch of its inputs and returns float32 CPU logits.

    `example` is one collated batch (it fixes the input names; ONNX export traces it with dynamic batch and length).
    `work_dir` receives the ONNX files (default: a temporary folder).
    """
    check_backend(backend)
    names = [n for n in input_names(model, example) if n in example]
    if backend == "torch":
        model = model.eval()

        @torch.no_grad()
        def score(batch: dict[str, torch.Tensor]) -> torch.Tensor:
            return model(**{n: batch[n] for n in names}).logits.float().cpu()

        return score
    if backend == "int8":
        with warnings.catch_warnings():  # torch.ao's eager quantization warns that it is moving to torchao
            warnings.simplefilter("ignore")
            quantized = torch.ao.quantization.quantize_dynamic(
                copy.deepcopy(model).float().eval().cpu(), {nn.Linear}, dtype=torch.qint8
            )

        @torch.no_grad()
        def score(batch: dict[str, torch.Tensor]) -> torch.Tensor:
            return quantized(**{n: batch[n].cpu() for n in names}).logits.float()

        return score
    return _onnx_scorer(model, example, names, quantize=backend == "onnx-int8", work_dir=work_dir)


def _onnx_scorer(
    model: nn.Module, example: dict[str, torch.Tensor], names: list[str], quantize: bool, work_dir: str | None
) -> Scorer:
    try:
        import onnxruntime
    except ImportError:
        raise ValueError(
            "teacher_backend onnx needs onnxruntime: pip install 'distillkit[export]' (onnx, onnxscript, "
            "onnxruntime), or use --teacher_backend torch|int8."
        ) from None
    work_dir = work_dir or tempfile.mkdtemp(prefix="distillkit-onnx-")
    os.makedirs(work_dir, exist_ok=True)
    path = os.path.join(work_dir, "teacher.onnx")
    axes = {0: "batch", 1: "sequence"}
    cpu_model = copy.deepcopy(model).float().eval().cpu()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            LogitsOnly(cpu_model, names),
            tuple(example[n].cpu() for n in names),
            path,
            input_names=names,
            output_names=["logits"],
            dynamic_shapes=(tuple(axes for _ in names),),
            dynamo=True,
            verbose=False,
        )
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
