import json
import os
import random
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from transformers import BertForSequenceClassification, BertModel

from distillkit import load_teacher, parse_args
from distillkit.data import GLUE_TASKS, get_task, infer_labels, load_files, tokenize_dataset
from distillkit.recipe import run

from .conftest import KEYWORDS, WORDS, make_tokenizer, rule_sentences, tiny_bert

SST2 = Path(__file__).resolve().parents[2] / "shared" / "data" / "glue" / "sst2"


def _pairs(n, seed):
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        a = [rng.choice(WORDS) for _ in range(rng.randint(2, 5))]
        b = [rng.choice(WORDS) for _ in range(rng.randint(2, 5))]
        hits = sum(w in KEYWORDS for w in a + b)
        rows.append((" ".join(a), " ".join(b), int(hits > 0), float(min(hits, 3))))
    return rows


def _write(path, header, rows, sep="\t"):
    path.write_text(sep.join(header) + "\n" + "".join(sep.join(str(c) for c in r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def base_teacher_dir(tmp_path_factory):
    """A base checkpoint (an encoder with no classification head), as `bert-base-uncased` is."""
    directory = tmp_path_factory.mktemp("base")
    torch.manual_seed(0)
    BertModel(tiny_bert().config).save_pretrained(directory)
    make_tokenizer().save_pretrained(directory)
    return directory


def _flags(teacher, out, *extra):
    return [
        "--teacher", str(teacher), "--student", "custom", "--num_layers", "1", "--hidden_size", "32",
        "--num_heads", "2", "--output_dir", str(out), "--max_steps", "40", "--per_device_train_batch_size", "32",
        "--learning_rate", "3e-3", "--lr_scheduler_type", "constant", "--save_strategy", "no", "--report_to", "none",
        "--max_seq_length", "32", "--disable_tqdm", "true", "--logging_steps", "10", *extra,
    ]  # fmt: skip


def _run(flags):
    return run(*parse_args(flags), command=["test"])


def test_every_glue_task_is_described():
    assert set(GLUE_TASKS) == {"cola", "sst2", "mrpc", "qqp", "stsb", "mnli", "qnli", "rte", "wnli"}
    assert get_task("stsb").is_regression and get_task("stsb").num_labels == 1
    assert get_task("mnli").num_labels == 3 and get_task("mnli").validation_split == "validation_matched"
    assert get_task("MRPC").text_columns == ("sentence1", "sentence2")
    assert get_task("cola").metrics == ("matthews_correlation",)
    with pytest.raises(ValueError, match="unknown task 'sst3'; known tasks: cola, sst2, mrpc"):
        get_task("sst3")


def test_single_sentence_and_pair_files_tokenize(tmp_path, tokenizer):
    texts, labels = rule_sentences(20, 0)
    single = _write(tmp_path / "s.csv", ["sentence", "label"], zip(texts, labels), sep=",")
    data = tokenize_dataset(load_files(str(single)), tokenizer, label2id={"0": 0, "1": 1}, num_labels=2)
    assert data["train"]["labels"] == labels
    pair_rows = _pairs(10, 1)
    jsonl = tmp_path / "p.jsonl"
    jsonl.write_text("".join(json.dumps({"s1": a, "s2": b, "label": y}) + "\n" for a, b, y, _ in pair_rows))
    data = tokenize_dataset(load_files(str(jsonl)), tokenizer, "s1", "s2", "label", num_labels=2)
    first = data["train"][0]
    assert first["token_type_ids"].count(1) == len(pair_rows[0][1].split()) + 1  # the second text and its [SEP]
    assert data["train"]["labels"] == [r[2] for r in pair_rows]


def test_string_labels_map_through_the_teachers_names(tmp_path, tokenizer):
    path = _write(tmp_path / "t.tsv", ["sentence", "label"], [("w1 w2", "Positive"), ("w3", "negative")])
    data = tokenize_dataset(load_files(str(path)), tokenizer, label2id={"negative": 0, "positive": 1})
    assert data["train"]["labels"] == [1, 0]
    assert infer_labels(load_files(str(path))["train"], "label") == ("Positive", "negative")


def test_a_base_teacher_is_fine_tuned_first(tmp_path, base_teacher_dir):
    rows = _pairs(1280, 2)
    train = _write(tmp_path / "train.tsv", ["sentence1", "sentence2", "label"], [r[:3] for r in rows])
    dev = _write(tmp_path / "dev.tsv", ["sentence1", "sentence2", "label"], [r[:3] for r in _pairs(200, 3)])
    out = tmp_path / "out"
    flags = _flags(base_teacher_dir, out, "--task", "mrpc", "--train_file", str(train), "--validation_file", str(dev))
    flags += ["--teacher_max_steps", "120", "--teacher_learning_rate", "2e-3", "--teacher_batch_size", "32"]
    result = _run(flags)
    assert result.teacher_dir == str(out / "teacher")
    assert result.teacher_metrics["teacher_eval_accuracy"] > 0.85, result.teacher_metrics
    assert {"eval_accuracy", "eval_f1"} <= set(result.metrics)  # MRPC's metrics
    saved = BertForSequenceClassification.from_pretrained(out / "teacher")
    assert saved.config.id2label == {0: "not_equivalent", 1: "equivalent"}
    assert json.loads((out / "teacher_eval_results.json").read_text()) == result.teacher_metrics


def test_a_fine_tuned_teacher_is_used_as_is(tmp_path, trained_teacher_dir):
    texts, labels = rule_sentences(200, 4)
    train = _write(tmp_path / "train.tsv", ["sentence", "label"], zip(texts, labels))
    result = _run(_flags(trained_teacher_dir, tmp_path / "out", "--train_file", str(train), "--max_steps", "4"))
    assert result.teacher_dir is None and not (tmp_path / "out" / "teacher").exists()


def test_regression_task_from_local_files(tmp_path, base_teacher_dir):
    rows = _pairs(320, 5)
    train = _write(tmp_path / "train.csv", ["sentence1", "sentence2", "label"], [(a, b, s) for a, b, _, s in rows], ",")
    dev = _write(
        tmp_path / "dev.csv", ["sentence1", "sentence2", "label"], [(a, b, s) for a, b, _, s in rows[:64]], ","
    )
    out = tmp_path / "out"
    flags = _flags(base_teacher_dir, out, "--task", "stsb", "--train_file", str(train), "--validation_file", str(dev))
    result = _run(flags + ["--teacher_max_steps", "20", "--teacher_learning_rate", "1e-3"])
    assert {"eval_pearson", "eval_spearmanr"} <= set(result.metrics)
    assert "teacher_eval_pearson" in result.teacher_metrics
    student = BertForSequenceClassification.from_pretrained(out)
    assert student.config.num_labels == 1 and student.config.problem_type == "regression"
    history = json.loads((out / "trainer_state.json").read_text())["log_history"]
    assert all(e["loss_kd"] >= 0 for e in history if "loss_kd" in e)  # the MSE to the teacher's scores


def test_lora_teacher_stage_and_adapter_directories(tmp_path, base_teacher_dir):
    from peft import LoraConfig, TaskType, get_peft_model

    # an adapter directory (LoRA weights + head over a base checkpoint) is loaded and merged
    base = BertForSequenceClassification.from_pretrained(base_teacher_dir, num_labels=2)
    peft_model = get_peft_model(base, LoraConfig(task_type=TaskType.SEQ_CLS, r=4, lora_alpha=8))
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.normal_()  # a trained adapter: non-zero updates
    peft_model.save_pretrained(tmp_path / "adapter")
    ids = torch.randint(5, 45, (2, 6))
    with torch.no_grad():
        expected = peft_model.eval()(input_ids=ids).logits
    merged = load_teacher(str(tmp_path / "adapter"))
    assert type(merged) is BertForSequenceClassification
    assert not any("lora" in k for k in merged.state_dict())
    torch.testing.assert_close(merged.eval()(input_ids=ids).logits, expected, atol=1e-5, rtol=1e-4)

    # --teacher_lora_r fine-tunes a base teacher with LoRA, merges it, and saves plain weights
    texts, labels = rule_sentences(640, 6)
    train = _write(tmp_path / "train.tsv", ["sentence", "label"], zip(texts, labels))
    out = tmp_path / "out"
    flags = _flags(base_teacher_dir, out, "--train_file", str(train), "--max_steps", "4")
    result = _run(flags + ["--teacher_lora_r", "4", "--teacher_max_steps", "10", "--teacher_learning_rate", "1e-3"])
    assert result.teacher_dir
    with safe_open(str(out / "teacher" / "model.safetensors"), framework="pt") as f:
        keys = list(f.keys())
    assert keys and not any("lora" in k for k in keys)
    before = BertModel.from_pretrained(base_teacher_dir).state_dict()["encoder.layer.0.attention.self.query.weight"]
    after = BertForSequenceClassification.from_pretrained(out / "teacher").state_dict()
    assert not torch.equal(after["bert.encoder.layer.0.attention.self.query.weight"], before)  # LoRA merged in
    assert torch.equal(
        after["bert.encoder.layer.0.intermediate.dense.weight"],
        BertModel.from_pretrained(base_teacher_dir).state_dict()["encoder.layer.0.intermediate.dense.weight"],
    )


@pytest.mark.parametrize(
    "case,message",
    [
        ("unknown_task", r"unknown task 'sst3'; known tasks"),
        ("label_outside", r"label 5 is outside the teacher's label set"),
        ("empty_file", r"is empty"),
        ("header_only", r"has a header but no rows"),
        ("pair_task_one_column", r"task 'mrpc' is a sentence-pair task"),
        ("no_weights", r"teacher directory .* holds no model weights"),
        ("unreadable", r"could not read"),
    ],
)
def test_bad_task_input_is_refused_before_training(tmp_path, trained_teacher_dir, case, message):
    texts, labels = rule_sentences(20, 7)
    train = _write(tmp_path / "train.tsv", ["sentence", "label"], zip(texts, labels))
    teacher = trained_teacher_dir
    extra = ["--train_file", str(train)]
    if case == "unknown_task":
        extra += ["--task", "sst3"]
    elif case == "label_outside":
        _write(train, ["sentence", "label"], [("w1 w2", 0), ("w3", 5)])
    elif case == "empty_file":
        train.write_text("")
    elif case == "header_only":
        train.write_text("sentence\tlabel\n")
    elif case == "pair_task_one_column":
        extra += ["--task", "mrpc", "--text_column", "sentence"]
    elif case == "no_weights":
        teacher = tmp_path / "empty_teacher"
        teacher.mkdir()
        (teacher / "config.json").write_text((trained_teacher_dir / "config.json").read_text())
    elif case == "unreadable":
        bad = tmp_path / "bad.json"
        bad.write_text("{not json at all")
        extra = ["--train_file", str(bad)]
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        _run(_flags(teacher, tmp_path / "out", *extra))
    assert not (tmp_path / "out" / "model.safetensors").exists()


@pytest.mark.slow
@pytest.mark.skipif(not SST2.is_dir(), reason="../shared/data/glue/sst2 is not here")
def test_sst2_from_the_shared_folder_matches_its_readme(tokenizer):
    data = load_files(str(SST2 / "train.tsv"), str(SST2 / "dev.tsv"))
    assert len(data["train"]) == 67_349 and len(data["validation"]) == 872
    train_labels, dev_labels = data["train"]["label"], data["validation"]["label"]
    assert (train_labels.count(0), train_labels.count(1)) == (29_780, 37_569)
    assert (dev_labels.count(0), dev_labels.count(1)) == (428, 444)
    tokenized = tokenize_dataset(data["validation"], tokenizer, label2id=dict(zip(("negative", "positive"), (0, 1))))
    assert len(tokenized) == 872 and os.path.basename(str(SST2)) == "sst2"


def test_the_teacher_stage_repeats_with_the_same_seed(tmp_path, base_teacher_dir):
    # the base teacher's new head is initialised from the seeded generator, so two runs give the same teacher
    texts, labels = rule_sentences(128, 9)
    train = _write(tmp_path / "train.tsv", ["sentence", "label"], zip(texts, labels))
    teachers = []
    for seed, name in ((1, "one"), (2, "two")):
        torch.manual_seed(seed)  # whatever state the global generator is in before the run
        flags = _flags(base_teacher_dir, tmp_path / name, "--train_file", str(train), "--max_steps", "2")
        _run(flags + ["--teacher_max_steps", "3"])
        with safe_open(str(tmp_path / name / "teacher" / "model.safetensors"), framework="pt") as f:
            teachers.append({k: f.get_tensor(k) for k in f.keys()})  # noqa: SIM118 (a safetensors handle)
    assert teachers[0].keys() == teachers[1].keys()
    for key in teachers[0]:
        assert torch.equal(teachers[0][key], teachers[1][key]), key


def test_teacher_bf16_trains_the_teacher_stage_in_bf16_and_evaluates_it_in_fp32(tmp_path, trained_teacher_dir,
                                                                                 monkeypatch):  # fmt: skip
    from distillkit import teacher_stage

    # on a CPU without AVX-512 BF16 or AMX the stage trains in fp32 (tests/test_benchmark.py); bf16 runs anywhere,
    # only slower, so the bf16 path is checked on every machine
    monkeypatch.setattr(teacher_stage, "cpu_has_fast_bf16", lambda: True)
    texts, labels = rule_sentences(160, 3)
    train = _write(tmp_path / "train.tsv", ["sentence", "label"], zip(texts[:128], labels[:128]))
    dev = _write(tmp_path / "dev.tsv", ["sentence", "label"], zip(texts[128:], labels[128:]))
    weights = {}
    for name, extra in (("fp32", []), ("bf16", ["--teacher_bf16", "true"]), ("no-dev", ["--teacher_bf16", "true"])):
        data = ["--train_file", str(train)] + (["--validation_file", str(dev)] if name != "no-dev" else [])
        flags = _flags(trained_teacher_dir, tmp_path / name, *data, "--finetune_teacher", "always")
        _run([*flags, "--max_steps", "2", "--teacher_max_steps", "4", *extra])  # an fp32 student follows
        with safe_open(str(tmp_path / name / "teacher" / "model.safetensors"), framework="pt") as f:
            weights[name] = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (a safetensors handle)
    # mixed precision changed the teacher's training (same seed, same batches), and its weights are saved in fp32
    assert any(not torch.equal(weights["fp32"][k], weights["bf16"][k]) for k in weights["fp32"])
    assert all(t.dtype == torch.float32 for t in weights["bf16"].values())
    # the teacher's recorded dev loss is the fp32 loss of the saved weights, not the autocast one
    teacher = BertForSequenceClassification.from_pretrained(tmp_path / "bf16" / "teacher").eval()
    tokenizer = make_tokenizer()
    batch = tokenizer(texts[128:], padding=True, truncation=True, max_length=32, return_tensors="pt")
    target = torch.tensor(labels[128:])
    with torch.no_grad():
        fp32 = torch.nn.functional.cross_entropy(teacher(**batch).logits, target).item()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            mixed = torch.nn.functional.cross_entropy(teacher(**batch).logits.float(), target).item()
    recorded = json.loads((tmp_path / "bf16" / "teacher" / "eval_results.json").read_text())["teacher_eval_loss"]
    assert abs(mixed - fp32) > 1e-3 * fp32  # the check below can tell the two apart
    assert recorded == pytest.approx(fp32, rel=1e-4)
