"""`distillkit export DIR --int8` for a causal LM: perplexity and generation speed of the teacher, the student and
their dynamically quantized copies, the same perplexity as the run's evaluation, the card's int8 section, and ONNX
refused with the reason."""

from __future__ import annotations

import json
import math

import pytest

from distillkit import parse_args
from distillkit.recipe import run

from .lm_fixtures import counting_text, lm_tokenizer, tiny_llama, train_lm, write_text


@pytest.fixture(scope="module")
def lm_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("lm-export")
    tokenizer = lm_tokenizer(tmp / "teacher")
    train_lm(tiny_llama(), tokenizer, counting_text(200, 0), steps=60).save_pretrained(tmp / "teacher")
    train = write_text(tmp / "train.txt", counting_text(120, 3))
    valid = write_text(tmp / "valid.txt", counting_text(30, 4))
    flags = ["--teacher", str(tmp / "teacher"), "--student", "teacher:1", "--train_file", str(train),
             "--validation_file", str(valid), "--output_dir", str(tmp / "out"), "--max_steps", "4",
             "--block_size", "16", "--report_to", "none", "--use_cpu", "true"]  # fmt: skip
    result = run(*parse_args(flags))
    return tmp, result


def test_int8_export_of_a_decoder_reports_perplexity_and_generation_speed(lm_run):
    import torch
    from transformers import AutoModelForCausalLM

    from distillkit.commands.export import main
    from distillkit.lm_export import block_perplexity, quantize_lm_int8
    from distillkit.tasks import get_task_type

    tmp, result = lm_run
    out = tmp / "out"
    rows = main([str(out), "--int8", "--teacher", str(tmp / "teacher")])
    assert [r["name"] for r in rows] == ["teacher", "teacher int8", "student", "student int8"]
    by = {r["name"]: r for r in rows}
    # the same blocks and the same computation as the run's own evaluation
    assert by["student"]["perplexity"] == pytest.approx(result.metrics["eval_perplexity"], rel=1e-3)
    task = get_task_type("causal-lm")
    task.block_size = 16
    from datasets import Dataset, DatasetDict

    from distillkit.data.lm_text import read_lm_file

    raw = DatasetDict(validation=Dataset.from_list(read_lm_file(str(tmp / "valid.txt"), None)))
    student = AutoModelForCausalLM.from_pretrained(out)
    blocks = task.encode(raw, lm_tokenizer(), student.config, 16, False)["validation"]
    quantized = quantize_lm_int8(student.eval())
    int8 = block_perplexity(quantized, blocks)
    assert by["student int8"]["perplexity"] == pytest.approx(int8, rel=1e-4)
    assert by["student int8"]["perplexity_vs_fp32"] == pytest.approx(int8 / by["student"]["perplexity"], abs=1e-3)
    assert any(isinstance(m, torch.ao.nn.quantized.dynamic.Linear) for m in quantized.modules())
    for row in rows:
        assert math.isfinite(row["perplexity"]) and row["generation_tokens_per_s"] > 0
    assert by["student"]["parameters"] < by["teacher"]["parameters"]
    saved = json.loads((out / "exports.json").read_text())
    assert saved["task_type"] == "causal-lm" and len(saved["rows"]) == 4
    card = (out / "README.md").read_text()
    assert "## Int8 decoder" in card and "| student int8 |" in card and "quantize_dynamic" in card
    assert f'from_pretrained("{out}")' in card


def test_onnx_export_of_a_decoder_is_refused_with_the_reason(lm_run):
    from distillkit.commands.export import main
    from distillkit.tasks import UnsupportedFeature

    tmp, _ = lm_run
    with pytest.raises(
        UnsupportedFeature,
        match="ONNX export .* not supported for task type .causal-lm.: .* --int8` measures the dynamically quantized",
    ):
        main([str(tmp / "out"), "--onnx"])


def test_a_model_left_under_autocast_by_a_bf16_trainer_is_timed_and_quantized_in_fp32():
    """accelerate wraps a prepared model's forward in autocast under bf16 (as a bf16 Trainer leaves it): the timed
    copy and the int8 copy must run without it (the int8 layers refuse bf16 activations)."""
    from types import MethodType

    import torch

    from distillkit.latency import generation_speed, is_plain, plain_copy
    from distillkit.lm_export import float_copy, quantize_lm_int8

    from .lm_fixtures import tiny_llama

    model = tiny_llama(layers=2).eval()
    model._original_forward = model.forward
    model.forward = MethodType(torch.autocast("cpu", dtype=torch.bfloat16)(model.forward.__func__), model)
    ids = torch.tensor([[4, 5, 6, 7]])
    assert model(input_ids=ids).logits.dtype == torch.bfloat16 and not is_plain(model)
    copy = float_copy(model)
    assert is_plain(copy) and copy(input_ids=ids).logits.dtype == torch.float32
    int8 = quantize_lm_int8(float_copy(model))
    assert int8(input_ids=ids).logits.dtype == torch.float32
    assert "_original_forward" in model.__dict__  # the model itself is left as it was
    assert is_plain(plain_copy(model))

    class Tokenizer:
        pad_token_id, eos_token_id = 0, 2

        def __call__(self, text, add_special_tokens=False, return_tensors="pt"):
            return {"input_ids": torch.tensor([[4, 5, 6]])}

    assert generation_speed(int8, Tokenizer(), ["x"], new_tokens=3)["generation_tokens_per_s"] > 0
    assert generation_speed(model, Tokenizer(), ["x"], new_tokens=3)["generation_tokens_per_s"] > 0


def test_the_int8_decoder_keeps_the_output_layer_and_down_projections_float_and_the_card_snippet_makes_the_same(
    tmp_path,
):
    import torch
    from torch.ao.nn.quantized.dynamic import Linear as Int8Linear

    from distillkit.lm_export import INT8_SNIPPET, float_copy, quantize_lm_int8

    from .lm_fixtures import tiny_llama

    model = tiny_llama(layers=2).eval()
    model.save_pretrained(tmp_path / "m")
    int8 = quantize_lm_int8(float_copy(model))
    kinds = {name: type(m) for name, m in int8.named_modules()}
    assert kinds["lm_head"] is torch.nn.Linear and kinds["model.layers.0.mlp.down_proj"] is torch.nn.Linear
    for part in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj",
                 "mlp.up_proj"):  # fmt: skip
        assert kinds[f"model.layers.1.{part}"] is Int8Linear, part
    # per-channel weights: one scale per output row
    q_proj = int8.model.layers[0].self_attn.q_proj
    assert q_proj.weight().qscheme() == torch.per_channel_affine
    scope: dict = {}
    exec(INT8_SNIPPET.format(repo=str(tmp_path / "m")), scope)  # the card's snippet, as a user runs it
    ids = torch.tensor([[4, 5, 6, 7, 8]])
    with torch.no_grad():
        assert torch.equal(scope["int8"](input_ids=ids).logits, int8(input_ids=ids).logits)
