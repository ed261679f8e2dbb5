from pathlib import Path

import pytest
import torch

from distillkit import DistillConfig, DistillTrainer

from .conftest import rule_dataset, tiny_bert

ROOT = Path(__file__).resolve().parents[1]


def test_gradient_accumulation_matches_one_big_batch(tmp_path, tokenizer, trained_teacher):
    # equal-length sentences: every masked mean then weighs tokens alike in both set-ups
    data = rule_dataset(tokenizer, 40, seed=12).filter(lambda r: len(r["input_ids"]) >= 6).select(range(8))
    data = data.map(lambda r: {k: v[:6] for k, v in r.items() if k != "labels"})
    assert {len(ids) for ids in data["input_ids"]} == {6}

    def grads(batch_size, accumulation):
        torch.manual_seed(0)
        student = tiny_bert(layers=1, hidden=16, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
        args = DistillConfig(
            output_dir=str(tmp_path), report_to="none", per_device_train_batch_size=batch_size,
            gradient_accumulation_steps=accumulation, hidden_weight=1.0, seed=0,
        )  # fmt: skip
        trainer = DistillTrainer(model=student, teacher=trained_teacher, args=args, train_dataset=data,
                                 processing_class=tokenizer)  # fmt: skip
        trainer.current_gradient_accumulation_steps = accumulation
        collate = trainer.data_collator
        rows = [data[i] for i in range(8)]
        total = 0.0
        for start in range(0, 8, batch_size):
            total += trainer.training_step(trainer.model, collate(rows[start : start + batch_size])).item()
        params = [*trainer.model.parameters(), *trainer.distill_modules.parameters()]
        return total, [p.grad.clone() for p in params if p.grad is not None]

    loss_acc, grads_acc = grads(4, 2)
    loss_one, grads_one = grads(8, 1)
    assert loss_acc == pytest.approx(loss_one, rel=1e-5)
    assert len(grads_acc) == len(grads_one) > 0
    for a, b in zip(grads_acc, grads_one):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-4)
