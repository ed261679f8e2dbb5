import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from distillkit import DistillConfig, DistillTrainer

from .conftest import rule_dataset, rule_sentences, tiny_bert

ROOT = Path(__file__).resolve().parents[1]


def _flags(teacher_dir, train, out, batch):
    return [
        "--teacher", str(teacher_dir), "--student", "custom", "--num_layers", "1", "--hidden_size", "16",
        "--num_heads", "2", "--train_file", str(train), "--output_dir", str(out), "--max_steps", "4",
        "--per_device_train_batch_size", str(batch), "--learning_rate", "1e-3", "--hidden_weight", "1",
        "--logging_steps", "1", "--save_strategy", "no", "--report_to", "none", "--disable_tqdm", "true",
        "--seed", "5", "--use_cpu", "true",
    ]  # fmt: skip


def test_two_cpu_processes_train_like_one_with_the_same_global_batch(tmp_path, trained_teacher_dir):
    texts, labels = rule_sentences(64, 4)
    train = tmp_path / "train.tsv"
    train.write_text("sentence\tlabel\n" + "".join(f"{t}\t{y}\n" for t, y in zip(texts, labels)))
    # `accelerate launch --cpu` starts a single process unless MPI is set up; the torchrun launcher behind
    # --multi_gpu starts two, and --use_cpu makes them join a gloo group (MULTI_CPU) instead of looking for GPUs
    launcher = [str(Path(sys.executable).parent / "accelerate"), "launch", "--multi_gpu", "--num_processes", "2",
                "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]  # fmt: skip
    script = str(ROOT / "scripts" / "distill.py")
    ddp = subprocess.run([*launcher, script, *_flags(trained_teacher_dir, train, tmp_path / "ddp", 8)],
                         capture_output=True, text=True, timeout=600)  # fmt: skip
    assert ddp.returncode == 0, ddp.stderr[-4000:]
    single = subprocess.run([sys.executable, script, *_flags(trained_teacher_dir, train, tmp_path / "one", 16)],
                            capture_output=True, text=True, timeout=600)  # fmt: skip
    assert single.returncode == 0, single.stderr[-4000:]

    def history(name):
        state = json.loads((tmp_path / name / "trainer_state.json").read_text())
        return [e for e in state["log_history"] if "loss_kd" in e], state

    ddp_logs, ddp_state = history("ddp")
    one_logs, _ = history("one")
    # both processes consumed data: 4 steps x 2 processes x 8 = the 64 rows, one epoch
    assert ddp_state["train_batch_size"] == 8 and ddp_logs[-1]["epoch"] == pytest.approx(1.0)
    # the first step sees the same 16 examples and the same initial weights: the same loss, up to dropout noise
    assert ddp_logs[0]["loss"] == pytest.approx(one_logs[0]["loss"], rel=0.05)
    assert ddp_logs[0]["loss_kd"] == pytest.approx(one_logs[0]["loss_kd"], rel=0.05)
    # the student was written once, whole, by the main process
    out = tmp_path / "ddp"
    assert (out / "model.safetensors").is_file() and not list(out.glob(".tmp-*"))


def test_gradient_accumulation_matches_one_big_batch(tmp_path, tokenizer, trained_teacher):
    # equal-length sentences: every masked mean then weighs tokens alike in both set-ups
    data = rule_dataset(tokenizer, 40, seed=12).filter(lambda r: len(r["input_ids"]) >= 6).select(range(8))
    data = data.map(lambda r: {k: v[:6] for k, v in r.items() if k != "labels"})
    assert {len(ids) for ids in data["input_ids"]} == {6}

    def grads(batch_size, accumulation):
        torch.manual_seed(0)
        student = tiny_bert(layers=1, hidden=16, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
        args = DistillConfig(
            output_dir=str(tmp_path), report_to="none", per_device_train_batch_size=batch_size,
            gradient_accumulation_steps=accumulation, hidden_weight=1.0, seed=0,
        )  # fmt: skip
        trainer = DistillTrainer(model=student, teacher=trained_teacher, args=args, train_dataset=data,
                                 processing_class=tokenizer)  # fmt: skip
        trainer.current_gradient_accumulation_steps = accumulation
        collate = trainer.data_collator
        rows = [data[i] for i in range(8)]
        total = 0.0
        for start in range(0, 8, batch_size):
            total += trainer.training_step(trainer.model, collate(rows[start : start + batch_size])).item()
        params = [*trainer.model.parameters(), *trainer.distill_modules.parameters()]
        return total, [p.grad.clone() for p in params if p.grad is not None]

    loss_acc, grads_acc = grads(4, 2)
    loss_one, grads_one = grads(8, 1)
    assert loss_acc == pytest.approx(loss_one, rel=1e-5)
    assert len(grads_acc) == len(grads_one) > 0
    for a, b in zip(grads_acc, grads_one):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-4)


def test_two_cpu_processes_distil_a_language_model_like_one(tmp_path):
    """causal-lm under DDP: the chunked losses from each process's blocks, the top-k cache built by the main process
    and read by the other; the first step's loss as one process computes it on the same 16 blocks."""
    from .lm_fixtures import counting_text, lm_tokenizer, tiny_llama, train_lm, write_text

    tokenizer = lm_tokenizer(tmp_path / "teacher")
    train_lm(tiny_llama(), tokenizer, counting_text(200, 0), steps=60).save_pretrained(tmp_path / "teacher")
    text = write_text(tmp_path / "train.txt", counting_text(400, 5))

    def flags(out, batch):
        return ["--teacher", str(tmp_path / "teacher"), "--student", "teacher:1", "--train_file", str(text),
                "--output_dir", str(out), "--max_steps", "3", "--block_size", "16", "--per_device_train_batch_size",
                str(batch), "--learning_rate", "1e-3", "--alpha", "0.8", "--logging_steps", "1", "--save_strategy",
                "no", "--report_to", "none", "--disable_tqdm", "true", "--seed", "5", "--use_cpu", "true"]  # fmt: skip

    launcher = [str(Path(sys.executable).parent / "accelerate"), "launch", "--multi_gpu", "--num_processes", "2",
                "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]  # fmt: skip
    script = str(ROOT / "scripts" / "distill.py")
    ddp = subprocess.run([*launcher, script, *flags(tmp_path / "ddp", 8)], capture_output=True, text=True,
                         timeout=600)  # fmt: skip
    assert ddp.returncode == 0, ddp.stderr[-4000:]
    single = subprocess.run([sys.executable, script, *flags(tmp_path / "one", 16)], capture_output=True, text=True,
                            timeout=600)  # fmt: skip
    assert single.returncode == 0, single.stderr[-4000:]

    def first(name):
        state = json.loads((tmp_path / name / "trainer_state.json").read_text())
        return next(e for e in state["log_history"] if "loss_kd" in e)

    assert first("ddp")["loss"] == pytest.approx(first("one")["loss"], rel=1e-3)  # no dropout in the tiny Llama
    assert first("ddp")["loss_kd"] == pytest.approx(first("one")["loss_kd"], rel=1e-3)
    assert (tmp_path / "ddp" / "teacher_cache" / "manifest.json").is_file()
    assert (tmp_path / "ddp" / "model.safetensors").is_file()
