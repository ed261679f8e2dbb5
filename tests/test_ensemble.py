"""Several teachers distilled into one student (distillkit.ensemble)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from datasets import Dataset

from distillkit import DistillConfig, DistillTrainer
from distillkit.collator import DistillCollator
from distillkit.data import member_prefix, tokenize_dataset
from distillkit.ensemble import combine, ensemble_members

from .conftest import rule_dataset, rule_sentences, tiny_bert, train_teacher, write_tsv
from .test_cross_tokenizer import student_model, student_tokenizer

ROOT = Path(__file__).resolve().parents[1]


def _args(tmp_path, **kw):
    defaults = dict(output_dir=str(tmp_path / "out"), max_steps=1, per_device_train_batch_size=16, report_to="none",
                    save_strategy="no", temperature=2.0, alpha=0.5, disable_tqdm=True, seed=0)  # fmt: skip
    return DistillConfig(**{**defaults, **kw})


def _terms(trainer, batch):
    """(kd, ce) of the student on one batch, as the trainer computes them."""
    model = trainer.model.eval()
    student_inputs = {k: v for k, v in batch.items() if k != "labels" and not k.startswith("teacher_")}
    with torch.no_grad():
        outputs = model(**student_inputs)
        _, terms = trainer.compute_distill_loss(outputs, trainer.teacher_forward(batch), batch)
    return terms


def _batch(trainer, data, n=16):
    return trainer.data_collator([data[i] for i in range(n)])


@pytest.fixture(scope="module")
def second_teacher(tokenizer):
    return train_teacher(tokenizer, steps=60, seed=1)


def test_two_copies_of_one_teacher_give_exactly_its_losses(tmp_path, tokenizer, trained_teacher):
    data = rule_dataset(tokenizer, 32, seed=5)
    student = tiny_bert(layers=1, hidden=16, seed=2)
    one = DistillTrainer(model=student, teacher=trained_teacher, args=_args(tmp_path), train_dataset=data,
                         processing_class=tokenizer)  # fmt: skip
    two = DistillTrainer(model=student, teacher=[trained_teacher, trained_teacher], args=_args(tmp_path),
                         train_dataset=data, processing_class=tokenizer)  # fmt: skip
    batch = _batch(one, data)
    a, b = _terms(one, batch), _terms(two, batch)
    assert a.keys() == b.keys() == {"kd", "ce"}
    for name in a:
        torch.testing.assert_close(b[name], a[name], atol=1e-6, rtol=0)


def test_weights_one_and_zero_are_the_first_teacher_alone(tmp_path, tokenizer, trained_teacher, second_teacher):
    data = rule_dataset(tokenizer, 32, seed=5)
    student = tiny_bert(layers=1, hidden=16, seed=2)
    alone = DistillTrainer(model=student, teacher=trained_teacher, args=_args(tmp_path), train_dataset=data,
                           processing_class=tokenizer)  # fmt: skip
    pair = DistillTrainer(model=student, teacher=[trained_teacher, second_teacher],
                          args=_args(tmp_path, teacher_weights=[1.0, 0.0]), train_dataset=data,
                          processing_class=tokenizer)  # fmt: skip
    mixed = DistillTrainer(model=student, teacher=[trained_teacher, second_teacher], args=_args(tmp_path),
                           train_dataset=data, processing_class=tokenizer)  # fmt: skip
    batch = _batch(alone, data)
    torch.testing.assert_close(_terms(pair, batch)["kd"], _terms(alone, batch)["kd"], atol=1e-6, rtol=0)
    assert abs(_terms(mixed, batch)["kd"] - _terms(alone, batch)["kd"]) > 1e-4  # the second teacher does count


def test_the_soft_targets_are_the_weighted_mean_of_the_probabilities():
    torch.manual_seed(0)
    logits = [torch.randn(5, 3) * 4 for _ in range(3)]
    weights, t = [0.5, 0.3, 0.2], 2.5
    by_hand = sum(w * torch.softmax(z / t, dim=-1) for w, z in zip(weights, logits))
    torch.testing.assert_close(torch.softmax(combine(logits, weights, t, "probs") / t, dim=-1), by_hand)
    torch.testing.assert_close(combine(logits, weights, t, "logits"), sum(w * z for w, z in zip(weights, logits)))
    regression = [torch.randn(5, 1) for _ in range(3)]
    torch.testing.assert_close(
        combine(regression, weights, t, "probs"), sum(w * z for w, z in zip(weights, regression))
    )


def test_teachers_with_different_tokenizers_each_read_their_own_ids(tmp_path, tokenizer, trained_teacher):
    # teacher 1 shares the student's tokenizer; teacher 2 reads another vocabulary (its own columns, teacher_2_*)
    other_tok = student_tokenizer()
    other = student_model(seed=4)
    texts, labels = rule_sentences(32, 9)
    raw = Dataset.from_dict({"sentence": texts, "label": labels})
    data = tokenize_dataset(raw, tokenizer, teacher_tokenizer={member_prefix(2): other_tok})
    seen = {}

    def record(name):
        def hook(module, args, kwargs):
            seen.setdefault(name, kwargs["input_ids"].clone())

        return hook

    for name, model in (("first", trained_teacher), ("second", other)):
        model.register_forward_pre_hook(record(name), with_kwargs=True)
    trainer = DistillTrainer(model=tiny_bert(layers=1, hidden=16, seed=2), teacher=[trained_teacher, other],
                             args=_args(tmp_path), train_dataset=data, processing_class=tokenizer,
                             teacher_processing_class=[None, other_tok])  # fmt: skip
    assert isinstance(trainer.data_collator, DistillCollator)
    batch = trainer.data_collator([data[i] for i in range(4)])
    trainer.teacher_forward(batch)
    expected_first = tokenizer(texts[:4], padding=True, return_tensors="pt")["input_ids"]
    expected_second = other_tok(texts[:4], padding=True, return_tensors="pt")["input_ids"]
    assert torch.equal(seen["first"], expected_first)
    assert torch.equal(seen["second"], expected_second)
    assert not torch.equal(seen["first"][:, :3], seen["second"][:, :3])


def test_an_ensembles_cache_is_refused_when_a_teacher_changes(tmp_path, tokenizer, trained_teacher, second_teacher):
    data = rule_dataset(tokenizer, 32, seed=5)
    args = _args(tmp_path, teacher_cache=str(tmp_path / "cache"))
    DistillTrainer(model=tiny_bert(layers=1, hidden=16, seed=2), teacher=[trained_teacher, second_teacher],
                   args=args, train_dataset=data, processing_class=tokenizer)  # fmt: skip
    manifest = json.loads((tmp_path / "cache" / "manifest.json").read_text())
    assert len(manifest["ensemble"]["teachers"]) == 2 and manifest["backend"] == "torch"
    # the same ensemble reads it back
    DistillTrainer(model=tiny_bert(layers=1, hidden=16, seed=2), teacher=[trained_teacher, second_teacher],
                   args=args, train_dataset=data, processing_class=tokenizer)  # fmt: skip
    changed = train_teacher(tokenizer, steps=5, seed=2)
    with pytest.raises(ValueError, match="computed for another ensemble"):
        DistillTrainer(model=tiny_bert(layers=1, hidden=16, seed=2), teacher=[trained_teacher, changed],
                       args=args, train_dataset=data, processing_class=tokenizer)  # fmt: skip
    with pytest.raises(ValueError, match="computed for another ensemble"):  # other weights: other soft targets
        DistillTrainer(model=tiny_bert(layers=1, hidden=16, seed=2), teacher=[trained_teacher, second_teacher],
                       args=_args(tmp_path, teacher_cache=str(tmp_path / "cache"), teacher_weights=[2, 1]),
                       train_dataset=data, processing_class=tokenizer)  # fmt: skip


@pytest.mark.parametrize(
    "kw,teachers,match",
    [
        ({"teacher_weights": [1.0]}, 2, r"--teacher_weights has 1 value\(s\) for 2 teacher\(s\)"),
        ({"teacher_weights": [0.0, 0.0]}, 2, r"must be >= 0 and not all 0"),
        ({"intermediate_teacher": 3}, 2, r"--intermediate_teacher 3 is not among the 2 teachers"),
    ],
)
def test_bad_ensembles_are_refused(tmp_path, trained_teacher, kw, teachers, match):
    with pytest.raises(ValueError, match=match):
        ensemble_members([trained_teacher] * teachers, None, _args(tmp_path, **kw))


def test_negative_weights_and_other_label_sets_are_refused(tmp_path, trained_teacher):
    with pytest.raises(ValueError, match="must be >= 0"):
        _args(tmp_path, teacher_weights=[1.0, -0.5])
    three = tiny_bert(num_labels=3)
    with pytest.raises(ValueError, match="label counts differ: .* has 2, .* has 3"):
        ensemble_members([trained_teacher, three], None, _args(tmp_path))
    named = tiny_bert()
    named.config.id2label = {0: "negative", 1: "positive"}
    other = tiny_bert()
    other.config.id2label = {0: "positive", 1: "negative"}
    with pytest.raises(ValueError, match="label sets differ"):
        ensemble_members([named, other], None, _args(tmp_path))


def _train_file(tmp_path):
    return write_tsv(tmp_path / "train.tsv", 96, 4)


def test_the_command_line_distills_an_ensemble_and_reports_each_teacher(tmp_path, trained_teacher_dir, tokenizer):
    second = tmp_path / "second"
    train_teacher(tokenizer, steps=60, seed=1).save_pretrained(second)
    tokenizer.save_pretrained(second)
    train, out = _train_file(tmp_path), tmp_path / "out"
    flags = ["--teacher", str(trained_teacher_dir), str(second), "--teacher_weights", "3", "1", "--student",
             "custom", "--num_layers", "1", "--hidden_size", "16", "--num_heads", "2", "--train_file", str(train),
             "--validation_file", str(train), "--output_dir", str(out), "--max_steps", "3", "--report_to", "none",
             "--disable_tqdm", "true"]  # fmt: skip
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "distill.py"), *flags], capture_output=True,
                            text=True, timeout=600)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    scores = json.loads((out / "teacher_eval_results.json").read_text())
    assert [m["weight"] for m in scores["teachers"]] == [0.75, 0.25]
    assert "teacher_eval_accuracy" in scores and all(
        "teacher_eval_accuracy" in m["metrics"] for m in scores["teachers"]
    )
    card = (out / "README.md").read_text()
    assert card.count("ensemble teacher `") == 2
    recipe = (out / "distillkit_recipe.yaml").read_text()
    assert str(second) in recipe and str(trained_teacher_dir) in recipe  # both teachers in the recipe


def test_teachers_with_other_label_counts_stop_the_command_before_anything_is_written(tmp_path, trained_teacher_dir):
    three = tmp_path / "three"
    tiny_bert(num_labels=3).save_pretrained(three)
    out = tmp_path / "out"
    flags = ["--teacher", str(trained_teacher_dir), str(three), "--student", "custom", "--num_layers", "1",
             "--hidden_size", "16", "--num_heads", "2", "--train_file", str(_train_file(tmp_path)), "--output_dir",
             str(out), "--max_steps", "2", "--report_to", "none"]  # fmt: skip
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "distill.py"), *flags], capture_output=True,
                            text=True, timeout=600)  # fmt: skip
    assert result.returncode == 2, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "label counts differ" in errors[0], result.stderr[-2000:]
    assert not out.exists()


def test_an_ensemble_of_one_teacher_twice_scores_as_that_teacher(tmp_path, tokenizer, trained_teacher):
    from distillkit.ensemble import TeacherEnsemble, evaluate_ensemble
    from distillkit.frozen_teacher import Teacher
    from distillkit.metrics import build_compute_metrics, evaluate_model

    data = rule_dataset(tokenizer, 96, seed=8)
    metrics = build_compute_metrics(2)
    alone = evaluate_model(trained_teacher, tokenizer, data, _args(tmp_path), metrics)
    pair = TeacherEnsemble([Teacher(trained_teacher), Teacher(trained_teacher)], [0.5, 0.5], 1.0)
    mixed = evaluate_ensemble(pair, data, DistillCollator(tokenizer), metrics, 32)
    assert mixed["teacher_eval_accuracy"] == pytest.approx(alone["eval_accuracy"])
    assert alone["eval_accuracy"] > 0.6  # a real score: the teacher learnt the rule
