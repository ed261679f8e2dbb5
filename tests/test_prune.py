"""Students cut from the teacher (distillkit.students.prune)."""

import subprocess
import sys

import pytest
import torch
from transformers import DataCollatorWithPadding, MPNetConfig, MPNetForSequenceClassification

from distillkit.students.prune import PruneShape, measure_importance, parameter_count, plan, prune
from distillkit.tasks import get_task_type

from .conftest import rule_dataset, tiny_bert


def _mpnet(seed=0):
    torch.manual_seed(seed)
    config = MPNetConfig(vocab_size=64, hidden_size=32, num_hidden_layers=3, num_attention_heads=4,
                         intermediate_size=48, max_position_embeddings=66, num_labels=2)  # fmt: skip
    return MPNetForSequenceClassification(config).eval()


def _bert(seed=0):
    return tiny_bert(layers=3, hidden=32, heads=4, seed=seed).eval()


def _batches(tokenizer, n=64, size=16):
    data = rule_dataset(tokenizer, n, seed=3)
    collate = DataCollatorWithPadding(tokenizer)
    rows = [{k: v for k, v in r.items() if k in ("input_ids", "attention_mask", "labels")} for r in data]
    return [collate(rows[i : i + size]) for i in range(0, n, size)]


def _full(model):
    c = model.config
    return PruneShape(c.num_hidden_layers, c.num_attention_heads, c.hidden_size, c.intermediate_size)


def _inputs(tokenizer, vocab=None):
    batch = _batches(tokenizer, 16, 16)[0]
    if vocab is not None:
        batch["input_ids"] = batch["input_ids"] % vocab
    return {k: batch[k] for k in ("input_ids", "attention_mask")}


@pytest.mark.parametrize("make", [_bert, _mpnet])
def test_pruning_to_the_full_size_gives_the_teachers_logits(make, tokenizer):
    teacher = make()
    inputs = _inputs(tokenizer, teacher.config.vocab_size)
    scores = measure_importance(teacher, _batches(tokenizer, 32, 16))
    student = prune(teacher, _full(teacher), scores).eval()
    with torch.no_grad():
        torch.testing.assert_close(student(**inputs).logits, teacher(**inputs).logits, atol=1e-5, rtol=0)


def _plant(teacher, layer=1, head=2, neuron_layer=0, neuron=5):
    """Zero the outputs of one whole layer, one head of another layer and one FFN neuron of another."""
    dh = teacher.config.hidden_size // teacher.config.num_attention_heads
    layers = teacher.base_model.encoder.layer
    bert = hasattr(layers[0].attention, "self")
    o = (lambda lay: lay.attention.output.dense) if bert else (lambda lay: lay.attention.attn.o)
    with torch.no_grad():
        for module in (o(layers[layer]), layers[layer].output.dense):
            module.weight.zero_()
            module.bias.zero_()
        o(layers[2]).weight[:, head * dh : (head + 1) * dh] = 0
        layers[neuron_layer].output.dense.weight[:, neuron] = 0


@pytest.mark.parametrize("make", [_bert, _mpnet])
def test_planted_useless_units_are_cut_first(make, tokenizer):
    teacher = make()
    _plant(teacher)
    scores = measure_importance(teacher, _batches(tokenizer))
    assert scores.layers[1] == 0 and scores.layers[0] > 0 and scores.layers[2] > 0
    assert scores.heads[2, 2] == 0 and (scores.heads[2, [0, 1, 3]] > 0).all()
    assert scores.neurons[0, 5] == 0 and (scores.neurons[0] > 0).sum() == teacher.config.intermediate_size - 1
    c = teacher.config
    target = PruneShape(2, c.num_attention_heads - 1, c.hidden_size - 8, c.intermediate_size - 1)
    keep = plan(teacher, target, scores, layers_by="importance")
    assert keep.layers == [0, 2]
    assert plan(teacher, target, scores).layers == [0, 2]  # spread (the default): the first and the last
    assert 5 not in keep.neurons[0].tolist() and len(keep.neurons[0]) == c.intermediate_size - 1
    if make is _bert:  # per layer: the zeroed head goes in layer 3 only
        assert keep.heads[1] == [0, 1, 3]
    else:  # MPNet: one head set for every layer (shared relative-position bias)
        assert keep.heads[0] == keep.heads[1] and len(keep.heads[0]) == 3


@pytest.mark.parametrize("make,kind", [(_bert, "bert"), (_mpnet, "mpnet")])
def test_the_parameter_count_has_a_closed_form(make, kind, tokenizer):
    teacher = make()
    shape = PruneShape(2, 2, 16, 24)
    student = prune(teacher, shape, measure_importance(teacher, _batches(tokenizer, 16, 16)))
    assert student.num_parameters() == parameter_count(
        teacher.config, shape, get_task_type("sequence-classification"), kind
    )
    assert (student.config.num_hidden_layers, student.config.hidden_size) == (2, 16)
    assert student.config.hidden_size // student.config.num_attention_heads == 8  # 2 heads of 8: the teacher's width


def test_narrower_heads_scale_the_queries(tokenizer):
    teacher = _bert()  # 4 heads of 8
    student = prune(teacher, PruneShape(3, 4, 8, 64))  # 4 heads of 2: each head keeps 2 of its 8 dims
    t_q = teacher.bert.encoder.layer[0].attention.self.query.weight
    s_q = student.bert.encoder.layer[0].attention.self.query.weight
    # no scores: the first units; query rows 0, 1 of head 0, columns = the first 8 hidden dims, times sqrt(8 / 2)
    torch.testing.assert_close(s_q[:2], t_q[:2, :8] * 2.0)
    assert (
        student.bert.encoder.layer[0]
        .attention.self.key.weight[:2]
        .equal(teacher.bert.encoder.layer[0].attention.self.key.weight[:2, :8])
    )


@pytest.mark.parametrize("make", [_bert, _mpnet])
def test_a_pruned_student_reloads_without_distillkit(make, tmp_path, tokenizer):
    teacher = make()
    student = prune(teacher, PruneShape(2, 2, 16, 24), measure_importance(teacher, _batches(tokenizer, 16, 16))).eval()
    student.save_pretrained(tmp_path)
    inputs = _inputs(tokenizer, teacher.config.vocab_size)
    torch.save(inputs, tmp_path / "inputs.pt")
    with torch.no_grad():
        expected = student(**inputs).logits
    code = (
        "import sys, torch; sys.modules['distillkit'] = None\n"  # any import of distillkit fails
        "from transformers import AutoModelForSequenceClassification as A\n"
        f"m = A.from_pretrained({str(tmp_path)!r}).eval(); x = torch.load({str(tmp_path / 'inputs.pt')!r})\n"
        f"torch.save(m(**x).logits.detach(), {str(tmp_path / 'out.pt')!r})\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    torch.testing.assert_close(torch.load(tmp_path / "out.pt"), expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    "shape,match",
    [
        (PruneShape(4, 4, 32, 64), "num_layers 4 must be between 1 and the teacher's 3"),
        (PruneShape(2, 5, 30, 64), "num_heads 5 must be between 1"),
        (PruneShape(2, 2, 24, 64), "does not fit --hidden_size 24"),  # heads of 12 > the teacher's 8
        (PruneShape(2, 3, 16, 64), "does not fit --hidden_size 16"),  # 16 / 3 is not whole
        (PruneShape(2, 2, 16, 65), "intermediate_size 65"),
    ],
)
def test_targets_that_do_not_fit_the_teacher_are_refused(shape, match):
    with pytest.raises(ValueError, match=match):
        prune(_bert(), shape)


def test_an_architecture_without_the_known_layout_is_refused():
    from transformers import DistilBertConfig, DistilBertForSequenceClassification

    model = DistilBertForSequenceClassification(DistilBertConfig(vocab_size=50, dim=32, n_layers=1, n_heads=2,
                                                                 hidden_dim=64))  # fmt: skip
    with pytest.raises(ValueError, match="cannot prune a DistilBertForSequenceClassification"):
        prune(model, PruneShape(1, 1, 16, 32))


def test_the_command_line_cuts_the_fine_tuned_teacher_and_reports_it(tmp_path, trained_teacher_dir):
    import json
    from pathlib import Path

    from .conftest import write_tsv

    train = write_tsv(tmp_path / "train.tsv", 96, 4)
    out = tmp_path / "out"
    script = Path(__file__).resolve().parents[1] / "scripts" / "distill.py"
    flags = ["--teacher", str(trained_teacher_dir), "--student", "pruned", "--num_layers", "1", "--hidden_size", "16",
             "--num_heads", "2", "--intermediate_size", "32", "--prune_samples", "48", "--train_file", str(train),
             "--validation_file", str(train), "--output_dir", str(out), "--max_steps", "3", "--report_to", "none",
             "--disable_tqdm", "true"]  # fmt: skip
    result = subprocess.run([sys.executable, str(script), *flags], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((out / "prune_report.json").read_text())
    assert report["samples"] == 48 and len(report["layers_kept"]) == 1 and len(report["hidden_dims_kept"]) == 16
    assert report["student"]["parameters"] < report["teacher"]["parameters"]
    # each dimension cut alone, on the validation data (the teacher keeps its 2 heads of 16 when cut to width 16)
    assert set(report["pruned_alone"]) == {"num_layers", "hidden_size", "intermediate_size"}
    assert all(0 <= s["accuracy"] <= 1 for s in report["pruned_alone"].values())
    assert report["teacher_score"]["accuracy"] > 0.8  # the trained teacher on its own rule
    config = json.loads((out / "config.json").read_text())
    assert (config["num_hidden_layers"], config["hidden_size"], config["intermediate_size"]) == (1, 16, 32)
    assert config["architectures"] == ["BertForSequenceClassification"]
    assert "pruned from the teacher" in (out / "README.md").read_text()


def test_spread_layers_keep_the_last_layer_whatever_its_score(tokenizer):
    teacher = _bert()
    _plant(teacher, layer=2, head=0)  # the last layer's branches zeroed: its first-order score is 0
    scores = measure_importance(teacher, _batches(tokenizer))
    shape = PruneShape(2, 4, 32, 64)
    assert plan(teacher, shape, scores, layers_by="importance").layers == [0, 1]
    assert plan(teacher, shape, scores).layers == [0, 2]
    with pytest.raises(ValueError, match="prune_layers must be one of"):
        plan(teacher, shape, scores, layers_by="best")
