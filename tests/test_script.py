import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from distillkit import load_recipe, parse_args

from .conftest import rule_sentences

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "distill.py"


def _write_tsv(path, n, seed):
    texts, labels = rule_sentences(n, seed)
    path.write_text("sentence\tlabel\n" + "".join(f"{t}\t{y}\n" for t, y in zip(texts, labels)))
    return path


@pytest.fixture()
def data_files(tmp_path):
    return _write_tsv(tmp_path / "train.tsv", 2560, 1), _write_tsv(tmp_path / "dev.tsv", 200, 2)


def _flags(teacher_dir, train, dev, out, *extra):
    return [
        "--teacher", str(teacher_dir), "--student", "custom", "--num_layers", "1", "--hidden_size", "32",
        "--num_heads", "2", "--train_file", str(train), "--validation_file", str(dev), "--output_dir", str(out),
        "--max_steps", "80", "--per_device_train_batch_size", "32", "--learning_rate", "3e-3",
        "--lr_scheduler_type", "constant", "--logging_steps", "20", "--save_strategy", "no", "--report_to", "none",
        "--max_seq_length", "32", "--disable_tqdm", "true", *extra,
    ]  # fmt: skip


def test_distill_script_end_to_end_on_a_tsv(tmp_path, trained_teacher_dir, data_files):
    out = tmp_path / "out"
    cmd = [sys.executable, str(SCRIPT), *_flags(trained_teacher_dir, *data_files, out, "--hidden_weight", "1")]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (out / "model.safetensors").is_file() and (out / "config.json").is_file()
    assert (out / "tokenizer.json").is_file()
    metrics = json.loads((out / "eval_results.json").read_text())
    assert metrics["eval_accuracy"] > 0.8, metrics
    sizes = json.loads((out / "size_report.json").read_text())
    assert sizes["student"]["parameters"] < sizes["teacher"]["parameters"]
    assert sizes["student"]["initialisation"]
    history = json.loads((out / "trainer_state.json").read_text())["log_history"]
    kd = [e["loss_kd"] for e in history if "loss_kd" in e]
    assert len(kd) == 4 and kd[-1] < kd[0]
    assert all("loss_hidden" in e for e in history if "loss_kd" in e)
    card = (out / "README.md").read_text()
    assert f"`{trained_teacher_dir}`" in card and "| accuracy |" in card
    assert "--hidden_weight 1" in card and "hidden x 1" in card


def _main():
    from distillkit.commands import distill

    return distill.main


@pytest.mark.parametrize(
    "change,message",
    [
        ({"--train_file": "missing.tsv"}, r"train file 'missing.tsv' does not exist"),
        (
            {"--text_column": "text"},
            r"column\(s\) \['text'\] not found in the train data \(columns: \['sentence', 'label'\]\)",
        ),
        ({"--label_column": "gold"}, r"\['gold'\] not found"),
        ({"--temperature": "0"}, r"temperature must be > 0"),
        ({"--alpha": "2"}, r"alpha must be in \[0, 1\]"),
        ({"--student": "huge"}, r"unknown student preset 'huge'"),
        ({"--layer_map": "1:9", "--hidden_weight": "1"}, r"layer_map pair 1:9 is out of range"),
    ],
)
def test_bad_input_is_refused_before_training(tmp_path, trained_teacher_dir, data_files, change, message):
    flags = _flags(trained_teacher_dir, *data_files, tmp_path / "out")
    for flag, value in change.items():
        if flag in flags:
            flags[flags.index(flag) + 1] = value
        else:
            flags += [flag, value]
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        _main()(flags)
    assert not (tmp_path / "out" / "model.safetensors").exists()


def test_script_reports_bad_input_without_a_traceback(tmp_path, trained_teacher_dir, data_files):
    flags = _flags(trained_teacher_dir, tmp_path / "nope.tsv", data_files[1], tmp_path / "out")
    result = subprocess.run([sys.executable, str(SCRIPT), *flags], capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert "error: train file" in result.stderr and "Traceback" not in result.stderr


# distillation recipes (recipes/accelerate holds launch configs; the SST-2 benchmark's plan and teacher stage are not)
RECIPES = (
    sorted((ROOT / "recipes").glob("*.yaml"))
    + sorted(p for p in (ROOT / "recipes" / "sst2").glob("*.yaml") if p.name not in ("benchmark.yaml", "teacher.yaml"))
    + sorted((ROOT / "distillkit" / "templates").glob("*.yaml"))  # the quickstart's, shipped in the package
)
ACCELERATE_CONFIGS = sorted((ROOT / "recipes" / "accelerate").glob("*.yaml"))


def test_there_are_recipes():
    assert RECIPES


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.name)
def test_every_recipe_loads(recipe):
    values = load_recipe(str(recipe))
    model_args, data_args, teacher_args, args = parse_args(["--config", str(recipe)])
    assert model_args.teacher and model_args.student
    for key, value in values.items():
        for obj in (model_args, data_args, teacher_args, args):
            if hasattr(obj, key) and key not in ("output_dir", "report_to", "lr_scheduler_type", "eval_strategy"):
                assert getattr(obj, key) == value, key
    header = recipe.read_text().splitlines()[0]
    assert header.startswith("#") and "distillkit distill --config" in recipe.read_text().split("\n\n")[0]
    assert yaml.safe_load(recipe.read_text()) == values
    assert os.path.basename(str(recipe)) in recipe.read_text()  # the command names this recipe


@pytest.mark.parametrize("config", ACCELERATE_CONFIGS, ids=lambda p: p.name)
def test_every_accelerate_config_loads_and_names_its_command(config):
    from accelerate.commands.config.config_args import load_config_from_file

    cluster = load_config_from_file(str(config))  # what `accelerate launch --config_file` reads
    assert cluster.distributed_type is not None and cluster.mixed_precision == "bf16"
    command = next(line for line in config.read_text().splitlines() if "accelerate launch" in line)
    assert f"--config_file recipes/accelerate/{config.name}" in command and "-m distillkit distill" in command


def test_there_are_accelerate_configs():
    assert {p.name for p in ACCELERATE_CONFIGS} >= {
        "single_gpu.yaml", "multi_gpu_ddp.yaml", "fsdp.yaml", "deepspeed_zero2.yaml"
    }  # fmt: skip
