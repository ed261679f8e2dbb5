"""MiniLM self-attention relations: the maths, the hooks (SDPA kept), and a short run through the trainer."""

import pytest
import torch
from transformers import AlbertConfig, AlbertForSequenceClassification, MPNetConfig, MPNetForSequenceClassification

from distillkit import DistillConfig, DistillTrainer, build_student
from distillkit.losses.relations import QKVCapture, find_qkv, minilm_relation_loss, relation_kl

from .conftest import VOCAB, rule_dataset, tiny_bert


def _qkv(model, batch, layer=-1):
    capture = QKVCapture(model, layer, model.config.num_hidden_layers)
    capture.start()
    with torch.no_grad():
        model(**batch)
    out = capture.take()
    with torch.no_grad():  # outside start() / take() nothing is kept
        model(**batch)
    assert capture.calls == [[], [], []] and capture.take() is None
    capture.remove()
    return out


def test_relations_of_the_same_states_are_zero_and_of_others_positive():
    torch.manual_seed(0)
    x, y = torch.randn(2, 6, 16), torch.randn(2, 6, 16)
    assert relation_kl(x, x, heads=4).abs() < 1e-6
    assert relation_kl(y, x, heads=4) > 0.01
    wide = torch.randn(2, 6, 48)  # other widths: only the seq x seq relations are compared
    assert torch.isfinite(relation_kl(x, wide, heads=4)) and relation_kl(x, wide, heads=4) > 0
    with pytest.raises(ValueError, match="minilm_heads=5 must divide the width 16"):
        relation_kl(x, x, heads=5)


def test_padding_is_masked_and_two_paddings_agree():
    torch.manual_seed(1)
    s, t = torch.randn(1, 4, 8), torch.randn(1, 4, 8)
    mask = torch.ones(1, 4, dtype=torch.long)
    base = relation_kl(s, t, 2, mask)
    for pad in (2, 5):  # the same rows with more padding, filled with junk
        s_pad = torch.cat([s, 1e3 * torch.randn(1, pad, 8)], dim=1)
        t_pad = torch.cat([t, -1e3 * torch.randn(1, pad, 8)], dim=1)
        m_pad = torch.cat([mask, torch.zeros(1, pad, dtype=torch.long)], dim=1)
        value = relation_kl(s_pad, t_pad, 2, m_pad)
        assert torch.isfinite(value)
        torch.testing.assert_close(value, base)


def test_a_teacher_copy_matched_layer_to_layer_has_zero_relation_loss(tokenizer):
    teacher = tiny_bert(layers=2, hidden=32, heads=2).eval()
    student = build_student("teacher:2", teacher).eval()  # all of its layers, copied
    batch = tokenizer(["w1 w2 w3", "w4 w5"], padding=True, return_tensors="pt")
    loss = minilm_relation_loss(_qkv(student, batch), _qkv(teacher, batch), heads=2, mask=batch["attention_mask"])
    assert loss.abs() < 1e-5
    other = tiny_bert(layers=2, hidden=32, heads=2, seed=5).eval()
    different = minilm_relation_loss(_qkv(other, batch), _qkv(teacher, batch), 2, batch["attention_mask"])
    assert different > 1e-4 and different > 100 * loss.abs()  # random small weights: near-uniform relations


def test_a_4_head_student_learns_from_a_12_head_teacher_of_another_width_and_both_keep_sdpa(tokenizer):
    teacher = tiny_bert(layers=3, hidden=48, heads=12, attn_implementation="sdpa")
    student = tiny_bert(layers=1, hidden=16, heads=4, attn_implementation="sdpa")
    data = rule_dataset(tokenizer, 128, 3)
    args = DistillConfig(output_dir="/tmp/unused-minilm", minilm_weight=1.0, alpha=0.5, max_steps=12,
                         per_device_train_batch_size=16, learning_rate=3e-3, report_to="none", logging_steps=1,
                         save_strategy="no", use_cpu=True, disable_tqdm=True)  # fmt: skip
    trainer = DistillTrainer(model=student, teacher=teacher, args=args, train_dataset=data, processing_class=tokenizer)
    assert args.minilm_heads == 4  # the student's heads, which divide 48 and 16
    trainer.train()
    history = [e["loss_minilm"] for e in trainer.state.log_history if "loss_minilm" in e]
    assert len(history) == 12 and history[-1] < history[0]
    assert student.config._attn_implementation == "sdpa" and teacher.config._attn_implementation == "sdpa"


def test_mpnet_and_albert_have_their_projections_found(tokenizer):
    mpnet = MPNetForSequenceClassification(MPNetConfig(vocab_size=len(VOCAB), hidden_size=32, num_hidden_layers=2,
                                                       num_attention_heads=2, intermediate_size=64))  # fmt: skip
    albert = AlbertForSequenceClassification(AlbertConfig(vocab_size=len(VOCAB), hidden_size=32, embedding_size=16,
                                                          num_hidden_layers=3, num_attention_heads=2,
                                                          intermediate_size=64))  # fmt: skip
    assert len(find_qkv(mpnet)) == 2 and len(find_qkv(albert)) == 1  # one block, shared by 3 layers
    batch = tokenizer(["w1 w2 w3"], return_tensors="pt")
    q, k, v = _qkv(albert, {k: batch[k] for k in ("input_ids", "attention_mask")})
    assert q.shape == (1, 5, 32)
    last = _qkv(albert, {k: batch[k] for k in ("input_ids", "attention_mask")}, layer=3)
    first = _qkv(albert, {k: batch[k] for k in ("input_ids", "attention_mask")}, layer=1)
    torch.testing.assert_close(last[0], q)  # -1 is the third call of the shared block
    assert not torch.allclose(first[0], q)
    mq, _, _ = _qkv(mpnet, {k: batch[k] for k in ("input_ids", "attention_mask")})
    assert mq.shape == (1, 5, 32)


def test_a_model_without_projections_is_refused():
    with pytest.raises(ValueError, match="has none under the known names"):
        find_qkv(torch.nn.Sequential(torch.nn.Linear(4, 4)))
