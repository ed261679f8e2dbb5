"""Cross-tokenizer distillation: the teacher and the student each read their own tokenization of the same text."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from datasets import Dataset
from transformers import BertConfig, BertForSequenceClassification, BertTokenizer

from distillkit import DistillConfig, DistillTrainer, build_student, parse_args
from distillkit.collator import DistillCollator
from distillkit.data import same_tokenizer, tokenize_dataset
from distillkit.recipe import run
from distillkit.students.build import albertize
from distillkit.tasks import get_task_type

from .conftest import SPECIALS, WORDS, rule_sentences, tiny_bert

SEQ_CLS = get_task_type("sequence-classification")

# the student's vocabulary: other ids for every token, and w10..w19 only as two word pieces ("w1" + "##0" ...)
STUDENT_VOCAB = ["[UNK]", "[PAD]", "[SEP]", "[CLS]", "[MASK]"] + [w for w in reversed(WORDS) if not w.startswith("w1")]
STUDENT_VOCAB += ["w1"] + [f"##{d}" for d in range(10)]


def student_tokenizer() -> BertTokenizer:
    return BertTokenizer(vocab={t: i for i, t in enumerate(STUDENT_VOCAB)}, do_lower_case=True)


def student_model(seed: int = 1) -> BertForSequenceClassification:
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=len(STUDENT_VOCAB), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=64, pad_token_id=1)  # fmt: skip
    return BertForSequenceClassification(config)


def both_tokenized(tokenizer, n: int = 64, seed: int = 3) -> Dataset:
    texts, labels = rule_sentences(n, seed)
    raw = Dataset.from_dict({"sentence": texts, "label": labels})
    return tokenize_dataset(raw, student_tokenizer(), teacher_tokenizer=tokenizer), texts


def test_the_two_tokenizers_really_differ(tokenizer):
    assert not same_tokenizer(student_tokenizer(), tokenizer)
    assert same_tokenizer(tokenizer, BertTokenizer(vocab=tokenizer.get_vocab()))
    assert tokenizer("w12")["input_ids"] != student_tokenizer()("w12")["input_ids"]


def test_both_tokenizations_are_kept_and_aligned_per_example(tokenizer):
    data, texts = both_tokenized(tokenizer)
    assert {"input_ids", "teacher_input_ids", "attention_mask", "teacher_attention_mask", "labels"} <= set(
        data.column_names
    )
    s_tok = student_tokenizer()
    lengths_differ = 0
    for row, text in zip(data, texts):
        assert row["input_ids"] == s_tok(text)["input_ids"]
        assert row["teacher_input_ids"] == tokenizer(text)["input_ids"]
        assert s_tok.decode(row["input_ids"], skip_special_tokens=True) == text
        assert tokenizer.decode(row["teacher_input_ids"], skip_special_tokens=True) == text
        lengths_differ += len(row["input_ids"]) != len(row["teacher_input_ids"])
    assert lengths_differ > 10  # the test data exercises unequal lengths, not only a renumbering


def test_collator_pads_each_encoding_with_its_own_pad_token(tokenizer):
    data, texts = both_tokenized(tokenizer, n=8)
    batch = DistillCollator(student_tokenizer(), tokenizer)([data[i] for i in range(8)])
    assert batch["input_ids"].shape[0] == batch["teacher_input_ids"].shape[0] == 8
    assert batch["input_ids"].shape[1] != batch["teacher_input_ids"].shape[1]
    s_pad, t_pad = student_tokenizer().pad_token_id, tokenizer.pad_token_id
    assert s_pad != t_pad
    for i, text in enumerate(texts[:8]):
        s_len, t_len = int(batch["attention_mask"][i].sum()), int(batch["teacher_attention_mask"][i].sum())
        assert batch["input_ids"][i, :s_len].tolist() == student_tokenizer()(text)["input_ids"]
        assert batch["teacher_input_ids"][i, :t_len].tolist() == tokenizer(text)["input_ids"]
        assert (batch["input_ids"][i, s_len:] == s_pad).all() and (batch["teacher_input_ids"][i, t_len:] == t_pad).all()
    assert batch["labels"].tolist() == data["labels"][:8]


def test_trainer_feeds_each_model_its_own_ids_and_the_student_learns(tmp_path, tokenizer, trained_teacher):
    data, texts = both_tokenized(tokenizer, n=512, seed=5)
    student = student_model()
    args = DistillConfig(output_dir=str(tmp_path / "out"), max_steps=80, per_device_train_batch_size=32,
                         learning_rate=3e-3, lr_scheduler_type="constant", alpha=1.0, logging_steps=10,
                         report_to=[], save_strategy="no", use_cpu=True, seed=0)  # fmt: skip
    trainer = DistillTrainer(model=student, teacher=trained_teacher, args=args, train_dataset=data,
                             processing_class=student_tokenizer(), teacher_processing_class=tokenizer)  # fmt: skip
    assert trainer.cross_tokenizer
    # the teacher, run through the trainer on a collated batch, gives what it gives on its own tokenization
    batch = trainer.data_collator([data[i] for i in range(16)])
    direct = trained_teacher(**tokenizer(texts[:16], padding=True, return_tensors="pt")).logits
    torch.testing.assert_close(trainer.teacher_forward(batch).logits, direct, rtol=1e-5, atol=1e-5)
    trainer.train()
    kd = [h["loss_kd"] for h in trainer.state.log_history if "loss_kd" in h]
    assert kd[-1] < 0.5 * kd[0]
    held_out, _ = rule_sentences(300, 99)
    with torch.no_grad():
        t = trained_teacher(**tokenizer(held_out, padding=True, return_tensors="pt")).logits.argmax(-1)
        s = student.eval()(**student_tokenizer()(held_out, padding=True, return_tensors="pt")).logits.argmax(-1)
    assert (s == t).float().mean() > 0.85


@pytest.mark.parametrize("flag", ["hidden_weight", "attention_weight", "embedding_weight"])
def test_intermediate_losses_need_a_shared_tokenizer(tmp_path, tokenizer, trained_teacher, flag):
    data, _ = both_tokenized(tokenizer, n=8)
    args = DistillConfig(output_dir=str(tmp_path), report_to=[], use_cpu=True, **{flag: 1.0})
    with pytest.raises(ValueError, match="different tokenizers"):
        DistillTrainer(model=student_model(), teacher=trained_teacher, args=args, train_dataset=data,
                       processing_class=student_tokenizer(), teacher_processing_class=tokenizer)  # fmt: skip


def test_cross_tokenizer_data_without_the_teacher_tokenizer_is_refused(tmp_path, tokenizer, trained_teacher):
    data, _ = both_tokenized(tokenizer, n=8)
    args = DistillConfig(output_dir=str(tmp_path), report_to=[], use_cpu=True)
    with pytest.raises(ValueError, match="teacher_processing_class"):
        DistillTrainer(model=student_model(), teacher=trained_teacher, args=args, train_dataset=data,
                       processing_class=student_tokenizer())  # fmt: skip


def pipeline_flags(tmp_path, teacher_dir, n: int) -> list[str]:
    """A saved pretrained student with its own tokenizer, a TSV of n rule sentences, and the flags of a run."""
    student_dir = tmp_path / "pretrained_student"
    student_model().save_pretrained(student_dir)
    student_tokenizer().save_pretrained(student_dir)
    texts, labels = rule_sentences(n, 7)
    train = tmp_path / "train.tsv"
    train.write_text("sentence\tlabel\n" + "".join(f"{t}\t{y}\n" for t, y in zip(texts, labels)))
    return ["--teacher", str(teacher_dir), "--student", str(student_dir), "--train_file", str(train),
            "--output_dir", str(tmp_path / "out"), "--report_to", "none", "--use_cpu", "true"]  # fmt: skip


def test_pipeline_distills_into_a_student_with_its_own_tokenizer(tmp_path, trained_teacher_dir):
    flags = pipeline_flags(tmp_path, trained_teacher_dir, 200)
    flags += [
        "--validation_file",
        str(tmp_path / "train.tsv"),
        "--max_steps",
        "3",
        "--per_device_train_batch_size",
        "8",
    ]
    result = run(*parse_args(flags), command=["test"])
    assert "eval_accuracy" in result.metrics
    saved = BertTokenizer.from_pretrained(tmp_path / "out")
    assert saved.get_vocab() == student_tokenizer().get_vocab()  # the student keeps its own tokenizer


def test_pipeline_refuses_intermediate_losses_across_tokenizers(tmp_path, trained_teacher_dir):
    flags = pipeline_flags(tmp_path, trained_teacher_dir, 20) + ["--hidden_weight", "1"]
    with pytest.raises(ValueError, match="different tokenizers"):
        run(*parse_args(flags), command=["test"])
    assert not (tmp_path / "out").exists()


def test_albertize_at_full_rank_computes_the_same_function():
    source = tiny_bert(layers=2, hidden=32, heads=2, seed=4).eval()
    student = albertize(source, embedding_size=32, task_type=SEQ_CLS).eval()
    ids = torch.randint(len(SPECIALS), 40, (3, 9))
    with torch.no_grad():
        torch.testing.assert_close(student(input_ids=ids).logits, source(input_ids=ids).logits, rtol=1e-4, atol=1e-5)


def test_a_pretrained_student_with_factorized_embeddings_is_smaller_and_starts_close(tmp_path, tokenizer):
    source = tiny_bert(layers=2, hidden=32, heads=2, seed=4).eval()
    source.save_pretrained(tmp_path / "src")
    teacher = tiny_bert(layers=2, hidden=48, heads=2, seed=5)
    student = build_student(str(tmp_path / "src"), teacher, embedding_size=8).eval()
    assert type(student).__name__ == "AlbertForSequenceClassification"
    assert student.num_parameters() < source.num_parameters()
    assert student.config.vocab_size == source.config.vocab_size
    assert any("SVD" in note for note in student.distillkit_init_notes)
    ids = torch.randint(len(SPECIALS), 40, (4, 9))
    with torch.no_grad():
        s_hidden = student.albert(input_ids=ids).last_hidden_state
        src_hidden = source.bert(input_ids=ids).last_hidden_state
        random_student = albertize(source, embedding_size=8, init_from_source=False, task_type=SEQ_CLS).eval()
        r_hidden = random_student.albert(input_ids=ids).last_hidden_state
    cos = torch.nn.functional.cosine_similarity(s_hidden, src_hidden, dim=-1).mean()
    cos_random = torch.nn.functional.cosine_similarity(r_hidden, src_hidden, dim=-1).mean()
    assert cos > cos_random + 0.2


def test_export_measures_a_cross_tokenizer_teacher_on_its_own_ids(tmp_path, trained_teacher_dir):
    flags = pipeline_flags(tmp_path, trained_teacher_dir, 200) + ["--max_steps", "2"]
    run(*parse_args(flags), command=["test"])
    held_out, labels = rule_sentences(120, 11)
    dev = tmp_path / "dev.tsv"
    dev.write_text("sentence\tlabel\n" + "".join(f"{t}\t{y}\n" for t, y in zip(held_out, labels)))
    script = Path(__file__).resolve().parents[1] / "scripts" / "export.py"
    cmd = [sys.executable, str(script), str(tmp_path / "out"), "--int8", "--validation_file", str(dev),
           "--latency_examples", "4"]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)  # its own process: TorchScript state
    assert result.returncode == 0, result.stderr[-2000:]
    rows = {r["name"]: r for r in json.loads((tmp_path / "out" / "exports.json").read_text())["rows"]}
    # read through the student's ids the teacher would be at chance; on its own ids it knows the rule
    assert rows["teacher"]["metric_value"] > 0.9
    assert rows["student"]["agreement_with_student"] == 1.0 and "student int8 (PyTorch dynamic)" in rows
