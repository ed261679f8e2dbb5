"""Students cut from a decoder LM (students/prune_lm.py): a full-size cut reproduces the teacher (Llama, Qwen2), a
cut of heads or neurons equals the teacher with those units silenced (so key-value groups stay consistent), planted
dead units score 0 and go first, layers by measured criteria, the closed-form parameter count, and a cut model that
reloads without distillkit and generates."""

from __future__ import annotations

import copy
import json
import math

import pytest
import torch

from distillkit.students.prune_lm import (
    LMPruneShape,
    _nll,
    bias_parts,
    full_shape,
    lm_parameter_count,
    measure_lm_importance,
    prune_lm,
)


def tiny_qwen2(seed: int = 0):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    config = Qwen2Config(vocab_size=40, hidden_size=32, num_hidden_layers=3, num_attention_heads=4,
                         num_key_value_heads=2, intermediate_size=64, max_position_embeddings=64,
                         tie_word_embeddings=False)  # fmt: skip
    return Qwen2ForCausalLM(config).eval()


def llama(layers: int = 3, seed: int = 0):
    """8 query heads of width 4 in 2 key-value groups, tied embeddings."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=28, hidden_size=32, num_hidden_layers=layers, num_attention_heads=8,
                         num_key_value_heads=2, intermediate_size=64, max_position_embeddings=64,
                         tie_word_embeddings=True)  # fmt: skip
    model = LlamaForCausalLM(config).eval()
    for p in model.parameters():  # random norms too: a cut that mixed channels up would show
        if p.dim() == 1:
            p.data.uniform_(0.5, 1.5)
    return model


def ids(seed: int = 1, batch: int = 3, length: int = 12, vocab: int = 28) -> torch.Tensor:
    return torch.randint(0, vocab, (batch, length), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("make", [llama, tiny_qwen2], ids=["llama", "qwen2"])
def test_a_full_size_cut_reproduces_the_teachers_logits(make):
    teacher = make()
    scores = measure_lm_importance(teacher, [ids()], layers_by="cosine")
    student = prune_lm(teacher, full_shape(teacher.config), scores).eval()
    x = ids(2)
    with torch.no_grad():
        assert torch.allclose(student(input_ids=x).logits, teacher(input_ids=x).logits, atol=1e-5)
    assert student.num_parameters() == teacher.num_parameters()


def _silenced(teacher, heads=None, neurons=None):
    """The teacher with query heads (layer -> heads) or MLP neurons (layer -> neurons) removed from its output."""
    model = copy.deepcopy(teacher)
    dh = model.config.hidden_size // model.config.num_attention_heads
    with torch.no_grad():
        for layer, hs in (heads or {}).items():
            for h in hs:
                model.model.layers[layer].self_attn.o_proj.weight[:, h * dh : (h + 1) * dh] = 0
        for layer, ns in (neurons or {}).items():
            model.model.layers[layer].mlp.down_proj.weight[:, ns] = 0
    return model


def test_cutting_query_heads_inside_groups_equals_silencing_them():
    teacher = llama()  # 8 query heads in 2 key-value groups of 4
    full = full_shape(teacher.config)
    shape = LMPruneShape(full.num_layers, full.hidden_size, 4, 2, full.intermediate_size)  # 2 heads per group
    scores = measure_lm_importance(teacher, [ids()], layers_by="spread")
    student = prune_lm(teacher, shape, scores).eval()
    keep = student.distillkit_prune_plan
    dropped = {j: [h for h in range(8) if h not in keep.heads[j]] for j in range(full.num_layers)}
    for j in range(full.num_layers):
        assert [h // 4 for h in keep.heads[j]] == [0, 0, 1, 1]  # student heads 0-1 read group 0, 2-3 group 1
    x = ids(3)
    with torch.no_grad():
        expected = _silenced(teacher, heads=dropped)(input_ids=x).logits
        assert torch.allclose(student(input_ids=x).logits, expected, atol=1e-5)


def test_a_whole_key_value_group_goes_with_its_query_heads():
    teacher = llama()
    full = full_shape(teacher.config)
    with torch.no_grad():  # group 0's values (its heads 0-3) nearly vanish in layer 1: the group scores lower there
        teacher.model.layers[1].self_attn.v_proj.weight[:4] *= 0.01
    scores = measure_lm_importance(teacher, [ids()], layers_by="spread")
    student = prune_lm(teacher, LMPruneShape(full.num_layers, full.hidden_size, 4, 1, 64), scores).eval()
    keep = student.distillkit_prune_plan
    assert keep.groups[1] == [1] and all(h // 4 == 1 for h in keep.heads[1])
    assert student.config.num_key_value_heads == 1 and student.model.layers[1].self_attn.k_proj.out_features == 4
    dropped = {i: [h for h in range(8) if h not in keep.heads[i]] for i in range(full.num_layers)}
    x = ids(4)
    with torch.no_grad():  # the kept query heads read the kept group's keys and values, as in the teacher
        assert torch.allclose(student(input_ids=x).logits, _silenced(teacher, heads=dropped)(input_ids=x).logits,
                              atol=1e-5)  # fmt: skip


def test_cutting_neurons_equals_silencing_them_and_planted_dead_units_score_zero_and_go_first():
    teacher = llama()
    full = full_shape(teacher.config)
    dead_neurons, dead_channels = [5, 17, 40], [3, 30]
    with torch.no_grad():
        for layer in teacher.model.layers:
            layer.mlp.up_proj.weight[dead_neurons] = 0  # act(gate) * 0: the neuron never fires
            layer.input_layernorm.weight[dead_channels] = 0
            layer.post_attention_layernorm.weight[dead_channels] = 0
        teacher.model.norm.weight[dead_channels] = 0  # every norm's output is 0 there
    scores = measure_lm_importance(teacher, [ids(), ids(5)], layers_by="spread")
    assert scores.samples == 6
    assert torch.all(scores.neurons[:, dead_neurons] == 0) and torch.all(scores.neurons.sum(0)[[0, 1, 2]] > 0)
    assert torch.all(scores.channels[dead_channels] == 0) and (scores.channels > 0).sum() == 32 - 2
    shape = LMPruneShape(full.num_layers, 24, 8, 2, 61)
    student = prune_lm(teacher, shape, scores).eval()
    keep = student.distillkit_prune_plan
    assert not set(dead_channels) & set(keep.channels.tolist())
    assert all(not set(dead_neurons) & set(n.tolist()) for n in keep.neurons)
    full_width = prune_lm(teacher, LMPruneShape(full.num_layers, 32, 8, 2, 61), scores).eval()
    x = ids(6)
    with torch.no_grad():  # only dead neurons went: the same function as the teacher
        assert torch.allclose(full_width(input_ids=x).logits, teacher(input_ids=x).logits, atol=1e-5)


def test_a_head_with_zero_values_scores_zero():
    teacher = llama()
    with torch.no_grad():  # group 1's values are zero: its four query heads attend to nothing
        for layer in teacher.model.layers:
            layer.self_attn.v_proj.weight[4:8] = 0  # heads of width 4
    scores = measure_lm_importance(teacher, [ids()], layers_by="spread")
    assert torch.all(scores.heads[:, 4:] == 0) and torch.all(scores.heads[:, :4] > 0)


def _idle_layer_teacher():
    teacher = llama(layers=4)
    with torch.no_grad():  # layer 2 adds nothing to the residual stream: input = output
        teacher.model.layers[2].self_attn.o_proj.weight.zero_()
        teacher.model.layers[2].mlp.down_proj.weight.zero_()
    return teacher


def test_by_cosine_a_layer_that_does_nothing_is_cut_first():
    teacher = _idle_layer_teacher()
    scores = measure_lm_importance(teacher, [ids()], layers_by="cosine")
    assert scores.layers[2] == pytest.approx(0, abs=1e-6) and torch.all(scores.layers[[0, 1, 3]] > 1e-3)
    student = prune_lm(teacher, LMPruneShape(3, 32, 8, 2, 64), scores).eval()
    assert student.distillkit_prune_plan.layers == [0, 1, 3]
    x = ids(7)
    with torch.no_grad():
        assert torch.allclose(student(input_ids=x).logits, teacher(input_ids=x).logits, atol=1e-5)


def test_by_perplexity_the_layers_whose_removal_costs_most_are_kept():
    teacher = _idle_layer_teacher()
    blocks = [ids(), ids(9)]
    scores = measure_lm_importance(teacher, blocks, layers_by="perplexity")
    assert scores.layer_perplexity[2] == pytest.approx(scores.base_perplexity, rel=1e-6)  # nothing lost without it
    with torch.no_grad():  # each entry: the teacher's perplexity with that one layer passed through
        for i in (0, 3):
            skipped = copy.deepcopy(teacher)
            del skipped.model.layers[i]
            skipped.config.num_hidden_layers = 3
            for j, layer in enumerate(skipped.model.layers):
                layer.self_attn.layer_idx = j
            expected = math.exp(_nll(skipped, blocks, "cpu"))
            assert scores.layer_perplexity[i] == pytest.approx(expected, rel=1e-5)
    student = prune_lm(teacher, LMPruneShape(2, 32, 8, 2, 64), scores)
    ranked = sorted(range(4), key=lambda i: -scores.layer_perplexity[i])
    assert student.distillkit_prune_plan.layers == sorted(ranked[:2])


@pytest.mark.parametrize("make", [llama, tiny_qwen2], ids=["llama", "qwen2"])
def test_the_parameter_count_has_a_closed_form(make):
    teacher = make()
    for shape in (LMPruneShape(2, 24, 4, 2, 40), LMPruneShape(1, 16, 2, 1, 8), full_shape(teacher.config)):
        student = prune_lm(teacher, shape)
        assert student.num_parameters() == lm_parameter_count(teacher.config, shape, bias_parts(teacher))
    assert bias_parts(teacher) == ({"q_proj", "k_proj", "v_proj"} if make is tiny_qwen2 else set())


def test_tied_embeddings_stay_tied_and_the_cut_reloads_and_generates_without_distillkit(tmp_path):
    from transformers import AutoModelForCausalLM

    teacher = llama()
    student = prune_lm(teacher, LMPruneShape(2, 24, 4, 2, 40))
    assert student.lm_head.weight.data_ptr() == student.model.embed_tokens.weight.data_ptr()
    student.save_pretrained(tmp_path / "cut")
    assert (tmp_path / "cut" / "model.safetensors").is_file()
    again = AutoModelForCausalLM.from_pretrained(tmp_path / "cut").eval()
    assert type(again) is type(teacher) and again.config.head_dim == 4 and again.config.num_key_value_heads == 2
    x = ids(8)
    with torch.no_grad():
        assert torch.allclose(again(input_ids=x).logits, student.eval()(input_ids=x).logits, atol=1e-6)
    out = again.generate(input_ids=x[:1, :4], max_new_tokens=5, do_sample=False, pad_token_id=2)
    assert out.shape == (1, 9)


def test_qwen2_keeps_its_per_layer_attention_kinds_for_the_kept_layers():
    teacher = tiny_qwen2()
    teacher.config.layer_types = ["full_attention", "sliding_attention", "full_attention"]
    student = prune_lm(teacher, LMPruneShape(2, 32, 4, 2, 64))
    assert student.distillkit_prune_plan.layers == [0, 2]
    assert student.config.layer_types == ["full_attention", "full_attention"]


def test_shapes_that_break_the_groups_or_exceed_the_teacher_are_refused():
    teacher = llama()  # 8 heads in 2 groups of 4
    with pytest.raises(ValueError, match="at most 4 per\\s+group"):
        prune_lm(teacher, LMPruneShape(3, 24, 6, 1, 64))
    with pytest.raises(ValueError, match="multiple of the groups"):
        prune_lm(teacher, LMPruneShape(3, 30, 3, 2, 64))
    with pytest.raises(ValueError, match="--hidden_size 20 is not a multiple of --num_heads 6"):
        prune_lm(llama(), LMPruneShape(2, 20, 6, 2, 40))  # it could not be loaded back
    with pytest.raises(ValueError, match="--intermediate_size 65 must be between 1 and the teacher's 64"):
        prune_lm(teacher, LMPruneShape(3, 32, 8, 2, 65))
    from .conftest import tiny_bert

    with pytest.raises(ValueError, match="Llama layout"):
        prune_lm(tiny_bert(), LMPruneShape(1, 16, 2, 1, 16))


def test_a_pruned_decoder_run_cuts_by_activations_reports_perplexities_and_reloads(tmp_path):
    from transformers import AutoModelForCausalLM

    from distillkit import parse_args
    from distillkit.recipe import run

    from .lm_fixtures import counting_text, lm_tokenizer, tiny_llama, train_lm, write_text

    tokenizer = lm_tokenizer(tmp_path / "teacher")
    teacher = train_lm(tiny_llama(layers=3), tokenizer, counting_text(200, 0), steps=60)
    teacher.save_pretrained(tmp_path / "teacher")
    train = write_text(tmp_path / "train.txt", counting_text(150, 3))
    valid = write_text(tmp_path / "valid.txt", counting_text(30, 4))
    flags = ["--teacher", str(tmp_path / "teacher"), "--student", "pruned", "--num_layers", "2", "--hidden_size",
             "24", "--num_heads", "2", "--num_key_value_heads", "1", "--intermediate_size", "32", "--train_file",
             str(train), "--validation_file", str(valid), "--output_dir", str(tmp_path / "out"), "--max_steps", "3",
             "--block_size", "16", "--report_to", "none", "--use_cpu", "true"]  # fmt: skip
    result = run(*parse_args(flags))
    assert math.isfinite(result.metrics["eval_perplexity"])
    report = json.loads((tmp_path / "out" / "prune_report.json").read_text())
    assert report["layers_chosen_by"] == "perplexity" and len(report["layer_perplexity_without"]) == 3
    assert report["samples"] > 0 and len(report["layers_kept"]) == 2
    assert set(report["pruned_alone"]) == {"num_layers", "hidden_size", "heads", "intermediate_size"}
    for scores in (report["teacher_score"], report["student_score_before_training"], *report["pruned_alone"].values()):
        assert scores["perplexity"] > 1
    assert report["student"]["parameters"] == lm_parameter_count(
        teacher.config, LMPruneShape(2, 24, 2, 1, 32), bias_parts(teacher)
    )
    recipe = (tmp_path / "out" / "distillkit_recipe.yaml").read_text()
    assert "prune_layers: perplexity" in recipe and "num_key_value_heads: 1" in recipe
    student = AutoModelForCausalLM.from_pretrained(tmp_path / "out")
    assert student.config.num_key_value_heads == 1 and student.config.hidden_size == 24
    assert student.config.head_dim == teacher.config.head_dim
    out = student.generate(input_ids=torch.tensor([[4, 5, 6]]), max_new_tokens=4, do_sample=False, pad_token_id=2)
    assert out.shape == (1, 7)


def test_saved_scores_read_back_equal_and_are_refused_for_other_blocks_teachers_or_criteria(tmp_path):
    from distillkit.students.prune_lm import importance_identity, load_importance, save_importance

    teacher, blocks = llama(), [ids(1), ids(2)]
    scores = measure_lm_importance(teacher, blocks, layers_by="perplexity")
    identity = importance_identity(teacher, blocks, "perplexity")
    path = str(tmp_path / "scores" / "s.safetensors")
    save_importance(scores, path, identity)
    back = load_importance(path, identity)
    for name in ("heads", "neurons", "channels", "layers", "block_influence"):
        assert torch.equal(getattr(back, name), getattr(scores, name).float()), name
    assert back.layer_perplexity == scores.layer_perplexity and back.base_perplexity == scores.base_perplexity
    assert (back.layers_by, back.samples) == ("perplexity", scores.samples)
    assert load_importance(path, importance_identity(teacher, [ids(1), ids(3)], "perplexity")) is None
    assert load_importance(path, importance_identity(teacher, blocks, "cosine")) is None
    assert load_importance(path, importance_identity(llama(seed=5), blocks, "perplexity")) is None
    assert load_importance(str(tmp_path / "absent.safetensors"), identity) is None


def test_a_second_cut_of_the_same_teacher_reads_its_scores_instead_of_measuring_them(tmp_path, monkeypatch):
    from distillkit import parse_args
    from distillkit.recipe import run
    from distillkit.students import prune_lm as module

    from .lm_fixtures import counting_text, lm_tokenizer, tiny_llama, write_text

    lm_tokenizer(tmp_path / "teacher")
    tiny_llama(layers=3).save_pretrained(tmp_path / "teacher")
    train = write_text(tmp_path / "train.txt", counting_text(60, 3))
    scores_file = tmp_path / "scores.safetensors"
    measured = []
    real = module.measure_lm_importance
    monkeypatch.setattr(module, "measure_lm_importance", lambda *a, **k: measured.append(1) or real(*a, **k))

    def cut(name, layers):
        flags = ["--teacher", str(tmp_path / "teacher"), "--student", "pruned", "--num_layers", str(layers),
                 "--hidden_size", "24", "--train_file", str(train), "--output_dir", str(tmp_path / name),
                 "--max_steps", "1", "--learning_rate", "0", "--block_size", "16", "--report_to", "none",
                 "--use_cpu", "true", "--prune_scores", str(scores_file), "--prune_eval", "false"]  # fmt: skip
        run(*parse_args(flags))
        return json.loads((tmp_path / name / "prune_report.json").read_text())

    first = cut("a", 2)
    assert measured == [1] and scores_file.is_file()
    second = cut("b", 1)
    assert measured == [1]  # read, not measured
    assert second["layer_perplexity_without"] == first["layer_perplexity_without"]
    costs = first["layer_perplexity_without"]
    assert second["layers_kept"] == [1 + max(range(3), key=costs.__getitem__)]


def test_the_width_cut_alone_takes_the_cuts_heads_when_the_teachers_do_not_divide_the_new_width():
    """SmolLM2's 9 heads do not divide 384: the report's width-alone cut must still be a loadable shape."""
    from transformers import LlamaConfig

    from distillkit.students.prune_lm import prune_lm_report

    teacher, shapes = llama(), []
    scores = measure_lm_importance(teacher, [ids(1)], layers_by="spread")
    config = LlamaConfig(**{**teacher.config.to_dict(), "hidden_size": 20, "num_attention_heads": 4,
                            "num_key_value_heads": 2, "num_hidden_layers": 2})  # 8 heads do not divide 20  # fmt: skip

    def evaluate(model):
        shapes.append(full_shape(model.config))
        return {"perplexity": 1.0}

    _, report = prune_lm_report(teacher, config, scores, evaluate=evaluate)
    assert report["hidden_size_alone_with_heads"] == 4
    width = next(s for s in shapes if s.hidden_size == 20 and s.num_layers == 3)
    assert (width.num_heads, width.num_key_value_heads) == (4, 2) and width.intermediate_size == 64
    assert set(report["pruned_alone"]) == {"num_layers", "hidden_size", "heads"}
