"""The causal-LM benchmark (`distillkit benchmark --plan recipes/wikitext2/benchmark.yaml`): every run an ordinary
recipe run, as `recipe_benchmark` does for the encoder task types, with what differs for a language model:

- the teacher is used as given (a pretrained LM: no teacher stage), copied into `<out>/teacher` and scored once;
- the score is perplexity, lower is better: `retained` is the teacher's perplexity over the student's (1.0 = as good
  as the teacher), and the gain of distillation over its baseline (the same student on the text alone,
  cross-entropy, alpha 0) is the baseline's perplexity minus the distilled run's, paired by seed (positive: KD helps);
- speed is greedy generation at batch 1 on the CPU, tokens per second (`latency.generation_speed`), not the
  classifiers' int8 / ONNX latencies (those exports are refused for this task type);
- the teacher cache's folder key adds the block size, k and the temperature (the top-k cache refuses other settings).

The report: `results.json` (every run, the rows, the header with the command) and `results.md` (the table).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shlex
import statistics
import time
from typing import Any

import torch

from .cli import portable
from .latency import generation_speed
from .lm_export import INT8_SCHEME, block_perplexity, float_copy, quantize_lm_int8
from .recipe_benchmark import RecipeBench
from .resilience import atomic_write_text
from .sst2_benchmark.measure import machine
from .sst2_benchmark.plan import precision_note

PROBE_PROMPTS = 5  # validation documents whose first 32 tokens prompt the timed generation


class LMBench(RecipeBench):
    stage_student = "teacher:1"  # the BERT presets are refused for decoders
    card_latency = False  # generation is timed here (a run's card would time forward passes of whole documents)
    validation_blocks: Any = None  # for timing saved models again: the validation text's blocks, made once

    def stale_timing(self, record: dict[str, Any]) -> bool:
        """Records measured before the int8 decoder's scheme changed (or under a bf16 trainer's autocast, which the
        earlier timing did not remove) are measured again."""
        return record.get("int8_scheme") != INT8_SCHEME

    def record_extra(self, recipe: Any) -> dict[str, Any]:
        """The tokens the run trained on: the counted (predicted) tokens of its blocks times its epochs, or its
        steps' blocks when --max_steps cut it."""
        args, train = recipe.args, recipe.data["train"]
        counted = sum(sum(1 for y in labels[1:] if y != -100) for labels in train["labels"])
        if args.max_steps and args.max_steps > 0:
            per_block = counted / max(len(train), 1)
            blocks = recipe.trainer.state.global_step * args.train_batch_size * args.gradient_accumulation_steps
            return {"train_tokens": int(round(per_block * blocks)), "train_blocks": len(train)}
        return {"train_tokens": int(counted * args.num_train_epochs), "train_blocks": len(train)}

    def retime(self, record: dict[str, Any], model: Any, tokenizer: Any, texts: list[str], pairs: list[str] | None,
               length: int) -> dict[str, Any]:  # fmt: skip
        """Generation speeds again; the int8 perplexity only when the record's was measured with another int8
        scheme (it does not depend on the machine's load)."""
        if not self.stale_timing(record) and record.get("int8_perplexity") is not None:
            return self.measure(model, tokenizer, texts)
        return self.time_model(model, tokenizer, texts, pairs, length)

    def time_model(self, model: Any, tokenizer: Any, texts: list[str], pairs: list[str] | None,
                   length: int) -> dict[str, Any]:  # fmt: skip
        """Greedy generation at batch 1, fp32 and int8 (`quantize_lm_int8`), and the int8 copy's perplexity on the
        validation text's blocks of `length` tokens (as the runs score it)."""
        if self.validation_blocks is None:  # the text that remeasure_latency read
            self.validation_blocks = self.task_type.encode(self.timing_raw["validation"], tokenizer, model.config,
                                                           length, False)  # fmt: skip
        return self.measure(model, tokenizer, texts, self.validation_blocks)

    def measure(self, model: Any, tokenizer: Any, texts: list[str], blocks: Any = None) -> dict[str, Any]:
        """Generation speeds of the model and of its int8 copy (made once), and with `blocks` the int8 copy's
        perplexity on them."""
        int8_model = quantize_lm_int8(float_copy(model))
        speed = generation_speed(model, tokenizer, texts[:PROBE_PROMPTS])
        int8 = generation_speed(int8_model, tokenizer, texts[:PROBE_PROMPTS])
        record = {**speed, "int8_generation_tokens_per_s": int8["generation_tokens_per_s"], "int8_scheme": INT8_SCHEME}
        if blocks is not None:
            record["int8_perplexity"] = round(block_perplexity(int8_model, blocks), 4)
        return record

    def latencies(self, model: Any, tokenizer: Any, recipe: Any, validation: Any = None) -> dict[str, Any]:
        """Generation speeds, and the int8 copy's perplexity on the run's validation blocks (the fp32 one is the
        run's score; `validation`, the encoder benchmarks' rows to score exports on, is not used)."""
        texts, _ = self.probe_texts(recipe.raw["validation"])
        data = getattr(recipe, "data", None) or recipe.teacher_data
        record = self.measure(model, tokenizer, texts, data.get("validation"))
        return {**record, "latency_max_length": recipe.data_args.max_seq_length}

    def prepare_run(self, model_args: Any, data_args: Any, args: Any) -> None:
        """Pruned students score the teacher once: every cut of the plan reads the scores from one file per
        calibration setting (the file checks teacher, blocks and criterion itself)."""
        if model_args.student == "pruned" and not model_args.prune_scores:
            key = json.dumps([model_args.prune_layers, model_args.prune_samples, data_args.max_train_samples,
                              data_args.block_size])  # fmt: skip
            digest = hashlib.sha256(key.encode()).hexdigest()[:12]
            model_args.prune_scores = str(self.out / "prune_scores" / f"{digest}.safetensors")

    def cache_key_extra(self, model_args: Any, data_args: Any, args: Any) -> list[Any]:
        return [data_args.block_size, args.cache_top_k, args.temperature]


def _mean_std(values: list[float], digits: int = 3) -> tuple[float, float | None]:
    return round(statistics.mean(values), digits), round(statistics.stdev(values), digits) if len(values) > 1 else None


def soft_loss(row: dict[str, Any]) -> str | None:
    """The soft loss a row was trained with (None for the teacher and the cross-entropy baselines)."""
    if row["name"] == "teacher":
        return None
    return next((k for k in (row.get("losses") or {}) if k != "ce" and row["losses"][k]), None)


def _median(group: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in group if r.get(key) is not None]
    return round(statistics.median(values), 3) if values else None


def lm_rows(teacher: dict[str, Any], runs: list[dict[str, Any]], baselines: dict[str, str]) -> list[dict[str, Any]]:
    """One row per (student, variant): perplexity mean and spread over seeds, retention (teacher ppl / student ppl),
    and for a distilled row the paired gain over its baseline (baseline ppl - student ppl, per seed)."""
    t_ppl = teacher["accuracy"]
    rows = [
        {**teacher, "perplexity": t_ppl, "perplexity_std": None, "seeds": 1, "retained": 1.0, "generation_speedup": 1.0}
    ]
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for run in runs:
        groups.setdefault((run["name"], run["variant"]), []).append(run)
    for (name, variant), group in groups.items():
        first = group[0]
        ppl, spread = _mean_std([r["accuracy"] for r in group])
        row = {k: first.get(k) for k in ("name", "model", "variant", "architecture", "parameters", "size_mb",
                                         "losses", "teacher_cache", "anchor")}  # fmt: skip
        row.update(
            perplexity=ppl,
            perplexity_std=spread,
            seeds=len(group),
            seed_list=sorted(r["seed"] for r in group),
            retained=round(t_ppl / ppl, 4),
            next_token_accuracy=round(statistics.mean(r["scores"].get("accuracy", float("nan")) for r in group), 4),
            train_tokens=first.get("train_tokens"),
            steps=first.get("steps"),
            train_s=round(statistics.mean(r["train_s"] for r in group if r.get("train_s")), 1)
            if any(r.get("train_s") for r in group)
            else None,
            generation_tokens_per_s=round(statistics.median(r["generation_tokens_per_s"] for r in group), 2),
            int8_generation_tokens_per_s=_median(group, "int8_generation_tokens_per_s"),
            int8_perplexity=_median(group, "int8_perplexity"),
        )
        row["generation_speedup"] = round(row["generation_tokens_per_s"] / teacher["generation_tokens_per_s"], 2)
        if first.get("train_tokens") and row["train_s"]:
            row["train_tokens_per_s"] = round(first["train_tokens"] / row["train_s"], 1)
        base = groups.get((baselines.get(name, name), "baseline")) if variant == "kd" else None
        if base:
            paired = {r["seed"]: r["accuracy"] for r in base}
            diffs = [paired[r["seed"]] - r["accuracy"] for r in group if r["seed"] in paired]
            if diffs:
                row["kd_gain"], row["kd_gain_std"] = _mean_std(diffs)
                row["kd_gain_seeds"] = len(diffs)
                row["baseline_std"] = _mean_std([paired[r["seed"]] for r in group if r["seed"] in paired])[1]
        rows.append(row)
    return rows


def lm_verdicts(rows: list[dict[str, Any]]) -> list[str]:
    """The issue's target: the best distilled row beats its cross-entropy baseline by more than the seed spread."""
    distilled = [r for r in rows if r.get("kd_gain") is not None]
    if not distilled:
        return ["- distillation vs cross-entropy alone: no distilled run with a baseline of the same seed yet."]
    best = max(distilled, key=lambda r: r["kd_gain"])
    spreads = [s for s in (best.get("kd_gain_std"), best.get("perplexity_std"), best.get("baseline_std")) if s]
    if not spreads:
        return [f"- best loss {best['name']}: {best['kd_gain']:+.2f} perplexity over cross-entropy alone at equal "
                "tokens (one seed: the spread is not measured yet)."]  # fmt: skip
    spread = max(spreads)
    verdict = "met" if best["kd_gain"] > spread else f"missed (gain {best['kd_gain']:.2f} <= spread {spread:.2f})"
    return [f"- best loss {best['name']}: {best['kd_gain']:+.2f} perplexity over cross-entropy alone at equal tokens "
            f"({best['kd_gain_seeds']} paired seeds); the largest seed spread {spread:.2f}: {verdict}."]  # fmt: skip


def lm_markdown(rows: list[dict[str, Any]], header: str) -> str:
    def num(v, fmt="{:.2f}"):
        return "" if v is None else fmt.format(v)

    head = ["model", "variant", "soft loss", "params", "perplexity", "retained %", "gain over CE (ppl)", "seeds",
            "next-token acc %", "gen tok/s", "int8 tok/s", "int8 ppl", "train tokens", "train tok/s",
            "cache"]  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        soft = soft_loss(r) or ""
        ppl = num(r["perplexity"]) + (f" ± {r['perplexity_std']:.2f}" if r.get("perplexity_std") else "")
        gain = ""
        if r.get("kd_gain") is not None:
            gain = f"{r['kd_gain']:+.2f}" + (f" ± {r['kd_gain_std']:.2f}" if r.get("kd_gain_std") else "")
        acc = r.get("next_token_accuracy", (r.get("scores") or {}).get("accuracy"))
        cache = "" if r["name"] == "teacher" or r["variant"] == "baseline" else (
            "top-k" if r.get("teacher_cache") else "live")  # fmt: skip
        cells = [r["name"], r["variant"], soft, f"{r['parameters'] / 1e6:.1f}M", ppl,
                 num(100 * r["retained"], "{:.1f}"), gain, str(r.get("seeds", 1)),
                 num(None if acc is None else 100 * acc, "{:.1f}"),
                 num(r.get("generation_tokens_per_s"), "{:.1f}"), num(r.get("int8_generation_tokens_per_s"), "{:.1f}"),
                 num(r.get("int8_perplexity")), num(r.get("train_tokens"), "{:,}"),
                 num(r.get("train_tokens_per_s"), "{:.0f}"), cache]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return header + "\n\n" + "\n".join(lines) + "\n\nTargets:\n" + "\n".join(lm_verdicts(rows)) + "\n"


# published retention (teacher perplexity / student perplexity) of distilled decoders, for the table and the plot
LM_ANCHORS: dict[str, tuple[float, float, str]] = {
    "DistilGPT2": (82e6, 0.77, "6 x 768 from GPT-2 (124M), all of OpenWebText; WikiText-103 perplexity 21.1 "
                   "against GPT-2's 16.3 (its model card)"),
}  # fmt: skip


def lm_records(result: dict[str, Any]) -> list[dict[str, Any]]:
    """One published record per row: name, variant, soft loss, params, perplexity (mean and spread over seeds, and
    each seed's), retention (teacher / student perplexity), generation speed fp32 and int8 and the speed-ups over
    the teacher's fp32 generation, int8 perplexity, the gain over cross-entropy alone, training tokens and time."""
    t_speed = result["teacher"].get("generation_tokens_per_s")
    per_seed: dict[tuple[str, str], dict[int, float]] = {}
    for run in result.get("runs", []):
        per_seed.setdefault((run["name"], run["variant"]), {})[run["seed"]] = run["accuracy"]
    records = []
    for row in result["rows"]:
        int8_speed = row.get("int8_generation_tokens_per_s")
        records.append({
            "name": row["name"], "variant": row["variant"],
            "soft_loss": soft_loss(row),
            "params": row["parameters"], "perplexity": row["perplexity"], "perplexity_std": row.get("perplexity_std"),
            "seeds": {str(k): v for k, v in sorted(per_seed.get((row["name"], row["variant"]), {}).items())},
            "retention": row["retained"],
            "speedup": row.get("generation_speedup"),
            "int8_speedup": round(int8_speed / t_speed, 2) if t_speed and int8_speed else None,
            "generation_tokens_per_s": row.get("generation_tokens_per_s"),
            "int8_generation_tokens_per_s": int8_speed, "int8_perplexity": row.get("int8_perplexity"),
            "gain_over_ce": row.get("kd_gain"), "gain_over_ce_std": row.get("kd_gain_std"),
            "train_tokens": row.get("train_tokens"), "train_s": row.get("train_s"),
            "teacher_cache": None if row["name"] == "teacher" else row.get("teacher_cache"),
        })  # fmt: skip
    return records


def lm_plot(records: list[dict[str, Any]], path: Any, title: str) -> None:
    """Perplexity (log) against parameters and against generation speed at batch 1; DistilGPT2's retention as a
    reference line (the teacher's perplexity over 0.77)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    teacher = next(r for r in records if r["name"] == "teacher")
    colours = {"kd": "tab:blue", "baseline": "tab:orange"}
    fig, axes = plt.subplots(1, 2, figsize=(12, 5), sharey=True)
    for ax, key, label in ((axes[0], "params", "parameters"), (axes[1], "generation_tokens_per_s",
                                                                  "generation tokens/s, batch 1, fp32")):  # fmt: skip
        for r in records:
            if r.get(key) is None:
                continue
            colour = "black" if r["name"] == "teacher" else colours.get(r["variant"], "tab:green")
            ax.errorbar(r[key], r["perplexity"], yerr=r.get("perplexity_std") or 0, fmt="o", color=colour, capsize=3)
            tag = r["name"] + (" (CE)" if r["variant"] == "baseline" else "")
            ax.annotate(tag, (r[key], r["perplexity"]), textcoords="offset points", xytext=(5, 3), fontsize=7,
                        color=colour)  # fmt: skip
        for name, (_, retention, _) in LM_ANCHORS.items():
            ax.axhline(teacher["perplexity"] / retention, color="grey", linestyle=":", linewidth=1)
            ax.annotate(f"{name}'s retention", (0, teacher["perplexity"] / retention), fontsize=7, color="grey",
                        xycoords=("axes fraction", "data"), textcoords="offset points", xytext=(3, 3))  # fmt: skip
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(label + " (log)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("validation perplexity (log, lower is better)")
    fig.suptitle(title + "\nblack: teacher, blue: distilled, orange: cross-entropy alone (CE)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run_lm_benchmark(plan: dict[str, Any], cli: argparse.Namespace, command: list[str]):
    """As `run_recipe_benchmark`, for `task_type: causal-lm` plans; returns (the output folder, the rows)."""

    bench = LMBench(plan, cli)
    wall = time.perf_counter()
    teacher, runs, baselines = bench.run_plan()
    rows = lm_rows(teacher, runs, baselines)
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() and not cli.use_cpu else "CPU"
    header = (
        f"{plan.get('title', 'benchmark')}; score: validation perplexity (lower is better); trained on {device}, "
        f"{os.cpu_count()} CPU cores ({machine()['cpu']}); generation: greedy, batch 1 on the CPU, fp32, "
        f"{torch.get_num_threads()} threads" + precision_note(plan) + f". Command: {portable(shlex.join(command))}"
    )
    result = {"header": header, "metric": "perplexity", "higher_is_better": False, "teacher": teacher, "rows": rows,
              "runs": runs, "targets": lm_verdicts(rows), "wall_s": round(time.perf_counter() - wall, 1)}  # fmt: skip
    atomic_write_text(str(bench.out / "results.json"), json.dumps(result, indent=2))
    atomic_write_text(str(bench.out / "results.md"), lm_markdown(rows, header))
    return bench.out, rows


__all__ = ["LMBench", "LM_ANCHORS", "lm_markdown", "lm_plot", "lm_records", "lm_rows", "lm_verdicts",
           "run_lm_benchmark", "soft_loss"]  # fmt: skip
