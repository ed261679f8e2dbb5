"""Extractive question answering as a task type: its losses against direct computations, evaluation in the windows'
order, the teacher cache of start and end logits, students cut from a span teacher, and whole runs through the
command line (presets, teacher:K, pruned, trimmed vocabulary, the teacher stage of a base encoder)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from datasets import Dataset, DatasetDict

from distillkit import DistillConfig, DistillTrainer, build_student, get_task_type, parse_args
from distillkit.losses.registry import LossInputs, get_loss
from distillkit.recipe import run
from distillkit.tasks import output_logits

from .conftest import make_tokenizer, save_base_encoder
from .tasks.fixtures import FIXTURES

QA = FIXTURES["question-answering"]


def _rows(n: int, seed: int) -> Dataset:
    return Dataset.from_dict(QA.rows(n, seed))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(tokenizer, a tiny span teacher trained on the keyword task, its folder)."""
    tokenizer = make_tokenizer()
    task = get_task_type("question-answering")
    teacher = QA.make_teacher(tokenizer).train()
    data = task.encode(_rows(256, 0), tokenizer, teacher.config, 32, False)
    optimizer = torch.optim.AdamW(teacher.parameters(), lr=3e-3)
    torch.manual_seed(0)
    for step in range(120):
        rows = data.select([(step * 32 + i) % len(data) for i in range(32)])
        batch = task.data_collator(tokenizer) or __import__("transformers").DataCollatorWithPadding(tokenizer)
        inputs = batch([dict(r) for r in rows])
        loss = teacher(**inputs).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    teacher.eval()
    folder = tmp_path_factory.mktemp("qa") / "teacher"
    teacher.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return tokenizer, teacher, folder


def _loss(name, student_logits, teacher_logits, labels, mask, temperature=2.0):
    task = get_task_type("question-answering")
    view = lambda x: task.loss_logits(x, mask)  # noqa: E731
    s = type("Out", (), {"logits": view(student_logits)})()
    t = type("Out", (), {"logits": view(teacher_logits)})()
    args = DistillConfig(output_dir="unused", temperature=temperature, report_to="none", use_cpu=True)
    inputs = LossInputs(s, t, labels, mask, args, [])
    return get_loss(name).fn(inputs)


def test_the_soft_loss_is_the_mean_of_the_start_and_end_kl_over_the_real_positions():
    torch.manual_seed(0)
    student, teacher = torch.randn(2, 6, 2), torch.randn(2, 6, 2)
    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]])
    labels = torch.tensor([[1, 2], [0, 0]])
    loss = _loss("kd", student, teacher, labels, mask, temperature=2.0)
    expected = []
    for row, length in ((0, 6), (1, 4)):
        for which in (0, 1):  # start, end: a distribution over the row's real positions
            p_t = F.softmax(teacher[row, :length, which] / 2.0, -1)
            log_s = F.log_softmax(student[row, :length, which] / 2.0, -1)
            expected.append((p_t * (p_t.log() - log_s)).sum() * 4.0)
    assert torch.allclose(loss, torch.stack(expected).mean(), atol=1e-6)
    # padding never counts: any values there leave the loss as it is
    student[1, 4:], teacher[1, 4:] = 50.0, -50.0
    assert torch.allclose(_loss("kd", student, teacher, labels, mask, temperature=2.0), loss, atol=1e-6)


def test_the_hard_loss_is_the_span_heads_own_loss(trained):
    tokenizer, teacher, _ = trained
    task = get_task_type("question-answering")
    data = task.encode(_rows(4, 1), tokenizer, teacher.config, 32, False)
    same_length = [i for i in range(len(data)) if len(data[i]["input_ids"]) == len(data[0]["input_ids"])]
    batch = {k: torch.tensor(v) for k, v in data.select(same_length)[:].items()}  # no padding: HF's loss is ours
    with torch.no_grad():
        own = teacher(**batch).loss
        outputs = teacher(**{k: v for k, v in batch.items() if "positions" not in k})
    ours = _loss("ce", output_logits(outputs), output_logits(outputs), task.batch_labels(batch),
                 batch["attention_mask"])  # fmt: skip
    assert torch.allclose(ours, own, atol=1e-5)


def test_evaluation_keeps_the_windows_order_and_scores_as_read_directly(trained, tmp_path):
    tokenizer, teacher, _ = trained
    task = get_task_type("question-answering")
    task.doc_stride = 4
    raw = _rows(40, 3)
    data = task.encode(DatasetDict(train=raw, validation=raw), tokenizer, teacher.config, 12, False)
    assert len(data["validation"]) > len(raw)  # several windows for most questions
    args = DistillConfig(output_dir=str(tmp_path / "out"), per_device_eval_batch_size=5, report_to="none",
                         use_cpu=True, train_sampling_strategy="group_by_length")  # fmt: skip
    trainer = DistillTrainer(model=teacher, teacher=teacher, args=args, train_dataset=data["train"],
                             eval_dataset=data["validation"], processing_class=tokenizer, task_type=task)  # fmt: skip
    assert isinstance(trainer.get_eval_dataloader().sampler, torch.utils.data.SequentialSampler)
    scores = trainer.evaluate()
    # the same windows run one by one, in order
    logits = []
    with torch.no_grad():
        for row in data["validation"]:
            inputs = {k: torch.tensor([row[k]]) for k in ("input_ids", "attention_mask", "token_type_ids")}
            logits.append(output_logits(teacher(**inputs))[0].numpy())
    width = max(len(x) for x in logits)
    stacked = np.stack([np.pad(x, [(0, width - len(x)), (0, 0)], constant_values=-100.0) for x in logits])
    direct = task.compute_metrics(teacher.config)(type("P", (), {"predictions": stacked, "label_ids": None})())
    assert scores["eval_f1"] == pytest.approx(direct["f1"]) and scores["eval_exact_match"] == pytest.approx(
        direct["exact_match"]
    )
    assert direct["f1"] > 50.0, direct  # the trained teacher finds the keyword across windows


def test_the_teacher_cache_holds_each_windows_start_and_end_logits(trained, tmp_path):
    from safetensors.torch import load_file

    tokenizer, teacher, _ = trained
    task = get_task_type("question-answering")
    data = task.encode(_rows(48, 4), tokenizer, teacher.config, 32, False)
    student = build_student("custom", teacher, task_type=task, num_layers=1, hidden_size=16, num_heads=2)
    cache = tmp_path / "cache"
    args = DistillConfig(output_dir=str(tmp_path / "out"), teacher_cache=str(cache), per_device_train_batch_size=8,
                         report_to="none", use_cpu=True)  # fmt: skip
    trainer = DistillTrainer(model=student, teacher=teacher, args=args, train_dataset=data, processing_class=tokenizer,
                             task_type=task)  # fmt: skip
    shard = load_file(str(cache / "logits-00000.safetensors"))
    assert shard["logits"].shape == (sum(sum(m) for m in data["attention_mask"]), 2)
    assert shard["lengths"].tolist() == [sum(m) for m in data["attention_mask"]]  # windows in the data's order
    batch = next(iter(trainer.get_train_dataloader()))
    cached = trainer.loss_view(trainer.teacher_forward(batch), batch["attention_mask"]).logits
    live = trainer.loss_view(trainer.teacher(batch), batch["attention_mask"]).logits
    assert cached.shape == (len(batch["input_ids"]), 2, batch["input_ids"].shape[1])
    assert torch.allclose(cached, live, atol=1e-5)


def test_a_student_cut_from_a_span_teacher_at_full_size_gives_its_logits(trained):
    from distillkit.students.prune import PruneShape, prune

    tokenizer, teacher, _ = trained
    c = teacher.config
    student = prune(teacher, PruneShape(c.num_hidden_layers, c.num_attention_heads, c.hidden_size,
                                        c.intermediate_size), None).eval()  # fmt: skip
    inputs = tokenizer(["w1"], ["w7 w1 w9"], return_tensors="pt")
    with torch.no_grad():
        assert torch.allclose(output_logits(student(**inputs)), output_logits(teacher(**inputs)), atol=1e-5)
    assert type(student).__name__ == "BertForQuestionAnswering"


def _flags(folder, tmp_path, *extra):
    train = QA.write(tmp_path / "train.jsonl", 96, 5)
    dev = QA.write(tmp_path / "dev.jsonl", 32, 6)
    return ["--teacher", str(folder), "--train_file", str(train), "--validation_file", str(dev),
            "--task_type", "question-answering", "--output_dir", str(tmp_path / "out"), "--max_steps", "4",
            "--report_to", "none", "--per_device_train_batch_size", "16", "--use_cpu", "true", *extra]  # fmt: skip


@pytest.mark.parametrize(
    "student",
    [
        ["--student", "teacher:1"],
        ["--student", "pruned", "--num_layers", "1", "--hidden_size", "16", "--num_heads", "2",
         "--prune_samples", "32"],
        ["--student", "custom", "--num_layers", "1", "--hidden_size", "16", "--num_heads", "2", "--trim_vocab", "true",
         "--share_layers", "true"],
    ],
    ids=["teacher-layers", "pruned", "trimmed-shared"],
)  # fmt: skip
def test_students_of_every_kind_train_and_are_scored_by_em_and_f1(trained, tmp_path, student):
    _, _, folder = trained
    result = run(*parse_args(_flags(folder, tmp_path, *student)))
    out = tmp_path / "out"
    assert {"eval_f1", "eval_exact_match"} <= set(result.metrics)
    assert result.teacher_metrics["teacher_eval_f1"] > 50.0, result.teacher_metrics
    card = (out / "README.md").read_text()
    assert "pipeline_tag: question-answering" in card and "AutoModelForQuestionAnswering" in card
    assert json.loads((out / "config.json").read_text())["architectures"][0].endswith("ForQuestionAnswering")


def test_a_base_encoder_is_fine_tuned_on_the_spans_first(tmp_path):
    base = tmp_path / "base"
    save_base_encoder(base)
    flags = _flags(base, tmp_path, "--student", "custom", "--num_layers", "1", "--hidden_size", "16", "--num_heads",
                   "2", "--teacher_max_steps", "30", "--teacher_learning_rate", "3e-3")  # fmt: skip
    result = run(*parse_args(flags))
    teacher = json.loads((tmp_path / "out" / "teacher" / "config.json").read_text())
    assert teacher["architectures"] == ["BertForQuestionAnswering"]
    assert "teacher_eval_f1" in json.loads((tmp_path / "out" / "teacher" / "eval_results.json").read_text())
    assert "eval_f1" in result.metrics


def test_the_span_head_is_copied_at_equal_width_only(trained):
    _, teacher, _ = trained
    task = get_task_type("question-answering")
    same = build_student("custom", teacher, task_type=task, num_layers=1, hidden_size=32, num_heads=2)
    assert task.init_head(same, teacher) == ["span head (qa_outputs) copied from the teacher"]
    assert torch.equal(same.qa_outputs.weight, teacher.qa_outputs.weight)
    narrow = build_student("custom", teacher, task_type=task, num_layers=1, hidden_size=16, num_heads=2)
    assert task.init_head(narrow, teacher) == []


def test_export_scores_every_variant_by_f1_from_a_recipe_that_names_squad(trained, tmp_path):
    """`distillkit export` of a span model whose recipe says `task: squad` (a task type's data set, not a GLUE
    task): F1 and EM of the float model as the windows scored one by one give them, the ONNX export's the same."""
    import shutil

    import yaml

    from distillkit.commands.export import main as export_main

    tokenizer, teacher, folder = trained
    student = tmp_path / "student"
    shutil.copytree(folder, student)
    dev = QA.write(tmp_path / "dev.jsonl", 24, 7)
    recipe = {"task": "squad", "task_type": "question-answering", "validation_file": str(dev), "max_seq_length": 12,
              "doc_stride": 4}  # fmt: skip
    (student / "distillkit_recipe.yaml").write_text(yaml.safe_dump(recipe))
    onnx = __import__("importlib").util.find_spec("onnxruntime") is not None
    out = export_main([str(student), "--int8", *(["--onnx"] if onnx else []), "--latency_examples", "4"])
    by_name = {r["name"]: r for r in out}
    assert by_name["student"]["metric"] == "f1"
    task = get_task_type("question-answering")
    task.doc_stride = 4
    raw = Dataset.from_list([json.loads(line) for line in dev.read_text().splitlines()])
    windows = task.encode(DatasetDict(validation=raw), tokenizer, teacher.config, 12, False)["validation"]
    assert len(windows) > len(raw)  # questions over several windows
    logits = []
    with torch.no_grad():
        for row in windows:
            inputs = {k: torch.tensor([row[k]]) for k in ("input_ids", "attention_mask", "token_type_ids")}
            logits.append(output_logits(teacher(**inputs))[0].numpy())
    width = max(len(x) for x in logits)
    stacked = np.stack([np.pad(x, [(0, width - len(x)), (0, 0)], constant_values=-100.0) for x in logits])
    direct = task.compute_metrics(teacher.config)(type("P", (), {"predictions": stacked, "label_ids": None})())
    assert by_name["student"]["metric_value"] == pytest.approx(direct["f1"]) and direct["f1"] > 50.0
    if onnx:
        exported = next(r for n, r in by_name.items() if "ONNX" in n)
        assert exported["metric_value"] == pytest.approx(direct["f1"], abs=1e-6)
    int8 = next(r for n, r in by_name.items() if "int8" in n)
    assert (student / "int8" / "model.pt").is_file() and 0.0 <= int8["metric_value"] <= 100.0
