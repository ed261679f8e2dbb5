import pytest
import torch

from distillkit import DistillConfig, DistillTrainer, Teacher

from .conftest import tiny_bert


def _batch():
    ids = torch.tensor([[2, 5, 6, 7, 3], [2, 8, 3, 0, 0]])
    return {"input_ids": ids, "attention_mask": (ids != 0).long(), "labels": torch.tensor([0, 1])}


def test_teacher_is_frozen_in_eval_mode_and_computes_no_loss():
    model = tiny_bert().train()
    teacher = Teacher(model)
    assert not model.training
    assert not any(p.requires_grad for p in model.parameters())
    out = teacher(_batch())
    assert not out.logits.requires_grad
    assert out.loss is None  # labels are not forwarded
    assert out.hidden_states is None and out.attentions is None
    # deterministic: dropout is off
    torch.testing.assert_close(teacher(_batch()).logits, out.logits)


def test_teacher_returns_states_and_maps_only_when_asked():
    model = tiny_bert(layers=3)
    assert model.config._attn_implementation != "eager"
    Teacher(model, output_hidden_states=True)
    assert model.config._attn_implementation != "eager"  # hidden states alone need no switch
    out = Teacher(model, output_hidden_states=True)(_batch())
    assert len(out.hidden_states) == 4 and out.attentions is None
    out = Teacher(model, output_attentions=True)(_batch())
    assert model.config._attn_implementation == "eager"
    assert len(out.attentions) == 3 and out.attentions[0].shape == (2, 2, 5, 5)
    torch.testing.assert_close(out.attentions[0].sum(-1), torch.ones(2, 2, 5))


@pytest.mark.parametrize("dtype,torch_dtype", [("bfloat16", torch.bfloat16), ("float16", torch.float16)])
def test_teacher_in_low_precision(dtype, torch_dtype):
    model = tiny_bert()
    reference = Teacher(tiny_bert())(_batch()).logits
    teacher = Teacher(model, dtype=dtype)
    assert all(p.dtype == torch_dtype for p in model.parameters())
    logits = teacher(_batch()).logits
    assert logits.dtype == torch_dtype
    torch.testing.assert_close(logits.float(), reference, atol=0.05, rtol=0.05)


def test_trainer_asks_the_teacher_only_for_what_the_losses_need(tmp_path):
    def trainer(**kw):
        args = DistillConfig(output_dir=str(tmp_path), report_to="none", **kw)
        return DistillTrainer(model=tiny_bert(layers=1, hidden=16), teacher=tiny_bert(), args=args)

    plain = trainer()
    assert not plain.teacher.output_hidden_states and not plain.teacher.output_attentions
    assert plain.teacher.config._attn_implementation != "eager"
    hidden = trainer(hidden_weight=1.0)
    assert hidden.teacher.output_hidden_states and not hidden.teacher.output_attentions
    attn = trainer(attention_weight=1.0)
    assert attn.teacher.output_attentions and attn.teacher.config._attn_implementation == "eager"
    assert attn.model.config._attn_implementation == "eager"
    low = trainer(teacher_dtype="bfloat16")
    assert next(low.teacher.model.parameters()).dtype == torch.bfloat16
    assert next(low.model.parameters()).dtype == torch.float32  # the student keeps its own precision


@pytest.mark.parametrize("fast", [False, True])
def test_a_bf16_teacher_on_a_cpu_that_emulates_bf16_is_warned_about(monkeypatch, caplog, fast):
    from distillkit import frozen_teacher

    monkeypatch.setattr(frozen_teacher, "cpu_has_fast_bf16", lambda: fast)
    teacher = Teacher(tiny_bert(), dtype="bfloat16")
    assert next(teacher.model.parameters()).dtype == torch.bfloat16  # the user's choice is kept, with a reason
    assert ("emulated" in caplog.text) is not fast
