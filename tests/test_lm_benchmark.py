"""The causal-LM benchmark (recipes/wikitext2): WikiText cut by article, the rows' perplexity, retention and paired
gains computed as stated, generation speed, and a whole toy benchmark (a tiny Llama teacher used as given, a
`teacher:1` student distilled and on the text alone) that writes its table and trains nothing when started again."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from .lm_fixtures import counting_text, lm_tokenizer, tiny_llama, train_lm, write_text

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "benchmark.py"

WIKI = """ = Alpha =

 Alpha is the first article .
 It has two paragraphs .

 = = Section of alpha = =

 More about alpha .

 = Beta =

 Beta is the second .

 = Gamma =

 Gamma is the third , with a = sign inside .
"""


def test_wikitext_articles_are_cut_at_level_one_headings_only(tmp_path):
    from distillkit.data.lm_text import split_wikitext, wikitext_articles

    path = tmp_path / "wiki.raw"
    path.write_text(WIKI, encoding="utf-8")
    articles = wikitext_articles(str(path))
    assert [a.split("\n", 1)[0] for a in articles] == [" = Alpha =", " = Beta =", " = Gamma ="]
    assert " = = Section of alpha = =" in articles[0]  # a section stays inside its article
    counts = split_wikitext(str(path), str(tmp_path / "out"), validation_articles=1, train_articles=1)
    train = (tmp_path / "out" / "train.txt").read_text(encoding="utf-8")
    valid = (tmp_path / "out" / "validation.txt").read_text(encoding="utf-8")
    assert "Alpha" in train and "Beta" not in train and "Gamma" not in train  # the middle article is in neither
    assert "Gamma" in valid and "Alpha" not in valid
    assert counts["train"]["articles"] == 1 and counts["validation"]["first"] == "Gamma"
    assert counts["validation"]["words"] == len(articles[2].split())
    # the written files read back as one document per article
    from distillkit.data.lm_text import read_lm_file

    assert len(read_lm_file(str(tmp_path / "out" / "train.txt"), None)) == 1


def test_wikitext_split_refuses_counts_that_leave_a_side_empty(tmp_path):
    from distillkit.data.lm_text import split_wikitext

    path = tmp_path / "wiki.raw"
    path.write_text(WIKI, encoding="utf-8")
    with pytest.raises(ValueError, match="the file has 3 articles"):
        split_wikitext(str(path), str(tmp_path / "o"), validation_articles=3)
    with pytest.raises(ValueError, match="2 articles are left"):
        split_wikitext(str(path), str(tmp_path / "o"), validation_articles=1, train_articles=3)
    other = tmp_path / "plain.txt"
    other.write_text("no headings here\n", encoding="utf-8")
    with pytest.raises(ValueError, match="no WikiText article heading"):
        split_wikitext(str(other), str(tmp_path / "o"), validation_articles=1)


def test_split_wikitext_script_exits_2_with_one_line(tmp_path):
    path = tmp_path / "wiki.raw"
    path.write_text(WIKI, encoding="utf-8")
    cmd = [sys.executable, str(ROOT / "scripts" / "split_wikitext.py"), str(path), "--out", str(tmp_path / "o"),
           "--validation_articles", "5"]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "--validation_articles 5" in done.stderr
    assert not (tmp_path / "o" / "train.txt").exists()


def _run(name, variant, seed, ppl, **kw):
    return {"name": name, "model": "m", "variant": variant, "seed": seed, "accuracy": ppl, "parameters": 1000,
            "scores": {"perplexity": ppl, "accuracy": 0.5}, "train_s": 10.0, "train_tokens": 2000, "steps": 5,
            "generation_tokens_per_s": 50.0, "losses": {"kd": 0.5, "ce": 0.5}, "teacher_cache": True, **kw}  # fmt: skip


def test_lm_rows_retention_is_teacher_over_student_and_gains_are_paired_by_seed():
    from distillkit.lm_benchmark import lm_markdown, lm_rows, lm_verdicts

    teacher = {"name": "teacher", "variant": "given", "accuracy": 20.0, "parameters": 3000, "generation_tokens_per_s":
               25.0, "scores": {"perplexity": 20.0}}  # fmt: skip
    runs = [
        _run("s", "kd", 0, 40.0), _run("s", "kd", 1, 44.0),
        _run("s", "baseline", 0, 50.0), _run("s", "baseline", 1, 51.0), _run("s", "baseline", 2, 99.0),
        _run("s-rkl", "kd", 0, 48.0, losses={"reverse_kl": 0.5, "ce": 0.5}),
    ]  # fmt: skip
    rows = {(r["name"], r["variant"]): r for r in lm_rows(teacher, runs, {"s-rkl": "s"})}
    kd = rows[("s", "kd")]
    assert kd["perplexity"] == 42.0 and kd["seeds"] == 2
    assert kd["retained"] == pytest.approx(20.0 / 42.0, abs=1e-4)  # lower is better: teacher / student
    assert kd["kd_gain"] == pytest.approx(8.5)  # (50 - 40 + 51 - 44) / 2: seed 2 has no distilled run
    assert kd["kd_gain_seeds"] == 2 and kd["kd_gain_std"] == pytest.approx(2.1213, abs=1e-3)
    assert kd["generation_speedup"] == 2.0 and kd["train_tokens_per_s"] == 200.0
    assert rows[("s-rkl", "kd")]["kd_gain"] == 2.0  # its baseline is the shared one, seed 0 only
    assert "kd_gain" not in rows[("s", "baseline")]
    verdict = lm_verdicts(list(rows.values()))[0]
    # the spreads of the paired seeds only (seed 2's baseline of 99 is not compared): 8.5 > max(2.12, 2.83, 0.71)
    assert "best loss s:" in verdict and "+8.50" in verdict and verdict.endswith("met.")
    table = lm_markdown(list(rows.values()), "header")
    assert "| s-rkl | kd | reverse_kl |" in table and "| teacher | given |" in table


def test_lm_verdict_is_missed_when_the_gain_is_inside_the_seed_spread():
    from distillkit.lm_benchmark import lm_rows, lm_verdicts

    teacher = {"name": "teacher", "variant": "given", "accuracy": 20.0, "parameters": 3000,
               "generation_tokens_per_s": 25.0}  # fmt: skip
    runs = [_run("s", "kd", 0, 40.0), _run("s", "kd", 1, 46.0), _run("s", "baseline", 0, 41.0),
            _run("s", "baseline", 1, 46.5)]  # fmt: skip
    verdict = lm_verdicts(lm_rows(teacher, runs, {}))[0]
    assert "missed" in verdict and "+0.75" in verdict
    one_seed = lm_verdicts(lm_rows(teacher, runs[::2], {}))[0]
    assert "one seed" in one_seed
    assert "no distilled run" in lm_verdicts(lm_rows(teacher, runs[2:], {}))[0]


def test_generation_speed_counts_the_new_tokens_of_each_prompt():
    from distillkit.latency import generation_speed

    tokenizer = lm_tokenizer()
    model = tiny_llama()
    calls = []
    generate = model.generate

    def spy(**kw):
        out = generate(**kw)
        calls.append((kw["input_ids"].shape[1], out.shape[1]))
        return out

    model.generate = spy
    speed = generation_speed(model, tokenizer, ["one two three four five", "six seven", ""], new_tokens=8,
                             prompt_tokens=3)  # fmt: skip
    assert speed["generation_prompts"] == 2  # the empty prompt is left out
    assert calls == [(3, 11), (3, 11), (2, 10)]  # a warm-up, then each prompt cut to 3 tokens + exactly 8 new
    assert speed["generation_tokens_per_s"] > 0
    assert speed["generation_ms_per_token"] == pytest.approx(1000 / speed["generation_tokens_per_s"], rel=1e-2)
    with pytest.raises(ValueError, match="no prompt has a token"):
        generation_speed(model, tokenizer, [""], new_tokens=2)


@pytest.fixture(scope="module")
def lm_bench(tmp_path_factory):
    """A tiny Llama trained on counting text, used as given; a `teacher:1` student distilled (forward KL from the
    top-k cache and from the live teacher, and reverse KL) and on the text alone; three steps each."""
    tmp = tmp_path_factory.mktemp("lm-bench")
    tokenizer = lm_tokenizer(tmp / "models" / "tiny-lm")
    teacher = train_lm(tiny_llama(), tokenizer, counting_text(200, 0), steps=60)
    teacher.save_pretrained(tmp / "models" / "tiny-lm")
    write_text(tmp / "train.txt", counting_text(120, 1))
    write_text(tmp / "valid.txt", counting_text(30, 2))
    recipe = {"student": "teacher:1", "task_type": "causal-lm", "block_size": 16, "max_seq_length": 16,
              "alpha": 0.5, "temperature": 1.0, "cache_top_k": 4, "learning_rate": 1e-3,
              "per_device_train_batch_size": 4, "per_device_eval_batch_size": 4, "report_to": "none"}  # fmt: skip
    (tmp / "layers1.yaml").write_text(yaml.safe_dump(recipe))
    plan = {
        "title": "toy LM", "task_type": "causal-lm", "teacher": "org/tiny-lm", "teacher_recipe": "layers1.yaml",
        "seeds": [0],
        "students": [
            {"name": "layers1-kd", "recipe": "layers1.yaml"},
            {"name": "layers1-reverse-kl", "recipe": "layers1.yaml", "baseline": "layers1-kd",
             "flags": {"kd_loss": "reverse_kl"}},
            {"name": "layers1-live", "recipe": "layers1.yaml", "baseline": "layers1-kd",
             "flags": {"teacher_cache": "none"}},
        ],
    }  # fmt: skip
    (tmp / "plan.yaml").write_text(yaml.safe_dump(plan))
    out = tmp / "out"
    cmd = [sys.executable, str(SCRIPT), "--plan", str(tmp / "plan.yaml"), "--out", str(out), "--local_models",
           str(tmp / "models"), "--train_file", str(tmp / "train.txt"), "--validation_file", str(tmp / "valid.txt"),
           "--max_steps", "3", "--use_cpu"]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    return out, cmd, result


def test_the_lm_benchmark_writes_perplexity_rows_with_generation_speed(lm_bench):
    out, _, result = lm_bench
    data = json.loads((out / "results.json").read_text())
    assert data["metric"] == "perplexity" and data["higher_is_better"] is False
    assert str(Path.home()) not in json.dumps({"header": data["header"]})  # no machine paths in the header
    teacher = data["teacher"]
    assert teacher["variant"] == "given" and teacher["train_s"] == 0.0  # used as given: no teacher stage
    assert teacher["accuracy"] == teacher["scores"]["perplexity"] > 1.0
    runs = {(r["name"], r["variant"]): r for r in data["runs"]}
    assert set(runs) == {("layers1-kd", "kd"), ("layers1-kd", "baseline"), ("layers1-reverse-kl", "kd"),
                         ("layers1-live", "kd")}  # fmt: skip
    for run in [*runs.values(), teacher]:
        assert run["int8_generation_tokens_per_s"] > 0 and run["int8_perplexity"] > 1.0  # the int8 copy's
    for run in runs.values():
        assert run["generation_tokens_per_s"] > 0 and run["steps"] == 3
        assert run["train_tokens"] == 3 * 4 * 15  # 3 steps of 4 blocks, 15 predicted tokens a block of 16
        assert run["parameters"] < teacher["parameters"]
    assert runs[("layers1-kd", "kd")]["teacher_cache"] and not runs[("layers1-kd", "baseline")]["teacher_cache"]
    assert not runs[("layers1-live", "kd")]["teacher_cache"]  # `teacher_cache: none` in the plan: the live teacher
    assert runs[("layers1-kd", "baseline")]["losses"].get("kd", 0) == 0  # the text alone
    assert runs[("layers1-reverse-kl", "kd")]["losses"].get("reverse_kl", 0) > 0
    rows = {(r["name"], r["variant"]): r for r in data["rows"]}
    kd = rows[("layers1-kd", "kd")]
    assert kd["retained"] == pytest.approx(teacher["accuracy"] / kd["perplexity"], abs=1e-3)
    assert kd["kd_gain"] == pytest.approx(
        runs[("layers1-kd", "baseline")]["accuracy"] - runs[("layers1-kd", "kd")]["accuracy"], abs=2e-3
    )
    assert rows[("layers1-reverse-kl", "kd")]["kd_gain"] is not None  # paired with the shared baseline
    table = (out / "results.md").read_text()
    assert "| layers1-reverse-kl | kd | reverse_kl |" in table and "Targets:" in table and "int8 ppl" in table
    assert "perplexity" in result.stdout and "written:" in result.stdout


def test_the_lm_benchmark_started_again_trains_nothing(lm_bench):
    out, cmd, _ = lm_bench
    stamps = {p: p.stat().st_mtime for p in (out / "runs").rglob("*-seed0.json")}
    again = subprocess.run([*cmd, "--report_only"], capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    assert {p: p.stat().st_mtime for p in stamps} == stamps
    assert len(json.loads((out / "results.json").read_text())["runs"]) == 4


def test_a_record_timed_with_an_older_int8_scheme_is_timed_again_with_the_same_blocks(lm_bench):
    out, cmd, _ = lm_bench
    path = out / "runs" / "layers1-kd" / "kd-seed0.json"
    record = json.loads(path.read_text())
    assert record["int8_scheme"]
    stale = {k: v for k, v in record.items() if k != "int8_scheme"}
    stale["int8_perplexity"] = -1.0
    path.write_text(json.dumps(stale))
    again = subprocess.run([*cmd, "--report_only"], capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    timed = json.loads(path.read_text())
    assert timed["int8_scheme"] == record["int8_scheme"] and timed["latency_remeasured"] is True
    # the saved student's int8 copy on the validation text's blocks, as the run itself scored it
    assert timed["int8_perplexity"] == pytest.approx(record["int8_perplexity"], rel=1e-4)
    assert timed["generation_tokens_per_s"] > 0


def test_remeasured_latency_times_generation_again_and_keeps_an_int8_perplexity_of_the_same_scheme(lm_bench):
    out, cmd, _ = lm_bench
    path = out / "runs" / "layers1-reverse-kl" / "kd-seed0.json"
    record = json.loads(path.read_text())
    path.write_text(json.dumps({**record, "int8_perplexity": 123.0, "generation_tokens_per_s": -1.0}))
    again = subprocess.run([*cmd, "--report_only", "--remeasure_latency"], capture_output=True, text=True,
                           timeout=600)  # fmt: skip
    assert again.returncode == 0, again.stderr[-2000:]
    timed = json.loads(path.read_text())
    assert timed["generation_tokens_per_s"] > 0 and timed["latency_remeasured"] is True
    assert timed["int8_perplexity"] == 123.0  # same scheme: not measured again (it does not depend on the load)


def test_the_shipped_wikitext_plan_names_existing_recipes():
    from distillkit.sst2_benchmark import load_plan

    plan = load_plan(str(ROOT / "recipes" / "wikitext2" / "benchmark.yaml"), None)
    assert plan["task_type"] == "causal-lm" and Path(plan["teacher_recipe"]).is_file()
    assert all(Path(student["recipe"]).is_file() for student in plan["students"])


def test_published_lm_results_hold_retention_speedups_and_each_seed_without_machine_paths(lm_bench, tmp_path):
    from distillkit.commands.results import main

    out, _, _ = lm_bench
    result = json.loads((out / "results.json").read_text())
    main(["--from", str(out / "results.json"), "--out", str(tmp_path / "pub" / "wikitext2"), "--no_plot"])
    published = json.loads((tmp_path / "pub" / "wikitext2.json").read_text())
    assert published["metric"] == "perplexity" and published["higher_is_better"] is False
    assert str(Path.home()) not in json.dumps(published["header"])
    recs = {(r["name"], r["variant"]): r for r in published["rows"]}
    teacher = recs[("teacher", "given")]
    assert teacher["retention"] == 1.0 and teacher["speedup"] == 1.0
    run = next(r for r in result["runs"] if (r["name"], r["variant"]) == ("layers1-kd", "kd"))
    kd = recs[("layers1-kd", "kd")]
    assert kd["seeds"] == {"0": run["accuracy"]} and kd["soft_loss"] == "kd"
    assert kd["retention"] == pytest.approx(teacher["perplexity"] / kd["perplexity"], abs=1e-3)
    assert kd["speedup"] == pytest.approx(
        run["generation_tokens_per_s"] / result["teacher"]["generation_tokens_per_s"], abs=0.01
    )
    assert kd["int8_speedup"] == pytest.approx(
        run["int8_generation_tokens_per_s"] / result["teacher"]["generation_tokens_per_s"], abs=0.01
    )
    assert recs[("layers1-kd", "baseline")]["soft_loss"] is None and kd["gain_over_ce"] is not None
    assert "| layers1-kd | kd | kd |" in (tmp_path / "pub" / "wikitext2.md").read_text()
