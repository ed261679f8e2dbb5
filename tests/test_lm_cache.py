"""The top-k teacher cache of a causal LM (lm_cache.py): the coarsened divergences against the full ones, what the
cache keeps (bytes a token, KL to the full distribution), a build that is refused for other settings and resumes
where it stopped, and a trainer reading it: at k = vocabulary the same loss as the live teacher."""

from __future__ import annotations

import json
import os

import pytest
import torch
from datasets import Dataset, DatasetDict

from distillkit import DistillConfig, DistillTrainer, build_student, get_task_type
from distillkit.cache import INDEX_COLUMN
from distillkit.lm_cache import cached_tail_kl, load_or_build_topk, topk_divergence, topk_entries
from distillkit.losses.lm import token_divergence
from distillkit.tasks.causal_lm import LMCollator

from .lm_fixtures import counting_text, lm_tokenizer, tiny_llama, train_lm


def _logits(n=6, v=20, seed=0):
    g = torch.Generator().manual_seed(seed)
    return 3 * torch.randn(n, v, generator=g), 3 * torch.randn(n, v, generator=g)


@pytest.mark.parametrize("name", ["kd", "reverse_kl", "jsd"])
def test_at_k_equal_to_the_vocabulary_the_cached_divergence_is_the_full_one(name):
    s, t = _logits()
    ids, logp, rest = topk_entries(t, 20, 2.0)
    assert torch.allclose(rest, torch.zeros_like(rest), atol=1e-5)
    cached = topk_divergence(name, s, ids, logp, rest, 2.0, 0.3)
    assert torch.allclose(cached, token_divergence(name, s, t, 2.0, 0.3), atol=1e-4)


def test_with_fewer_entries_the_kl_is_that_of_the_coarsened_distributions_and_never_above_the_full_one():
    s, t = _logits(seed=1)
    ids, logp, rest = topk_entries(t, 5, 1.0)
    cached = topk_divergence("kd", s, ids, logp, rest, 1.0)
    assert bool((cached <= token_divergence("kd", s, t, 1.0) + 1e-5).all())
    # written out: the k ids one by one plus one bucket, for both models
    p, q = t.softmax(-1), s.softmax(-1)
    for row in range(len(t)):
        keep = ids[row].tolist()
        other = [i for i in range(20) if i not in keep]
        pk, qk = p[row, keep], q[row, keep]
        pr, qr = p[row, other].sum(), q[row, other].sum()
        expected = (pk * (pk / qk).log()).sum() + pr * (pr / qr).log()
        assert cached[row].item() == pytest.approx(expected.item(), abs=1e-4)


def test_the_tail_kl_is_what_the_cache_loses():
    _, t = _logits(seed=2)
    assert torch.allclose(cached_tail_kl(t, 20), torch.zeros(len(t)), atol=1e-5)
    lost = cached_tail_kl(t, 4)
    p = t.log_softmax(-1)
    ids = p.topk(4, -1).indices
    for row in range(len(t)):
        other = [i for i in range(20) if i not in ids[row].tolist()]
        rest = p[row, other].exp().sum()
        expected = (p[row, other].exp() * (p[row, other] - (rest / 16).log())).sum()
        assert lost[row].item() == pytest.approx(expected.item(), abs=1e-5)
    assert bool((lost > 0).all()) and bool((cached_tail_kl(t, 8) <= lost + 1e-6).all())


@pytest.fixture(scope="module")
def lm():
    tokenizer = lm_tokenizer()
    teacher = train_lm(tiny_llama(), tokenizer, counting_text(200, 0), steps=60)
    task = get_task_type("causal-lm")
    task.block_size = 16
    raw = DatasetDict(train=Dataset.from_dict({"text": counting_text(100, 1)}))
    return tokenizer, teacher, task.encode(raw, tokenizer, teacher.config, 16, False)["train"]


def test_the_cache_keeps_130_bytes_a_token_at_k_32_and_every_counted_token(lm, tmp_path):
    tokenizer, teacher, data = lm
    cache = load_or_build_topk(str(tmp_path / "c"), teacher, tokenizer, data, LMCollator(tokenizer), k=32,
                               shard_rows=8)  # fmt: skip
    counted = sum(sum(1 for y in labels[1:] if y != -100) for labels in data["labels"])
    assert len(cache) == len(data) and len(cache.rest) == counted
    assert cache.ids.dtype == torch.uint16 and cache.bytes_per_token() == 32 * 2 + 32 * 2 + 2
    again = load_or_build_topk(str(tmp_path / "c"), teacher, tokenizer, data, LMCollator(tokenizer), k=32,
                               shard_rows=8)  # fmt: skip
    assert torch.equal(again.ids, cache.ids) and torch.equal(again.logp, cache.logp)
    with pytest.raises(ValueError, match="computed for another top_k"):
        load_or_build_topk(str(tmp_path / "c"), teacher, tokenizer, data, LMCollator(tokenizer), k=8, shard_rows=8)


def test_a_stopped_build_resumes_at_its_first_missing_shard(lm, tmp_path, monkeypatch):
    import distillkit.lm_cache as lm_cache

    tokenizer, teacher, data = lm
    folder = tmp_path / "c"
    full = load_or_build_topk(str(folder), teacher, tokenizer, data, LMCollator(tokenizer), k=4, shard_rows=8)
    shards = sorted(p for p in os.listdir(folder) if p.startswith("topk-"))
    assert len(shards) > 1
    # as if stopped before the last shard was written: its identity in building.json, no manifest
    manifest = json.loads((folder / "manifest.json").read_text())
    del manifest["shards"]
    (folder / "building.json").write_text(json.dumps(manifest))
    os.remove(folder / "manifest.json")
    os.remove(folder / shards[-1])
    computed = []
    original = lm_cache.topk_entries
    monkeypatch.setattr(lm_cache, "topk_entries", lambda *a: computed.append(1) or original(*a))
    again = load_or_build_topk(str(folder), teacher, tokenizer, data, LMCollator(tokenizer), k=4, shard_rows=8)
    assert torch.equal(again.ids, full.ids) and torch.equal(again.rest, full.rest)
    last_rows = len(data) - 8 * (len(shards) - 1)
    assert len(computed) == -(-last_rows // 8)  # the last shard's batches only (one chunk each)


def test_the_trainer_reads_the_cache_and_at_full_k_gets_the_live_loss(lm, tmp_path):
    tokenizer, teacher, data = lm
    vocab = teacher.config.vocab_size
    student = build_student("teacher:1", teacher, task_type="causal-lm")
    common = dict(alpha=0.8, temperature=2.0, report_to="none", use_cpu=True, per_device_eval_batch_size=4)
    live = DistillTrainer(model=student, teacher=teacher, args=DistillConfig(output_dir=str(tmp_path / "a"), **common),
                          train_dataset=data, processing_class=tokenizer, task_type="causal-lm")  # fmt: skip
    cached = DistillTrainer(model=student, teacher=teacher, train_dataset=data, processing_class=tokenizer,
                            args=DistillConfig(output_dir=str(tmp_path / "b"), teacher_cache=str(tmp_path / "cache"),
                                               cache_top_k=vocab, **common), task_type="causal-lm")  # fmt: skip
    rows = [dict(cached.train_dataset[i]) for i in (3, 0, 7)]
    batch = cached.data_collator(rows)
    assert INDEX_COLUMN in batch
    with torch.no_grad():
        from_cache = cached.compute_loss(student, batch)
        from_teacher = live.compute_loss(student, {k: v for k, v in batch.items() if k != INDEX_COLUMN})
    assert from_cache.item() == pytest.approx(from_teacher.item(), abs=1e-3)  # fp16 log-probabilities in the cache
