"""Size reports: parameters, bytes on disk, and analytic FLOPs per token, for students and teachers alike."""

from __future__ import annotations

import json
import os
from typing import Any

from torch import nn

from ..cli import text_table
from ..resilience import atomic_write_text


def _embedding_parameters(model: nn.Module) -> int:
    embeddings = getattr(getattr(model, "base_model", model), "embeddings", None)
    if embeddings is None:
        embeddings = model.get_input_embeddings()
    return sum(p.numel() for p in embeddings.parameters())


def size_report(model: nn.Module, seq_len: int = 128) -> dict[str, Any]:
    """What a model costs.

    parameters: unique parameters (a shared layer counts once); non_embedding_parameters: the same without the
    embedding module (word, position, token-type embeddings and their LayerNorm). size_fp32_mb / size_fp16_mb: the
    weights at 4 / 2 bytes per parameter (MB = 10^6 bytes), what a safetensors file of them holds give or take its
    header. flops_per_token: forward FLOPs (a multiply-add counts 2) of the encoder for one token in a sequence of
    `seq_len` tokens: per layer 2 * (4 H^2 + 2 H I) for the projections and feed-forward plus 4 * seq_len * H for
    attention scores and their weighted sum, plus 2 * E * H for a factorized embedding map. Sharing saves memory,
    not compute: every layer still runs.
    """
    config = model.config
    hidden = config.hidden_size
    layers = config.num_hidden_layers
    inner = getattr(config, "intermediate_size", None) or getattr(config, "hidden_dim", None) or 4 * hidden
    embedding_size = getattr(config, "embedding_size", None)
    total = sum(p.numel() for p in model.parameters())  # parameters() yields each shared tensor once
    flops = layers * (2 * (4 * hidden * hidden + 2 * hidden * inner) + 4 * seq_len * hidden)
    if embedding_size is not None:
        flops += 2 * embedding_size * hidden
    return {
        "architecture": type(model).__name__,
        "layers": layers,
        "hidden_size": hidden,
        "intermediate_size": inner,
        "attention_heads": config.num_attention_heads,
        "embedding_size": embedding_size if embedding_size is not None else hidden,
        "vocab_size": getattr(config, "vocab_size", None),
        "layer_groups": getattr(config, "num_hidden_groups", layers),
        "parameters": total,
        "non_embedding_parameters": total - _embedding_parameters(model),
        "size_fp32_mb": round(total * 4 / 1e6, 2),
        "size_fp16_mb": round(total * 2 / 1e6, 2),
        "flops_per_token": flops,
        "flops_seq_len": seq_len,
    }


def format_size_table(reports: dict[str, dict[str, Any]]) -> str:
    """A plain-text table of several reports, one row each, with the compression against the first ('teacher')."""
    columns = (
        "layers",
        "hidden_size",
        "embedding_size",
        "layer_groups",
        "parameters",
        "non_embedding_parameters",
        "size_fp32_mb",
        "size_fp16_mb",
        "flops_per_token",
    )
    first = next(iter(reports.values()))
    header = ["model", *columns, "x smaller", "x fewer FLOPs"]
    rows = [header]
    for name, r in reports.items():
        rows.append(
            [
                name,
                *(f"{r[c]:,}" if isinstance(r[c], int) else str(r[c]) for c in columns),
                f"{first['parameters'] / r['parameters']:.1f}",
                f"{first['flops_per_token'] / r['flops_per_token']:.1f}",
            ]
        )
    return text_table(rows[0], rows[1:], align="right")


def write_size_report(output_dir: str, reports: dict[str, dict[str, Any]], filename: str = "size_report.json") -> str:
    os.makedirs(output_dir, exist_ok=True)
    path = os.path.join(output_dir, filename)
    atomic_write_text(path, json.dumps(reports, indent=2))
    return path
