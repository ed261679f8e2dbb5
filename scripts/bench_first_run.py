"""The first-run benchmark (issue: a first run a user can trust): the README's kind of command with no tuning flags,
before and after distillkit's defaults, beside the matching recipe.

    python scripts/bench_first_run.py --models ~/.cache/distillkit-bench/models \
        --data ../shared/data --out ~/.cache/distillkit-bench/first-run \
        [--before_src DIR]   # a checkout of the code before the defaults (git worktree add DIR 20a794e)

Two data sets, each with a teacher fine-tuned once by distillkit's teacher stage and then given to every run (so
that what is timed is the distillation stage: the command's wall time without a teacher stage):

- **pairs**: an RTE-sized sentence-pair task built from SQuAD as GLUE built QNLI (does this sentence of the paragraph
  hold the answer to the question?): 2,490 training pairs from train.json, 277 validation pairs from
  validation.json, half of each positive; teacher all-MiniLM-L6-v2;
- **sst2-6000**: the first 6,000 SST-2 training sentences, the full dev set; teacher all-mpnet-base-v2.

Runs per data set: `before` (the command on the code before the defaults, when --before_src is given), `after` (the
same command on this code), and for SST-2 `recipe` (recipes/sst2/tiny.yaml at its 3 epochs, the same epochs as the
defaults). Every unit is resumable: a finished run's JSON is kept in --out and not run again. Prints a table and
writes `first_run.json` (no machine paths).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAIRS_TRAIN, PAIRS_DEV = 2490, 277  # GLUE RTE's sizes
SST2_ROWS = 6000


def sentences(context: str) -> list[tuple[int, str]]:
    """(start offset, sentence) for each sentence of a paragraph (split after . ! ? followed by a space)."""
    out, start = [], 0
    for match in re.finditer(r"(?<=[.!?])\s+", context):
        out.append((start, context[start : match.start()]))
        start = match.end()
    out.append((start, context[start:]))
    return [(s, t) for s, t in out if t.strip()]


def squad_pairs(path: Path, count: int, seed: int) -> list[tuple[str, str, int]]:
    """`count` (question, sentence, label) pairs, alternating positive (the sentence that holds the first answer) and
    negative (another sentence of the same paragraph)."""
    rng = random.Random(seed)
    rows: list[tuple[str, str, int]] = []
    data = json.loads(path.read_text(encoding="utf-8"))["data"]
    for article in data:
        for paragraph in article["paragraphs"]:
            parts = sentences(paragraph["context"])
            if len(parts) < 2:
                continue
            for qa in paragraph["qas"]:
                at = qa["answers"][0]["answer_start"]
                holding = [t for s, t in parts if s <= at < s + len(t)]
                others = [t for s, t in parts if not s <= at < s + len(t)]
                if not holding or not others:
                    continue
                positive = len(rows) % 2 == 0
                rows.append((qa["question"], holding[0] if positive else rng.choice(others), int(positive)))
                if len(rows) == count:
                    return rows
    raise ValueError(f"{path} gives only {len(rows)} pairs, fewer than {count}")


def write_tsv(path: Path, header: list[str], rows: list[tuple]) -> None:
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, delimiter="\t", quoting=csv.QUOTE_MINIMAL, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def prepare(data: Path, out: Path) -> dict[str, Path]:
    """The two data sets' files under out/data (made once)."""
    folder = out / "data"
    folder.mkdir(parents=True, exist_ok=True)
    files = {k: folder / f"{k}.tsv" for k in ("pairs-train", "pairs-dev", "sst2-train")}
    if not files["pairs-train"].is_file():
        header = ["sentence1", "sentence2", "label"]
        write_tsv(files["pairs-train"], header, squad_pairs(data / "squad" / "train.json", PAIRS_TRAIN, 0))
        write_tsv(files["pairs-dev"], header, squad_pairs(data / "squad" / "validation.json", PAIRS_DEV, 1))
    if not files["sst2-train"].is_file():
        lines = (data / "glue" / "sst2" / "train.tsv").read_text(encoding="utf-8").splitlines()
        files["sst2-train"].write_text("\n".join(lines[: SST2_ROWS + 1]) + "\n", encoding="utf-8")
    files["sst2-dev"] = data / "glue" / "sst2" / "dev.tsv"
    return files


def has_bf16() -> bool:
    """Whether this CPU runs bf16 autocast fast (AVX-512 BF16 or AMX): only then does the teacher stage use it."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def distill(flags: list[str], log: Path, src: Path | None = None) -> float:
    """Run `distillkit distill FLAGS` (on the code in `src` when given); returns its wall seconds."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if src is not None:
        env["PYTHONPATH"] = str(src)
    command = [sys.executable, "-m", "distillkit", "distill", *flags]
    started = time.perf_counter()
    with open(log, "w", encoding="utf-8") as f:
        done = subprocess.run(command, stdout=f, stderr=subprocess.STDOUT, env=env, cwd=src or ROOT)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command[3:6])}... failed ({done.returncode}); see {log}")
    return time.perf_counter() - started


def teacher(name: str, model: Path, files: dict[str, Path], prefix: str, task: list[str], out: Path) -> Path:
    """The teacher fine-tuned once by distillkit's teacher stage (a 1-step student run around it)."""
    run_dir = out / f"{name}-teacher"
    if (run_dir / "teacher" / "config.json").is_file():
        return run_dir / "teacher"
    flags = ["--teacher", str(model), "--student", "tiny", *task, "--train_file", str(files[f"{prefix}-train"]),
             "--validation_file", str(files[f"{prefix}-dev"]), "--output_dir", str(run_dir), "--max_steps", "1",
             "--teacher_bf16", str(has_bf16()).lower(), "--report_to", "none", "--disable_tqdm", "true",
             "--teacher_cache", "none"]  # fmt: skip
    if prefix == "sst2":
        flags += ["--teacher_num_train_epochs", "2"]  # as recipes/sst2/teacher.yaml
    distill(flags, out / f"{name}-teacher.log")
    return run_dir / "teacher"


def student(name: str, variant: str, flags: list[str], out: Path, src: Path | None = None) -> dict:
    """One distillation run (no teacher stage: the teacher is fine-tuned already), its record kept in --out."""
    record_path = out / "runs" / f"{name}-{variant}.json"
    if record_path.is_file():
        return json.loads(record_path.read_text())
    run_dir = out / "runs" / f"{name}-{variant}"
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    flags = [*flags, "--output_dir", str(run_dir), "--report_to", "none", "--disable_tqdm", "true"]
    if (run_dir / "config.json").exists():
        import shutil

        shutil.rmtree(run_dir)  # an unfinished run starts again
    wall = distill(flags, out / "runs" / f"{name}-{variant}.log", src)
    train = json.loads((run_dir / "train_results.json").read_text())
    evaluation = json.loads((run_dir / "eval_results.json").read_text())
    state = json.loads((run_dir / "trainer_state.json").read_text())
    record = {
        "data": name, "variant": variant, "wall_s": round(wall, 1), "train_s": round(train["train_runtime"], 1),
        "accuracy": evaluation["eval_accuracy"], "steps": state["global_step"],
        "batch": state.get("train_batch_size"), "teacher_cache": (run_dir / "teacher_cache").is_dir(),
        "command": "distillkit distill " + " ".join(_portable(flags)),
    }  # fmt: skip
    record_path.parent.mkdir(parents=True, exist_ok=True)
    record_path.write_text(json.dumps(record, indent=2))
    return record


def _portable(flags: list[str]) -> list[str]:
    home = str(Path.home())
    return [f.replace(home, "~") for f in flags]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", required=True, help="folder with all-mpnet-base-v2 and all-MiniLM-L6-v2")
    parser.add_argument("--data", required=True, help="../shared/data")
    parser.add_argument("--out", required=True)
    parser.add_argument("--before_src", help="a checkout of the code before the defaults, for the `before` runs")
    parser.add_argument("--sets", nargs="+", choices=("pairs", "sst2-6000"), default=("pairs", "sst2-6000"),
                        help="the data sets to run (default: both)")  # fmt: skip
    opts = parser.parse_args(argv)
    out, models = Path(opts.out).expanduser().resolve(), Path(opts.models).expanduser().resolve()
    files = prepare(Path(opts.data).resolve(), out)  # absolute: the `before` runs start in --before_src
    before = Path(opts.before_src).expanduser() if opts.before_src else None
    records = []
    sets = [("pairs", models / "all-MiniLM-L6-v2", "pairs", ["--text_column", "sentence1", "--text_pair_column",
                                                             "sentence2"]),
            ("sst2-6000", models / "all-mpnet-base-v2", "sst2", ["--task", "sst2"])]  # fmt: skip
    for name, model, prefix, task in (s for s in sets if s[0] in opts.sets):
        fine_tuned = teacher(name, model, files, prefix, task, out)
        common = ["--teacher", str(fine_tuned), "--student", "tiny", *task, "--train_file",
                  str(files[f"{prefix}-train"]), "--validation_file", str(files[f"{prefix}-dev"])]  # fmt: skip
        if before is not None:
            records.append(student(name, "before", common, out, before))
        records.append(student(name, "after", common, out))
        if prefix == "sst2":
            recipe = ["--config", str(ROOT / "recipes" / "sst2" / "tiny.yaml"), *common]
            records.append(student(name, "recipe", recipe, out))
    header = ("data", "variant", "wall s", "train s", "accuracy", "steps", "batch", "cache")
    rows = [(r["data"], r["variant"], f"{r['wall_s']:.0f}", f"{r['train_s']:.0f}", f"{r['accuracy']:.4f}",
             str(r["steps"]), str(r["batch"]), "yes" if r["teacher_cache"] else "no") for r in records]  # fmt: skip
    widths = [max(len(x) for x in col) for col in zip(header, *rows)]
    for row in (header, *rows):
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)))
    from distillkit.sst2_benchmark.measure import machine

    data_root = str(Path(opts.data).resolve())
    for record in records:  # the data folder as the flag was typed (no machine paths in the published JSON)
        record["command"] = record["command"].replace(data_root, opts.data).replace(f"{ROOT}/", "")
    result = {**machine(), "rows": records}
    (out / "first_run.json").write_text(json.dumps(result, indent=2))
    print(f"\nwritten: {out / 'first_run.json'} (CPU: {result['cpu']}, {result['cores']} cores)")


if __name__ == "__main__":
    main()
