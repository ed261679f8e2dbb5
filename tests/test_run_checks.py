"""What used to fail (or mislead) after the training time was spent, and what a run reports about its data."""

import json
import logging
import os
import stat

import pytest
import torch
import yaml

from distillkit.cli import _accelerate_prefix, invocation
from distillkit.commands import distill

from .conftest import rule_sentences, tiny_bert


def _write_tsv(path, n, seed, label=None, words=None):
    texts, labels = rule_sentences(n, seed)
    if words:  # long sentences: more tokens than a small model's positions
        texts = [" ".join([t] * words) for t in texts]
    labels = [label] * n if label is not None else labels
    path.write_text("sentence\tlabel\n" + "".join(f"{t}\t{y}\n" for t, y in zip(texts, labels)))
    return path


def _flags(teacher, train, out, *extra, dev=None):
    flags = [
        "--teacher", str(teacher), "--student", "custom", "--num_layers", "1", "--hidden_size", "16",
        "--num_heads", "2", "--train_file", str(train), "--output_dir", str(out), "--max_steps", "6",
        "--per_device_train_batch_size", "16", "--save_strategy", "no", "--report_to", "none",
        "--max_seq_length", "32", "--disable_tqdm", "true",
    ]  # fmt: skip
    return flags + (["--validation_file", str(dev)] if dev else []) + list(extra)


@pytest.fixture()
def files(tmp_path):
    return _write_tsv(tmp_path / "train.tsv", 256, 1), _write_tsv(tmp_path / "dev.tsv", 64, 2)


def test_evaluation_during_training_then_the_final_reports(tmp_path, trained_teacher_dir, files):
    out = tmp_path / "out"
    distill.main(_flags(trained_teacher_dir, files[0], out, "--eval_strategy", "steps", "--eval_steps", "3",
                        dev=files[1]))  # fmt: skip
    assert (out / "README.md").is_file() and (out / "distillkit_card.json").is_file()
    assert json.loads((out / "teacher_eval_results.json").read_text())["teacher_eval_accuracy"] > 0.8
    history = json.loads((out / "trainer_state.json").read_text())["log_history"]
    assert [e["step"] for e in history if "eval_loss" in e][:2] == [3, 6]


def test_a_max_seq_length_above_the_position_limit_is_capped(tmp_path, trained_teacher_dir, caplog):
    # the teacher has 64 positions; sentences of 90+ words would crash its embeddings at 128 tokens
    train = _write_tsv(tmp_path / "train.tsv", 64, 1, words=20)
    out = tmp_path / "out"
    flags = _flags(trained_teacher_dir, train, out)
    flags[flags.index("--max_seq_length") + 1] = "128"
    with caplog.at_level(logging.WARNING):
        distill.main(flags)
    assert any("more than the teacher can read (64 positions)" in r.getMessage() for r in caplog.records)
    assert yaml.safe_load((out / "distillkit_recipe.yaml").read_text())["max_seq_length"] == 64


def test_a_student_larger_than_its_teacher_is_no_compression(tmp_path, trained_teacher_dir, files, caplog):
    out = tmp_path / "out"
    flags = _flags(trained_teacher_dir, files[0], out, dev=files[1])
    flags[flags.index("--hidden_size") + 1] = "128"
    flags[flags.index("--num_layers") + 1] = "2"
    with caplog.at_level(logging.WARNING):
        distill.main(flags)
    assert any("is not smaller than its teacher" in r.getMessage() for r in caplog.records)
    card = (out / "README.md").read_text()
    assert "No compression" in card and "more** parameters" in card and "fewer parameters" not in card


def test_outputs_are_readable_recipes_absolute_and_the_first_steps_logged(tmp_path, trained_teacher_dir, files):
    os.umask(0o022)
    out = tmp_path / "out"
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:  # relative paths, as a user types them
        distill.main(_flags(trained_teacher_dir, "train.tsv", "out", dev="dev.tsv"))
    finally:
        os.chdir(cwd)
    for name in ("README.md", "distillkit_card.json", "teacher_eval_results.json", "data_report.json"):
        assert stat.S_IMODE((out / name).stat().st_mode) == 0o644, name
    recipe = yaml.safe_load((out / "distillkit_recipe.yaml").read_text())
    assert recipe["train_file"] == str(files[0]) and recipe["output_dir"] == str(out)
    assert recipe["validation_file"] == str(files[1]) and recipe["teacher"] == str(trained_teacher_dir)
    history = json.loads((out / "trainer_state.json").read_text())["log_history"]
    assert [e["step"] for e in history if "loss_kd" in e] == [1, 2, 3, 4, 5, 6]  # 6 steps: every one logged


def test_the_data_report_and_the_card_say_which_rows_were_used(tmp_path, trained_teacher_dir, files):
    out = tmp_path / "out"
    distill.main(_flags(trained_teacher_dir, files[0], out, "--task", "sst2", "--max_train_samples", "100",
                        dev=files[1]))  # fmt: skip
    report = json.loads((out / "data_report.json").read_text())
    assert report["source"] == "local files" and report["hub_dataset"] is None
    assert report["splits"]["train"] == {"file": str(files[0]), "rows_read": 256, "rows_used": 100}
    assert report["splits"]["validation"]["rows_used"] == 64
    card = (out / "README.md").read_text()
    assert "nyu-mll/glue" not in card and "GLUE SST2" not in card and "SST2 (local files)" in card
    assert "train: `train.tsv`, 100 rows (the first 100 of 256)" in card


def test_a_weak_teacher_stops_the_run_before_distillation(tmp_path, trained_teacher_dir, files):
    # a validation set of one class: no teacher can beat always answering it
    dev = _write_tsv(tmp_path / "one.tsv", 64, 3, label=0)
    out = tmp_path / "out"
    flags = _flags(trained_teacher_dir, files[0], out, "--finetune_teacher", "always", "--teacher_max_steps", "2",
                   dev=dev)  # fmt: skip
    with pytest.raises(ValueError, match=r"no better than always answering the majority class \(1.0000\)"):
        distill.main(flags)
    assert (out / "teacher" / "config.json").is_file() and not (out / "model.safetensors").exists()
    distill.main([*flags, "--allow_weak_teacher", "true", "--output_dir", str(tmp_path / "out2")])
    assert (tmp_path / "out2" / "model.safetensors").is_file()


def test_a_student_that_answers_one_class_is_flagged(tmp_path, trained_teacher_dir, files, caplog):
    student = tiny_bert(layers=1, hidden=16)
    with torch.no_grad():  # a head that always says class 0, and no learning to change it
        student.classifier.weight.zero_()
        student.classifier.bias.copy_(torch.tensor([10.0, -10.0]))
    student.save_pretrained(tmp_path / "stubborn")
    out = tmp_path / "out"
    flags = _flags(trained_teacher_dir, files[0], out, "--learning_rate", "0", dev=files[1])
    flags[flags.index("--student") + 1] = str(tmp_path / "stubborn")
    with caplog.at_level(logging.WARNING):
        distill.main(flags)
    assert any("the student predicts one class for 100.0%" in r.getMessage() for r in caplog.records)
    assert "**Warning:** the student predicts one class for 100.0%" in (out / "README.md").read_text()


def test_resuming_a_finished_run_leaves_its_reports(tmp_path, trained_teacher_dir, files, caplog):
    out = tmp_path / "out"
    flags = _flags(trained_teacher_dir, files[0], out, "--save_strategy", "steps", "--save_steps", "3", dev=files[1])
    distill.main(flags)
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    with caplog.at_level(logging.WARNING):
        result = distill.main([*flags, "--resume_from_checkpoint", "latest"])
    assert any("had finished (step 6): nothing to resume" in r.getMessage() for r in caplog.records)
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    assert result.metrics["train_loss"] > 0 and result.metrics["eval_accuracy"] > 0


def test_data_using_fewer_labels_than_the_teacher_says_so(tmp_path, files, tokenizer, caplog):
    teacher = tiny_bert(num_labels=3)
    teacher.save_pretrained(tmp_path / "three")
    tokenizer.save_pretrained(tmp_path / "three")
    with caplog.at_level(logging.WARNING):
        distill.main(_flags(tmp_path / "three", files[0], tmp_path / "out", "--max_steps", "1"))
    lines = [r.getMessage() for r in caplog.records if "of the teacher's 3 labels" in r.getMessage()]
    assert lines == ["the training data uses 2 of the teacher's 3 labels (['LABEL_0', 'LABEL_1'])"]


@pytest.mark.parametrize(
    "argv0,expected",
    [
        ("/venv/bin/distillkit", ["distillkit", "distill"]),
        ("/src/distillkit/__main__.py", ["python", "-m", "distillkit", "distill"]),
        ("scripts/distill.py", ["python", "scripts/distill.py"]),
    ],
)
def test_the_command_is_recorded_as_typed(monkeypatch, argv0, expected):
    monkeypatch.setattr("sys.argv", [argv0, "--teacher", "x"])
    monkeypatch.setattr("distillkit.cli._accelerate_prefix", lambda: [])
    assert invocation("distill") == expected


def test_an_accelerate_launch_is_part_of_the_recorded_command(monkeypatch):
    monkeypatch.setattr("sys.argv", ["/src/distillkit/__main__.py"])
    parent = [
        "/venv/bin/python",
        "/venv/bin/accelerate",
        "launch",
        "--num_processes",
        "2",
        "-m",
        "distillkit",
        "distill",
    ]
    assert _accelerate_prefix(parent) == ["accelerate", "launch", "--num_processes", "2"]
    assert _accelerate_prefix(["/bin/bash", "run.sh"]) == []


def test_the_teacher_stage_trains_at_least_teacher_min_steps(tmp_path, trained_teacher_dir, files, caplog):
    # 256 rows at batch 32: one epoch is 8 steps, raised to 20 (2.5 epochs) by the minimum
    out = tmp_path / "out"
    flags = _flags(trained_teacher_dir, files[0], out, "--finetune_teacher", "always", "--teacher_num_train_epochs",
                   "1", "--teacher_min_steps", "20", "--teacher_batch_size", "32", dev=files[1])  # fmt: skip
    with caplog.at_level(logging.INFO):
        distill.main(flags)
    assert any("are 8 steps, fewer than teacher_min_steps: training 20 steps" in r.getMessage() for r in caplog.records)
    assert json.loads((out / "teacher_eval_results.json").read_text())["epoch"] == 2.5
