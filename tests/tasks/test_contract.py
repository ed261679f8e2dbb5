"""The contract every registered task type passes: tiny teacher and student built in code, a few distillation steps,
metrics, a saved student that loads with plain transformers in a process where distillkit cannot be imported, a
whole run through the recipe with its model card, and clean refusals of the features it does not support.

The toy task type of toy_regression.py is registered from outside the package and runs the same suite."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch
import yaml

from distillkit import DistillConfig, DistillTrainer, build_student, get_task_type, parse_args, tokenize_dataset
from distillkit.commands import main as console_main
from distillkit.recipe import run
from distillkit.tasks import FEATURES, TASK_TYPES, TaskType, UnsupportedFeature, infer_task_type, output_logits

from . import toy_regression
from .fixtures import FIXTURES

NAMES = sorted(TASK_TYPES)  # the toy type is registered by the import above

# a process that cannot import distillkit: it loads the saved student with plain transformers and prints its outputs
_PLAIN_LOAD = """
import json, sys
class Blocked:
    def find_spec(self, name, path=None, target=None):
        if name == "distillkit" or name.startswith("distillkit."):
            raise ImportError("distillkit is blocked in this process")
sys.meta_path.insert(0, Blocked())
try:
    import distillkit
    sys.exit("distillkit could be imported")
except ImportError:
    pass
import torch, transformers
model = getattr(transformers, sys.argv[2]).from_pretrained(sys.argv[1]).eval()
with torch.no_grad():
    out = model(input_ids=torch.tensor(json.loads(sys.argv[3])))
print(json.dumps({k: v.tolist() for k, v in out.items() if torch.is_tensor(v)}))
"""


def test_the_registry_holds_the_builtin_and_the_outside_task_types():
    assert "sequence-classification" in NAMES and toy_regression.NAME in NAMES
    assert set(FIXTURES) == set(NAMES), "every task type needs a fixture in tests/tasks/fixtures.py"


def test_registering_a_name_twice_or_a_non_task_type_is_refused():
    with pytest.raises(ValueError, match="already registered"):
        __import__("distillkit").register_task_type(toy_regression.NAME, toy_regression.ToySequenceRegression)
    with pytest.raises(TypeError, match="TaskType subclass"):
        __import__("distillkit").register_task_type("not-a-task", dict)
    with pytest.raises(ValueError, match="unknown task type 'nope'.*sequence-classification"):
        get_task_type("nope")


@pytest.fixture(scope="module", params=NAMES)
def task(request, tmp_path_factory):
    """(task type, fixture, tokenizer, trained tiny teacher saved in a folder)."""
    from ..conftest import make_tokenizer

    task_type = get_task_type(request.param)
    fixture = FIXTURES[request.param]
    tokenizer = fixture.make_tokenizer() if fixture.make_tokenizer else make_tokenizer()
    teacher = fixture.make_teacher(tokenizer)
    folder = tmp_path_factory.mktemp(request.param)
    teacher.save_pretrained(folder / "teacher")
    tokenizer.save_pretrained(folder / "teacher")
    return task_type, fixture, tokenizer, teacher, folder


def test_the_interface_is_complete(task):
    task_type, _, _, teacher, _ = task
    assert isinstance(task_type, TaskType) and task_type.name in TASK_TYPES
    assert task_type.pipeline_tag and task_type.architecture_suffix
    assert task_type.features <= set(FEATURES)
    assert hasattr(task_type.auto_model_class(), "from_pretrained")
    assert task_type.has_trained_head(teacher.config)
    shape = (2, 5, teacher.config.num_labels) if task_type.per_token else (2, teacher.config.num_labels)
    output = task_type.output_from_logits(torch.zeros(*shape))
    assert output_logits(output).shape == shape


def test_a_few_steps_metrics_and_a_plain_transformers_reload(task, tmp_path):
    task_type, fixture, tokenizer, teacher, _ = task
    from datasets import Dataset

    raw = Dataset.from_dict(fixture.rows(64, 1))
    data = task_type.encode(raw, tokenizer, teacher.config, 32, False)  # a task type's own encoding, or None
    if data is None:
        data = tokenize_dataset(raw, tokenizer, fixture.text_column, None, fixture.label_column, 32,
                                label_encoder=task_type.label_encoder(teacher.config))  # fmt: skip
    student = build_student("custom", teacher, task_type=task_type, num_layers=1, hidden_size=16, num_heads=2)
    assert task_type.has_trained_head(student.config) or type(student).__name__.endswith(task_type.architecture_suffix)
    args = DistillConfig(output_dir=str(tmp_path / "out"), max_steps=4, per_device_train_batch_size=16,
                         learning_rate=1e-3, report_to="none", logging_steps=1, use_cpu=True)  # fmt: skip
    trainer = DistillTrainer(model=student, teacher=teacher, args=args, train_dataset=data, eval_dataset=data,
                             processing_class=tokenizer, task_type=task_type)  # fmt: skip
    trainer.train()
    logged = [entry for entry in trainer.state.log_history if "loss_kd" in entry]
    assert logged and all(math.isfinite(entry["loss_kd"]) for entry in logged)
    metrics = trainer.evaluate()
    scores = {k.removeprefix("eval_"): v for k, v in metrics.items()}
    lead = task_type.score_keys()[0]  # the metric a card leads with
    assert lead in scores and math.isfinite(scores[lead]), scores

    trainer.save_model(str(tmp_path / "student"))
    ids = [tokenizer("w1 w2 w3")["input_ids"]]
    with torch.no_grad():
        here = trainer.model.eval()(input_ids=torch.tensor(ids).to(trainer.model.device))
    auto = task_type.auto_model_class().__name__
    loaded = subprocess.run([sys.executable, "-c", _PLAIN_LOAD, str(tmp_path / "student"), auto, json.dumps(ids)],
                            capture_output=True, text=True, timeout=300)  # fmt: skip
    assert loaded.returncode == 0, loaded.stderr[-2000:]
    outputs = json.loads(loaded.stdout.strip().splitlines()[-1])
    plain = output_logits(SimpleNamespace(**{k: torch.tensor(v) for k, v in outputs.items()}))
    assert torch.allclose(plain, output_logits(here).cpu(), atol=1e-5)


def _flags(task, tmp_path, *extra):
    task_type, fixture, _, _, folder = task
    train = fixture.write(tmp_path / "train.jsonl", 96, 2)
    dev = fixture.write(tmp_path / "dev.jsonl", 32, 3)
    return ["--teacher", str(folder / "teacher"), "--student", "custom", "--num_layers", "1", "--hidden_size", "16",
            "--num_heads", "2", "--train_file", str(train), "--validation_file", str(dev), "--task_type",
            task_type.name, "--output_dir", str(tmp_path / "out"), "--max_steps", "3", "--report_to", "none",
            "--per_device_train_batch_size", "16", "--use_cpu", "true", *extra]  # fmt: skip


def test_a_whole_run_writes_a_student_its_card_and_its_recipe(task, tmp_path):
    task_type = task[0]
    result = run(*parse_args(_flags(task, tmp_path)))
    out = tmp_path / "out"
    card = (out / "README.md").read_text()
    assert f"pipeline_tag: {task_type.pipeline_tag}" in card
    assert (
        yaml.safe_load((out / "distillkit_recipe.yaml").read_text().split("\n", 2)[-1])["task_type"] == task_type.name
    )
    facts = json.loads((out / "distillkit_card.json").read_text())
    assert facts["task_type"] == task_type.name
    assert any(k.startswith("eval_") for k in result.metrics) and result.teacher_metrics
    config = json.loads((out / "config.json").read_text())
    assert config["architectures"][0].endswith(task_type.architecture_suffix)


def test_an_unsupported_feature_is_refused_before_anything_is_written(task, tmp_path, capsys):
    task_type = task[0]
    feature_flags = {"pruning": ["--student", "pruned"], "vocab_trimming": ["--trim_vocab", "true"],
                     "augmentation": ["--augment", "1"], "layer_sharing": ["--share_layers", "true"],
                     "lora_teacher": ["--teacher_lora_r", "4"]}  # fmt: skip
    missing = [f for f in feature_flags if not task_type.supports(f)]
    if not missing:
        pytest.skip(f"{task_type.name} supports every feature the suite can switch on")
    for feature in missing:
        with pytest.raises(SystemExit) as stop:
            console_main(["distill", *_flags(task, tmp_path, *feature_flags[feature])])
        assert stop.value.code == 2
        errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error: ")]
        assert len(errors) == 1 and task_type.name in errors[0] and FEATURES[feature].split(" (")[0] in errors[0]
        assert not (tmp_path / "out").exists()
    with pytest.raises(UnsupportedFeature, match=task_type.name):
        task_type.check_features(missing[:1])


def test_the_task_type_is_inferred_from_the_task_and_the_teacher(task):
    _, _, _, teacher, _ = task
    first = next(n for n, c in TASK_TYPES.items() if teacher.config.architectures[0].endswith(c.architecture_suffix))
    assert first in ("sequence-classification", "token-classification", "question-answering", "causal-lm")
    assert infer_task_type(teacher.config).name == first
    from distillkit.arguments import DataArguments, ModelArguments
    from distillkit.recipe_steps import resolve_run_task_type

    assert resolve_run_task_type(DataArguments(task="sst2"), ModelArguments(teacher="x")).name == (
        "sequence-classification"
    )
