"""Publish a benchmark's results: one record per row as JSON, the README's table, and a plot.

    distillkit results --from runs/sst2/results.json --out docs/results/sst2

reads the `results.json` that `distillkit benchmark` wrote and writes `sst2.json` (one record per model and variant:
parameters, accuracy over seeds, retention = accuracy / teacher accuracy, speed-up = teacher latency / student
latency at batch 1 in fp32, the seeds' own figures, the gain over the hard-label baseline, the data, epochs, train
time, machine and the nearest published result), `sst2.md` (the table) and, with matplotlib installed (the `plot`
extra), `sst2.png`: accuracy against parameters and against CPU latency, with the published anchors beside them.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from distillkit.cli import invocation, portable
from distillkit.resilience import atomic_write_text

# published SST-2 figures of small BERTs, for the table's anchor column and the plot: (parameters, accuracy %, note)
ANCHORS: dict[str, tuple[float, float, str]] = {
    "BERT-Tiny": (4.4e6, 83.2, "2 x 128, pretrained + fine-tuned, test (Turc et al. 2019)"),
    "BERT-Mini": (11.2e6, 85.9, "4 x 256, pretrained + fine-tuned, test (Turc et al. 2019)"),
    "BERT-4x312": (14.5e6, 87.6, "4 x 312, pretrained + fine-tuned, test (TinyBERT paper's baseline)"),
    "TinyBERT-4": (14.5e6, 92.6, "4 x 312, general distillation + augmentation, test, checkpoint chosen on dev"),
    "DistilBERT": (66e6, 91.3, "6 x 768, dev (Sanh et al. 2019)"),
}


# published CoNLL-2003 figures (TextBrewer, Yang et al. 2020: BERT-base-cased teacher, test F1)
CONLL_ANCHORS: dict[str, tuple[float, float, str]] = {
    "TextBrewer teacher": (110e6, 91.1, "BERT-base-cased, test"),
    "TextBrewer T6": (65e6, 90.7, "6 x 768, test"),
    "TextBrewer T3": (44e6, 87.5, "3 x 768, test"),
    "TextBrewer T4-tiny": (14e6, 89.1, "4 x 312, augmented text, test"),
}
# published SQuAD v1.1 dev F1, every one trained on the full 87,599 training questions (this project's data has 7,235)
SQUAD_ANCHORS: dict[str, tuple[float, float, str]] = {
    "BERT-base": (110e6, 88.5, "12 x 768, dev F1, full SQuAD training data (DistilBERT's teacher)"),
    "DistilBERT": (66e6, 86.9, "6 x 768, dev F1, full SQuAD training data (Sanh et al. 2019)"),
    "TextBrewer T4-tiny": (14e6, 84.0, "4 x 312, dev F1 (teacher 88.6), full SQuAD training data"),
    "TinyBERT-4": (14.5e6, 82.1, "4 x 312, dev F1 (teacher 88.4), full SQuAD training data"),
}
ANCHOR_SETS = {"sst2": ANCHORS, "conll2003": CONLL_ANCHORS, "squad": SQUAD_ANCHORS, "none": {}}
# scores beside the headline one, averaged over the seeds like it: (the task's metric name, the record's key)
SECONDARY_SCORES = (("exact_match", "em"),)


def records(result: dict[str, Any]) -> list[dict[str, Any]]:
    """One record per row of a benchmark result, each with its seeds' own runs. A benchmark scored by another
    metric than accuracy (`result["metric"]`, e.g. entity F1) has its score under that name too."""
    teacher = result["teacher"]
    metric = result.get("metric", "accuracy")
    runs: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for run in result["runs"]:
        runs.setdefault((run["name"], run["variant"]), []).append(run)
    out = []
    for row in result["rows"]:
        group = sorted(runs.get((row["name"], row["variant"]), []), key=lambda r: r["seed"])
        record = {
            "name": row["name"],
            "variant": row["variant"],
            "model": portable(row.get("model")),  # a local folder as ~/... or ../...
            "params": row["parameters"],
            "size_mb": row.get("size_mb"),
            "accuracy": row["accuracy"],
            "accuracy_std": row.get("accuracy_std", 0.0),
            "retention": row["retained"],  # accuracy / the teacher's, as the benchmark computed it
            "latency_fp32_ms": row.get("latency_fp32_ms"),
            "latency_int8_ms": row.get("latency_int8_ms"),
            "latency_int8_ffn_ms": row.get("latency_int8_ffn_ms"),  # int8 per channel, feed-forward outputs float
            "latency_onnx_ms": row.get("latency_onnx_ms"),
            "speedup": row.get("speedup_fp32"),
            "speedup_int8": _ratio(teacher.get("latency_fp32_ms"), row.get("latency_int8_ms")),
            "speedup_int8_ffn": _ratio(teacher.get("latency_fp32_ms"), row.get("latency_int8_ffn_ms")),
            "speedup_onnx": _ratio(teacher.get("latency_fp32_ms"), row.get("latency_onnx_ms")),
            # each export's own dev score: its speed-up counts only if it keeps the fp32 score (within 0.5 points)
            "accuracy_int8": row.get("accuracy_int8"),
            "accuracy_int8_ffn": row.get("accuracy_int8_ffn"),
            "accuracy_onnx": row.get("accuracy_onnx"),
            "gain_over_baseline": row.get("kd_gain"),
            "gain_std": row.get("kd_gain_std"),
            "seeds": [r["seed"] for r in group] or [None],
            "seed_accuracies": [r["accuracy"] for r in group] or [row["accuracy"]],
            "train_examples": row.get("train_examples"),
            "scores": row.get("scores"),  # every score of the task (per entity type for a tagger), first seed
            "epochs": row.get("epochs"),
            "intermediate_epochs": row.get("intermediate_epochs"),
            "train_s": row.get("train_s"),
            "train_s_per_seed": [r.get("train_s") for r in group],
            "machine": next((r["machine"] for r in group if r.get("machine")), row.get("machine")),
            "anchor": row.get("anchor"),
            # a trimmed vocabulary (--trim_vocab): the tokens the student kept
            "vocab_size": next((r["vocabulary"]["vocab_size"] for r in group if r.get("vocabulary")), None),
        }
        for key, short in SECONDARY_SCORES:  # e.g. question answering's exact match beside its F1
            values = [r["scores"][key] for r in group if key in (r.get("scores") or {})]
            if not values and key in (row.get("scores") or {}):  # the teacher: one record, no seeds
                values = [row["scores"][key]]
            if values:
                record[short] = round(sum(values) / len(values), 4)
        if metric != "accuracy":
            record = {"name": record["name"], "variant": record["variant"], "params": record["params"],
                      metric: record["accuracy"], f"{metric}_std": record["accuracy_std"], **record}  # fmt: skip
        out.append(record)
    return out


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a and b else None


def markdown(recs: list[dict[str, Any]], metric_label: str = "accuracy",
             anchors: dict[str, tuple[float, float, str]] | None = None) -> str:  # fmt: skip
    anchors = ANCHORS if anchors is None else anchors

    def pct(v):
        return "" if v is None else f"{100 * v:.1f}"

    def ms(v):
        return "" if v is None else f"{v:.2f}"

    extra = [(key, short) for key, short in SECONDARY_SCORES if any(short in r for r in recs)]
    exported = any(r.get("accuracy_int8") is not None for r in recs)
    # the int8 scheme with float feed-forward outputs, where the records have it (`export --int8_scheme ffn-float`)
    exports = ("int8", "int8_ffn", "onnx") if any(r.get("latency_int8_ffn_ms") for r in recs) else ("int8", "onnx")
    names = {"int8": "int8", "int8_ffn": "int8 ffn-float", "onnx": "ONNX"}
    head = ["model", "variant", "params", "MB", f"CPU ms fp32 / {' / '.join(names[e] for e in exports).lower()}",
            "speed-up", f"{metric_label} %", *(f"{short.upper()} %" for _, short in extra),
            *([f"{' / '.join(names[e] for e in exports)} {metric_label} %"] if exported else []),
            "retained %", "gain over baseline (pts)", "seeds",
            "data", "epochs", "train time", "published anchor"]  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in recs:
        acc = pct(r["accuracy"]) + (f" ± {100 * r['accuracy_std']:.1f}" if r.get("accuracy_std") else "")
        gain = "" if r["gain_over_baseline"] is None else f"{100 * r['gain_over_baseline']:+.1f}"
        if r["gain_over_baseline"] is not None and r.get("gain_std") is not None:
            gain += f" ± {100 * r['gain_std']:.1f}"
        epochs = (f"{r['intermediate_epochs']:g}+" if r.get("intermediate_epochs") else "") + f"{r['epochs'] or 0:g}"
        minutes = "" if r.get("train_s") is None else f"{r['train_s'] / 60:.0f} min"
        anchor = r.get("anchor") or ""
        if anchor in anchors:
            anchor = f"{anchor} {anchors[anchor][1]}"
        cells = [r["name"], r["variant"], f"{r['params'] / 1e6:.1f}M", f"{r['size_mb']:.0f}",
                 " / ".join(ms(r.get(f"latency_{k}_ms")) for k in ("fp32", *exports)),
                 "" if r["speedup"] is None else f"{r['speedup']:.1f}x", acc,
                 *(pct(r.get(short)) for _, short in extra),
                 *([" / ".join(pct(r.get(f"accuracy_{e}")) for e in exports)] if exported else []),
                 pct(r["retention"]), gain,
                 str(len(r["seeds"])), f"{r['train_examples'] or 0:,}", epochs, minutes, anchor]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(recs: list[dict[str, Any]], path: Path, title: str, metric_label: str = "SST-2 dev accuracy",
         anchors: dict[str, tuple[float, float, str]] | None = None) -> None:  # fmt: skip
    """Accuracy against parameters and against CPU latency (log x); the published anchors in the first panel."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {"kd": "tab:blue", "baseline": "tab:orange"}
    fig, axes = plt.subplots(1, 2, figsize=(12, 5), sharey=True)
    for ax, key, label in ((axes[0], "params", "parameters"), (axes[1], "latency_fp32_ms", "CPU ms, batch 1, fp32")):
        for r in recs:
            if r.get(key) is None:
                continue
            teacher = r["name"] == "teacher"
            colour = "black" if teacher else colours.get(r["variant"], "tab:green")
            y = 100 * r["accuracy"]
            ax.errorbar(r[key], y, yerr=100 * (r.get("accuracy_std") or 0), fmt="o", color=colour, capsize=3)
            tag = r["name"] + (" (baseline)" if r["variant"] == "baseline" else "")
            ax.annotate(tag, (r[key], y), textcoords="offset points", xytext=(5, 3), fontsize=7, color=colour)
        ax.set_xscale("log")
        ax.set_xlabel(label + " (log)")
        ax.grid(alpha=0.3)
    for name, (params, acc, _) in (ANCHORS if anchors is None else anchors).items():
        axes[0].scatter(params, acc, marker="x", color="grey")
        axes[0].annotate(name, (params, acc), textcoords="offset points", xytext=(5, -9), fontsize=7, color="grey")
    axes[0].set_ylabel(f"{metric_label} %")
    fig.suptitle(
        title + "\nblack: teacher, blue: distilled, orange: hard-label baseline, grey x: published (mostly test)"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def publish_lm(result: dict[str, Any], stem: Path, cli: argparse.Namespace) -> None:
    """A causal-LM benchmark's results: `lm_benchmark.lm_records` as STEM.json, its table as STEM.md, the plot."""
    from distillkit.lm_benchmark import LM_ANCHORS, lm_markdown, lm_plot, lm_records

    recs = lm_records(result)
    stem.parent.mkdir(parents=True, exist_ok=True)
    published = {"header": portable(result.get("header")), "metric": "perplexity", "higher_is_better": False,
                 "targets": result.get("targets"), "anchors": LM_ANCHORS, "rows": recs}  # fmt: skip
    table = lm_markdown(result["rows"], portable(result.get("header")) or "")
    atomic_write_text(str(stem.with_suffix(".json")), json.dumps(published, indent=2) + "\n")
    atomic_write_text(str(stem.with_suffix(".md")), table)
    written = [stem.with_suffix(".json"), stem.with_suffix(".md")]
    if not cli.no_plot:
        lm_plot(recs, stem.with_suffix(".png"), cli.title)
        written.append(stem.with_suffix(".png"))
    print(table)
    print("written: " + ", ".join(str(p) for p in written))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog=" ".join(invocation("results")), description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--from", dest="source", required=True, help="a results.json written by distillkit benchmark")
    parser.add_argument("--out", required=True, help="path stem: writes STEM.json, STEM.md and STEM.png")
    parser.add_argument("--title", default="distillkit on SST-2")
    parser.add_argument("--no_plot", action="store_true", help="skip the plot (no matplotlib needed)")
    parser.add_argument("--anchors", choices=sorted(ANCHOR_SETS), default="sst2",
                        help="published figures for the anchor column and the plot")  # fmt: skip
    parser.add_argument("--metric_label", default=None, help="the score's name in the table and the plot")
    cli = parser.parse_args(argv)
    source = Path(cli.source)
    if not source.is_file():
        raise FileNotFoundError(f"{source}: no such file; pass the results.json that `distillkit benchmark` wrote.")
    result = json.loads(source.read_text())
    missing = [k for k in ("teacher", "rows", "runs") if k not in result]
    if missing:
        raise ValueError(f"{source} has no {', '.join(missing)}: it is not a `distillkit benchmark` results.json.")
    if result.get("metric") == "perplexity":  # a causal-LM benchmark
        return publish_lm(result, Path(cli.out), cli)
    recs = records(result)
    anchors = ANCHOR_SETS[cli.anchors]
    label = cli.metric_label or ("SST-2 dev accuracy" if result.get("metric", "accuracy") == "accuracy" else
                                 f"dev {result['metric']}")  # fmt: skip
    stem = Path(cli.out)
    stem.parent.mkdir(parents=True, exist_ok=True)
    published = {"header": portable(result.get("header")), "metric": result.get("metric", "accuracy"),
                 "targets": result.get("targets"), "anchors": anchors,
                 "rows": recs}  # fmt: skip
    atomic_write_text(str(stem.with_suffix(".json")), json.dumps(published, indent=2) + "\n")
    atomic_write_text(str(stem.with_suffix(".md")), markdown(recs, label, anchors))
    written = [stem.with_suffix(".json"), stem.with_suffix(".md")]
    if not cli.no_plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError as error:
            raise ImportError("the plot needs matplotlib: pip install matplotlib, or pass --no_plot") from error
        plot(recs, stem.with_suffix(".png"), cli.title, label, anchors)
        written.append(stem.with_suffix(".png"))
    print(markdown(recs, label, anchors))
    print("written: " + ", ".join(str(p) for p in written))
