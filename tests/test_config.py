import pytest

from distillkit import DistillConfig, load_recipe, parse_args


def _config(**kw):
    return DistillConfig(output_dir="unused", report_to="none", **kw)


@pytest.mark.parametrize(
    "field,value,message",
    [
        ("temperature", 0.0, r"temperature must be > 0 \(got 0.0\)"),
        ("temperature", -2.0, r"temperature must be > 0"),
        ("alpha", 1.5, r"alpha must be in \[0, 1\] \(got 1.5\)"),
        ("alpha", -0.1, r"alpha must be in \[0, 1\]"),
        ("hidden_weight", -1.0, r"hidden_weight must be >= 0"),
        ("attention_weight", -1.0, r"attention_weight must be >= 0"),
        ("embedding_weight", -0.5, r"embedding_weight must be >= 0"),
        ("hidden_loss", "l1", r"hidden_loss must be one of \('mse', 'cosine', 'ln_mse'\)"),
        ("attention_loss", "js", r"attention_loss must be one of \('kl', 'mse'\)"),
        ("teacher_dtype", "int8", r"teacher_dtype must be one of"),
        ("extra_losses", ["mine:heavy"], r"extra_losses entry 'mine:heavy'"),
    ],
)
def test_bad_values_name_the_field_and_the_range(field, value, message):
    with pytest.raises(ValueError, match=message):
        _config(**{field: value})


def test_loss_weights_follow_the_fields():
    assert _config(alpha=1.0).loss_weights() == {"kd": 1.0}
    assert _config(alpha=0.0).loss_weights() == {"ce": 1.0}
    assert _config(alpha=0.25, hidden_weight=2.0, extra_losses=["a", "b:0.5"]).loss_weights() == {
        "kd": 0.25,
        "ce": 0.75,
        "hidden": 2.0,
        "a": 1.0,
        "b": 0.5,
    }


def test_flags_override_the_recipe(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("teacher: some/teacher\nstudent: some/student\ntemperature: 3.0\nalpha: 0.9\nmax_steps: 7\n")
    model_args, data_args, _, args = parse_args(["--config", str(recipe), "--temperature", "4", "--output_dir", "o"])
    assert model_args.teacher == "some/teacher" and model_args.student == "some/student"
    assert args.temperature == 4.0 and args.alpha == 0.9 and args.max_steps == 7
    assert data_args.text_column is None and data_args.task is None


def test_recipe_errors_are_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="recipe .* does not exist"):
        load_recipe(str(tmp_path / "missing.yaml"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("teacher: x\ntemprature: 2\n")
    with pytest.raises(ValueError, match=r"unknown field\(s\) \['temprature'\]"):
        load_recipe(str(bad))
    with pytest.raises(ValueError, match="temperature must be > 0"):
        parse_args(["--teacher", "x", "--temperature", "0", "--output_dir", "o"])
