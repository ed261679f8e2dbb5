"""The benchmark's report: one row per student and variant (means over seeds, the gain over the hard-label
baseline), the targets met or missed, the markdown table and the SVG plot."""

from __future__ import annotations

import math
import statistics
from typing import Any

TARGETS = (  # (largest parameter count, accuracy retained relative to the teacher)
    (15_000_000, 0.98),
    (5_000_000, 0.93),
)
SPEEDUP_TARGET = 10.0
EXPORTS = ("int8", "int8_ffn", "onnx")  # as measure.export_kinds names them
EXPORT_TOLERANCE = 0.005  # an export's speed-up counts only within 0.5 points of the fp32 student's accuracy


def summarize(
    teacher: dict[str, Any], runs: list[dict[str, Any]], baselines: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    """One row per (student, variant): means over seeds, the spread, and the gain of distillation over the baseline
    (the same student's, or the one that `baselines[name]` names)."""
    baselines = baselines or {}
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for run in runs:
        groups.setdefault((run["name"], run["variant"]), []).append(run)
    rows = [{**teacher, "seeds": 1, "accuracy_std": 0.0, "retained": 1.0, "speedup_fp32": 1.0}]
    for (name, variant), group in groups.items():
        accs = [r["accuracy"] for r in group]
        first = group[0]
        row = {
            k: first[k] for k in ("name", "model", "variant", "architecture", "parameters", "size_mb", "train_examples")
        }
        row.update(
            seeds=len(group),
            accuracy=round(statistics.mean(accs), 4),
            accuracy_std=round(statistics.stdev(accs), 4) if len(accs) > 1 else 0.0,
            retained=round(statistics.mean(accs) / teacher["accuracy"], 4),
            latency_fp32_ms=round(statistics.median(r["latency_fp32_ms"] for r in group), 3),
            latency_int8_ms=round(statistics.median(r["latency_int8_ms"] for r in group), 3),
            **{  # the optional exports (runs from before one was added have none)
                f"latency_{e}_ms": round(statistics.median(r[f"latency_{e}_ms"] for r in group), 3)
                for e in EXPORTS[1:]
                if all(f"latency_{e}_ms" in r for r in group)
            },
            train_s=_mean_known(group, "train_s"),  # a run resumed from a checkpoint without a clock has none
            train_examples_per_s=_mean_known(group, "train_examples_per_s"),
            epochs=first.get("epochs"),
            intermediate_epochs=first.get("intermediate_epochs"),
            anchor=first.get("anchor"),
        )
        for export in EXPORTS:  # each export's own dev accuracy (runs from before it was scored have none)
            if all(f"accuracy_{export}" in r for r in group):
                row[f"accuracy_{export}"] = round(statistics.mean(r[f"accuracy_{export}"] for r in group), 4)
        row["speedup_fp32"] = round(teacher["latency_fp32_ms"] / row["latency_fp32_ms"], 2)
        if all("init_accuracy" in r for r in group):  # before any training (pruned students start above chance)
            row["init_accuracy"] = round(statistics.mean(r["init_accuracy"] for r in group), 4)
        base = groups.get((baselines.get(name, name), "baseline")) if variant == "kd" else None
        if base:
            paired = {r["seed"]: r["accuracy"] for r in base}
            diffs = [r["accuracy"] - paired[r["seed"]] for r in group if r["seed"] in paired]
            if diffs:
                row["kd_gain"] = round(statistics.mean(diffs), 4)
                row["kd_gain_std"] = round(statistics.stdev(diffs), 4) if len(diffs) > 1 else None
                row["baseline_std"] = round(statistics.stdev(r["accuracy"] for r in base), 4) if len(base) > 1 else None
        rows.append(row)
    return rows


def _mean_known(group: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in group if r.get(key) is not None]
    return round(statistics.mean(values), 1) if values else None


def targets(rows: list[dict[str, Any]], goals: list[tuple[int, float]] | None = None) -> list[str]:
    """Each target (largest parameter count, score retained) met or missed, and the speed-up of the best small
    student; `goals` defaults to the SST-2 plan's `TARGETS`."""
    goals = goals or list(TARGETS)
    students = [r for r in rows if r["name"] != "teacher" and r["variant"] == "kd"]
    lines = []
    for limit, goal in goals:
        fitting = [r for r in students if r["parameters"] <= limit]
        if not fitting:
            lines.append(f"- <= {limit / 1e6:g}M parameters, >= {goal:.0%} retained: no student of that size ran.")
            continue
        best = max(fitting, key=lambda r: r["retained"])
        verdict = "met" if best["retained"] >= goal else f"missed by {100 * (goal - best['retained']):.1f} points"
        lines.append(
            f"- <= {limit / 1e6:g}M parameters, >= {goal:.0%} retained: best is {best['name']} "
            f"({best['parameters'] / 1e6:.1f}M) at {best['retained']:.1%}: {verdict}."
        )
    small = [r for r in students if r["parameters"] <= goals[0][0]]
    if small:
        best = max(small, key=lambda r: r["accuracy"])
        speedups = export_speedups(best, rows[0])
        fastest = max([best["speedup_fp32"], *(v for v, counts in speedups.values() if counts)])
        verdict = "met" if fastest >= SPEEDUP_TARGET else f"missed ({fastest:.1f}x < 10x)"
        exports = "".join(
            f", {v:.1f}x with its {name.replace('_ffn', ' ffn-float')} export"
            + ("" if counts else f" (not counted: {_export_accuracy_text(best, name)})")
            for name, (v, counts) in speedups.items()
        )
        lines.append(
            f"- best small student (most accurate at <= {goals[0][0] / 1e6:g}M: {best['name']}) >= 10x faster than "
            f"the teacher at batch 1 on the CPU: {best['speedup_fp32']:.1f}x (fp32){exports}: {verdict}."
        )
    return lines


def export_speedups(row: dict[str, Any], teacher: dict[str, Any]) -> dict[str, tuple[float, bool]]:
    """{export: (speed-up over the fp32 teacher, whether it counts)}: an export counts when its dev accuracy is
    known and within `EXPORT_TOLERANCE` of the fp32 student's."""
    out = {}
    for export in EXPORTS:
        if f"latency_{export}_ms" in row:
            accuracy = row.get(f"accuracy_{export}")
            counts = accuracy is not None and row["accuracy"] - accuracy <= EXPORT_TOLERANCE
            out[export] = (teacher["latency_fp32_ms"] / row[f"latency_{export}_ms"], counts)
    return out


def _export_accuracy_text(row: dict[str, Any], export: str) -> str:
    accuracy = row.get(f"accuracy_{export}")
    if accuracy is None:
        return "its accuracy was not measured"
    return f"{100 * accuracy:.1f}% against {100 * row['accuracy']:.1f}% in fp32"


def markdown(rows: list[dict[str, Any]], header: str, metric: str = "accuracy",
             goals: list[tuple[int, float]] | None = None) -> str:  # fmt: skip
    """The table; `metric` names the score column (the rows keep it under `accuracy`)."""

    def pct(v):
        return "" if v is None else f"{100 * v:.1f}"

    def epochs(r):  # "1+2": one epoch of stage 1 (intermediate terms), then two of the prediction layer
        stage1 = f"{r['intermediate_epochs']:g}+" if r.get("intermediate_epochs") else ""
        return f"{stage1}{r.get('epochs') or 0:g}"

    def gain(r):
        if "kd_gain" not in r:
            return ""
        spread = f" ± {100 * r['kd_gain_std']:.1f}" if r.get("kd_gain_std") is not None else ""
        return f"{100 * r['kd_gain']:+.1f}{spread}"

    def int8(r, fmt, key):  # per tensor, and the ffn-float scheme beside it where measured
        ffn = r.get(key.format("int8_ffn"))
        return fmt(r.get(key.format("int8"))) + ("" if ffn is None else f" / {fmt(ffn)}")

    ffn = " (/ ffn-float)" if any("latency_int8_ffn_ms" in r for r in rows) else ""
    head = ["model", "variant", "params", "MB", "CPU ms fp32", f"CPU ms int8{ffn}", f"{metric} %", "retained %",
            f"int8{ffn} {metric} %", f"ONNX {metric} %", "KD gain (pts)", "seeds", "train ex", "epochs", "train s",
            "ex/s"]  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        acc = pct(r["accuracy"]) + (f" ± {100 * r['accuracy_std']:.1f}" if r.get("accuracy_std") else "")
        cells = [r["name"], r["variant"], f"{r['parameters'] / 1e6:.1f}M", f"{r['size_mb']:.1f}",
                 f"{r['latency_fp32_ms']:.2f}", int8(r, "{:.2f}".format, "latency_{}_ms"), acc, pct(r["retained"]),
                 int8(r, pct, "accuracy_{}"), pct(r.get("accuracy_onnx")), gain(r),
                 str(r.get("seeds", 1)), str(r.get("train_examples", "")), epochs(r),
                 "" if r.get("train_s") is None else f"{r['train_s']:.0f}",
                 str(r.get("train_examples_per_s") or "")]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return header + "\n\n" + "\n".join(lines) + "\n\nTargets:\n" + "\n".join(targets(rows, goals)) + "\n"


def svg_plot(rows: list[dict[str, Any]], title: str, metric: str = "accuracy") -> str:
    """Two panels, accuracy against parameters and against CPU latency (log x), one point per model and variant."""
    width, height, pad = 420, 300, 50
    colours = {"teacher": "#222222", "kd": "#1f77b4", "baseline": "#ff7f0e"}
    accs = [100 * r["accuracy"] for r in rows]
    y_lo, y_hi = math.floor(min(accs) - 1), math.ceil(max(accs) + 1)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{2 * width}" height="{height + 40}" '
        'font-family="sans-serif" font-size="11">',
        f'<text x="10" y="16" font-size="13">{title}</text>',
    ]
    axes = (("parameters", "parameters (M, log)"), ("latency_fp32_ms", "CPU ms/example, batch 1 (log)"))
    for panel, (key, label) in enumerate(axes):
        x0 = panel * width
        values = [r[key] / (1e6 if key == "parameters" else 1) for r in rows]
        lo, hi = math.log10(min(values)) - 0.1, math.log10(max(values)) + 0.1

        def sx(v, x0=x0, lo=lo, hi=hi):
            return x0 + pad + (math.log10(v) - lo) / (hi - lo) * (width - 2 * pad)

        def sy(a):
            return 30 + (y_hi - a) / (y_hi - y_lo) * (height - pad - 10)

        parts.append(f'<rect x="{x0 + pad}" y="30" width="{width - 2 * pad}" height="{height - pad - 10}" '
                     'fill="none" stroke="#999"/>')  # fmt: skip
        parts.append(f'<text x="{x0 + width / 2}" y="{height + 5}" text-anchor="middle">{label}</text>')
        parts.append(f'<text x="{x0 + 12}" y="{height / 2}" transform="rotate(-90 {x0 + 12} {height / 2})" '
                     f'text-anchor="middle">dev {metric} %</text>')  # fmt: skip
        for tick in range(y_lo, y_hi + 1, max(1, (y_hi - y_lo) // 5)):
            parts.append(f'<text x="{x0 + pad - 4}" y="{sy(tick) + 4:.1f}" text-anchor="end">{tick}</text>')
        for exp in range(math.floor(lo), math.ceil(hi) + 1):
            for mult in (1, 2, 5):
                v = mult * 10**exp
                if lo <= math.log10(v) <= hi:
                    parts.append(f'<text x="{sx(v):.1f}" y="{height - 5}" text-anchor="middle">{v:g}</text>')
        for r, v in zip(rows, values):
            colour = colours.get(r["variant"], colours["kd"]) if r["name"] != "teacher" else colours["teacher"]
            x, y = sx(v), sy(100 * r["accuracy"])
            parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4" fill="{colour}"/>')
            tag = r["name"] + ("" if r["variant"] in ("kd", "fine-tuned", "given") else " (base)")
            parts.append(f'<text x="{x + 6:.1f}" y="{y - 4:.1f}" fill="{colour}">{tag}</text>')
    parts.append(f'<text x="{width}" y="{height + 30}" text-anchor="middle">black: teacher, blue: distilled, '
                 "orange: hard-label baseline (mean over seeds)</text></svg>")  # fmt: skip
    return "\n".join(parts) + "\n"
