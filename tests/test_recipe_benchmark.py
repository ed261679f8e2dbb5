"""The benchmark for task types other than sequence classification (recipes/conll2003): a base encoder through the
teacher stage on CoNLL files, students distilled and as baselines, the table with entity F1 and the targets, and a
run started again that trains nothing. Tiny models, a few steps (CI)."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from .conftest import VOCAB, save_base_encoder

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "benchmark.py"


def _conll(path: Path, n: int, seed: int) -> None:
    rng = random.Random(seed)
    sentences = []
    for _ in range(n):
        words = [rng.choice(["w1", "w2", "w3", "w4"]) for _ in range(rng.randint(2, 8))]
        tags = ["I-K" if w == "w1" else "O" for w in words]  # IOB1, as CoNLL-2003
        sentences.append("\n".join(f"{w} X {t}" for w, t in zip(words, tags)))
    path.write_text("-DOCSTART- -X- O\n\n" + "\n\n".join(sentences) + "\n")


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ner-bench")
    models = tmp / "models"
    save_base_encoder(models / "base-encoder")  # no head, as all-mpnet-base-v2: the teacher stage fine-tunes it
    _conll(tmp / "train.conll", 120, 1)
    _conll(tmp / "dev.conll", 30, 2)
    common = {"task_type": "token-classification", "max_seq_length": 32, "per_device_train_batch_size": 16,
              "learning_rate": 1e-3, "alpha": 0.9, "report_to": "none"}  # fmt: skip
    recipes = {
        "teacher.yaml": {**common, "teacher_max_steps": 20, "teacher_learning_rate": 3e-3, "teacher_batch_size": 16},
        "custom.yaml": {**common, "student": "custom", "num_layers": 1, "hidden_size": 16, "num_heads": 2},
    }
    for name, recipe in recipes.items():
        (tmp / name).write_text(yaml.safe_dump(recipe))
    plan = {
        "title": "toy NER", "task_type": "token-classification", "metric_label": "entity F1",
        "teacher": "hub-org/base-encoder", "teacher_recipe": "teacher.yaml", "seeds": [0],
        "targets": [{"params": 15_000_000, "retained": 0.98}, {"params": 5_000_000, "retained": 0.95}],
        "students": [
            {"name": "custom", "recipe": "custom.yaml"},
            {"name": "pruned-trimmed", "recipe": "custom.yaml",
             "flags": {"student": "pruned", "intermediate_size": 32, "trim_vocab": True, "augment": 1}},
        ],
    }  # fmt: skip
    (tmp / "plan.yaml").write_text(yaml.safe_dump(plan))
    out = tmp / "out"
    cmd = [sys.executable, str(SCRIPT), "--plan", str(tmp / "plan.yaml"), "--out", str(out), "--local_models",
           str(models), "--train_file", str(tmp / "train.conll"), "--validation_file", str(tmp / "dev.conll"),
           "--max_steps", "3", "--use_cpu"]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    return out, cmd, result


def test_the_token_benchmark_writes_the_table_by_entity_f1(bench):
    out, _, result = bench
    data = json.loads((out / "results.json").read_text())
    assert data["metric"] == "f1"
    rows = {(r["name"], r["variant"]): r for r in data["rows"]}
    assert set(rows) == {("teacher", "fine-tuned"), ("custom", "kd"), ("custom", "baseline"),
                         ("pruned-trimmed", "kd"), ("pruned-trimmed", "baseline")}  # fmt: skip
    teacher = rows[("teacher", "fine-tuned")]
    assert teacher["accuracy"] == teacher["scores"]["f1"] and "K_f1" in teacher["scores"]
    for (name, _variant), row in rows.items():
        if name != "teacher":
            assert row["retained"] == pytest.approx(row["accuracy"] / teacher["accuracy"], abs=1e-3)
    assert "kd_gain" in rows[("custom", "kd")]
    table = (out / "results.md").read_text()
    assert "entity F1 %" in table and "<= 15M parameters, >= 98% retained" in table and "95% retained" in table
    assert "dev entity F1 %" in (out / "results.svg").read_text()
    assert "/tmp" not in json.dumps(data["teacher"]) and "pytest" not in json.dumps(data["runs"])  # no machine paths
    for record in [data["teacher"], *data["runs"]]:  # each export scored on dev as the run is (entity F1)
        assert 0.0 <= record["accuracy_int8"] <= 1.0 and 0.0 <= record["accuracy_int8_ffn"] <= 1.0
        assert record["accuracy_onnx"] == pytest.approx(record["accuracy"], abs=1e-4)  # fp32 ONNX: the same F1


def test_token_benchmark_runs_record_the_cache_trimming_and_augmentation(bench):
    out, _, _ = bench
    kd = json.loads((out / "runs" / "pruned-trimmed" / "kd-seed0.json").read_text())
    base = json.loads((out / "runs" / "pruned-trimmed" / "baseline-seed0.json").read_text())
    assert kd["teacher_cache"] and not base["teacher_cache"]  # logit KD reads a cache; the baseline runs no teacher
    assert kd["pruned"] and kd["vocabulary"]["vocab_size"] < len(VOCAB)
    # the baseline trains on the labelled sentences alone; the distilled run on them and their augmented copies
    assert base["train_examples"] == 120 < kd["train_examples"] <= 240
    assert {"latency_fp32_ms", "latency_int8_ms"} <= set(kd)
    # the distilled run scores each cut on the validation set; its baseline (the same cut) skips that (--prune_eval)
    reports = {v: json.loads((out / "runs" / "pruned-trimmed" / f"{v}-seed0" / "prune_report.json").read_text())
               for v in ("kd", "baseline")}  # fmt: skip
    assert "student_score_before_training" in reports["kd"] and "pruned_alone" not in reports["baseline"]


def test_the_token_benchmark_started_again_trains_nothing(bench):
    out, cmd, first = bench
    assert "distillation:" in first.stderr  # the first invocation trained
    before = {p: p.stat().st_mtime for p in (out / "runs").rglob("*.json")}
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "student custom, kd" in result.stderr and "distillation:" not in result.stderr
    assert {p: p.stat().st_mtime for p in (out / "runs").rglob("*.json")} == before

    # --remeasure_latency: nothing trained, every saved model timed again on an idle CPU
    timed = subprocess.run([*cmd, "--remeasure_latency"], capture_output=True, text=True, timeout=600)
    assert timed.returncode == 0, timed.stderr[-3000:]
    records = [json.loads(p.read_text()) for p in (out / "runs").glob("*/*.json")]
    assert all(r["latency_remeasured"] and r["latency_fp32_ms"] > 0 for r in records)
    assert json.loads((out / "teacher.json").read_text())["latency_remeasured"]


@pytest.mark.parametrize("name", ["conll2003", "wnut17"])
def test_the_shipped_token_plans_name_existing_recipes(name):
    from distillkit.sst2_benchmark import load_plan

    plan = load_plan(str(ROOT / "recipes" / name / "benchmark.yaml"), None)
    assert plan["task_type"] == "token-classification" and Path(plan["teacher_recipe"]).is_file()
    for student in plan["students"]:
        assert Path(student["recipe"]).is_file()


def test_published_token_results_carry_f1_and_the_conll_anchors(bench, tmp_path):
    out, _, _ = bench
    script = [sys.executable, str(ROOT / "scripts" / "results.py")]
    cmd = [*script, "--from", str(out / "results.json"), "--out", str(tmp_path / "pub" / "toy"), "--anchors",
           "conll2003", "--metric_label", "dev entity F1", "--no_plot"]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    published = json.loads((tmp_path / "pub" / "toy.json").read_text())
    assert published["metric"] == "f1" and "TextBrewer T4-tiny" in published["anchors"]
    for record in published["rows"]:
        assert {"name", "params", "f1", "retention", "speedup", "seeds"} <= set(record)
        assert record["f1"] == record["accuracy"]
    assert "dev entity F1 %" in (tmp_path / "pub" / "toy.md").read_text()


def test_augmented_rows_of_another_seed_get_a_cache_of_their_own(tmp_path):
    """Augmentation is seeded: seed 1's rows differ from seed 0's, so they cannot share one teacher cache (a shared
    one was refused as computed for other data, and the run stopped)."""
    from types import SimpleNamespace

    from distillkit.recipe_benchmark import RecipeBench

    cli = SimpleNamespace(out=str(tmp_path), train_file="t.conll", validation_file="d.conll", use_cpu=False,
                          max_steps=None, max_eval_samples=None)  # fmt: skip
    bench = RecipeBench({"task_type": "token-classification", "students": []}, cli)
    base = ["--teacher", "t", "--student", "tiny", "--output_dir", "o"]
    dirs = {(aug, seed): bench.cache_dir({}, [*base, "--augment", str(aug), "--seed", str(seed)])
            for aug in (0, 2) for seed in (0, 1)}  # fmt: skip
    assert dirs[(0, 0)] == dirs[(0, 1)]  # the same rows: one cache for every seed
    assert dirs[(2, 0)] != dirs[(2, 1)] and dirs[(2, 0)] != dirs[(0, 0)]


@pytest.fixture(scope="module")
def qa_bench(tmp_path_factory):
    """The same benchmark for question answering: a base encoder fine-tuned on SQuAD-layout json lines, one
    student distilled and as its baseline, three steps each."""
    from .tasks.fixtures import FIXTURES

    qa = FIXTURES["question-answering"]
    tmp = tmp_path_factory.mktemp("qa-bench")
    save_base_encoder(tmp / "models" / "base-encoder")
    qa.write(tmp / "train.jsonl", 64, 1)
    qa.write(tmp / "dev.jsonl", 24, 2)
    common = {"task_type": "question-answering", "max_seq_length": 40, "doc_stride": 8,
              "per_device_train_batch_size": 16, "learning_rate": 1e-3, "alpha": 0.9, "report_to": "none",
              "attention_dropout": 0.0}  # fmt: skip
    recipes = {
        "teacher.yaml": {**common, "teacher_max_steps": 10, "teacher_learning_rate": 3e-3, "teacher_batch_size": 16},
        "custom.yaml": {**common, "student": "custom", "num_layers": 1, "hidden_size": 16, "num_heads": 2},
    }
    for name, recipe in recipes.items():
        (tmp / name).write_text(yaml.safe_dump(recipe))
    plan = {
        "title": "toy QA",
        "task_type": "question-answering",
        "metric_label": "F1",
        "teacher": "base-encoder",
        "teacher_recipe": "teacher.yaml",
        "seeds": [0],
        "students": [{"name": "custom", "recipe": "custom.yaml"}],
    }
    (tmp / "plan.yaml").write_text(yaml.safe_dump(plan))
    out = tmp / "out"
    cmd = [sys.executable, str(SCRIPT), "--plan", str(tmp / "plan.yaml"), "--out", str(out), "--local_models",
           str(tmp / "models"), "--train_file", str(tmp / "train.jsonl"), "--validation_file", str(tmp / "dev.jsonl"),
           "--max_steps", "3", "--use_cpu"]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    return out, cmd


def test_the_qa_benchmark_scores_f1_and_em_and_times_question_with_context(qa_bench, tmp_path):
    out, _ = qa_bench
    result = json.loads((out / "results.json").read_text())
    assert result["metric"] == "f1"
    runs = {r["variant"]: r for r in result["runs"]}
    assert set(runs) == {"kd", "baseline"}
    for run in [*runs.values(), result["teacher"]]:
        assert {"f1", "exact_match"} <= set(run["scores"]) and run["accuracy"] == run["scores"]["f1"]
        assert run["latency_max_length"] == 40 and run["latency_fp32_ms"] > 0  # the recipe's length, not 128
        # each export scored as the run is (F1 over the questions, windows joined back): fp32 ONNX gives the same
        assert 0.0 <= run["accuracy_int8_ffn"] <= 1.0 and run["latency_int8_ffn_ms"] > 0
        assert 0.0 <= run["accuracy_int8"] <= 1.0 and run["accuracy_onnx"] == pytest.approx(run["accuracy"], abs=1e-4)
    student = json.loads((out / "runs" / "custom" / "kd-seed0" / "config.json").read_text())
    assert student["attention_probs_dropout_prob"] == 0.0  # --attention_dropout from the recipe
    cmd = [sys.executable, str(ROOT / "scripts" / "results.py"), "--from", str(out / "results.json"), "--out",
           str(tmp_path / "squad"), "--anchors", "squad", "--metric_label", "F1", "--no_plot"]  # fmt: skip
    published = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert published.returncode == 0, published.stderr[-2000:]
    rows = json.loads((tmp_path / "squad.json").read_text())["rows"]
    for record in rows:
        assert {"name", "params", "em", "f1", "retention", "speedup", "seeds"} <= set(record)
    kd = next(r for r in rows if r["variant"] == "kd")
    assert kd["em"] == pytest.approx(runs["kd"]["scores"]["exact_match"], abs=1e-4)
    table = (tmp_path / "squad.md").read_text()
    assert "| F1 % | EM % |" in table
    assert "TextBrewer T4-tiny" in json.loads((tmp_path / "squad.json").read_text())["anchors"]


def test_the_shipped_squad_plan_names_existing_recipes():
    from distillkit.sst2_benchmark import load_plan

    plan = load_plan(str(ROOT / "recipes" / "squad" / "benchmark.yaml"), None)
    assert plan["task_type"] == "question-answering" and Path(plan["teacher_recipe"]).is_file()
    assert all(Path(student["recipe"]).is_file() for student in plan["students"])
