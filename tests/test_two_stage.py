"""The two-stage schedule (intermediate_epochs): stage 1 trains the intermediate terms alone, stage 2 the prediction
layer, in one run whose checkpoints resume in the stage they were written in."""

import pytest
import torch
from safetensors.torch import load_file
from transformers import TrainerCallback

from distillkit import DistillConfig, DistillTrainer
from distillkit.frozen_teacher import Teacher

from .conftest import rule_dataset, tiny_bert

CLASSIFIER = ("classifier.weight", "classifier.bias")


def _args(tmp_path, name="out", **kw):
    defaults = dict(
        output_dir=str(tmp_path / name),
        num_train_epochs=1,
        intermediate_epochs=1,
        per_device_train_batch_size=32,
        learning_rate=3e-3,
        logging_steps=2,
        save_strategy="steps",
        save_steps=4,
        report_to="none",
        seed=0,
        alpha=0.5,
        hidden_weight=1.0,
        attention_weight=1.0,
        disable_tqdm=True,
        dataloader_num_workers=0,
    )
    return DistillConfig(**{**defaults, **kw})


class _StageStart(TrainerCallback):
    """Copies the student's weights as stage 2's first step begins."""

    def __init__(self, at):
        self.at, self.weights = at, None

    def on_step_begin(self, args, state, control, model=None, **kwargs):
        if state.global_step == self.at:
            self.weights = {k: v.detach().clone() for k, v in model.state_dict().items()}


def _trainer(tmp_path, teacher, tokenizer, name="out", callbacks=None, **kw):
    return DistillTrainer(
        model=tiny_bert(layers=1, hidden=16, heads=2, seed=1),  # width 16 of a width-32 teacher: projections
        teacher=teacher,
        args=_args(tmp_path, name, **kw),
        train_dataset=rule_dataset(tokenizer, 256, seed=10),  # 8 steps an epoch
        processing_class=tokenizer,
        callbacks=callbacks,
    )


@pytest.fixture()
def straight(tmp_path, tokenizer, trained_teacher):
    start = _StageStart(8)
    trainer = _trainer(tmp_path, trained_teacher, tokenizer, callbacks=[start])
    initial = {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}
    trainer.train()
    return trainer, initial, start.weights


def test_stage_one_leaves_the_classifier_alone_and_stage_two_starts_from_its_encoder(tmp_path, straight):
    trainer, initial, at_stage_two = straight
    assert trainer.stage1_steps == 8 and trainer.state.max_steps == 16
    end_of_stage_one = load_file(str(tmp_path / "out" / "checkpoint-8" / "model.safetensors"))
    for key in CLASSIFIER:
        torch.testing.assert_close(end_of_stage_one[key], initial[key], atol=0, rtol=0, msg=key)
    moved = [k for k in end_of_stage_one if k.startswith("bert.encoder") and not torch.equal(end_of_stage_one[k],
                                                                                            initial[k])]  # fmt: skip
    assert moved, "stage 1 trained no encoder weight"
    for key, value in end_of_stage_one.items():  # stage 2's first step starts from exactly that student
        torch.testing.assert_close(at_stage_two[key], value, atol=0, rtol=0, msg=key)
    final = trainer.model.state_dict()
    assert not torch.equal(final["classifier.weight"], initial["classifier.weight"])  # stage 2 trains it

    logs = [e for e in trainer.state.log_history if "loss" in e]
    first, second = [e for e in logs if e["step"] <= 8], [e for e in logs if e["step"] > 8]
    assert len(first) == 4 and len(second) == 4
    assert all(e["distill_stage"] == 1 and "loss_hidden" in e and "loss_attention" in e for e in first)
    assert not any("loss_kd" in e or "loss_ce" in e for e in first)
    assert all(e["distill_stage"] == 2 and "loss_kd" in e and "loss_ce" in e for e in second)
    assert not any("loss_hidden" in e for e in second)
    # each stage runs its own linear decay: the learning rate climbs back up as stage 2 starts
    rates = [e["learning_rate"] for e in logs]
    assert rates[4] > rates[3] and rates[0] > rates[3] and rates[4] > rates[7]
    # both models are back on SDPA for stage 2 (attention maps are needed in stage 1 only)
    assert trainer.model.config._attn_implementation == "sdpa"
    assert trainer.teacher.model.config._attn_implementation == "sdpa"
    assert not any("proj" in k for k in end_of_stage_one)  # the projections never go into the student


@pytest.mark.parametrize("checkpoint", [4, 8, 12])
def test_a_checkpoint_of_either_stage_resumes_in_that_stage(tmp_path, tokenizer, trained_teacher, straight, checkpoint):
    trainer, _, _ = straight
    resumed = _trainer(tmp_path, trained_teacher, tokenizer, name=f"resumed-{checkpoint}")
    resumed.train(resume_from_checkpoint=str(tmp_path / "out" / f"checkpoint-{checkpoint}"))
    # the same weights as the run that never stopped: the stage, the optimizer reset and both schedules line up
    expected, got = trainer.model.state_dict(), resumed.model.state_dict()
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], atol=1e-6, rtol=0, msg=key)
    logs = [e for e in resumed.state.log_history if "loss" in e and e["step"] > checkpoint]
    assert logs and all(e["distill_stage"] == (1 if e["step"] <= 8 else 2) for e in logs)
    if checkpoint < 8:
        assert any("loss_hidden" in e for e in logs)  # resumed in stage 1


def test_stage_two_reads_the_teacher_cache_and_stage_one_runs_the_teacher(
    tmp_path, tokenizer, trained_teacher, monkeypatch
):
    trainer = _trainer(tmp_path, trained_teacher, tokenizer, teacher_cache=str(tmp_path / "cache"), save_strategy="no")
    calls, live = [], Teacher.__call__

    def counting(self, inputs):
        calls.append((trainer.state.global_step, self.output_hidden_states))
        return live(self, inputs)

    monkeypatch.setattr(Teacher, "__call__", counting)
    trainer.train()
    # stage 1 only, with hidden states: stage 2's logits come from the cache
    assert sorted({step for step, _ in calls}) == list(range(8)) and all(hidden for _, hidden in calls)


def test_two_stage_config_errors():
    with pytest.raises(ValueError, match="none is on"):
        DistillConfig(output_dir="x", intermediate_epochs=1)
    with pytest.raises(ValueError, match="intermediate_epochs must be >= 0"):
        DistillConfig(output_dir="x", intermediate_epochs=-1, hidden_weight=1)
    args = DistillConfig(output_dir="x", intermediate_epochs=2, hidden_weight=1, minilm_weight=0.5, alpha=0.9,
                         extra_losses=["logit_l1:0.3"])  # fmt: skip
    assert args.loss_weights("intermediate") == {"hidden": 1.0, "minilm": 0.5}
    assert args.loss_weights("prediction") == pytest.approx({"kd": 0.9, "ce": 0.1, "logit_l1": 0.3})
    assert args.ddp_find_unused_parameters is True  # the classifier has no gradient in stage 1


def test_the_command_line_runs_both_stages_in_one_folder_and_the_card_says_so(tmp_path, trained_teacher_dir):
    import json
    import subprocess
    import sys
    from pathlib import Path

    from .conftest import write_tsv

    train = write_tsv(tmp_path / "train.tsv", 64, 4)
    out = tmp_path / "out"
    script = Path(__file__).resolve().parents[1] / "scripts" / "distill.py"
    flags = ["--teacher", str(trained_teacher_dir), "--student", "custom", "--num_layers", "1", "--hidden_size", "16",
             "--num_heads", "2", "--hidden_weight", "1", "--hidden_loss", "ln_mse", "--intermediate_epochs", "1",
             "--max_steps", "3", "--per_device_train_batch_size", "16", "--train_file", str(train),
             "--validation_file", str(train), "--output_dir", str(out), "--logging_steps", "1", "--report_to", "none",
             "--disable_tqdm", "true"]  # fmt: skip
    result = subprocess.run([sys.executable, str(script), *flags], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "distillation stage 1/2" in result.stderr and "distillation stage 2/2" in result.stderr
    state = json.loads((out / "trainer_state.json").read_text())
    assert state["global_step"] == 4 + 3  # one epoch of 64 rows in batches of 16, then max_steps
    stages = [e["distill_stage"] for e in state["log_history"] if "distill_stage" in e]
    assert stages == [1, 1, 1, 1, 2, 2, 2]
    assert "two stages: 1 epochs (4 steps) on the intermediate terms hidden alone" in (out / "README.md").read_text()
    recipe = (out / "distillkit_recipe.yaml").read_text()
    assert "intermediate_epochs: 1.0" in recipe
    from safetensors import safe_open

    with safe_open(str(out / "model.safetensors"), framework="pt") as f:
        assert not any("proj" in k for k in f.keys())  # noqa: SIM118 (a safetensors handle)
