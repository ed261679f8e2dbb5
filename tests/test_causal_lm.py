"""Causal language models as a task type: packing and instruction encoding, the trainer's chunked losses against the
direct computation from full logits, completion-only losses (a spy on what reaches them), perplexity as the plain
evaluation computes it, and decoder students (teacher:K, custom) that reload and generate without distillkit."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F
from datasets import Dataset, DatasetDict

from distillkit import DistillConfig, DistillTrainer, build_student, get_task_type, parse_args
from distillkit.data.lm_text import encode_instructions, pack_documents, read_lm_file
from distillkit.metrics import evaluate_model
from distillkit.recipe import run

from .lm_fixtures import counting_text, lm_tokenizer, tiny_gpt2, tiny_llama, train_lm, write_text


@pytest.fixture(scope="module")
def lm():
    tokenizer = lm_tokenizer()
    teacher = train_lm(tiny_llama(), tokenizer, counting_text(200, 0), steps=80)
    return tokenizer, teacher


def _task(block=16):
    task = get_task_type("causal-lm")
    task.block_size = block
    return task


def _data(tokenizer, teacher, block=16):
    raw = DatasetDict(train=Dataset.from_dict({"text": counting_text(120, 1)}),
                      validation=Dataset.from_dict({"text": counting_text(30, 2)}))  # fmt: skip
    return _task(block).encode(raw, tokenizer, teacher.config, block, False)


def test_documents_are_joined_with_eos_and_cut_into_blocks(tmp_path):
    tokenizer = lm_tokenizer()
    path = write_text(tmp_path / "t.txt", ["one two three", "four five", "six seven eight nine"])
    docs = [r["text"] for r in read_lm_file(str(path))]
    assert docs == ["one two three", "four five", "six seven eight nine"]
    stream = tokenizer(" </s> ".join(docs) + " </s>", add_special_tokens=False)["input_ids"]  # 12 tokens
    train = pack_documents(docs, tokenizer, 5, keep_last=False)
    assert train["input_ids"] == [stream[0:5], stream[5:10]]  # the last partial block is dropped
    valid = pack_documents(docs, tokenizer, 5, keep_last=True)
    assert valid["input_ids"][-1] == stream[10:] and valid["labels"] == valid["input_ids"]
    assert stream.count(tokenizer.eos_token_id) == 3


def test_instruction_rows_count_only_the_completion():
    tokenizer = lm_tokenizer()
    rows = [{"prompt": "one two three", "completion": "four five"}]
    out = encode_instructions(rows, tokenizer, 16)
    ids = tokenizer("one two three four five", add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    assert out["input_ids"] == [ids] and out["labels"] == [[-100, -100, -100, *ids[3:]]]
    assert encode_instructions(rows, tokenizer, 16, completion_only=False)["labels"] == [ids]


def test_the_chunked_trainer_loss_is_the_direct_loss_from_full_logits(lm, tmp_path):
    tokenizer, teacher = lm
    data = _data(tokenizer, teacher)
    student = build_student("teacher:1", teacher, task_type="causal-lm")
    args = DistillConfig(output_dir=str(tmp_path), alpha=0.7, temperature=2.0, lm_chunk_size=5, report_to="none",
                         use_cpu=True, kd_loss="jsd", jsd_beta=0.3)  # fmt: skip
    trainer = DistillTrainer(model=student, teacher=teacher, args=args, train_dataset=data["train"],
                             processing_class=tokenizer, task_type="causal-lm")  # fmt: skip
    batch = trainer.data_collator([data["train"][i] for i in range(4)])
    loss = trainer.compute_loss(student, batch)
    loss.backward()
    chunked = {n: p.grad.clone() for n, p in student.named_parameters() if p.grad is not None}
    student.zero_grad()
    from distillkit.losses.lm import token_divergence

    logits = student(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    with torch.no_grad():
        t_logits = teacher(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    counted = batch["labels"][:, 1:] != -100
    s, t, y = logits[:, :-1][counted], t_logits[:, :-1][counted], batch["labels"][:, 1:][counted]
    direct = 0.7 * token_divergence("jsd", s, t, 2.0, 0.3).mean() + 0.3 * F.cross_entropy(s, y)
    direct.backward()
    assert loss.item() == pytest.approx(direct.item(), abs=1e-5)
    for name, param in student.named_parameters():
        assert torch.allclose(chunked[name], param.grad, atol=1e-5), name


def test_no_prompt_token_reaches_the_hard_or_the_soft_loss(lm, tmp_path, monkeypatch):
    """A spy on the chunked losses: every position they score predicts a completion token."""
    import distillkit.losses.lm as lm_losses

    tokenizer, teacher = lm
    rows = [{"prompt": "the cat sat on", "completion": "one two three"}, {"prompt": "a dog ran", "completion": "four"}]
    data = Dataset.from_dict(encode_instructions(rows * 8, tokenizer, 16))
    completion_ids = set(tokenizer("one two three four", add_special_tokens=False)["input_ids"]) | {1}
    seen = []
    original = lm_losses._chunk_terms

    def spy(s_logits, t_logits, targets, weights, temperature, beta, cached=None):
        teacher_rows = cached[0].shape[0] if cached is not None else None if t_logits is None else t_logits.shape[0]
        seen.append((set(targets.tolist()), s_logits.shape[0], teacher_rows))
        return original(s_logits, t_logits, targets, weights, temperature, beta, cached)

    monkeypatch.setattr(lm_losses, "_chunk_terms", spy)
    student = build_student("teacher:1", teacher, task_type="causal-lm")
    args = DistillConfig(output_dir=str(tmp_path), alpha=0.5, max_steps=2, per_device_train_batch_size=8,
                         report_to="none", use_cpu=True, save_strategy="no")  # fmt: skip
    DistillTrainer(model=student, teacher=teacher, args=args, train_dataset=data, processing_class=tokenizer,
                   task_type="causal-lm").train()  # fmt: skip
    assert seen
    for targets, rows_scored, teacher_rows in seen:
        assert targets <= completion_ids  # no prompt word is ever a target
        assert teacher_rows == rows_scored  # the soft loss reads exactly the hard loss's positions
    # the completions' tokens (3 + EOS and 1 + EOS per pair of rows) are all that is counted
    assert sum(n for _, n, _ in seen) == 2 * 8 // 2 * (4 + 2)


def test_perplexity_is_the_same_from_chunks_and_from_the_plain_evaluation(lm, tmp_path):
    tokenizer, teacher = lm
    data = _data(tokenizer, teacher)
    task = _task()
    args = DistillConfig(output_dir=str(tmp_path), alpha=0.0, per_device_eval_batch_size=3, report_to="none",
                         use_cpu=True, lm_chunk_size=7)  # fmt: skip
    trainer = DistillTrainer(model=teacher, teacher=teacher, args=args, train_dataset=data["train"],
                             eval_dataset=data["validation"], processing_class=tokenizer, task_type=task)  # fmt: skip
    chunked = trainer.evaluate()
    plain = evaluate_model(teacher, tokenizer, data["validation"], args, task.compute_metrics(teacher.config),
                           data_collator=task.data_collator(tokenizer))  # fmt: skip
    assert chunked["eval_perplexity"] == pytest.approx(plain["eval_perplexity"], rel=1e-5)
    # and as the model's own loss gives it: the mean next-token NLL over every counted token of the blocks
    total, count = 0.0, 0
    with torch.no_grad():
        for row in data["validation"]:
            ids = torch.tensor([row["input_ids"]])
            total += teacher(input_ids=ids, labels=ids).loss.item() * (ids.shape[1] - 1)
            count += ids.shape[1] - 1
    assert plain["eval_perplexity"] == pytest.approx(math.exp(total / count), rel=1e-5)
    assert plain["eval_tokens"] == count and 0.0 <= plain["eval_accuracy"] <= 1.0


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_decoder_students_keep_tied_embeddings_reload_and_generate(family, tmp_path):
    from transformers import AutoModelForCausalLM

    tokenizer = lm_tokenizer()
    teacher = tiny_llama() if family == "llama" else tiny_gpt2()
    student = build_student("teacher:1", teacher, task_type="causal-lm")
    assert type(student) is type(teacher) and student.config.num_hidden_layers == 1
    assert student.get_output_embeddings().weight.data_ptr() == student.get_input_embeddings().weight.data_ptr()
    custom = build_student("custom", teacher, task_type="causal-lm", num_layers=1, hidden_size=16, num_heads=2)
    assert type(custom) is type(teacher) and custom.config.hidden_size == 16
    for name, model in (("teacher-layers", student), ("custom", custom)):
        model.save_pretrained(tmp_path / name)
        reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / name).eval()
        ids = tokenizer("one two", return_tensors="pt")["input_ids"]
        out = reloaded.generate(input_ids=ids, max_new_tokens=4, do_sample=False, pad_token_id=2)
        assert out.shape == (1, ids.shape[1] + 4)


def test_a_teacher_with_padded_vocabulary_rows_distils_over_the_shared_ids(lm, tmp_path):
    tokenizer, teacher = lm
    padded = tiny_llama(vocab_size=teacher.config.vocab_size + 8)
    student = tiny_llama(layers=1, seed=1)
    data = _data(tokenizer, teacher)
    args = DistillConfig(output_dir=str(tmp_path), alpha=1.0, max_steps=2, per_device_train_batch_size=8,
                         report_to="none", use_cpu=True, save_strategy="no")  # fmt: skip
    trainer = DistillTrainer(model=student, teacher=padded, args=args, train_dataset=data["train"],
                             processing_class=tokenizer, task_type="causal-lm")  # fmt: skip
    trainer.train()
    assert math.isfinite(trainer.state.log_history[-1]["train_loss"])
    with pytest.raises(ValueError, match="larger than the teacher"):
        DistillTrainer(model=padded, teacher=student, args=args, train_dataset=data["train"],
                       processing_class=tokenizer, task_type="causal-lm")  # fmt: skip


def test_a_whole_run_from_text_files_writes_a_generating_student(lm, tmp_path):
    tokenizer, teacher = lm
    teacher.save_pretrained(tmp_path / "teacher")
    tokenizer.save_pretrained(tmp_path / "teacher")
    train = write_text(tmp_path / "train.txt", counting_text(150, 3))
    valid = write_text(tmp_path / "valid.txt", counting_text(30, 4))
    flags = ["--teacher", str(tmp_path / "teacher"), "--student", "teacher:1", "--train_file", str(train),
             "--validation_file", str(valid), "--output_dir", str(tmp_path / "out"), "--max_steps", "6",
             "--block_size", "16", "--kd_loss", "reverse_kl", "--report_to", "none", "--use_cpu", "true"]  # fmt: skip
    result = run(*parse_args(flags))
    assert math.isfinite(result.metrics["eval_perplexity"]) and "teacher_eval_perplexity" in result.teacher_metrics
    card = (tmp_path / "out" / "README.md").read_text()
    assert "pipeline_tag: text-generation" in card and "perplexity" in card
    from distillkit.tasks.causal_lm import CARD_PROMPTS

    assert "Greedy continuations of fixed prompts" in card and all(f"| {p} |" in card for p in CARD_PROMPTS)
    recipe = (tmp_path / "out" / "distillkit_recipe.yaml").read_text()
    assert "kd_loss: reverse_kl" in recipe and "task_type: causal-lm" in recipe
    state = json.loads((tmp_path / "out" / "trainer_state.json").read_text())
    assert any("loss_reverse_kl" in entry for entry in state["log_history"])


def _student_folder(tmp_path, words):
    student = tiny_llama(layers=1, seed=2, vocab_size=len(words) + 4)
    student.save_pretrained(tmp_path / "student")
    lm_tokenizer(tmp_path / "student", words=words)
    return tmp_path / "student"


def test_a_student_tokenizer_that_disagrees_is_refused_naming_the_ids(lm, tmp_path):
    from .lm_fixtures import WORDS

    tokenizer, teacher = lm
    teacher.save_pretrained(tmp_path / "teacher")
    tokenizer.save_pretrained(tmp_path / "teacher")
    train = write_text(tmp_path / "train.txt", counting_text(60, 3))
    flags = ["--teacher", str(tmp_path / "teacher"), "--train_file", str(train), "--output_dir", str(tmp_path / "out"),
             "--max_steps", "2", "--block_size", "16", "--report_to", "none", "--use_cpu", "true"]  # fmt: skip
    swapped = [WORDS[1], WORDS[0], *WORDS[2:]]  # "one" and "zero" trade ids
    with pytest.raises(ValueError, match=r"disagree on 2 ids \(id 4: student 'one', teacher 'zero'"):
        run(*parse_args([*flags, "--student", str(_student_folder(tmp_path, swapped))]))
    assert not (tmp_path / "out").exists()
    # a student's tokenizer that is the teacher's without its last words: both read it, the teacher's rows beyond
    # the student's are dropped from the comparison
    result = run(*parse_args([*flags, "--student", str(_student_folder(tmp_path / "b", WORDS[:-2]))]))
    assert math.isfinite(result.metrics["train_loss"])


def test_evaluation_reports_the_teachers_top1_agreement(lm, tmp_path):
    tokenizer, teacher = lm
    data = _data(tokenizer, teacher)
    args = DistillConfig(output_dir=str(tmp_path), alpha=0.5, report_to="none", use_cpu=True)
    common = {
        "args": args,
        "train_dataset": data["train"],
        "eval_dataset": data["validation"],
        "processing_class": tokenizer,
        "task_type": "causal-lm",
    }
    itself = DistillTrainer(model=teacher, teacher=teacher, **common)
    assert itself.evaluate()["eval_teacher_agreement"] == 1.0
    student = build_student("custom", teacher, task_type="causal-lm", num_layers=1, hidden_size=16, num_heads=2)
    other = DistillTrainer(model=student, teacher=teacher, **common)
    assert 0.0 <= other.evaluate()["eval_teacher_agreement"] < 1.0
