"""The SST-2 benchmark script, run on tiny models for a few steps (CI): the full plan's code path, fast."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from .conftest import save_base_encoder, write_tsv
from .test_cross_tokenizer import student_model, student_tokenizer

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "benchmark.py"


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bench")
    models = tmp / "models"
    save_base_encoder(models / "base-encoder")  # no head, as all-mpnet-base-v2: the teacher stage fine-tunes it
    student_model().save_pretrained(models / "pretrained-student")  # its own tokenizer: cross-tokenizer
    student_tokenizer().save_pretrained(models / "pretrained-student")
    write_tsv(tmp / "train.tsv", 300, 1)
    write_tsv(tmp / "dev.tsv", 40, 2)
    common = {"task": "sst2", "max_seq_length": 32, "per_device_train_batch_size": 16, "learning_rate": 1e-3,
              "alpha": 0.9, "report_to": "none", "teacher": "hub-org/base-encoder"}  # fmt: skip
    recipes = {
        "teacher.yaml": {**common, "teacher_max_steps": 30, "teacher_learning_rate": 3e-3, "teacher_batch_size": 16},
        "custom.yaml": {**common, "student": "custom", "num_layers": 1, "hidden_size": 16, "num_heads": 2},
        "factorized.yaml": {**common, "student": "hub-org/pretrained-student", "embedding_size": 8},
        "hidden.yaml": {**common, "student": "custom", "num_layers": 1, "hidden_size": 16, "num_heads": 2,
                        "hidden_weight": 1.0, "attention_weight": 1.0},
    }  # fmt: skip
    for name, recipe in recipes.items():
        (tmp / name).write_text(yaml.safe_dump(recipe))
    plan = {
        "teacher": "hub-org/base-encoder",
        "teacher_recipe": "teacher.yaml",
        "task": "sst2",
        "seeds": [0, 1],
        "students": [
            {"name": "custom", "recipe": "custom.yaml"},
            {"name": "factorized", "recipe": "factorized.yaml"},
            {"name": "hidden", "recipe": "hidden.yaml", "baseline": "custom"},
            {"name": "two-stage", "recipe": "hidden.yaml", "flags": {"intermediate_epochs": 1}, "baseline": "custom"},
            {"name": "pruned", "recipe": "custom.yaml", "flags": {"student": "pruned", "intermediate_size": 32}},
            # its vocabulary trimmed to the training text's (augmented copies included), against pruned's baseline
            {"name": "trimmed", "recipe": "custom.yaml", "baseline": "pruned",
             "flags": {"student": "pruned", "intermediate_size": 32, "trim_vocab": True, "augment": 1,
                       "trim_vocab_min_count": 55}},
            # a trimmed vocabulary with a layer loss: the teacher reads the student's tokens in its own ids
            {"name": "trimmed-layers", "recipe": "hidden.yaml", "baseline": "pruned",
             "flags": {"student": "pruned", "intermediate_size": 32, "trim_vocab": True, "trim_vocab_min_count": 55}},
            # a second teacher that tokenizes differently (and already has its head: no teacher stage)
            {"name": "ensemble", "recipe": "custom.yaml", "extra_teachers": ["hub-org/pretrained-student"],
             "baseline": "custom"},
        ],
        "profiles": {"smoke": {"train_samples": 200, "teacher_train_samples": 100,
                               "students": {"hidden": {"seeds": [0]}, "two-stage": {"seeds": [0]},
                                            "pruned": {"seeds": [0]}, "ensemble": {"seeds": [0]},
                                            "trimmed": {"seeds": [0]}, "trimmed-layers": {"seeds": [0]}}}},
    }  # fmt: skip
    (tmp / "plan.yaml").write_text(yaml.safe_dump(plan))
    out = tmp / "out"
    cmd = [sys.executable, str(SCRIPT), "--plan", str(tmp / "plan.yaml"), "--profile", "smoke", "--out", str(out),
           "--local_models", str(models), "--train_file", str(tmp / "train.tsv"), "--validation_file",
           str(tmp / "dev.tsv"), "--max_steps", "4", "--use_cpu"]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    return out, cmd, result


def trimmed_model_and_tokenizer(run_dir):
    """The saved student's vocabulary size and its tokenizer's length."""
    from transformers import AutoConfig, AutoTokenizer

    return AutoConfig.from_pretrained(run_dir).vocab_size, len(AutoTokenizer.from_pretrained(run_dir))


def teacher_params(rows):
    return rows[("teacher", "fine-tuned")]["parameters"] + rows[("teacher-pretrained-student", "given")]["parameters"]


def test_benchmark_writes_json_markdown_and_plot(bench):
    out, _, result = bench
    data = json.loads((out / "results.json").read_text())
    rows = {(r["name"], r["variant"]): r for r in data["rows"]}
    assert set(rows) == {("teacher", "fine-tuned"), ("custom", "kd"), ("custom", "baseline"), ("factorized", "kd"),
                         ("factorized", "baseline"), ("hidden", "kd"), ("two-stage", "kd"), ("pruned", "kd"),
                         ("pruned", "baseline"), ("trimmed", "kd"), ("trimmed-layers", "kd"), ("ensemble", "kd"),
                         ("teacher-pretrained-student", "given"),
                         ("ensemble (ensemble)", "ensemble, probs")}  # fmt: skip
    ensemble = rows[("ensemble (ensemble)", "ensemble, probs")]
    assert ensemble["parameters"] == teacher_params(rows) and ensemble["weights"] == [0.5, 0.5]
    assert "init_accuracy" in rows[("pruned", "kd")]
    for row in rows.values():
        for key in ("parameters", "size_mb", "latency_fp32_ms", "latency_int8_ms", "accuracy", "retained"):
            assert row[key] is not None and row[key] == row[key], (row["name"], key)  # present and not NaN
        assert row["latency_fp32_ms"] > 0 and row["latency_int8_ms"] > 0 and row["size_mb"] > 0
    teacher = rows[("teacher", "fine-tuned")]
    assert teacher["train_examples"] == 100 and teacher["train_s"] > 0
    assert rows[("custom", "kd")]["seeds"] == 2 and rows[("hidden", "kd")]["seeds"] == 1
    assert rows[("custom", "kd")]["retained"] == pytest.approx(
        rows[("custom", "kd")]["accuracy"] / teacher["accuracy"], abs=1e-3
    )
    assert "kd_gain" in rows[("custom", "kd")] and "kd_gain" in rows[("hidden", "kd")]  # hidden: against custom's
    # every export is scored on the dev set (40 sentences) by its own predictions: ONNX is fp32, so it agrees with
    # the student's own accuracy but for a sentence on a numerical tie (a wrong label mapping would not)
    for (name, variant), row in rows.items():
        if name.startswith("ensemble"):
            continue
        assert 0 <= row["accuracy_int8"] <= 1 and 0 <= row["accuracy_int8_ffn"] <= 1, (name, variant)
        assert row["latency_int8_ffn_ms"] > 0, (name, variant)
        assert abs(row["accuracy_onnx"] - row["accuracy"]) <= 1 / 40, (name, variant)
    table = (out / "results.md").read_text()
    assert table.count("\n| ") == len(rows) + 1 and "Targets:" in table and "--profile smoke" in table
    svg = (out / "results.svg").read_text()
    assert svg.startswith("<svg") and svg.count("<circle") == 2 * len(rows)
    assert "retained" in result.stdout


def test_benchmark_runs_record_what_was_trained(bench):
    out, _, _ = bench
    runs = json.loads((out / "results.json").read_text())["runs"]
    by = {(r["name"], r["variant"], r["seed"]): r for r in runs}
    assert by[("custom", "baseline", 0)]["losses"] == {"ce": 1.0}  # the baseline: the gold labels alone
    assert by[("custom", "kd", 0)]["losses"] == pytest.approx({"kd": 0.9, "ce": 0.1})
    assert set(by[("hidden", "kd", 0)]["losses"]) == {"kd", "ce", "hidden", "attention"}
    factorized = by[("factorized", "kd", 0)]
    assert factorized["cross_tokenizer"] and factorized["architecture"] == "AlbertForSequenceClassification"
    assert not by[("custom", "kd", 0)]["cross_tokenizer"]
    assert all(r["steps"] == 4 for r in runs if r["name"] != "two-stage")
    assert all(r["train_examples"] == 200 for r in runs if r["name"] not in ("two-stage", "trimmed"))
    trimmed = by[("trimmed", "kd", 0)]  # the augmented copies join its training text and its vocabulary
    assert trimmed["train_examples"] > 200 and trimmed["cross_tokenizer"]
    saved = trimmed_model_and_tokenizer(out / "runs" / "trimmed" / "kd-seed0")
    assert saved == (trimmed["vocabulary"]["vocab_size"],) * 2 and trimmed["vocabulary"]["original_vocab_size"] == 45
    assert 5 < saved[0] < 45  # the words seen fewer than 55 times are gone
    assert "vocabulary trimmed" in trimmed["initialisation"][-1] and trimmed["pruned"] is not None
    layers = by[("trimmed-layers", "kd", 0)]  # trained live (no cache: the layer losses read the teacher's states)
    assert set(layers["losses"]) == {"kd", "ce", "hidden", "attention"} and layers["cross_tokenizer"]
    assert trimmed_model_and_tokenizer(out / "runs" / "trimmed-layers" / "kd-seed0")[0] < 45
    two_stage = by[("two-stage", "kd", 0)]  # stage 1: one epoch of 200 rows in batches of 16, then the 4 steps
    assert two_stage["steps"] == 13 + 4 and two_stage["intermediate_epochs"] == 1
    assert by[("pruned", "kd", 0)]["pruned"]["student"]["layers"] == 1
    assert by[("pruned", "kd", 0)]["architecture"] == "BertForSequenceClassification"
    # the seeds differ: two seeds of one student are two different runs
    assert by[("custom", "kd", 0)]["latency_fp32_ms"] > 0 and (out / "runs" / "custom" / "kd-seed1.json").is_file()
    # logit-only KD runs read the teacher's logits from the cache; the cross-tokenizer student has its own
    # (and the ensemble its own: the combined soft targets)
    assert len(list((out / "teacher_cache").iterdir())) == 4  # and the trimmed student's rows


def test_benchmark_started_again_skips_finished_runs_and_can_retime(bench):
    out, cmd, _ = bench
    before = {p: p.read_text() for p in (out / "runs").rglob("*.json")}
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert {p: p.read_text() for p in (out / "runs").rglob("*.json")} == before
    assert "teacher stage already done" in result.stderr and "student custom" in result.stderr
    assert "Trainer.train" not in result.stderr and "train_runtime" not in result.stderr  # nothing was trained again
    result = subprocess.run([*cmd, "--remeasure_latency"], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    runs = json.loads((out / "results.json").read_text())["runs"]
    assert all(r["latency_remeasured"] for r in runs)
    for path, text in before.items():  # only the timings changed
        old, new = json.loads(text), json.loads(path.read_text())
        timing = ("latency_fp32_ms", "latency_int8_ms", "latency_int8_ffn_ms", "latency_onnx_ms", "latency_remeasured")
        assert {k: v for k, v in old.items() if k not in timing} == {k: v for k, v in new.items() if k not in timing}
    assert "re-timed after training" in (out / "results.md").read_text()


def test_report_only_trains_nothing_and_publishes_records_a_table_and_a_plot(bench, tmp_path):
    out, cmd, _ = bench
    before = json.loads((out / "results.json").read_text())
    result = subprocess.run([*cmd, "--report_only", "--only", "custom"], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "student custom" not in result.stderr and "train_runtime" not in result.stderr
    rows = json.loads((out / "results.json").read_text())["rows"]
    assert {(r["name"], r["variant"]) for r in rows} >= {("custom", "kd"), ("custom", "baseline")}
    assert ("factorized", "kd") not in {(r["name"], r["variant"]) for r in rows}  # --only: that student alone
    script = [sys.executable, str(ROOT / "scripts" / "results.py")]
    published = subprocess.run([*script, "--from", str(out / "results.json"), "--out", str(tmp_path / "sst2")],
                               capture_output=True, text=True, timeout=300)  # fmt: skip
    assert published.returncode == 0, published.stderr[-3000:]
    records = {(r["name"], r["variant"]): r for r in json.loads((tmp_path / "sst2.json").read_text())["rows"]}
    kd, teacher = records[("custom", "kd")], records[("teacher", "fine-tuned")]
    assert kd["seeds"] == [0, 1] and len(kd["seed_accuracies"]) == 2
    assert kd["accuracy"] == pytest.approx(sum(kd["seed_accuracies"]) / 2, abs=1e-4)
    assert kd["retention"] == pytest.approx(kd["accuracy"] / teacher["accuracy"], abs=1e-4)
    # rounded to 2 decimals: a timing taken on a busy CPU can put it near 0.1
    assert kd["speedup"] == pytest.approx(teacher["latency_fp32_ms"] / kd["latency_fp32_ms"], rel=0.01, abs=0.006)
    assert kd["gain_over_baseline"] == pytest.approx(kd["accuracy"] - records[("custom", "baseline")]["accuracy"],
                                                     abs=1e-3)  # fmt: skip
    table = (tmp_path / "sst2.md").read_text()
    assert table.count("\n| ") == len(records) and "published anchor" in table
    assert (tmp_path / "sst2.png").read_bytes()[:4] == b"\x89PNG"
    assert before["teacher"] == json.loads((out / "results.json").read_text())["teacher"]
    assert kd["accuracy_int8"] is not None and kd["accuracy_int8_ffn"] is not None
    assert "| int8 / int8 ffn-float / ONNX SST-2 dev accuracy % |" in table
    assert "| CPU ms fp32 / int8 / int8 ffn-float / onnx |" in table


def test_a_run_recorded_before_its_exports_were_scored_gets_their_accuracy_and_keeps_its_timings(bench):
    out, cmd, _ = bench
    path = out / "runs" / "custom" / "kd-seed0.json"
    scored = json.loads(path.read_text())
    # from before the exports were scored, and before the ffn-float int8 export was added
    old = {k: v for k, v in scored.items() if k not in ("accuracy_int8", "accuracy_onnx", "accuracy_int8_ffn",
                                                         "latency_int8_ffn_ms")}  # fmt: skip
    path.write_text(json.dumps(old))
    result = subprocess.run([*cmd, "--report_only", "--only", "custom"], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    again = json.loads(path.read_text())
    assert again["latency_int8_ffn_ms"] > 0  # the new export timed; the other timings untouched
    assert {k: v for k, v in again.items() if k != "latency_int8_ffn_ms"} == {
        k: v for k, v in scored.items() if k != "latency_int8_ffn_ms"
    }  # the same accuracies again


def test_cpu_latencies_times_and_scores_the_exports_it_is_asked_for():
    from distillkit.sst2_benchmark.measure import accuracy_scorer, cpu_latencies, export_kinds

    model, tokenizer = student_model(), student_tokenizer()
    texts, labels = ["the film was good", "a bad film", "good good", "bad"], [1, 0, 1, 0]
    assert "int8_ffn" in export_kinds(model.config)
    model.eval()
    with torch.no_grad():
        expected = model(**tokenizer(texts, padding=True, return_tensors="pt")).logits.argmax(-1).numpy()
    score = accuracy_scorer(texts, labels, 16)
    figures = cpu_latencies(model, tokenizer, texts, 16, score=score, timed=["int8_ffn"], kinds=["int8", "int8_ffn"])
    assert set(figures) == {"latency_int8_ffn_ms", "accuracy_int8", "accuracy_int8_ffn"}
    # the float feed-forward outputs and per-channel weights keep a tiny model's predictions
    assert figures["accuracy_int8_ffn"] == pytest.approx(float((expected == labels).mean()))
    assert set(cpu_latencies(model, tokenizer, texts, 16, timed=False, kinds=["fp32"])) == set()
    full = cpu_latencies(model, tokenizer, texts[:2], 16)
    assert {"latency_fp32_ms", "latency_int8_ms", "latency_int8_ffn_ms"} <= set(full) and "accuracy_int8" not in full


def test_an_export_speedup_counts_only_within_half_a_point_of_the_student():
    from distillkit.sst2_benchmark.report import targets

    teacher = {"name": "teacher", "variant": "fine-tuned", "parameters": 100, "accuracy": 0.9, "retained": 1.0,
               "latency_fp32_ms": 100.0, "speedup_fp32": 1.0}  # fmt: skip
    student = {"name": "s", "variant": "kd", "parameters": 10, "accuracy": 0.88, "retained": 0.978,
               "latency_fp32_ms": 20.0, "speedup_fp32": 5.0, "latency_int8_ms": 5.0,
               "latency_onnx_ms": 8.0}  # fmt: skip
    lines = targets([teacher, {**student, "accuracy_int8": 0.87, "accuracy_onnx": 0.879}], [(15, 0.98)])
    assert lines[-1].endswith("20.0x with its int8 export (not counted: 87.0% against 88.0% in fp32), 12.5x with "
                              "its onnx export: met.")  # fmt: skip
    lines = targets([teacher, {**student, "accuracy_int8": 0.87, "accuracy_onnx": 0.87}], [(15, 0.98)])
    assert lines[-1].endswith("missed (5.0x < 10x).")
    lines = targets([teacher, student], [(15, 0.98)])  # not measured: not counted
    assert "not counted: its accuracy was not measured" in lines[-1] and lines[-1].endswith("missed (5.0x < 10x).")


# run in a child process: the benchmark exports models to ONNX in-process, which changes how later TorchScript
# exports in the same process serialize (test_export compares their sizes)
_STOP_AT_STEP_3 = """
import sys
from distillkit.commands import benchmark
from distillkit.resilience import TrainingClock

def stop_at_step_3(self, args, state, control, **kwargs):
    if state.global_step == 3 and "runs" in args.output_dir:  # the student, not the teacher stage
        raise KeyboardInterrupt

TrainingClock.on_step_end = stop_at_step_3
try:
    benchmark.main(sys.argv[1:])
except KeyboardInterrupt:
    sys.exit(130)
"""


def test_a_student_run_stopped_mid_way_resumes_from_its_checkpoint(bench, tmp_path):
    from safetensors.torch import load_file

    from distillkit.resilience import checkpoint_marker

    out, cmd, _ = bench
    source = out.parent
    plan = yaml.safe_load((source / "plan.yaml").read_text())
    plan.update(teacher_recipe=str(source / "teacher.yaml"), seeds=[0])
    plan["students"] = [{"name": "custom", "recipe": str(source / "custom.yaml"), "baseline": False}]
    plan["profiles"] = {"resumable": {"train_samples": 200, "teacher_train_samples": 100, "save_strategy": "steps",
                                      "save_steps": 2}}  # fmt: skip
    (tmp_path / "plan.yaml").write_text(yaml.safe_dump(plan))
    argv = cmd[2:]
    argv[argv.index("--plan") + 1], argv[argv.index("--profile") + 1] = str(tmp_path / "plan.yaml"), "resumable"

    def run(name, stop=False):
        argv[argv.index("--out") + 1] = str(tmp_path / name)
        program = ["-c", _STOP_AT_STEP_3] if stop else [str(SCRIPT)]
        done = subprocess.run([sys.executable, *program, *argv], capture_output=True, text=True, timeout=600)
        assert done.returncode == (130 if stop else 0), done.stderr[-3000:]
        return tmp_path / name / "runs" / "custom"

    runs = run("stopped", stop=True)
    assert not (runs / "kd-seed0.json").exists()
    marker = checkpoint_marker(str(runs / "kd-seed0" / "checkpoint-2"))
    assert marker["global_step"] == 2 and marker["train_seconds"] > 0
    run("stopped")  # started again: the run goes on from step 2
    record = json.loads((runs / "kd-seed0.json").read_text())
    assert record["resumed_from_step"] == 2 and record["steps"] == 4
    assert record["train_s"] >= round(marker["train_seconds"], 1)  # the time before the stop is counted
    assert record["machine"]["cores"] > 0 and not list((runs / "kd-seed0").glob("checkpoint-*"))
    straight = run("straight")
    assert json.loads((straight / "kd-seed0.json").read_text())["resumed_from_step"] is None
    resumed = load_file(runs / "kd-seed0" / "model.safetensors")
    reference = load_file(straight / "kd-seed0" / "model.safetensors")
    for key, value in reference.items():
        assert resumed[key].allclose(value, atol=1e-6), key


def _load_script():
    from distillkit.commands import benchmark

    return benchmark


@pytest.mark.parametrize("profile", [None, "gpu", "cpu", "cpu-full"])
def test_the_shipped_plan_loads_and_names_existing_recipes(profile):
    script = _load_script()
    plan = script.load_plan(str(ROOT / "recipes" / "sst2" / "benchmark.yaml"), profile)
    assert Path(plan["teacher_recipe"]).is_file()
    names = [s["name"] for s in plan["students"]]
    assert {"tiny", "albert", "minilm-factorized", "teacher6", "tiny-hidden-attn"} <= set(names)
    for student in plan["students"]:
        assert Path(student["recipe"]).is_file()
        # one seed where a run is long: teacher6, tiny-hidden*, and cpu-full's 1-seed rows (over 20 min a run there)
        one_seed = student["name"].startswith(("teacher6", "tiny-hidden")) or profile == "cpu-full"
        assert len(student["seeds"]) >= (1 if one_seed else 3)
    if profile == "cpu-full":  # the ladder's references run 3 seeds
        assert all(len(s["seeds"]) == 3 for s in plan["students"] if s["name"] in ("tiny", "tinybert4", "pruned4"))
    if profile == "cpu":
        assert all(s["train_samples"] for s in plan["students"])


def test_unknown_profile_is_refused():
    with pytest.raises(ValueError, match="unknown profile 'tpu'"):
        _load_script().load_plan(str(ROOT / "recipes" / "sst2" / "benchmark.yaml"), "tpu")


@pytest.mark.parametrize("fast", [False, True])
def test_a_profile_runs_its_bf16_in_fp32_on_a_cpu_that_would_emulate_it(fast):
    load = _load_script().load_plan
    sst2 = str(ROOT / "recipes" / "sst2" / "benchmark.yaml")
    plan = load(sst2, "cpu-full", on_cpu=True, fast_bf16=fast)
    layers = next(s for s in plan["students"] if s["name"] == "pruned4-layers")
    assert plan["overrides"]["teacher_bf16"] is fast
    assert layers["flags"]["teacher_dtype"] == ("bfloat16" if fast else "float32")
    assert ("precision_note" in plan) is not fast
    if not fast:
        assert "teacher_bf16" in plan["precision_note"] and "teacher_dtype" in plan["precision_note"]
    on_gpu = load(sst2, "gpu", on_cpu=False, fast_bf16=False)  # a GPU trains in bf16 whatever its host CPU has
    assert on_gpu["overrides"]["bf16"] is True and "precision_note" not in on_gpu
    # a profile that trains on the CPU by itself (use_cpu) is checked on a GPU machine too
    lm = load(str(ROOT / "recipes" / "wikitext2" / "benchmark.yaml"), "cpu-bf16", on_cpu=False, fast_bf16=fast)
    assert lm["overrides"]["bf16"] is fast and all(s["flags"].get("bf16") is fast for s in lm["students"])


def test_the_teacher_stage_trains_in_fp32_where_the_cpu_would_emulate_bf16(monkeypatch, caplog):
    import torch

    from distillkit import teacher_stage
    from distillkit.arguments import TeacherArguments
    from distillkit.checks import cpu_has_fast_bf16
    from distillkit.config import DistillConfig

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(teacher_stage, "is_torch_bf16_gpu_available", lambda: False)
    args, stage = DistillConfig(output_dir="unused", use_cpu=True), TeacherArguments(teacher_bf16=True)
    monkeypatch.setattr(teacher_stage, "cpu_has_fast_bf16", lambda: False)
    assert teacher_stage._stage_precision(args, stage) == {"bf16": False}
    assert "no AVX-512 BF16 or AMX" in caplog.text
    monkeypatch.setattr(teacher_stage, "cpu_has_fast_bf16", lambda: True)
    assert teacher_stage._stage_precision(args, stage) == {"bf16": True, "use_cpu": True}
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():  # the probe agrees with the flags the kernel reports
        flags = next(line for line in cpuinfo.read_text().splitlines() if line.startswith("flags")).split()
        assert cpu_has_fast_bf16() is ("avx512_bf16" in flags or "amx_bf16" in flags)


@pytest.mark.parametrize("profile", [None, "gpu", "cpu", "cpu-full"])
def test_the_issue_30_variants_train_as_many_epochs_as_the_row_they_are_compared_with(profile):
    plan = _load_script().load_plan(str(ROOT / "recipes" / "sst2" / "benchmark.yaml"), profile)
    students = {s["name"]: s for s in plan["students"]}

    def epochs(name):
        spec = students[name]
        recipe = yaml.safe_load(Path(spec["recipe"]).read_text())
        return spec["flags"].get("num_train_epochs", recipe["num_train_epochs"])

    variants = [n for n in students if n.endswith(("-steps", "-layers", "-steps-layers")) or "-layers-" in n]
    assert len(variants) >= 10
    for name in variants:
        references = ("pruned-mini-augmented-min7", "pruned4-augmented", "pruned4")
        reference = next(r for r in references if name.startswith(r))
        assert epochs(name) == epochs(reference), (profile, name)
        assert students[name]["train_samples"] == students[reference]["train_samples"], (profile, name)
