import json
import zipfile
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
import torch
from huggingface_hub import ModelCard
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from distillkit import parse_args
from distillkit.recipe import run

from .conftest import rule_sentences

ROOT = Path(__file__).resolve().parents[1]


def _export_main():
    from distillkit.commands import export

    return export.main


@pytest.fixture(scope="module")
def student_dir(tmp_path_factory, trained_teacher_dir):
    tmp = tmp_path_factory.mktemp("export")
    for name, n, seed in (("train.tsv", 2560, 1), ("dev.tsv", 300, 2)):
        texts, labels = rule_sentences(n, seed)
        (tmp / name).write_text("sentence\tlabel\n" + "".join(f"{t}\t{y}\n" for t, y in zip(texts, labels)))
    out = tmp / "student"
    flags = [
        "--teacher", str(trained_teacher_dir), "--student", "custom", "--num_layers", "1", "--hidden_size", "32",
        "--num_heads", "2", "--train_file", str(tmp / "train.tsv"), "--validation_file", str(tmp / "dev.tsv"),
        "--output_dir", str(out), "--max_steps", "80", "--per_device_train_batch_size", "32", "--learning_rate",
        "3e-3", "--lr_scheduler_type", "constant", "--save_strategy", "no", "--report_to", "none",
        "--disable_tqdm", "true", "--max_seq_length", "32",
    ]  # fmt: skip
    run(*parse_args(flags))
    return out


def test_int8_and_onnx_exports_agree_with_the_float_student(student_dir):
    rows = {r["name"]: r for r in _export_main()([str(student_dir), "--int8", "--onnx", "--latency_examples", "16"])}
    assert set(rows) == {"teacher", "student", "student int8 (PyTorch dynamic)", "student ONNX (onnxruntime)"}
    assert rows["student"]["agreement_with_student"] == 1.0
    # measured on 300 held-out sentences of the keyword task: ONNX is the same function, int8 nearly so
    assert rows["student ONNX (onnxruntime)"]["agreement_with_student"] >= 0.99
    assert rows["student int8 (PyTorch dynamic)"]["agreement_with_student"] >= 0.9
    assert rows["student"]["metric"] == "accuracy" and rows["student"]["metric_value"] > 0.8
    for row in rows.values():
        assert row["size_mb"] > 0 and row["latency_ms_batch1"] > 0 and row["latency_ms_batch32"] > 0
    # the archive's tensors, not its file: at this size TorchScript's code and debug records (which grow with the
    # number of modules traced earlier in the process) outweigh the weights; quantized, the tensors are well under the
    # float weights (30.7 KB against 72.4 KB here; unquantized they would be the same 72 KB)
    with zipfile.ZipFile(student_dir / "int8" / "model.pt") as archive:
        tensor_bytes = sum(i.file_size for i in archive.infolist() if "/data/" in i.filename)
    assert 0 < tensor_bytes < 0.6 * (student_dir / "model.safetensors").stat().st_size

    # the ONNX file runs on its own in onnxruntime, any batch and length
    session = onnxruntime.InferenceSession(str(student_dir / "onnx" / "model.onnx"), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    assert names == ["input_ids", "attention_mask", "token_type_ids"]
    for batch, length in ((1, 5), (7, 19)):
        ids = np.random.default_rng(0).integers(5, 45, (batch, length))
        feed = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
        assert session.run(["logits"], feed)[0].shape == (batch, 2)

    # both are called the way their runtimes expect, with the tokenizer's output as it comes (the card says so)
    tokenizer = AutoTokenizer.from_pretrained(student_dir)
    texts = rule_sentences(3, 9)[0]
    float_student = AutoModelForSequenceClassification.from_pretrained(student_dir).eval()
    with torch.no_grad():
        expected = float_student(**tokenizer(texts, return_tensors="pt", padding=True)).logits.numpy()
    int8 = torch.jit.load(str(student_dir / "int8" / "model.pt"))
    with torch.no_grad():
        got = int8(**tokenizer(texts, return_tensors="pt", padding=True)).numpy()
    np.testing.assert_allclose(got, expected, atol=0.1)
    encoded = tokenizer(texts, return_tensors="np", padding=True)
    logits = session.run(None, {i.name: encoded[i.name] for i in session.get_inputs()})[0]
    np.testing.assert_allclose(logits, expected, atol=1e-4)

    saved = json.loads((student_dir / "exports.json").read_text())
    assert len(saved["rows"]) == 4 and saved["threads"] >= 1
    card = ModelCard.load(student_dir / "README.md")
    assert "## Deployment exports" in card.text and "student ONNX (onnxruntime)" in card.text
    assert "int8(**tokenizer(" in card.text and "onnx/model.onnx.data" in card.text
    assert card.data.eval_results  # the metadata survived the re-render


def test_export_without_validation_data_says_what_to_pass(tmp_path, student_dir):
    (tmp_path / "config.json").write_text((student_dir / "config.json").read_text())
    with pytest.raises(ValueError, match="no validation data: pass --validation_file"):
        _export_main()([str(tmp_path), "--int8"])


def test_int8_export_of_a_model_fed_without_token_types(tmp_path):
    """A BERT student reading an MPNet tokenizer's ids gets no token_type_ids: the export takes what the batch has."""
    from distillkit.export import export_int8, input_names

    from .conftest import tiny_bert

    model = tiny_bert(layers=1, hidden=16, heads=2).eval()
    batch = {"input_ids": torch.randint(5, 40, (2, 7)), "attention_mask": torch.ones(2, 7, dtype=torch.long)}
    assert input_names(model, batch) == ["input_ids", "attention_mask"]
    runner = export_int8(model, batch, str(tmp_path))
    with torch.no_grad():
        expected = model(**batch).logits.numpy()
    np.testing.assert_allclose(runner.predict(batch), expected, atol=0.05)


def test_the_ffn_float_int8_scheme_keeps_the_feed_forward_output_float_and_runs(tmp_path):
    from distillkit.export import export_int8, int8_spec

    from .conftest import tiny_bert

    model = tiny_bert(layers=2, hidden=16, heads=2).eval()
    assert int8_spec(model, "per-tensor") is None  # every nn.Linear, quantize_int8's default
    spec = int8_spec(model, "ffn-float")
    linear = {n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
    ffn_out = {f"bert.encoder.layer.{i}.output.dense" for i in range(2)}
    assert ffn_out <= linear and set(spec) == linear - ffn_out  # the rest per channel
    assert "bert.encoder.layer.0.attention.output.dense" in spec and "classifier" in spec
    batch = {"input_ids": torch.randint(5, 40, (2, 7)), "attention_mask": torch.ones(2, 7, dtype=torch.long)}
    runner = export_int8(model, batch, str(tmp_path), scheme="ffn-float")
    assert "ffn-float" in runner.name
    saved = torch.jit.load(runner.path).named_modules()  # a float Linear keeps its weight as a parameter
    floats = {name for name, m in saved if m.original_name == "Linear" and any(True for _ in m.parameters(False))}
    assert floats == {f"model.{name}" for name in ffn_out}
    with torch.no_grad():
        expected = model(**batch).logits.numpy()
    np.testing.assert_allclose(runner.predict(batch), expected, atol=0.05)
    with pytest.raises(ValueError, match="unknown int8 scheme 'int4'"):
        int8_spec(model, "int4")
