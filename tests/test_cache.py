import json

import pytest
import torch
from transformers import BertForSequenceClassification

from distillkit import DistillConfig, DistillTrainer
from distillkit.cache import MANIFEST

from .conftest import rule_dataset, tiny_bert


def _count_calls(model):
    calls = []
    model.register_forward_pre_hook(lambda module, args: calls.append(1))
    return calls


def _trainer(tmp_path, teacher, tokenizer, data, cache=None, **kw):
    args = DistillConfig(
        output_dir=str(tmp_path / "out"), report_to="none", per_device_train_batch_size=16,
        per_device_eval_batch_size=32, learning_rate=1e-3, logging_steps=1, save_strategy="no", seed=0,
        disable_tqdm=True, teacher_cache=str(cache) if cache else None, **kw,
    )  # fmt: skip
    torch.manual_seed(0)
    student = tiny_bert(layers=1, hidden=16, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    return DistillTrainer(model=student, teacher=teacher, args=args, train_dataset=data, processing_class=tokenizer)


def test_epochs_read_the_cache_instead_of_calling_the_teacher(tmp_path, tokenizer, trained_teacher):
    data = rule_dataset(tokenizer, 96, seed=20)
    calls = _count_calls(trained_teacher)
    trainer = _trainer(tmp_path, trained_teacher, tokenizer, data, tmp_path / "cache", num_train_epochs=2)
    assert len(calls) == 3  # the cache was computed once: 96 rows in batches of 32
    trainer.train()
    assert len(calls) == 3 and trainer.state.global_step == 12  # two epochs, no teacher call
    manifest = json.loads((tmp_path / "cache" / MANIFEST).read_text())
    assert manifest["num_rows"] == 96 and manifest["dataset_fingerprint"] == data._fingerprint
    # a later run with the same data and teacher reads it too
    _trainer(tmp_path, trained_teacher, tokenizer, data, tmp_path / "cache").train()
    assert len(calls) == 3


def test_the_cache_gives_the_same_losses_as_the_live_teacher(tmp_path, tokenizer, trained_teacher):
    data = rule_dataset(tokenizer, 64, seed=21)
    live = _trainer(tmp_path / "live", trained_teacher, tokenizer, data, max_steps=8)
    live.train()
    cached = _trainer(tmp_path / "cached", trained_teacher, tokenizer, data, tmp_path / "cache", max_steps=8)
    cached.train()
    for name in ("loss", "loss_kd", "loss_ce"):
        a = [e[name] for e in live.state.log_history if name in e and "train_runtime" not in e]
        b = [e[name] for e in cached.state.log_history if name in e and "train_runtime" not in e]
        assert len(a) == len(b) == 8
        # fp32; the cache was computed on differently padded batches, which moves logits by ~1e-7
        assert b == pytest.approx(a, rel=1e-4, abs=1e-6), name


def test_a_changed_dataset_or_teacher_is_refused(tmp_path, tokenizer, trained_teacher):
    data = rule_dataset(tokenizer, 48, seed=22)
    _trainer(tmp_path, trained_teacher, tokenizer, data, tmp_path / "cache")
    with pytest.raises(ValueError, match="computed for another dataset_fingerprint, num_rows"):
        _trainer(tmp_path, trained_teacher, tokenizer, rule_dataset(tokenizer, 40, seed=23), tmp_path / "cache")
    other = BertForSequenceClassification(trained_teacher.config)
    other.load_state_dict(trained_teacher.state_dict())
    with torch.no_grad():
        other.classifier.bias.add_(0.1)
    with pytest.raises(ValueError, match="computed for another teacher.*new folder, or delete"):
        _trainer(tmp_path, other, tokenizer, data, tmp_path / "cache")


def test_a_cache_interrupted_half_way_is_recomputed(tmp_path, tokenizer, trained_teacher, monkeypatch):
    import distillkit.cache as cache_module

    data = rule_dataset(tokenizer, 96, seed=24)
    writes = []
    original = cache_module._write_shard

    def crash_after_first(directory, index, logits):
        original(directory, index, logits)
        writes.append(index)
        raise KeyboardInterrupt("killed while writing the cache")

    monkeypatch.setattr(cache_module, "_write_shard", crash_after_first)
    with pytest.raises(KeyboardInterrupt):
        cache_module.load_or_build(str(tmp_path / "cache"), lambda b: trained_teacher(**b), trained_teacher,
                                   tokenizer, data, _trainer(tmp_path, trained_teacher, tokenizer, data).data_collator,
                                   batch_size=32, shard_size=32)  # fmt: skip
    assert writes == [0] and not (tmp_path / "cache" / MANIFEST).exists()  # one shard, no manifest
    monkeypatch.setattr(cache_module, "_write_shard", original)
    calls = _count_calls(trained_teacher)
    trainer = _trainer(tmp_path, trained_teacher, tokenizer, data, tmp_path / "cache")
    assert len(calls) == 3  # recomputed whole, not taken as complete
    with torch.no_grad():
        batch = trainer.data_collator([data[i] for i in range(96)])
        batch.pop("labels")
        expected = trained_teacher(**batch).logits
    torch.testing.assert_close(trainer._cached_logits, expected, atol=1e-5, rtol=1e-4)


def test_the_cache_refuses_losses_that_need_hidden_states(tmp_path, tokenizer, trained_teacher):
    with pytest.raises(ValueError, match="holds the teacher's logits only.*'hidden'"):
        _trainer(tmp_path, trained_teacher, tokenizer, rule_dataset(tokenizer, 16, seed=25), tmp_path / "c",
                 hidden_weight=1.0)  # fmt: skip
