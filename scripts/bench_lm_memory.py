#!/usr/bin/env python
"""Peak memory and time of one causal-LM training step: cross-entropy only, direct KD, chunked KD (distillkit's).

    python scripts/bench_lm_memory.py --out ~/.cache/distillkit-bench/lm-memory.json
    python scripts/bench_lm_memory.py --teacher ~/.cache/distillkit-bench/models/SmolLM2-135M-Instruct ...

Each mode runs in a child process of its own, so that its peak resident memory (`ru_maxrss`, the CPU) or
`torch.cuda.max_memory_allocated` (a GPU) is its own:

- `teacher`: the teacher's forward pass alone, under no_grad (its time is part of every distillation step);
- `ce`: the student's step on its own loss (`model(input_ids, labels=...)`: full logits, next-token cross-entropy),
  backward, AdamW;
- `direct`: the KD step written plainly: both models' full `(batch, block, vocab)` logits, forward KL with T^2
  mixed with the cross-entropy (alpha 0.9), backward, AdamW;
- `chunked`: the same loss as `DistillTrainer` computes it for `--task_type causal-lm`: each model's last hidden
  states taken at its output layer's input (`trainer.HeadInput`), the terms `lm_chunk_size` positions at a time
  (`losses.lm.fused_lm_losses`), backward, AdamW.

The teacher by default is SmolLM2-135M's architecture with random weights (30 layers x 576, 9 heads / 3 key-value
heads, vocabulary 49,152, tied embeddings): memory and time do not depend on the weights; `--teacher DIR` loads a
real one. The student is the same architecture at 4 x 256 (4 heads / 2 key-value heads, FFN 704). Every step is
timed after one warm-up step (median of `--steps`). Prints a table and writes JSON (no machine paths): the ratios
the issue's targets name are `chunked / ce` for the peak and `chunked / (teacher + ce)` for the time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

import torch

MODES = ("teacher", "ce", "direct", "chunked")


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_mb(device: str) -> float:
    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def models(cli: argparse.Namespace):
    from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    if cli.teacher:
        teacher = AutoModelForCausalLM.from_pretrained(cli.teacher)
        base = teacher.config
    else:
        base = LlamaConfig(vocab_size=49152, hidden_size=576, num_hidden_layers=30, num_attention_heads=9,
                           num_key_value_heads=3, intermediate_size=1536, max_position_embeddings=2048,
                           tie_word_embeddings=True, rms_norm_eps=1e-5, rope_theta=100000.0)  # fmt: skip
        teacher = LlamaForCausalLM(base)
    small = LlamaConfig(vocab_size=base.vocab_size, hidden_size=256, num_hidden_layers=4, num_attention_heads=4,
                        num_key_value_heads=2, intermediate_size=704, max_position_embeddings=2048,
                        tie_word_embeddings=True)  # fmt: skip
    student = LlamaForCausalLM(small)
    return teacher.eval().requires_grad_(False), student.train()


def child(cli: argparse.Namespace) -> dict:
    from distillkit.losses.lm import fused_lm_losses
    from distillkit.trainer import HeadInput

    device = "cuda" if cli.device == "cuda" else "cpu"
    torch.set_num_threads(cli.threads) if device == "cpu" else None
    teacher, student = models(cli)
    teacher.to(device)
    student.to(device)
    optimizer = torch.optim.AdamW(student.parameters(), lr=1e-4)
    vocab = student.config.vocab_size
    gen = torch.Generator().manual_seed(1)
    ids = torch.randint(0, vocab, (cli.batch, cli.block), generator=gen).to(device)
    alpha, temperature = 0.9, 2.0

    def step() -> None:
        if cli.mode == "teacher":
            with torch.no_grad():
                teacher(input_ids=ids)
            return
        if cli.mode == "ce":
            loss = student(input_ids=ids, labels=ids).loss
        elif cli.mode == "direct":
            logits = student(input_ids=ids).logits[:, :-1]
            with torch.no_grad():
                t_logits = teacher(input_ids=ids).logits[:, :-1]
            log_q = torch.log_softmax(logits.float() / temperature, -1)
            log_p = torch.log_softmax(t_logits.float() / temperature, -1)
            kd = (log_p.exp() * (log_p - log_q)).sum(-1).mean() * temperature**2
            ce = torch.nn.functional.cross_entropy(logits.reshape(-1, vocab).float(), ids[:, 1:].reshape(-1))
            loss = alpha * kd + (1 - alpha) * ce
        else:
            with HeadInput(student) as captured:
                student(input_ids=ids)
            with torch.no_grad(), HeadInput(teacher) as t_captured:
                teacher(input_ids=ids)
            hidden = captured.hidden[:, :-1].reshape(-1, captured.hidden.shape[-1])
            t_hidden = t_captured.hidden[:, :-1].reshape(-1, t_captured.hidden.shape[-1])
            loss, _ = fused_lm_losses(hidden, student.get_output_embeddings(), ids[:, 1:].reshape(-1),
                                      {"kd": alpha, "ce": 1 - alpha}, t_hidden, teacher.get_output_embeddings(),
                                      temperature, chunk_size=cli.chunk)  # fmt: skip
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def sync() -> None:
        if device == "cuda":
            torch.cuda.synchronize()

    before = rss_mb()
    step()  # warm-up; it also allocates the optimizer's state
    times = []
    for _ in range(cli.steps):
        sync()
        start = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - start)
    return {"mode": cli.mode, "peak_mb": round(peak_mb(device), 1), "rss_before_step_mb": round(before, 1),
            "step_s": round(statistics.median(times), 3), "steps_timed": cli.steps}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teacher", default=None, help="a causal LM folder (default: SmolLM2-135M's shape, random)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--block", type=int, default=512)
    parser.add_argument("--chunk", type=int, default=1024, help="positions per chunk (--lm_chunk_size)")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per mode, after one warm-up")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    parser.add_argument("--out", default=None, help="write the results here as JSON")
    parser.add_argument("--mode", default=None, help=argparse.SUPPRESS)  # a child's mode
    cli = parser.parse_args()
    if cli.mode:
        print(json.dumps(child(cli)))
        return
    rows = {}
    for mode in cli.modes:
        args = [sys.executable, __file__, "--mode", mode, "--batch", str(cli.batch), "--block", str(cli.block),
                "--chunk", str(cli.chunk), "--steps", str(cli.steps), "--threads", str(cli.threads), "--device",
                cli.device, *(["--teacher", cli.teacher] if cli.teacher else [])]  # fmt: skip
        done = subprocess.run(args, capture_output=True, text=True)
        if done.returncode != 0:
            sys.exit(f"mode {mode} failed:\n{done.stderr[-3000:]}")
        rows[mode] = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"{mode}: {rows[mode]}", flush=True)
    ratios = {}
    if {"ce", "chunked"} <= set(rows):
        ratios["chunked_peak_over_ce"] = round(rows["chunked"]["peak_mb"] / rows["ce"]["peak_mb"], 3)
    if {"ce", "direct"} <= set(rows):
        ratios["direct_peak_over_ce"] = round(rows["direct"]["peak_mb"] / rows["ce"]["peak_mb"], 3)
    if {"teacher", "ce", "chunked"} <= set(rows):
        base = rows["teacher"]["step_s"] + rows["ce"]["step_s"]
        ratios["chunked_time_over_teacher_plus_ce"] = round(rows["chunked"]["step_s"] / base, 3)
        if "direct" in rows:
            ratios["direct_time_over_teacher_plus_ce"] = round(rows["direct"]["step_s"] / base, 3)
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    command = "python scripts/bench_lm_memory.py " + " ".join(sys.argv[1:]).replace(os.path.expanduser("~"), "~")
    result = {
        "command": command,
        "teacher": "SmolLM2-135M shape, random weights" if not cli.teacher else os.path.basename(cli.teacher),
        "student": "Llama 4 x 256, the teacher's vocabulary",
        "batch": cli.batch, "block": cli.block, "chunk": cli.chunk, "device": cli.device, "cpu": cpu,
        "threads": cli.threads, "rows": rows, "ratios": ratios,
        "targets": {"chunked_peak_over_ce": 1.3, "chunked_time_over_teacher_plus_ce": 1.15},
    }  # fmt: skip
    print()
    print(f"{'mode':<8} {'peak MB':>9} {'RSS before step MB':>19} {'step s':>8}")
    for mode, row in rows.items():
        print(f"{mode:<8} {row['peak_mb']:>9.0f} {row['rss_before_step_mb']:>19.0f} {row['step_s']:>8.2f}")
    for name, value in ratios.items():
        print(f"{name}: {value}")
    if cli.out:
        os.makedirs(os.path.dirname(os.path.abspath(cli.out)), exist_ok=True)
        with open(cli.out, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
