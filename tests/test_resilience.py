import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import BertForSequenceClassification

from distillkit import DistillConfig, DistillTrainer, load_teacher, register_loss
from distillkit.losses import LOSS_REGISTRY
from distillkit.resilience import (
    COMPLETE_MARKER,
    NonFiniteLossError,
    atomic_write_text,
    latest_checkpoint,
    resolve_resume,
    save_then_move,
)

from .conftest import rule_dataset, rule_sentences, tiny_bert

ROOT = Path(__file__).resolve().parents[1]

# runs scripts/distill.py in this process after arranging for a signal at the start of a given step
DRIVER = """
import os, runpy, signal, sys
from distillkit.trainer import DistillTrainer
at, sig = int(sys.argv[1]), getattr(signal, sys.argv[2])
original = DistillTrainer.training_step
def training_step(self, *args, **kwargs):
    if self.state.global_step == at:
        os.kill(os.getpid(), sig)
    return original(self, *args, **kwargs)
DistillTrainer.training_step = training_step
sys.argv = ["distill.py", *sys.argv[3:]]
runpy.run_path({script!r}, run_name="__main__")
""".format(script=str(ROOT / "scripts" / "distill.py"))


@pytest.fixture()
def train_file(tmp_path):
    texts, labels = rule_sentences(128, 11)
    path = tmp_path / "train.tsv"
    path.write_text("sentence\tlabel\n" + "".join(f"{t}\t{y}\n" for t, y in zip(texts, labels)))
    return path


def _flags(teacher_dir, train_file, out, *extra):
    # a width-16 student of a width-32 teacher with hidden-state matching: the projections are part of the state
    return [
        "--teacher", str(teacher_dir), "--student", "custom", "--num_layers", "1", "--hidden_size", "16",
        "--num_heads", "2", "--train_file", str(train_file), "--output_dir", str(out), "--max_steps", "12",
        "--per_device_train_batch_size", "16", "--learning_rate", "3e-3", "--hidden_weight", "1",
        "--save_strategy", "steps", "--save_steps", "4", "--logging_steps", "4", "--seed", "3",
        "--report_to", "none", "--disable_tqdm", "true", "--dataloader_num_workers", "0",
    ]  # fmt: skip


def _distill(flags, signal_at=None, signal_name="SIGKILL"):
    cmd = [sys.executable, str(ROOT / "scripts" / "distill.py"), *flags]
    if signal_at is not None:
        cmd = [sys.executable, "-c", DRIVER, str(signal_at), signal_name, *flags]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=ROOT)


def test_a_killed_run_resumes_to_the_same_weights(tmp_path, trained_teacher_dir, train_file):
    straight = _distill(_flags(trained_teacher_dir, train_file, tmp_path / "a"))
    assert straight.returncode == 0, straight.stderr[-3000:]

    out = tmp_path / "b"
    killed = _distill(_flags(trained_teacher_dir, train_file, out), signal_at=6, signal_name="SIGKILL")
    assert killed.returncode == -9  # killed, not stopped politely
    assert latest_checkpoint(str(out)) == str(out / "checkpoint-4")
    assert not (out / "model.safetensors").exists()
    resumed = _distill(_flags(trained_teacher_dir, train_file, out, "--resume_from_checkpoint", "latest"))
    assert resumed.returncode == 0, resumed.stderr[-3000:]

    a, b = load_file(str(tmp_path / "a" / "model.safetensors")), load_file(str(out / "model.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(b[key], a[key], atol=1e-6, rtol=0, msg=key)
    # the projections went through the checkpoint too
    pa = load_file(str(tmp_path / "a" / "checkpoint-12" / "distill_modules.safetensors"))
    pb = load_file(str(out / "checkpoint-12" / "distill_modules.safetensors"))
    for key in pa:
        torch.testing.assert_close(pb[key], pa[key], atol=1e-6, rtol=0, msg=key)


def test_sigterm_writes_a_checkpoint_and_prints_the_resume_command(tmp_path, trained_teacher_dir, train_file):
    out = tmp_path / "run"
    result = _distill(_flags(trained_teacher_dir, train_file, out), signal_at=2, signal_name="SIGTERM")
    assert result.returncode == 143, result.stderr[-3000:]
    assert "interrupted by SIGTERM: checkpoint" in result.stderr
    assert re.search(r"Resume with: python \S*scripts/distill.py --teacher", result.stderr)  # the script as run
    assert "--resume_from_checkpoint latest" in result.stderr
    assert (out / "checkpoint-3" / COMPLETE_MARKER).is_file()  # the step in flight finished, then was saved
    assert not (out / "model.safetensors").exists()  # the run is not passed off as finished


def test_save_then_move_is_complete_or_absent(tmp_path):
    out = tmp_path / "student"
    save_then_move(str(out), lambda d: (Path(d, "model.safetensors").write_text("v1"), Path(d, "config.json")))
    Path(out, "config.json").write_text("{}")

    def broken(d):
        Path(d, "model.safetensors").write_text("v2-half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        save_then_move(str(out), broken)
    assert Path(out, "model.safetensors").read_text() == "v1"  # the previous state, readable
    assert sorted(os.listdir(out)) == ["config.json", "model.safetensors"]  # no temporary leftovers

    atomic_write_text(str(out / "README.md"), "card v1")
    with pytest.raises(TypeError):
        atomic_write_text(str(out / "README.md"), None)  # fails while writing
    assert (out / "README.md").read_text() == "card v1"


def test_an_interrupted_final_save_keeps_the_previous_student(tmp_path, tokenizer, trained_teacher):
    args = DistillConfig(output_dir=str(tmp_path), max_steps=1, report_to="none", save_strategy="no")
    trainer = DistillTrainer(
        model=tiny_bert(layers=1, hidden=16), teacher=trained_teacher, args=args,
        train_dataset=rule_dataset(tokenizer, 16, seed=1), processing_class=tokenizer,
    )  # fmt: skip
    trainer.save_model()
    before = (tmp_path / "model.safetensors").read_bytes()
    original = BertForSequenceClassification.save_pretrained

    def crash(self, directory, *a, **k):
        Path(directory, "model.safetensors").write_bytes(b"half")
        raise RuntimeError("killed mid-save")

    BertForSequenceClassification.save_pretrained = crash
    try:
        with pytest.raises(RuntimeError, match="mid-save"):
            trainer.save_model()
    finally:
        BertForSequenceClassification.save_pretrained = original
    assert (tmp_path / "model.safetensors").read_bytes() == before
    assert BertForSequenceClassification.from_pretrained(tmp_path).config.hidden_size == 16


def test_incomplete_checkpoints_are_never_resumed(tmp_path):
    for step, complete in ((4, True), (8, False)):
        (tmp_path / f"checkpoint-{step}").mkdir()
        if complete:
            (tmp_path / f"checkpoint-{step}" / COMPLETE_MARKER).write_text("{}")
    assert latest_checkpoint(str(tmp_path)) == str(tmp_path / "checkpoint-4")
    assert resolve_resume("latest", str(tmp_path)) == str(tmp_path / "checkpoint-4")
    with pytest.raises(ValueError, match="is incomplete"):
        resolve_resume(str(tmp_path / "checkpoint-8"), str(tmp_path))
    with pytest.raises(ValueError, match="holds no complete checkpoint"):
        resolve_resume("latest", str(tmp_path / "nothing"))


def test_a_nan_loss_stops_the_run_at_that_step(tmp_path, tokenizer, trained_teacher):
    calls = []

    @register_loss("test_nan_after_3")
    def nan_later(inputs):
        calls.append(1)
        value = inputs.student_outputs.logits.mean() * 0
        return value + (float("nan") if len(calls) > 3 else 0.0)

    try:
        args = DistillConfig(
            output_dir=str(tmp_path), max_steps=10, save_strategy="steps", save_steps=2, report_to="none",
            extra_losses=["test_nan_after_3"], per_device_train_batch_size=8, disable_tqdm=True,
        )  # fmt: skip
        trainer = DistillTrainer(
            model=tiny_bert(layers=1, hidden=16), teacher=trained_teacher, args=args,
            train_dataset=rule_dataset(tokenizer, 80, seed=2), processing_class=tokenizer,
        )  # fmt: skip
        with pytest.raises(NonFiniteLossError, match=r"'test_nan_after_3': nan.*at step 3.*fp16 overflow"):
            trainer.train()
    finally:
        LOSS_REGISTRY.pop("test_nan_after_3", None)
    assert len(calls) == 4
    assert latest_checkpoint(str(tmp_path)) == str(tmp_path / "checkpoint-2")  # the last good state is kept
    assert not (tmp_path / "checkpoint-4").exists()


def test_pickle_only_weights_are_refused_unless_allowed(tmp_path, trained_teacher):
    directory = tmp_path / "pickled"
    directory.mkdir()
    trained_teacher.config.save_pretrained(directory)
    torch.save(trained_teacher.state_dict(), directory / "pytorch_model.bin")
    with pytest.raises(ValueError, match=r"holds only pickle weights \['pytorch_model.bin'\].*--allow_pickle_weights"):
        load_teacher(str(directory))
    loaded = load_teacher(str(directory), allow_pickle=True)
    ids = torch.randint(5, 45, (2, 6))
    torch.testing.assert_close(loaded.eval()(input_ids=ids).logits, trained_teacher.eval()(input_ids=ids).logits)


TEACHER_DRIVER = """
import os, runpy, signal, sys
from transformers import Trainer
at = int(sys.argv[1])
original = Trainer.training_step
def training_step(self, *args, **kwargs):
    if type(self).__name__ == "_TeacherTrainer" and self.state.global_step == at:
        os.kill(os.getpid(), signal.SIGKILL)
    return original(self, *args, **kwargs)
Trainer.training_step = training_step
sys.argv = ["distill.py", *sys.argv[2:]]
runpy.run_path({script!r}, run_name="__main__")
""".format(script=str(ROOT / "scripts" / "distill.py"))


def test_a_run_killed_in_its_teacher_stage_resumes_that_stage(tmp_path, tokenizer, train_file):
    from transformers import BertModel

    base = tmp_path / "base"  # no classification head: the teacher stage fine-tunes it
    BertModel(tiny_bert().config).save_pretrained(base)
    tokenizer.save_pretrained(base)

    def flags(out, *extra):
        return ["--teacher", str(base), "--student", "custom", "--num_layers", "1", "--hidden_size", "16",
                "--num_heads", "2", "--train_file", str(train_file), "--output_dir", str(out), "--max_steps", "2",
                "--teacher_max_steps", "12", "--teacher_save_steps", "4", "--teacher_batch_size", "16",
                "--teacher_learning_rate", "1e-3", "--allow_weak_teacher", "true", "--report_to", "none",
                "--disable_tqdm", "true", "--seed", "2", *extra]  # fmt: skip

    straight = _distill(flags(tmp_path / "a"))
    assert straight.returncode == 0, straight.stderr[-3000:]
    assert not list((tmp_path / "a" / "teacher").glob("checkpoint-*"))  # removed once the stage is complete
    out = tmp_path / "b"
    killed = subprocess.run([sys.executable, "-c", TEACHER_DRIVER, "6", *flags(out)], capture_output=True, text=True,
                            timeout=600, cwd=ROOT)  # fmt: skip
    assert killed.returncode == -9
    assert latest_checkpoint(str(out / "teacher")) == str(out / "teacher" / "checkpoint-4")
    assert not (out / "teacher" / "config.json").exists()
    resumed = _distill(flags(out, "--resume_from_checkpoint", "latest"))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "teacher stage: resuming from" in resumed.stderr
    a = load_file(str(tmp_path / "a" / "teacher" / "model.safetensors"))
    b = load_file(str(out / "teacher" / "model.safetensors"))
    for key in a:
        torch.testing.assert_close(b[key], a[key], atol=1e-6, rtol=0, msg=key)
