"""Model cards: what a student is, how it was made and how good it is, rendered from `model_cards/`."""

from __future__ import annotations

import os
import string
from typing import Any

TEMPLATE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "model_cards", "student.md")

_SHAPE_ROWS = (
    ("architecture", "architecture"),
    ("layers", "layers"),
    ("hidden size", "hidden_size"),
    ("embedding size", "embedding_size"),
    ("layer groups (shared weights)", "layer_groups"),
    ("parameters", "parameters"),
    ("size fp32 / fp16 (MB)", None),
    ("FLOPs per token", "flops_per_token"),
)


def _shape_table(sizes: dict[str, dict[str, Any]]) -> str:
    teacher, student = sizes["teacher"], sizes["student"]
    lines = ["| | teacher | student |", "|---|---|---|"]
    for label, key in _SHAPE_ROWS:
        if key is None:
            cells = [f"{r['size_fp32_mb']} / {r['size_fp16_mb']}" for r in (teacher, student)]
        else:
            cells = [f"{r[key]:,}" if isinstance(r[key], int) else str(r[key]) for r in (teacher, student)]
        lines.append(f"| {label} | {cells[0]} | {cells[1]} |")
    ratio = teacher["parameters"] / student["parameters"]
    flops = teacher["flops_per_token"] / student["flops_per_token"]
    lines.append(f"| compression | | {ratio:.1f}x fewer parameters, {flops:.1f}x fewer FLOPs per token |")
    return "\n".join(lines)


def render_model_card(
    name: str,
    teacher: str,
    sizes: dict[str, dict[str, Any]],
    loss_weights: dict[str, float],
    temperature: float,
    layer_map: str,
    command: str,
    metrics: dict[str, float] | None = None,
    template: str = TEMPLATE,
) -> str:
    """Fill the card template; `sizes` is {"teacher": size_report, "student": size_report} as distill.py writes."""
    with open(template, encoding="utf-8") as f:
        text = string.Template(f.read())
    metric_lines = [
        f"| {k} | {v:.4f} |"
        for k, v in sorted((metrics or {}).items())
        if isinstance(v, float) and not k.endswith(("_runtime", "_per_second"))  # speed belongs in benchmarks
    ]
    return text.substitute(
        name=name,
        teacher=teacher,
        shape_table=_shape_table(sizes),
        initialisation="; ".join(sizes["student"].get("initialisation") or ["random"]),
        losses=", ".join(f"{k} x {v:g}" for k, v in loss_weights.items()),
        temperature=temperature,
        layer_map=layer_map,
        command=command,
        metrics="\n".join(["| metric | value |", "|---|---|", *metric_lines]) if metric_lines else "Not evaluated.",
    )
