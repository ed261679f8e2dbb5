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
    from distillkit.export import quantize_int8
    from distillkit.lm_export import block_perplexity
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
    int8 = block_perplexity(quantize_int8(student.eval()), blocks)
    assert by["student int8"]["perplexity"] == pytest.approx(int8, rel=1e-4)
    assert by["student int8"]["perplexity_vs_fp32"] == pytest.approx(int8 / by["student"]["perplexity"], abs=1e-3)
    assert any(isinstance(m, torch.ao.nn.quantized.dynamic.Linear) for m in quantize_int8(student).modules())
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
