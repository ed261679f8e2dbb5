import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors import safe_open
from transformers import DataCollatorWithPadding

from distillkit import DistillConfig, DistillTrainer, register_loss
from distillkit.losses import LOSS_REGISTRY

from .conftest import rule_dataset, tiny_bert


def _args(tmp_path, **kw):
    defaults = dict(
        output_dir=str(tmp_path / "out"),
        max_steps=80,
        per_device_train_batch_size=32,
        per_device_eval_batch_size=64,
        learning_rate=3e-3,
        lr_scheduler_type="constant",  # the keyword rule is learnt after a plateau of ~30 steps; decay would stall it
        logging_steps=10,
        save_strategy="no",
        report_to="none",
        seed=0,
        temperature=2.0,
        alpha=0.5,
        disable_tqdm=True,
    )
    return DistillConfig(**{**defaults, **kw})


@torch.no_grad()
def _agreement(student, teacher, tokenizer, data) -> float:
    batch = DataCollatorWithPadding(tokenizer)([{k: v for k, v in r.items() if k != "labels"} for r in data])
    student.eval()
    s = student(**batch.to(student.device)).logits.argmax(-1).cpu()
    t = teacher(**batch.to(teacher.device)).logits.argmax(-1).cpu()
    return (s == t).float().mean().item()


def test_end_to_end_distillation_learns_the_teacher_and_saves_a_plain_student(tmp_path, tokenizer, trained_teacher):
    student = tiny_bert(layers=1, hidden=16, heads=2, seed=1)
    train, held_out = rule_dataset(tokenizer, 2560, seed=10), rule_dataset(tokenizer, 300, seed=11)
    before = _agreement(student, trained_teacher, tokenizer, held_out)
    trainer = DistillTrainer(
        model=student,
        teacher=trained_teacher,
        args=_args(tmp_path, hidden_weight=1.0, attention_weight=1.0, embedding_weight=0.5),
        train_dataset=train,
        eval_dataset=held_out,
        processing_class=tokenizer,
    )
    trainer.train()

    logs = [entry for entry in trainer.state.log_history if "loss_kd" in entry]
    assert len(logs) == 8
    for name in ("loss_kd", "loss_ce", "loss_hidden", "loss_attention", "loss_embedding"):
        assert all(name in entry for entry in logs), name
    assert logs[-1]["loss_kd"] < 0.5 * logs[0]["loss_kd"], [e["loss_kd"] for e in logs]
    assert logs[-1]["loss_hidden"] < logs[0]["loss_hidden"]

    after = _agreement(student, trained_teacher, tokenizer, held_out)
    assert after > 0.85 and after > before + 0.2, (before, after)
    metrics = trainer.evaluate()
    assert metrics["eval_accuracy"] > 0.8

    # the teacher stayed frozen, and the width-16 student needed learned projections to the width-32 teacher
    assert not any(p.requires_grad for p in trained_teacher.parameters())
    assert sum(p.numel() for p in trainer.distill_modules.parameters()) > 0

    out = tmp_path / "student"
    trainer.save_model(str(out))
    with safe_open(str(out / "model.safetensors"), framework="pt") as f:
        keys = set(f.keys())
    assert keys == set(tiny_bert(layers=1, hidden=16, heads=2).state_dict())  # nothing but the student
    assert not any("proj" in k for k in keys)

    # reload in a fresh process where distillkit cannot be imported, and compare logits
    probe = held_out.select(range(8))
    batch = DataCollatorWithPadding(tokenizer)([{k: v for k, v in r.items() if k != "labels"} for r in probe])
    with torch.no_grad():
        expected = student.cpu()(**batch).logits
    torch.save(dict(batch), tmp_path / "batch.pt")
    code = (
        "import sys, torch, json; sys.modules['distillkit'] = None\n"
        "from transformers import AutoModelForSequenceClassification as A\n"
        f"m = A.from_pretrained({str(out)!r}).eval()\n"
        f"b = torch.load({str(tmp_path / 'batch.pt')!r})\n"
        "with torch.no_grad(): print(json.dumps(m(**b).logits.tolist()))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    reloaded = torch.tensor(json.loads(result.stdout.strip().splitlines()[-1]))
    torch.testing.assert_close(reloaded, expected, atol=1e-5, rtol=1e-4)


def test_alpha_one_trains_without_labels(tmp_path, tokenizer, trained_teacher):
    student = tiny_bert(layers=1, hidden=16, heads=2, seed=2)
    trainer = DistillTrainer(
        model=student,
        teacher=trained_teacher,
        args=_args(tmp_path, alpha=1.0, max_steps=10, logging_steps=5),
        train_dataset=rule_dataset(tokenizer, 200, seed=3, with_labels=False),
        processing_class=tokenizer,
    )
    trainer.train()
    logs = [e for e in trainer.state.log_history if "loss" in e]
    assert logs and all("loss_kd" in e and "loss_ce" not in e for e in logs)


def test_labels_required_unless_alpha_is_one(tmp_path, tokenizer, trained_teacher):
    with pytest.raises(ValueError, match="no label column.*alpha=1.0"):
        DistillTrainer(
            model=tiny_bert(layers=1, hidden=16),
            teacher=trained_teacher,
            args=_args(tmp_path, alpha=0.5),
            train_dataset=rule_dataset(tokenizer, 20, seed=3, with_labels=False),
        )


def test_incompatible_teacher_and_student_are_refused(tmp_path, trained_teacher):
    with pytest.raises(ValueError, match="label counts.*num_labels=2"):
        DistillTrainer(model=tiny_bert(num_labels=3), teacher=trained_teacher, args=_args(tmp_path))
    with pytest.raises(ValueError, match="vocabularies differ.*vocab_size=45"):
        DistillTrainer(model=tiny_bert(vocab_size=99), teacher=trained_teacher, args=_args(tmp_path))
    with pytest.raises(ValueError, match="out of range"):
        DistillTrainer(
            model=tiny_bert(layers=1), teacher=trained_teacher, args=_args(tmp_path, layer_map="1:5", hidden_weight=1)
        )


def test_a_registered_loss_is_used_and_logged(tmp_path, tokenizer, trained_teacher):
    calls = []

    @register_loss("test_logit_l1")
    def logit_l1(inputs):
        calls.append(inputs.student_outputs.logits.shape)
        return (inputs.student_outputs.logits - inputs.teacher_outputs.logits).abs().mean()

    try:
        trainer = DistillTrainer(
            model=tiny_bert(layers=1, hidden=16, seed=3),
            teacher=trained_teacher,
            args=_args(tmp_path, max_steps=4, logging_steps=2, extra_losses=["test_logit_l1:0.5"]),
            train_dataset=rule_dataset(tokenizer, 64, seed=5),
            processing_class=tokenizer,
        )
        assert trainer.loss_weights == {"kd": 0.5, "ce": 0.5, "test_logit_l1": 0.5}
        trainer.train()
        assert len(calls) == 4
        assert all("loss_test_logit_l1" in e for e in trainer.state.log_history if "loss" in e)
        with pytest.raises(ValueError, match="already registered"):
            register_loss("test_logit_l1")(logit_l1)
    finally:
        LOSS_REGISTRY.pop("test_logit_l1", None)
    with pytest.raises(ValueError, match="unknown loss 'nope'"):
        DistillTrainer(model=tiny_bert(), teacher=trained_teacher, args=_args(tmp_path, extra_losses=["nope"]))


def test_total_loss_is_the_weighted_sum_of_the_logged_terms(tmp_path, tokenizer, trained_teacher):
    trainer = DistillTrainer(
        model=tiny_bert(layers=1, hidden=16, seed=4),
        teacher=trained_teacher,
        args=_args(tmp_path, alpha=0.7, hidden_weight=2.0),
        train_dataset=rule_dataset(tokenizer, 16, seed=6),
        processing_class=tokenizer,
    )
    batch = trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))
    student_out = trainer.model(**{k: v for k, v in batch.items() if k != "labels"}, output_hidden_states=True)
    total, terms = trainer.compute_distill_loss(student_out, trainer.teacher_forward(batch), batch)
    expected = 0.7 * terms["kd"] + 0.3 * terms["ce"] + 2.0 * terms["hidden"]
    assert total.item() == pytest.approx(expected.item(), rel=1e-6)
    assert set(terms) == {"kd", "ce", "hidden"}


def test_projections_are_saved_in_checkpoints_only(tmp_path, tokenizer, trained_teacher):
    trainer = DistillTrainer(
        model=tiny_bert(layers=1, hidden=16, seed=5),
        teacher=trained_teacher,
        args=_args(tmp_path, max_steps=2, hidden_weight=1.0, save_strategy="steps", save_steps=2),
        train_dataset=rule_dataset(tokenizer, 64, seed=7),
        processing_class=tokenizer,
    )
    trainer.train()
    checkpoint = tmp_path / "out" / "checkpoint-2"
    assert (checkpoint / "distill_modules.safetensors").is_file()
    with safe_open(str(checkpoint / "model.safetensors"), framework="pt") as f:
        assert not any("proj" in k for k in f.keys())  # noqa: SIM118 (a safetensors handle)
    assert os.path.isfile(checkpoint / "optimizer.pt")
    # the Trainer clears only the student's gradients after a step: the projections' must not pile up either
    assert all(p.grad is None for p in trainer.distill_modules.parameters())


def test_a_copy_of_the_teacher_has_zero_loss_on_every_term(tmp_path, tokenizer, trained_teacher):
    # teacher:2 of a 2-layer teacher is the teacher itself: every layer pair, map and state must line up exactly
    from distillkit import build_student

    trainer = DistillTrainer(
        model=build_student("teacher:2", trained_teacher),
        teacher=trained_teacher,
        args=_args(tmp_path, alpha=1.0, hidden_weight=1.0, attention_weight=1.0, embedding_weight=1.0),
        train_dataset=rule_dataset(tokenizer, 64, seed=8),
        processing_class=tokenizer,
    )
    trainer.model.eval()
    batch = trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))
    student_inputs = {k: v for k, v in batch.items() if k != "labels"}
    outputs = trainer.model(**student_inputs, output_hidden_states=True, output_attentions=True)
    _, terms = trainer.compute_distill_loss(outputs, trainer.teacher_forward(batch), batch)
    assert set(terms) == {"kd", "hidden", "attention", "embedding"}
    for name, value in terms.items():
        assert abs(value.item()) < 1e-6, (name, value.item())


def test_alpha_zero_is_plain_fine_tuning_and_never_runs_the_teacher(tmp_path, tokenizer, trained_teacher):
    """The hard-label baseline: alpha=0 and no other term trains on the labels alone, with the teacher left idle."""
    calls = []
    trained_teacher.register_forward_hook(lambda *a: calls.append(1))
    data = rule_dataset(tokenizer, 64, seed=3)
    student = tiny_bert(layers=1, hidden=16, heads=2, seed=2)
    reference = tiny_bert(layers=1, hidden=16, heads=2, seed=2)
    trainer = DistillTrainer(model=student, teacher=trained_teacher, args=_args(tmp_path, alpha=0.0, max_steps=3),
                             train_dataset=data, processing_class=tokenizer)  # fmt: skip
    trainer.train()
    assert calls == [] and trainer.loss_weights == {"ce": 1.0}
    # the loss is the student's own cross-entropy on the same batch
    batch = DataCollatorWithPadding(tokenizer)([data[i] for i in range(8)])
    student.eval(), reference.eval()
    reference.load_state_dict(student.state_dict())
    loss = trainer.compute_loss(student, dict(batch))
    assert calls == []
    torch.testing.assert_close(loss, reference(**batch).loss)
    # with any teacher term the teacher runs again
    kd = DistillTrainer(model=tiny_bert(layers=1, hidden=16, heads=2), teacher=trained_teacher,
                        args=_args(tmp_path, alpha=0.5), train_dataset=data, processing_class=tokenizer)  # fmt: skip
    kd.compute_loss(kd.model, dict(batch))
    assert len(calls) == 1
