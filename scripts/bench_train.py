#!/usr/bin/env python
"""Training-efficiency benchmark: what distillation costs next to the arithmetic it needs.

    python scripts/bench_train.py                                  # CPU: small BERT-shaped teacher and student
    python scripts/bench_train.py --teacher_layers 12 --teacher_width 768 --student_layers 4 --student_width 312 \
        --batch_size 64 --bf16 --output bench_gpu.json             # GPU: BERT-base-sized teacher, 4 x 312 student

Measures on the same batches: (a) a student training step alone, (b) the teacher's forward alone, (c) a
DistillTrainer step, (d) a DistillTrainer step reading the teacher cache, (e) the same distillation as a minimal
plain-PyTorch loop. Models are built from configs (nothing is downloaded); sentences come from
../shared/data/glue/sst2/train.tsv when present, else random tokens. Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from datasets import Dataset
from transformers import BertConfig, BertForSequenceClassification, TrainerCallback

from distillkit import DistillConfig, DistillTrainer, soft_target_loss
from distillkit.cache import INDEX_COLUMN
from distillkit.cli import run_cli, text_table

SST2 = Path(__file__).resolve().parents[2] / "shared" / "data" / "glue" / "sst2" / "train.tsv"


def rows(n: int, seq_len: int, vocab: int, seed: int) -> list[dict]:
    """Token rows of realistic lengths: SST-2 sentence lengths when the data is here, random ids either way."""
    rng = random.Random(seed)
    if SST2.is_file():
        lines = SST2.read_text(encoding="utf-8").splitlines()[1:]
        lengths = [min(seq_len, len(line.split("\t")[0].split()) + 2) for line in rng.sample(lines, n)]
    else:
        lengths = [rng.randint(8, seq_len) for _ in range(n)]
    return [{"input_ids": [2] + [rng.randrange(5, vocab) for _ in range(k - 2)] + [3], "labels": rng.randrange(2)}
            for k in lengths]  # fmt: skip


def collate(batch: list[dict], device: torch.device) -> dict[str, torch.Tensor]:
    width = max(len(r["input_ids"]) for r in batch)
    ids = torch.zeros(len(batch), width, dtype=torch.long)
    for i, r in enumerate(batch):
        ids[i, : len(r["input_ids"])] = torch.tensor(r["input_ids"])
    out = {"input_ids": ids.to(device), "attention_mask": (ids != 0).long().to(device),
           "labels": torch.tensor([r["labels"] for r in batch]).to(device)}  # fmt: skip
    if INDEX_COLUMN in batch[0]:  # the row numbers that find each example's cached teacher logits
        out[INDEX_COLUMN] = torch.tensor([r[INDEX_COLUMN] for r in batch])
    return out


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, batches, warmup: int, device: torch.device) -> tuple[float, float]:
    """(median seconds per call after `warmup` calls, peak memory in MB: CUDA allocator, else process max RSS)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    for i, batch in enumerate(batches):
        sync(device)
        start = time.perf_counter()
        fn(batch)
        sync(device)
        if i >= warmup:
            times.append(time.perf_counter() - start)
    peak = torch.cuda.max_memory_allocated() / 1e6 if device.type == "cuda" else resource.getrusage(
        resource.RUSAGE_SELF).ru_maxrss / 1e3  # fmt: skip
    return statistics.median(times), peak


class StepTimer(TrainerCallback):
    def __init__(self, device: torch.device):
        self.device, self.times, self._start = device, [], 0.0

    def on_step_begin(self, args, state, control, **kwargs):
        sync(self.device)
        self._start = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        sync(self.device)
        self.times.append(time.perf_counter() - self._start)


def main() -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--teacher_layers", type=int, default=4)
    p.add_argument("--teacher_width", type=int, default=256)
    p.add_argument("--student_layers", type=int, default=2)
    p.add_argument("--student_width", type=int, default=128)
    p.add_argument("--batch_size", type=int, default=32)
    p.add_argument("--seq_len", type=int, default=64)
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--bf16", action="store_true")
    p.add_argument("--output", default="bench_train.json")
    o = p.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    vocab = 30522

    def bert(layers: int, width: int) -> BertForSequenceClassification:
        heads = max(1, width // 64) if width % 64 == 0 else 12 if width % 12 == 0 else 4
        return BertForSequenceClassification(BertConfig(vocab_size=vocab, hidden_size=width, num_hidden_layers=layers,
                                                        num_attention_heads=heads, intermediate_size=4 * width,
                                                        max_position_embeddings=512, num_labels=2))  # fmt: skip

    torch.manual_seed(0)
    teacher = bert(o.teacher_layers, o.teacher_width).to(device).eval().requires_grad_(False)
    if o.bf16:
        teacher.to(torch.bfloat16)
    data = rows(o.batch_size * (o.steps + o.warmup), o.seq_len, vocab, seed=0)
    batches = [collate(data[i : i + o.batch_size], device) for i in range(0, len(data), o.batch_size)]
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=o.bf16)

    def fresh_student():
        torch.manual_seed(1)
        student = bert(o.student_layers, o.student_width).to(device).train()
        # fused AdamW, as the Trainer's default `adamw_torch_fused`: the same optimizer arithmetic on both sides
        return student, torch.optim.AdamW(student.parameters(), lr=1e-4, fused=True)

    results = {}
    student, opt = fresh_student()

    def student_step(b):
        with autocast:
            loss = F.cross_entropy(student(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits,
                                   b["labels"])  # fmt: skip
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    results["a: student step"] = timed(student_step, batches, o.warmup, device)

    @torch.no_grad()
    def teacher_step(b):
        teacher(input_ids=b["input_ids"], attention_mask=b["attention_mask"])

    results["b: teacher forward"] = timed(teacher_step, batches, o.warmup, device)
    student, opt = fresh_student()

    def plain_step(b):
        with torch.no_grad():
            t_logits = teacher(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits
        with autocast:
            s_logits = student(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits
            loss = 0.5 * soft_target_loss(s_logits, t_logits, 2.0) + 0.5 * F.cross_entropy(s_logits, b["labels"])
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    results["e: plain PyTorch loop"] = timed(plain_step, batches, o.warmup, device)

    dataset = Dataset.from_list(data)
    for name, cache in (("c: DistillTrainer step", None), ("d: DistillTrainer step, cached teacher", True)):
        student, _ = fresh_student()
        timer = StepTimer(device)
        with tempfile.TemporaryDirectory() as tmp:
            args = DistillConfig(
                output_dir=tmp, max_steps=o.steps + o.warmup, per_device_train_batch_size=o.batch_size,
                learning_rate=1e-4, temperature=2.0, alpha=0.5, report_to="none", save_strategy="no",
                logging_steps=10**6, disable_tqdm=True, bf16=o.bf16, dataloader_num_workers=0,
                teacher_cache=os.path.join(tmp, "cache") if cache else None, use_cpu=device.type == "cpu",
            )  # fmt: skip
            cpu_collate = lambda b: collate(b, torch.device("cpu"))  # noqa: E731 (the Trainer moves batches itself)
            trainer = DistillTrainer(model=student, teacher=teacher, args=args, train_dataset=dataset,
                                     data_collator=cpu_collate, callbacks=[timer])  # fmt: skip
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats()
            trainer.train()
        peak = torch.cuda.max_memory_allocated() / 1e6 if device.type == "cuda" else resource.getrusage(
            resource.RUSAGE_SELF).ru_maxrss / 1e3  # fmt: skip
        results[name] = (statistics.median(timer.times[o.warmup :]), peak)

    a, b = results["a: student step"][0], results["b: teacher forward"][0]
    c, d = results["c: DistillTrainer step"][0], results["d: DistillTrainer step, cached teacher"][0]
    e = results["e: plain PyTorch loop"][0]
    table = [(k, f"{1000 * t:.2f}", f"{o.batch_size / t:.0f}", f"{m:.0f}") for k, (t, m) in results.items()]
    memory = "peak MB (CUDA)" if device.type == "cuda" else "max RSS MB (process, cumulative)"
    print(text_table(("measurement", "ms/step", "examples/s", memory), table))
    ratios = {"c / (a + b)": c / (a + b), "d / a": d / a, "examples/s c / e": e / c}
    print(f"\nc / (a + b) = {ratios['c / (a + b)']:.3f} (goal <= 1.10)   d / a = {ratios['d / a']:.3f} (goal <= 1.05)"
          f"   examples/s of c against e = {ratios['examples/s c / e']:.3f} (goal >= 1.0)")  # fmt: skip
    report = {"device": str(torch.cuda.get_device_name() if device.type == "cuda" else "cpu"),
              "threads": torch.get_num_threads(), "settings": vars(o), "ratios": ratios,
              "results": {k: {"seconds_per_step": t, "peak_mb": m} for k, (t, m) in results.items()}}  # fmt: skip
    with open(o.output, "w", encoding="utf-8") as f:
        json.dump(report, f, indent=2)
    print(f"written to {o.output}")
    return report


if __name__ == "__main__":
    run_cli(main)
