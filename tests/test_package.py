"""distillkit as an installed package: the wheel carries its templates and the console command, and a run from a
wheel install, outside the repository, writes the same card as a clone."""

import json
import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from distillkit.commands import COMMANDS
from distillkit.commands import main as console_main

from .conftest import rule_sentences

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation", "-q", "-w", str(out)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    (path,) = out.glob("distillkit-*.whl")
    return path


def test_the_wheel_holds_the_templates_and_the_console_command(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert "distillkit/templates/student.md" in names
    assert "distillkit/templates/quickstart-bbc-minilm.yaml" in names
    assert "distillkit/__main__.py" in names and "distillkit/commands/distill.py" in names
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "distillkit = distillkit.commands:main" in text


def test_a_wheel_install_distills_from_another_folder(tmp_path, wheel, trained_teacher_dir):
    # a fresh venv with the wheel installed; its dependencies are this environment's (a .pth line, which does not
    # run this environment's editable-install hook, so `import distillkit` finds the wheel's copy only)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    (Path(site) / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "-q", str(wheel)],
                   check=True, capture_output=True, timeout=600)  # fmt: skip
    where = subprocess.run([str(python), "-c", "import distillkit; print(distillkit.__file__)"], capture_output=True,
                           text=True, check=True, cwd=tmp_path).stdout  # fmt: skip
    assert where.startswith(site), where  # the installed copy, not the clone

    work = tmp_path / "elsewhere"
    work.mkdir()
    texts, labels = rule_sentences(256, 1)
    (work / "train.tsv").write_text("sentence\tlabel\n" + "".join(f"{t}\t{y}\n" for t, y in zip(texts, labels)))
    texts, labels = rule_sentences(64, 2)
    (work / "dev.tsv").write_text("sentence\tlabel\n" + "".join(f"{t}\t{y}\n" for t, y in zip(texts, labels)))
    flags = [
        "--teacher", str(trained_teacher_dir), "--student", "custom", "--num_layers", "1", "--hidden_size", "16",
        "--num_heads", "2", "--train_file", "train.tsv", "--validation_file", "dev.tsv", "--output_dir", "out",
        "--max_steps", "4", "--report_to", "none", "--max_seq_length", "32", "--disable_tqdm", "true",
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    result = subprocess.run([str(venv / "bin" / "distillkit"), "distill", *flags], capture_output=True, text=True,
                            cwd=work, env=env, timeout=600)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    card = (work / "out" / "README.md").read_text()
    assert "distillkit distill --teacher" in card  # the command as typed
    assert "| accuracy |" in card and "distillkit distill --config distillkit_recipe.yaml" in card
    info = json.loads((work / "out" / "distillkit_card.json").read_text())
    assert info["command"].startswith("distillkit distill ")
    push = subprocess.run([str(venv / "bin" / "distillkit"), "push", "--help"], capture_output=True, text=True,
                          cwd=work, env=env, timeout=120)  # fmt: skip
    assert push.returncode == 0 and "distillkit push" in push.stdout


def test_python_dash_m_lists_the_commands_and_refuses_unknown_ones(capsys):
    with pytest.raises(SystemExit) as done:
        console_main(["--help"])
    assert done.value.code == 0
    shown = capsys.readouterr().out
    names = {"distill", "export", "push", "benchmark", "results", "fetch-models", "quickstart"}
    assert all(name in shown for name in names) and set(COMMANDS) == names
    with pytest.raises(SystemExit) as done:
        console_main(["distil"])
    assert done.value.code == 2 and "unknown command 'distil'" in capsys.readouterr().err
    result = subprocess.run([sys.executable, "-m", "distillkit", "distill", "--teacher", "x", "--student", "tiny",
                             "--train_file", "nope.tsv"], capture_output=True, text=True, timeout=300)  # fmt: skip
    assert result.returncode == 2 and "error: train file 'nope.tsv' does not exist" in result.stderr
