"""`distillkit export`: export a distilled student for deployment and measure every variant side by side.

    distillkit export outputs/quickstart/student --int8 --onnx

Writes `int8/model.pt` (dynamic int8, TorchScript) and `onnx/model.onnx` (checked in onnxruntime) into the student
directory, then measures the teacher, the student and each export: size on disk, CPU latency per example at batch 1
and batch 32 (median of repeated runs after a warm-up), the task metric on the validation set and agreement with the
float student's predictions. Prints a table, writes `exports.json` and adds the table to the model card. The
validation data, columns and teacher default to the run's own recipe (`distillkit_recipe.yaml`).
"""

from __future__ import annotations

import argparse
import json
import os
from types import SimpleNamespace

import numpy as np
import torch
from datasets import DatasetDict
from transformers import AutoConfig, AutoTokenizer, DataCollatorWithPadding

from distillkit.cli import text_table
from distillkit.data import get_task, load_task_data, resolve_columns, same_tokenizer, tokenize_dataset
from distillkit.data.glue import GLUE_TASKS, glue_key
from distillkit.export import (
    INT8_SCHEMES,
    export_int8,
    export_onnx,
    feature_batches,
    input_names,
    score_predict,
    torch_runner,
)
from distillkit.hub import CARD_INFO, RECIPE_FILE, load_target, read_card_info, write_card
from distillkit.latency import dir_size_mb, latency_ms
from distillkit.recipes import load_recipe
from distillkit.tasks import TARGET_COLUMNS, resolve_task_type

from . import command_name, invocation


def teacher_folder(opts: argparse.Namespace, setting: dict) -> str | None:
    """The teacher measured beside the student: --teacher, else the teacher as fine-tuned by the run (its `teacher`
    folder), else the run's recipe's teacher."""
    inside = os.path.join(opts.student_dir, "teacher")
    return inside if os.path.isdir(inside) and not opts.teacher else setting["teacher"]


def export_decoder(opts: argparse.Namespace, setting: dict, recipe: dict, task_type: object) -> list[dict]:
    """`--int8` for a causal LM (`distillkit/lm_export.py`): perplexity and generation speed of the teacher, the
    student and their dynamically quantized copies; ONNX is refused with the reason."""
    from distillkit.lm_export import INT8_SNIPPET, export_lm

    if opts.onnx:
        task_type.check_features(["onnx_export"])
    directory = opts.student_dir
    files = SimpleNamespace(train_file=None, validation_file=setting["validation_file"],
                            text_column=setting["text_column"], block_size=recipe.get("block_size"),
                            max_seq_length=setting["max_seq_length"], completion_only_loss=True)  # fmt: skip
    raw = task_type.read_data(files)
    split = raw["validation"] if "validation" in raw else raw["train"]
    tokenizer = AutoTokenizer.from_pretrained(directory)
    auto = task_type.auto_model_class()
    student = auto.from_pretrained(directory).eval()
    blocks = task_type.encode(DatasetDict(validation=split), tokenizer, student.config, task_type.block_size or 512,
                              False)["validation"]  # fmt: skip
    blocks = blocks.select(range(min(opts.max_eval_samples, len(blocks))))
    column = "text" if "text" in split.column_names else split.column_names[0]
    prompts = [str(t) for t in split[column][:5]]
    teacher_dir = teacher_folder(opts, setting)
    teacher = None
    if teacher_dir and os.path.isdir(teacher_dir):
        teacher = (auto.from_pretrained(teacher_dir).eval(), os.path.join(teacher_dir, "model.safetensors"))
    rows = export_lm(directory, student, tokenizer, blocks, prompts, teacher, opts.int8)
    header = ("variant", "parameters", "perplexity", "gen tokens/s", "ms/token", "ppl vs fp32", "speed-up vs fp32")
    print(text_table(header, [(r["name"], f"{r['parameters']:,}", f"{r['perplexity']:.3f}",
                               f"{r['generation_tokens_per_s']:.1f}", f"{r['generation_ms_per_token']:.1f}",
                               str(r.get("perplexity_vs_fp32", "")), str(r.get("speedup_vs_fp32", "")))
                              for r in rows]))  # fmt: skip
    note = (f"Measured by `{command_name('export')}`: perplexity on {len(blocks)} validation blocks; greedy generation "
            f"at batch 1 with the KV cache, {rows[0]['generation_new_tokens']} new tokens after prompts of up to 32, "
            f"median of {rows[0]['generation_prompts']} prompts, {torch.get_num_threads()} CPU threads.")  # fmt: skip
    print(note)
    if os.path.isfile(os.path.join(directory, CARD_INFO)):
        info = read_card_info(directory)
        snippet = INT8_SNIPPET.format(repo=load_target(info))
        write_card(directory, {**info, "lm_exports": rows, "lm_exports_note": note, "lm_int8_snippet": snippet})
    return rows


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(
        prog=" ".join(invocation("export")), description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("student_dir")
    parser.add_argument("--int8", action="store_true", help="write and measure a dynamic int8 copy")
    parser.add_argument("--onnx", action="store_true", help="write and measure an ONNX export")
    parser.add_argument(
        "--int8_scheme", choices=INT8_SCHEMES, default=INT8_SCHEMES[0],
        help="per-tensor: every nn.Linear, one weight scale each; ffn-float: one weight scale per output channel, the "
             "feed-forward output projections kept float (for models whose int8 copy loses accuracy: the teacher)",
    )  # fmt: skip
    parser.add_argument("--teacher", default=None, help="teacher to measure beside (default: the run's)")
    parser.add_argument("--task", default=None)
    parser.add_argument("--validation_file", default=None)
    parser.add_argument("--text_column", default=None)
    parser.add_argument("--text_pair_column", default=None)
    parser.add_argument("--label_column", default=None)
    parser.add_argument("--max_seq_length", type=int, default=None)
    parser.add_argument("--max_eval_samples", type=int, default=1000, help="validation rows for the metric")
    parser.add_argument("--latency_examples", type=int, default=64, help="examples timed at batch 1 (x4 at 32)")
    opts = parser.parse_args(argv)

    directory = opts.student_dir
    recipe_path = os.path.join(directory, RECIPE_FILE)
    recipe = load_recipe(recipe_path) if os.path.isfile(recipe_path) else {}
    setting = {k: getattr(opts, k) if getattr(opts, k) is not None else recipe.get(k) for k in vars(opts)}
    # a GLUE task's metrics and columns; a task type's own data set (squad, conll2003) is read by the task type
    glue = bool(setting["task"]) and glue_key(setting["task"]) in GLUE_TASKS
    task = get_task(setting["task"]) if glue else None
    if not setting["validation_file"] and not setting["task"]:
        raise ValueError(
            "no validation data: pass --validation_file (or --task), or export a directory whose "
            f"{RECIPE_FILE} names them."
        )
    text, pair = resolve_columns(task, setting["text_column"], setting["text_pair_column"])
    max_len = setting["max_seq_length"] or 128

    task_type = resolve_task_type(recipe.get("task_type"), AutoConfig.from_pretrained(directory))
    if task_type.chunked_lm_losses:  # a decoder: perplexity and generation speed, the int8 decoder (lm_export)
        if opts.int8_scheme != INT8_SCHEMES[0]:
            raise ValueError(
                f"--int8_scheme {opts.int8_scheme}: a causal LM's int8 copy has a scheme of its own (per-channel, "
                "the output layer and down projections float); leave the flag out."
            )
        return export_decoder(opts, setting, recipe, task_type)
    if opts.int8 or opts.onnx:
        task_type.check_features(["onnx_export"])
    tokenizer = AutoTokenizer.from_pretrained(directory)
    auto = task_type.auto_model_class()
    student = auto.from_pretrained(directory).eval()
    files = SimpleNamespace(train_file=None, validation_file=setting["validation_file"],
                            tag_column=recipe.get("tag_column", -1), doc_stride=recipe.get("doc_stride"),
                            n_best_size=recipe.get("n_best_size"),
                            max_answer_length=recipe.get("max_answer_length"), task=setting["task"])  # fmt: skip
    raw = task_type.read_data(files)  # a task type's own files (CoNLL columns, ...), else csv / tsv / GLUE
    if raw is None and setting["task"] and task is None:
        raise ValueError(f"--task {setting['task']}: not a GLUE task, and task type {task_type.name!r} does not "
                         "read it; pass --validation_file.")  # fmt: skip
    if raw is None:
        raw = load_task_data(task, None, files.validation_file) if files.validation_file else load_task_data(task)
    split = raw["validation"] if "validation" in raw else raw["train"]
    split = split.select(range(min(opts.max_eval_samples, len(split))))

    def encode(tok: object, model: torch.nn.Module) -> tuple[list, dict[int, list]]:
        """Metric batches (with labels) and timing batches of the split in one model's own tokenization."""
        own = task_type.encode(DatasetDict(validation=split), tok, student.config, max_len, False)
        features = own["validation"] if own is not None else tokenize_dataset(
            split, tok, text, pair, setting["label_column"] or "label", max_len,
            label_encoder=task_type.label_encoder(student.config))  # fmt: skip
        names = [n for n in input_names(model) if n in features.column_names]
        collate = task_type.data_collator(tok) or DataCollatorWithPadding(tok)
        first = opts.latency_examples
        timing = {
            1: feature_batches(features.select(range(min(first, len(features)))), collate, 1, names),
            32: feature_batches(features.select(range(min(4 * first, len(features)))), collate, 32, names),
        }
        return feature_batches(features, collate, 32, names, task_type.label_columns), timing

    eval_batches, timing = encode(tokenizer, student)
    inputs = {}  # runner name -> (metric batches, timing batches), for a teacher with a tokenizer of its own

    runners = []
    teacher_dir = teacher_folder(opts, setting)
    if teacher_dir and os.path.isdir(teacher_dir):
        teacher = auto.from_pretrained(teacher_dir).eval()
        runners.append(torch_runner("teacher", teacher, teacher_dir))
        teacher_tokenizer = AutoTokenizer.from_pretrained(teacher_dir)
        if not same_tokenizer(teacher_tokenizer, tokenizer):  # a cross-tokenizer student: each reads its own ids
            inputs["teacher"] = encode(teacher_tokenizer, teacher)
    runners.append(torch_runner("student", student, os.path.join(directory, "model.safetensors")))
    example = {k: v for k, v in eval_batches[0].items() if k not in TARGET_COLUMNS}
    if opts.int8:
        print("export: dynamic int8 (TorchScript) ...", flush=True)
        runners.append(export_int8(student, example, os.path.join(directory, "int8"), opts.int8_scheme))
    if opts.onnx:
        print("export: ONNX (checked in onnxruntime) ...", flush=True)
        runners.append(export_onnx(student, example, os.path.join(directory, "onnx")))

    compute = task_type.compute_metrics(student.config, task.metrics if task else None)
    reference = None
    rows = []
    for number, runner in enumerate(runners, 1):
        batches, timed = inputs.get(runner.name, (eval_batches, timing))
        print(f"measure {number}/{len(runners)}: {runner.name}, the metric on {len(split):,} rows, then the latency at "
              f"batch 1 and 32", flush=True)  # fmt: skip
        metrics, logits, labels = score_predict(runner.predict, batches, task_type, compute)
        preds = task_type.predictions(logits, student.config)
        if labels.ndim == 2 and preds.shape == labels.shape:  # per token: only the labelled positions are compared
            preds = np.where(labels == -100, -100, preds)
        if runner.name == "student":
            reference = preds
        keys = task_type.score_keys()
        metric_name = next((k for k in keys if k in metrics), next(iter(metrics)))
        metric_value = metrics[metric_name]
        rows.append({
            "name": runner.name,
            "size_mb": dir_size_mb(runner.path) if runner.path else float("nan"),
            "latency_ms_batch1": latency_ms(runner.predict, timed[1]),
            "latency_ms_batch32": latency_ms(runner.predict, timed[32]),
            "metric": metric_name,
            "metric_value": metric_value,
            "preds": preds,
        })  # fmt: skip
    for row in rows:
        preds = row.pop("preds")
        same = np.shape(preds) == np.shape(reference)  # a teacher with its own tokenization: not comparable
        row["agreement_with_student"] = task_type.agreement(preds, reference, student.config) if same else float("nan")
        agreement = 100 * row["agreement_with_student"]
        row["metric_display"] = f"{row['metric_value']:.4f} (agrees with the student on {agreement:.1f}%)"

    header = ("variant", "size MB", "ms/ex b=1", "ms/ex b=32", rows[0]["metric"], "agreement")
    print(text_table(header, [(r["name"], f"{r['size_mb']:.2f}", f"{r['latency_ms_batch1']:.2f}",
                               f"{r['latency_ms_batch32']:.2f}", f"{r['metric_value']:.4f}",
                               f"{100 * r['agreement_with_student']:.1f}%") for r in rows]))  # fmt: skip
    note = (f"Measured by `{command_name('export')}` on {len(split)} validation examples; latency is the median of "
            f"repeated runs after a warm-up on {torch.get_num_threads()} CPU threads.")  # fmt: skip
    print(note)
    with open(os.path.join(directory, "exports.json"), "w", encoding="utf-8") as f:
        json.dump({"threads": torch.get_num_threads(), "examples": len(split), "rows": rows}, f, indent=2)
    if os.path.isfile(os.path.join(directory, CARD_INFO)):
        info = read_card_info(directory)
        write_card(directory, {**info, "exports": rows, "exports_metric": rows[0]["metric"], "exports_note": note})
    return rows
