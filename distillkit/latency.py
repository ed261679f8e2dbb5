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
    """CPU latency of a transformers model in eval mode, fp32 (a plain CPU copy is timed when the model lives
    elsewhere, is not float32, or carries accelerate's autocast wrapper: `plain_copy`)."""
    model = model.eval() if is_plain(model) else plain_copy(model)
    return latency_ms(lambda b: model(**b), inputs, **kw)


def threads_note(batch_size: int, examples: int) -> str:
    threads = torch.get_num_threads()
    return f"batch {batch_size}, {examples} validation examples, median of repeated runs, {threads} CPU threads"


def plain_copy(model: torch.nn.Module) -> torch.nn.Module:
    """A float32 CPU copy in eval mode without the autocast wrapper that `accelerate` puts on a prepared model's
    forward under bf16 / fp16 (a model that a bf16 Trainer evaluated keeps it: timed as it is, it would run in bf16,
    and its int8 copy would feed bf16 activations to the quantized layers). `model` is left as it is."""
    import copy

    from accelerate.utils import extract_model_from_parallel

    return extract_model_from_parallel(copy.deepcopy(model), keep_fp32_wrapper=False).cpu().float().eval()


def is_plain(model: torch.nn.Module) -> bool:
    """A float32 CPU model whose forward runs as written (no accelerate autocast wrapper)."""
    first = next(model.parameters())
    return first.device.type == "cpu" and first.dtype == torch.float32 and "_original_forward" not in model.__dict__


@torch.no_grad()
def generation_speed(model: torch.nn.Module, tokenizer: Any, prompts: Sequence[str], new_tokens: int = 64,
                     prompt_tokens: int = 32) -> dict[str, float]:  # fmt: skip
    """Greedy generation at batch 1 on the CPU in fp32: tokens per second over `new_tokens` new tokens (EOS does not
    stop it early) after a prompt cut to its first `prompt_tokens` tokens, the median over the prompts after one
    warm-up, and the ms per new token."""
    if not is_plain(model):
        model = plain_copy(model)
    model = model.eval()
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    encoded = [tokenizer(p, add_special_tokens=False, return_tensors="pt")["input_ids"][:, :prompt_tokens]
               for p in prompts]  # fmt: skip
    encoded = [ids for ids in encoded if ids.shape[1]]
    if not encoded:
        raise ValueError("no prompt has a token: give texts to time generation with.")

    def run(ids: torch.Tensor) -> None:
        model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=new_tokens,
                       min_new_tokens=new_tokens, do_sample=False, pad_token_id=pad)  # fmt: skip

    run(encoded[0])
    rates = []
    for ids in encoded:
        start = time.perf_counter()
        run(ids)
        rates.append(new_tokens / (time.perf_counter() - start))
    rate = statistics.median(rates)
    return {"generation_tokens_per_s": round(rate, 2), "generation_ms_per_token": round(1000 / rate, 3),
            "generation_new_tokens": new_tokens, "generation_prompts": len(encoded)}  # fmt: skip
