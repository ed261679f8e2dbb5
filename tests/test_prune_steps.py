"""Pruning in steps while distilling (--prune_steps, distillkit/prune_schedule.py)."""

import json
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForSequenceClassification, BertConfig

from distillkit.prune_schedule import STEP_RECORD, step_shapes, step_shares, total_steps
from distillkit.resilience import latest_checkpoint
from distillkit.students.prune import PruneShape

from .conftest import write_tsv
from .test_resilience import _distill


def _config(layers, width, heads, ffn):
    return BertConfig(num_hidden_layers=layers, hidden_size=width, num_attention_heads=heads, intermediate_size=ffn)


def test_the_shapes_shrink_by_the_same_factor_and_land_on_the_target():
    teacher = _config(12, 768, 12, 3072)  # MPNet-base to tinybert4's shape
    shapes = step_shapes(teacher, SimpleNamespace(config=_config(4, 312, 12, 1200)), 3)
    assert shapes[-1] == PruneShape(4, 12, 312, 1200)
    # 12 x (4/12)^(k/3), head width 64 x (26/64)^(k/3), FFN 3072 x (1200/3072)^(k/3)
    assert shapes[0] == PruneShape(8, 12, 12 * 47, 2246)
    assert shapes[1] == PruneShape(6, 12, 12 * 35, 1642)
    for before, after in zip(shapes, shapes[1:]):  # each step cuts the one before: never wider in any dimension
        assert all(getattr(after, f) <= getattr(before, f) for f in ("num_layers", "num_heads", "hidden_size",
                                                                      "intermediate_size"))  # fmt: skip
    assert all(s.hidden_size % s.num_heads == 0 for s in shapes)
    assert step_shapes(teacher, SimpleNamespace(config=_config(4, 312, 12, 1200)), 1) == [PruneShape(4, 12, 312, 1200)]
    with pytest.raises(ValueError, match="prune_steps must be >= 1"):
        step_shapes(teacher, SimpleNamespace(config=_config(4, 312, 12, 1200)), 0)


def test_the_training_steps_are_the_one_shot_runs_split_evenly():
    args = SimpleNamespace(max_steps=-1, num_train_epochs=2, per_device_train_batch_size=32,
                           gradient_accumulation_steps=1, world_size=1)  # fmt: skip
    assert total_steps(args, 67_349) == 2 * 2105  # SST-2: 2,105 batches of 32 an epoch
    assert step_shares(4210, 3) == [1403, 1403, 1404]
    assert sum(step_shares(10, 4)) == 10
    with pytest.raises(ValueError, match="at least one training step per cut"):
        step_shares(2, 3)


def _flags(teacher_dir, train, out, *extra):
    return [
        "--teacher", str(teacher_dir), "--student", "pruned", "--num_layers", "1", "--hidden_size", "16",
        "--num_heads", "2", "--intermediate_size", "24", "--prune_samples", "48", "--prune_steps", "2",
        "--train_file", str(train), "--output_dir", str(out), "--max_steps", "12", "--alpha", "1",
        "--per_device_train_batch_size", "16", "--learning_rate", "3e-3", "--hidden_weight", "1",
        "--attention_weight", "1", "--save_strategy", "steps", "--save_steps", "2", "--logging_steps", "2",
        "--seed", "3", "--report_to", "none", "--disable_tqdm", "true", "--dataloader_num_workers", "0", *extra,
    ]  # fmt: skip


def test_a_stepwise_cut_lands_on_the_target_and_resumes_inside_a_step_to_the_same_weights(
    tmp_path, trained_teacher_dir
):
    train = write_tsv(tmp_path / "train.tsv", 96, 4)
    straight = _distill(_flags(trained_teacher_dir, train, tmp_path / "a"))
    assert straight.returncode == 0, straight.stderr[-3000:]
    a = tmp_path / "a"
    # step 1: the teacher (2 x 32, 2 heads of 16, FFN 64) cut to 1 x 22 (2 heads of 11), FFN 39; step 2: the target
    step = a / "prune-step-1"
    first = AutoModelForSequenceClassification.from_pretrained(step)  # an ordinary config, without distillkit
    assert (first.config.num_hidden_layers, first.config.hidden_size, first.config.intermediate_size) == (1, 22, 39)
    record = json.loads((step / STEP_RECORD).read_text())
    assert record["identity"]["train_steps"] == [6] and record["cut"]["layers"] == [1]
    config = json.loads((a / "config.json").read_text())
    assert (config["num_hidden_layers"], config["hidden_size"], config["intermediate_size"]) == (1, 16, 24)
    report = json.loads((a / "prune_report.json").read_text())
    assert report["steps"] == 2 and report["train_steps"] == [6, 6] and len(report["cuts"]) == 2
    # the second cut's channels trace back to the teacher's: 16 of the first cut's 22, which were the teacher's
    assert report["cuts"][1]["layers_kept_of_teacher"] == [1]
    state = json.loads((a / "trainer_state.json").read_text())
    assert state["global_step"] == 6  # the last step's share: 12 in all, as one cut would train
    for folder in (a, step):  # the projections (hidden and width differ) are never saved with a student
        assert not any("proj" in k for k in load_file(str(folder / "model.safetensors")))

    # killed inside step 1 (after its checkpoint at step 4), started again: the same student as the straight run
    out = tmp_path / "b"
    killed = _distill(_flags(trained_teacher_dir, train, out), signal_at=5, signal_name="SIGKILL")
    assert killed.returncode == -9
    assert latest_checkpoint(str(out / "prune-step-1")) == str(out / "prune-step-1" / "checkpoint-4")
    assert not (out / "prune-step-1" / STEP_RECORD).exists()
    resumed = _distill(_flags(trained_teacher_dir, train, out, "--resume_from_checkpoint", "latest"))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    for folder in ("prune-step-1", "."):
        wa, wb = load_file(str(a / folder / "model.safetensors")), load_file(str(out / folder / "model.safetensors"))
        assert wa.keys() == wb.keys()
        for key in wa:
            torch.testing.assert_close(wb[key], wa[key], atol=1e-6, rtol=0, msg=f"{folder}: {key}")


def test_prune_steps_needs_a_pruned_student():
    from distillkit.arguments import ModelArguments

    with pytest.raises(ValueError, match="needs --student pruned"):
        ModelArguments(teacher="t", student="tiny", prune_steps=2)
    with pytest.raises(ValueError, match="prune_steps must be >= 1"):
        ModelArguments(teacher="t", student="pruned", prune_steps=0)
