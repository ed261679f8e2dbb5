"""`distillkit export DIR --int8` for a causal language model: the decoder's linear layers dynamically quantized to
int8 (`torch.ao`, `quantize_lm_int8`), measured beside the float student and the teacher: validation perplexity
(the same blocks for every variant) and greedy generation at batch 1 with the KV cache (tokens per second, ms per
token).

Which layers: per-channel int8 weights for every `nn.Linear` except the output layer and the MLPs' down
projections, which stay float32. Dynamic quantization gives each activation tensor one scale, and the input of a
decoder's down projection carries the outlier features that such a scale cannot hold (Dettmers et al. 2022,
LLM.int8()). Measured on SmolLM2-135M-Instruct, 4 held-out WikiText-2 blocks of 512 tokens
(`scripts/bench_lm_int8.py`), perplexity: float32 30.75; every linear layer int8 with one scale per tensor
(torch.ao's default) 105.5; per-channel weights 94.5; and the output layer kept float 87.2; and the down projections
kept float as well 37.1.

The int8 decoder is not written as a file: dynamic quantization is a deterministic transformation of the float
weights at load time (a two-line snippet, on the card), and the alternatives are a pickle (`torch.save` of the
quantized module) or a TorchScript trace, which drops the KV cache that makes generation fast. ONNX exports of
decoders are refused for the same reason.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any

import torch
from torch import nn

from .latency import dir_size_mb, generation_speed

FLOAT_LAYERS = ("lm_head", "down_proj")  # module names (or their last part) that stay float32 in the int8 decoder
INT8_SCHEME = "per-channel int8, output layer and down projections float"  # recorded with int8 figures: change it
# with the scheme, so that figures of another scheme are known as such

INT8_SNIPPET = """import torch
from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic
from transformers import AutoModelForCausalLM

model = AutoModelForCausalLM.from_pretrained("{repo}").eval()
# int8 weights (one scale per output channel) for every linear layer but the output layer and the MLPs' down
# projections, whose inputs carry outlier features that one activation scale cannot hold
keep_float = ("lm_head", "down_proj")
layers = [name for name, m in model.named_modules()
          if isinstance(m, torch.nn.Linear) and name.split(".")[-1] not in keep_float]
int8 = quantize_dynamic(model, {{name: per_channel_dynamic_qconfig for name in layers}}, dtype=torch.qint8)"""


def quantize_lm_int8(model: nn.Module, float_layers: tuple[str, ...] = FLOAT_LAYERS) -> nn.Module:
    """`model` (float32, on the CPU) with its linear layers dynamically quantized to int8, per-channel weights,
    except those whose last name part is in `float_layers` (module docstring: why the output layer and the down
    projections stay float); `model` is left as it is."""
    from torch.ao.quantization import per_channel_dynamic_qconfig

    from .export import quantize_int8

    spec = {name: per_channel_dynamic_qconfig for name, module in model.named_modules()
            if isinstance(module, nn.Linear) and name.split(".")[-1] not in float_layers}  # fmt: skip
    return quantize_int8(model, spec)


@torch.no_grad()
def block_perplexity(model: nn.Module, dataset: Any, batch_size: int = 8) -> float:
    """exp of the mean next-token NLL over every counted token (labels != -100) of `dataset`'s blocks, each block
    scored on its own (stride = block), as the trainer's evaluation does."""
    model.eval()
    total, count = 0.0, 0
    for batch in length_batches(list(zip(dataset["input_ids"], dataset["labels"])), batch_size):
        ids, labels = batch[:, 0], batch[:, 1, 1:]  # (batch, 2, length): the ids and their labels
        logits = model(input_ids=ids, use_cache=False).logits[:, :-1].float()
        nll = nn.functional.cross_entropy(logits.transpose(1, 2), labels, ignore_index=-100, reduction="sum")
        total += float(nll)
        count += int((labels != -100).sum())
    if not count:
        raise ValueError("the validation text has no counted token: give text to measure perplexity on.")
    return math.exp(total / count)


def length_batches(rows: list[Any], batch_size: int) -> list[torch.Tensor]:
    """Rows (token lists, or tuples of equally long lists) batched with rows of the same length (a text's last block
    may be shorter), in their order within each length: tensors of (batch, *row shape)."""
    by_length: dict[int, list[Any]] = {}
    for row in rows:
        by_length.setdefault(len(row[0]) if isinstance(row, tuple) else len(row), []).append(row)
    return [torch.tensor(group[i : i + batch_size]) for group in by_length.values()
            for i in range(0, len(group), batch_size)]  # fmt: skip


def measure_decoder(name: str, model: nn.Module, tokenizer: Any, dataset: Any, prompts: list[str],
                    path: str | None) -> dict[str, Any]:  # fmt: skip
    print(f"measure: {name}, perplexity on {len(dataset):,} blocks, then greedy generation at batch 1", flush=True)
    row = {
        "name": name,
        "parameters": sum(p.numel() for p in model.parameters()),
        "size_mb": dir_size_mb(path) if path else None,
        "perplexity": round(block_perplexity(model, dataset), 4),
    }
    row.update(generation_speed(model, tokenizer, prompts))
    return row


def export_lm(directory: str, student: nn.Module, tokenizer: Any, dataset: Any, prompts: list[str],
              teacher: tuple[nn.Module, str] | None, int8: bool) -> list[dict[str, Any]]:  # fmt: skip
    """The rows: teacher (when given), student, and with `int8` the quantized student (and teacher); written to
    `exports.json`. Perplexity ratios are against the float model of the same name."""
    rows = []
    models = []
    if teacher is not None:
        models.append(("teacher", teacher[0], teacher[1]))
    models.append(("student", student, os.path.join(directory, "model.safetensors")))
    for name, model, path in models:
        rows.append(measure_decoder(name, model, tokenizer, dataset, prompts, path))
        if int8:
            print(f"export: dynamic int8 {name} ({INT8_SCHEME}) ...", flush=True)
            quantized = quantize_lm_int8(float_copy(model))
            row = measure_decoder(f"{name} int8", quantized, tokenizer, dataset, prompts, None)
            base = rows[-1]
            row["parameters"] = base["parameters"]  # the same weights, stored in int8 (not nn.Parameters any more)
            row["perplexity_vs_fp32"] = round(row["perplexity"] / base["perplexity"], 4)
            row["speedup_vs_fp32"] = round(row["generation_tokens_per_s"] / base["generation_tokens_per_s"], 2)
            rows.append(row)
    with open(os.path.join(directory, "exports.json"), "w", encoding="utf-8") as f:
        json.dump({"task_type": "causal-lm", "threads": torch.get_num_threads(), "blocks": len(dataset),
                   "rows": rows}, f, indent=2)  # fmt: skip
    return rows


def float_copy(model: nn.Module) -> nn.Module:
    """A float32 CPU copy in eval mode (what dynamic quantization takes), without accelerate's autocast wrapper
    (`latency.plain_copy`), leaving `model` as it is."""
    from .latency import plain_copy

    return plain_copy(model)


__all__ = ["FLOAT_LAYERS", "INT8_SCHEME", "INT8_SNIPPET", "block_perplexity", "export_lm", "float_copy",
           "length_batches", "quantize_lm_int8"]  # fmt: skip
