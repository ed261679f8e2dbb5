"""What a new user meets first: model names checked before anything loads (a typo, an unreachable hub)."""

import re
import time

import httpx2
import pytest
from huggingface_hub import HfApi
from huggingface_hub import constants as hub_constants
from huggingface_hub.errors import RepositoryNotFoundError

from distillkit.loading import check_model_source, looks_like_path


@pytest.mark.parametrize(
    "name,path",
    [("../teachr", True), ("/abs/dir", True), ("~/models/x", True), ("out/teacher/", True), ("a/b/c", True),
     ("bert-base-uncased", False), ("sentence-transformers/all-MiniLM-L6-v2", False)],
)  # fmt: skip
def test_names_that_can_only_be_folders(name, path):
    assert looks_like_path(name) is path


def test_a_hub_name_on_a_machine_without_network_fails_at_once(monkeypatch):
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", False)
    calls = []

    def no_network(self, repo_id, **kw):
        calls.append((repo_id, kw.get("timeout")))
        raise httpx2.ConnectError("[Errno -2] Name or service not known")

    monkeypatch.setattr(HfApi, "model_info", no_network)
    start = time.perf_counter()
    with pytest.raises(OSError, match=r"is not a folder here and the hub cannot be reached \(ConnectError: .*"
                       r"Offline, give a local folder .*HF_HUB_OFFLINE=1"):  # fmt: skip
        check_model_source("someone/some-teacher", "teacher", "--teacher")
    assert time.perf_counter() - start < 2 and calls == [("someone/some-teacher", 10)]  # one request, no retries


def test_a_hub_name_the_hub_does_not_have(monkeypatch):
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", False)

    def missing(self, repo_id, **kw):
        raise RepositoryNotFoundError("404", response=httpx2.Response(404, request=httpx2.Request("GET", "https://x")))

    monkeypatch.setattr(HfApi, "model_info", missing)
    with pytest.raises(FileNotFoundError, match="is neither a folder here nor a model on the hub"):
        check_model_source("someone/teachr", "teacher", "--teacher")


def test_offline_mode_and_local_folders_ask_nothing_of_the_network(monkeypatch, tmp_path):
    def fail(*a, **kw):
        raise AssertionError("the hub was asked")

    monkeypatch.setattr(HfApi, "model_info", fail)
    check_model_source(str(tmp_path), "teacher", "--teacher")  # a folder
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    check_model_source("someone/some-teacher", "teacher", "--teacher")  # offline: from_pretrained reads the cache
    (tmp_path / "f.txt").write_text("x")
    with pytest.raises(ValueError, match="is a file; give the teacher's folder"):
        check_model_source(str(tmp_path / "f.txt"), "teacher", "--teacher")


# ---- distillation defaults and the automatic teacher cache ---------------------------------------------------------


def _train_file(tmp_path, rows=96):
    from .conftest import write_tsv

    path = tmp_path / "train.tsv"
    write_tsv(path, rows, 5)
    return path


def _flags(teacher_dir, train, out, *extra):
    return [
        "--teacher", str(teacher_dir), "--student", "custom", "--num_layers", "1", "--hidden_size", "16",
        "--num_heads", "2", "--train_file", str(train), "--output_dir", str(out), "--max_steps", "3",
        "--report_to", "none", "--disable_tqdm", "true", "--save_strategy", "no", *extra,
    ]  # fmt: skip


def _recipe(out):
    import yaml

    text = (out / "distillkit_recipe.yaml").read_text()
    return text, yaml.safe_load(text)


def test_defaults_fill_only_the_fields_nobody_set_and_are_written_with_their_reasons(tmp_path, trained_teacher_dir):
    from distillkit import parse_args
    from distillkit.recipe import DistillRecipe

    train = _train_file(tmp_path)
    recipe_file = tmp_path / "r.yaml"
    recipe_file.write_text("alpha: 0.5\n")  # a recipe field wins as a flag does
    out = tmp_path / "out"
    flags = _flags(trained_teacher_dir, train, out, "--config", str(recipe_file), "--weight_decay", "0.0")
    job = DistillRecipe(*parse_args(flags))
    job.run()
    args, data_args = job.args, job.data_args
    assert args.learning_rate == 5e-4 and args.per_device_train_batch_size == 32 and args.warmup_steps == 0.06
    assert args.alpha == 0.5 and args.weight_decay == 0.0  # given: kept, even where they equal a built-in default
    lengths = [len(job.tokenizer(t)["input_ids"]) for t in job.raw["train"]["sentence"]]
    assert data_args.max_seq_length % 8 == 0 and max(lengths) <= data_args.max_seq_length < max(lengths) + 8
    chosen = {c.field for c in job.defaults}
    assert chosen == {"learning_rate", "per_device_train_batch_size", "warmup_steps", "max_seq_length",
                      "teacher_cache"}  # fmt: skip
    text, saved = _recipe(out)
    assert saved["learning_rate"] == 5e-4 and saved["per_device_train_batch_size"] == 32 and saved["alpha"] == 0.5
    assert "#   learning_rate = 0.0005: a student with new layers, 16 wide (recipes/sst2/tiny.yaml)" in text
    assert "#   max_seq_length = " in text and "99% of 96 training rows" in text
    assert (out / "teacher_cache" / "manifest.json").is_file()  # logit losses only: the cache is on


def test_flags_keep_winning_and_a_program_gets_what_it_built(tmp_path, trained_teacher_dir):
    from distillkit import parse_args
    from distillkit.recipe import DistillRecipe

    train = _train_file(tmp_path)
    flags = _flags(trained_teacher_dir, train, tmp_path / "a", "--learning_rate", "1e-3", "--max_seq_length",
                   "24", "--per_device_train_batch_size", "8", "--teacher_cache", "none")  # fmt: skip
    job = DistillRecipe(*parse_args(flags))
    job.run()
    assert (job.args.learning_rate, job.data_args.max_seq_length, job.args.per_device_train_batch_size) == (
        1e-3, 24, 8)  # fmt: skip
    assert job.args.teacher_cache is None and not (tmp_path / "a" / "teacher_cache").exists()
    assert {c.field for c in job.defaults} == {"warmup_steps", "weight_decay", "alpha"}
    model_args, data_args, teacher_args, args = parse_args(_flags(trained_teacher_dir, train, tmp_path / "b"))
    del args.distillkit_given  # as if a program had built DistillConfig itself
    job = DistillRecipe(model_args, data_args, teacher_args, args)
    job.run()
    assert job.defaults == [] and job.args.learning_rate == 5e-5 and job.args.teacher_cache is None


def test_hidden_state_matching_keeps_the_live_teacher(tmp_path, trained_teacher_dir):
    from distillkit import parse_args
    from distillkit.recipe import DistillRecipe

    out = tmp_path / "out"
    job = DistillRecipe(*parse_args(_flags(trained_teacher_dir, _train_file(tmp_path), out, "--hidden_weight", "1")))
    job.run()
    assert job.args.teacher_cache is None and not (out / "teacher_cache").exists()
    assert "teacher_cache" not in {c.field for c in job.defaults}


def test_the_automatic_cache_is_built_once_and_reused_by_a_resumed_run(tmp_path, trained_teacher_dir):
    import subprocess
    import sys

    from .test_resilience import DRIVER, ROOT

    out = tmp_path / "out"
    flags = _flags(trained_teacher_dir, _train_file(tmp_path), out)
    flags[flags.index("--max_steps") + 1] = "6"
    flags[flags.index("--save_strategy") + 1] = "steps"
    flags += ["--save_steps", "2", "--dataloader_num_workers", "0"]
    killed = subprocess.run([sys.executable, "-c", DRIVER, "4", "SIGKILL", *flags], capture_output=True, text=True,
                            timeout=600, cwd=ROOT)  # fmt: skip
    assert killed.returncode == -9, killed.stderr[-3000:]
    shards = {p: p.stat().st_mtime_ns for p in (out / "teacher_cache").iterdir()}
    assert any(p.name == "manifest.json" for p in shards)
    resumed = subprocess.run([sys.executable, str(ROOT / "scripts" / "distill.py"), *flags, "--resume_from_checkpoint",
                              "latest"], capture_output=True, text=True, timeout=600, cwd=ROOT)  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert re.search(r"teacher cache: 96 rows read from .*teacher_cache", resumed.stderr)
    assert {p: p.stat().st_mtime_ns for p in (out / "teacher_cache").iterdir()} == shards  # not scored again


# ---- the plan before the first step --------------------------------------------------------------------------------


def test_the_probe_leaves_the_model_and_the_random_state_as_they_were():
    import torch

    from distillkit.plan import time_step

    from .conftest import tiny_bert

    model = tiny_bert()
    model.eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    batch = {"input_ids": torch.randint(5, 40, (4, 12)), "attention_mask": torch.ones(4, 12, dtype=torch.long)}
    state = torch.get_rng_state()
    seconds = time_step(model, batch, backward=True)
    assert 0 < seconds < 5
    assert torch.equal(torch.get_rng_state(), state) and not model.training
    assert all(p.grad is None for p in model.parameters())
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_the_plan_says_what_will_run_before_the_first_step(tmp_path, trained_teacher_dir, caplog):
    import logging

    from transformers import BertModel

    from distillkit import parse_args
    from distillkit.recipe import DistillRecipe

    from .conftest import make_tokenizer, tiny_bert

    train = _train_file(tmp_path)
    caplog.set_level(logging.INFO)
    job = DistillRecipe(*parse_args(_flags(trained_teacher_dir, train, tmp_path / "a")))
    job.run()
    text = job.plan.text()
    assert "teacher stage: none" in text
    assert re.search(r"teacher: scores the 96 training rows once into .*teacher_cache \(the default: only the", text)
    assert re.search(
        r"distillation: 3 steps, learning rate 0.0005 \(the default for a student with new "
        r"layers, 16 wide",
        text,
    )
    assert re.search(r"in all: about \d+ s before evaluation; timed now, load average", text)
    messages = [r.getMessage() for r in caplog.records]
    plan_at = next(i for i, m in enumerate(messages) if m.startswith("plan:\n"))
    assert plan_at < next(i for i, m in enumerate(messages) if m.startswith("== distillation"))

    base = tmp_path / "base"
    BertModel(tiny_bert().config).save_pretrained(base)
    make_tokenizer().save_pretrained(base)
    flags = _flags(base, train, tmp_path / "b", "--teacher_max_steps", "2", "--hidden_weight", "1")
    job = DistillRecipe(*parse_args(flags))
    job.run()
    text = job.plan.text()
    assert re.search(r"teacher stage: .* is fine-tuned first: 2 steps at batch 32, learning rate 5e-05: about", text)
    assert "teacher: runs live in every step (the losses read inside the teacher)" in text


def test_json_lines_with_named_ner_tags_are_read_as_tags(tmp_path):
    from distillkit.data.conll import read_token_jsonl

    path = tmp_path / "train.jsonl"
    path.write_text('{"tokens": ["EU", "rejects", "it"], "ner_tags": ["B-ORG", "O", "O"]}\n\n'
                    '{"tokens": ["Peter"], "tags": ["I-PER"]}\n')  # fmt: skip
    words, tags = read_token_jsonl(str(path))
    assert words == [["EU", "rejects", "it"], ["Peter"]] and tags == [["B-ORG", "O", "O"], ["I-PER"]]


def test_every_spelling_of_a_flag_counts_as_given():
    from distillkit import parse_args

    argv = ["--teacher", "t", "--student", "tiny", "--output_dir", "o", "--learning_r", "1e-3", "--alpha=0.3",
            "--no_init_from_teacher", "--per-device-train-batch-size", "4"]  # fmt: skip
    *_, args = parse_args(argv)
    assert args.learning_rate == 1e-3 and args.per_device_train_batch_size == 4  # argparse took them all
    assert {"learning_rate", "alpha", "init_from_teacher", "per_device_train_batch_size"} <= args.distillkit_given
    assert "weight_decay" not in args.distillkit_given and "max_seq_length" not in args.distillkit_given
