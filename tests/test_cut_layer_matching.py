"""Intermediate-layer matching for students cut from the teacher: the layer map follows the cut, heads imitate the
heads they were cut from, hidden projections start as the kept channels (issue 30)."""

import pytest
import torch
from datasets import Dataset

from distillkit import DistillConfig, DistillTrainer
from distillkit.losses import HiddenProjection, attention_loss, build_layer_map
from distillkit.losses.layer_map import CutMap
from distillkit.students.prune import PruneShape, measure_importance, prune

from .conftest import rule_dataset, tiny_bert
from .test_prune import _batches


def _teacher(seed=0):
    return tiny_bert(layers=4, hidden=32, heads=4, seed=seed).eval()


def _args(tmp_path, **kw):
    defaults = dict(output_dir=str(tmp_path / "out"), max_steps=2, per_device_train_batch_size=16,
                    save_strategy="no", report_to="none", seed=0, alpha=1.0, disable_tqdm=True,
                    hidden_weight=1.0, attention_weight=1.0)  # fmt: skip
    return DistillConfig(**{**defaults, **kw})


def _terms(trainer):
    """Every loss term of the first batch, the student as cut (eval mode: no dropout)."""
    trainer.model.eval()
    batch = trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))
    student_inputs = {k: v for k, v in batch.items() if k != "labels"}
    with torch.no_grad():
        outputs = trainer.model(**student_inputs, output_hidden_states=True, output_attentions=True)
        _, terms = trainer.compute_distill_loss(outputs, trainer.teacher_forward(batch), batch)
    return {k: v.item() for k, v in terms.items()}


def _cut(teacher, tokenizer, **shape):
    c = teacher.config
    full = dict(num_layers=c.num_hidden_layers, num_heads=c.num_attention_heads, hidden_size=c.hidden_size,
                intermediate_size=c.intermediate_size)  # fmt: skip
    scores = measure_importance(teacher, _batches(tokenizer, 32, 16))
    return prune(teacher, PruneShape(**{**full, **shape}), scores)


def test_the_pruned_layer_map_pairs_each_kept_layer_with_its_source(tokenizer):
    teacher = _teacher()
    student = _cut(teacher, tokenizer, num_layers=2)  # spread layers: the first and the last (1 and 4)
    cut = student.distillkit_cut
    assert cut.layers == [1, 4]
    assert build_layer_map("pruned", 2, 4, cut) == [(1, 1), (2, 4)]
    assert build_layer_map("auto", 2, 4, cut) == [(1, 1), (2, 4)]  # the default for a cut student
    assert build_layer_map("auto", 2, 4) == [(1, 2), (2, 4)]  # any other student: uniform
    assert build_layer_map("uniform", 2, 4, cut) == [(1, 2), (2, 4)]  # asked for: uniform even for a cut one
    with pytest.raises(ValueError, match="was not cut from it"):
        build_layer_map("pruned", 2, 4)
    with pytest.raises(ValueError, match="do not fit"):
        build_layer_map("pruned", 2, 3, CutMap(layers=[1, 4], heads=[[0], [0]], hidden=[0]))


def test_cuts_of_cuts_trace_back_to_the_teacher():
    outer = CutMap(layers=[1, 3, 5, 6], heads=[[0, 2, 3], [1, 2, 3], [0, 1, 3], [0, 1, 2]], hidden=[0, 2, 4, 5, 7])
    inner = CutMap(layers=[2, 4], heads=[[0, 2], [1, 2]], hidden=[1, 3, 4])
    both = outer.then(inner)
    assert both.layers == [3, 6]
    assert both.heads == [[1, 3], [1, 2]]
    assert both.hidden == [2, 5, 7]
    # a head map only for the pairs that are (layer, its source)
    assert both.head_map([(1, 3), (2, 6)]) == [[1, 3], [1, 2]]
    assert both.head_map([(1, 2), (2, 6)]) == [None, [1, 2]]
    assert both.head_map([(1, 2), (2, 4)]) is None


def test_a_full_size_cut_has_hidden_and_attention_losses_of_zero_at_step_0(tmp_path, tokenizer):
    teacher = _teacher()
    student = _cut(teacher, tokenizer)
    trainer = DistillTrainer(model=student, teacher=teacher, args=_args(tmp_path),
                             train_dataset=rule_dataset(tokenizer, 32, seed=8), processing_class=tokenizer)  # fmt: skip
    assert trainer.layer_map == [(1, 1), (2, 2), (3, 3), (4, 4)]
    terms = _terms(trainer)
    assert set(terms) == {"kd", "hidden", "attention"}
    for name, value in terms.items():
        assert abs(value) < 1e-6, (name, value)


def test_a_full_size_cut_with_a_trimmed_vocabulary_starts_at_zero_when_the_teacher_reads_its_tokens(
    tmp_path, tokenizer
):
    from distillkit.data import tokenize_dataset
    from distillkit.students.vocab import trim_embeddings, trim_vocabulary, with_teacher_ids

    from .conftest import rule_sentences

    teacher = _teacher()
    texts, labels = rule_sentences(64, seed=8)
    trimmed = trim_vocabulary(tokenizer, texts, min_count=12)  # the rarer words are [UNK] for the student
    assert len(trimmed.kept_ids) < len(tokenizer)
    student = trim_embeddings(_cut(teacher, tokenizer), trimmed.kept_ids)
    raw = Dataset.from_dict({"sentence": texts, "label": labels})
    data = with_teacher_ids(tokenize_dataset(raw, trimmed.tokenizer, max_seq_length=32), trimmed.kept_ids)
    kw = dict(model=student, teacher=teacher, train_dataset=data, processing_class=trimmed.tokenizer,
              teacher_processing_class=tokenizer)  # fmt: skip
    trainer = DistillTrainer(args=_args(tmp_path), aligned_teacher_tokens=True, **kw)
    for name, value in _terms(trainer).items():  # the same function on the same tokens: every term 0
        assert abs(value) < 1e-6, (name, value)
    with pytest.raises(ValueError, match="different tokenizers"):  # unless it is told the positions match
        DistillTrainer(args=_args(tmp_path), **kw)


def test_cut_heads_imitate_the_heads_they_were_cut_from(tmp_path, tokenizer):
    teacher = _teacher()
    student = _cut(teacher, tokenizer, num_layers=2, hidden_size=16, num_heads=2)
    trainer = DistillTrainer(model=student, teacher=teacher, args=_args(tmp_path, hidden_weight=0.0),
                             train_dataset=rule_dataset(tokenizer, 32, seed=8), processing_class=tokenizer)  # fmt: skip
    assert trainer.layer_map == [(1, 1), (2, 4)]
    assert trainer.head_map == student.distillkit_cut.heads and all(len(h) == 2 for h in trainer.head_map)
    # the registered attention loss with that head map: a student whose maps are the teacher's heads it was cut
    # from has loss 0; paired as before (each side averaged over its heads), it does not
    torch.manual_seed(0)
    maps = [torch.softmax(torch.randn(3, 4, 6, 6) * 3, dim=-1) for _ in range(4)]  # the teacher's 4 layers
    heads = [[1, 3], [0, 2]]
    mine = [maps[0][:, heads[0]], maps[3][:, heads[1]]]
    from types import SimpleNamespace

    from distillkit.losses.registry import LossInputs, get_loss

    def loss(head_map):
        inputs = LossInputs(student_outputs=SimpleNamespace(attentions=mine),
                            teacher_outputs=SimpleNamespace(attentions=maps), labels=None,
                            attention_mask=torch.ones(3, 6), args=trainer.args, layer_map=[(1, 1), (2, 4)],
                            head_map=head_map)  # fmt: skip
        return get_loss("attention").fn(inputs).item()

    assert loss(heads) < 1e-6
    assert loss(None) > 1e-2
    assert loss([heads[0], None]) > 1e-2  # the second pair averaged: not its heads' maps
    with pytest.raises(ValueError, match="2 heads, but 3 teacher heads"):
        attention_loss(mine[0], maps[0], None, "kl", [0, 1, 2])


def test_hidden_projections_start_as_the_kept_channels(tmp_path, tokenizer):
    teacher = _teacher()
    student = _cut(teacher, tokenizer, hidden_size=16, num_heads=2)
    channels = student.distillkit_cut.hidden
    assert len(channels) == 16

    def projections(kind):
        args = _args(tmp_path, cut_projection=kind)
        data = rule_dataset(tokenizer, 32, seed=8)
        trainer = DistillTrainer(
            model=student, teacher=teacher, args=args, train_dataset=data, processing_class=tokenizer
        )
        return trainer.distill_modules["hidden"]

    states = torch.randn(2, 5, 16)
    for kind in ("selection", "fixed"):
        module = projections(kind)
        assert isinstance(module, HiddenProjection)
        for i in range(len(module.proj)):
            out = module(i, states)
            torch.testing.assert_close(out[..., channels], states)  # each channel back where it was cut from
            others = [c for c in range(32) if c not in channels]
            assert out[..., others].abs().max() == 0
            assert all(p.requires_grad == (kind == "selection") for p in module.proj[i].parameters())
    random = projections("random")
    assert not torch.allclose(random(0, states)[..., channels], states)  # the learned default start
    with pytest.raises(ValueError, match="cut_projection must be one of"):
        _args(tmp_path, cut_projection="identity")


def test_a_fixed_projection_is_not_trained(tmp_path, tokenizer):
    teacher = _teacher()
    student = _cut(teacher, tokenizer, hidden_size=16, num_heads=2)
    trainer = DistillTrainer(model=student, teacher=teacher, args=_args(tmp_path, cut_projection="fixed"),
                             train_dataset=rule_dataset(tokenizer, 64, seed=8), processing_class=tokenizer)  # fmt: skip
    before = {k: v.clone() for k, v in trainer.distill_modules.state_dict().items()}
    weights = student.bert.encoder.layer[0].output.dense.weight.clone()
    trainer.train()
    for name, value in trainer.distill_modules.state_dict().items():
        torch.testing.assert_close(value, before[name])
    assert not torch.equal(student.bert.encoder.layer[0].output.dense.weight, weights)  # the student did train


def test_the_step_0_split_puts_the_error_where_the_cut_left_it():
    """scripts/cut_layer_losses.py --projections: a student that is exactly the kept channels has no error in them;
    the dropped channels' mean square is what the selection leaves; a least-squares map recovers dropped channels
    that are linear in the kept ones."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "scripts" / "cut_layer_losses.py"
    spec = importlib.util.spec_from_file_location("cut_layer_losses", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    torch.manual_seed(0)
    kept = [0, 2, 5]
    y = torch.zeros(400, 6)
    y[:, kept] = torch.randn(400, 3)
    y[:, [1, 3, 4]] = y[:, kept] @ torch.randn(3, 3) + 0.5  # linear in the kept channels
    split = script.channel_split(y[:, kept].clone(), y, kept)
    assert split["kept_channels"] == 0.0
    assert split["dropped_channels"] == pytest.approx(float(y[:, [1, 3, 4]].pow(2).sum(-1).mean() / 6), rel=1e-4)
    assert split["mse_selection"] == pytest.approx(split["dropped_channels"], rel=1e-4)
    assert split["mse_least_squares"] < 1e-6 and split["dropped_channels"] > 0.1
    noisy = script.channel_split(y[:, kept] + 0.1 * torch.randn(400, 3), y, kept)
    assert noisy["kept_channels"] == pytest.approx(0.01 * 3 / 6, rel=0.2)  # the noise, over the teacher's width
