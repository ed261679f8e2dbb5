"""The README and docs/ stay true: every relative link resolves, and every `distillkit COMMAND` and `--flag` shown in
their shell code blocks is one the command's parser knows."""

from __future__ import annotations

import contextlib
import io
import re
from functools import cache
from pathlib import Path

import pytest

from distillkit.commands import COMMANDS
from distillkit.commands import main as console_main

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
FENCE = re.compile(r"^```([a-z]*)\n(.*?)^```", re.S | re.M)
COMMAND = re.compile(r"(?:^|\s)(?:python -m |-m )?distillkit\s+([a-z][a-z-]*)(.*)$")
SHELL = {"", "bash", "sh", "console", "shell"}


def _links(page: Path) -> list[str]:
    text = FENCE.sub("", page.read_text(encoding="utf-8"))  # links inside code blocks are examples
    return [target for target in LINK.findall(text) if not re.match(r"^(?:[a-z]+:|#)", target)]


def _command_lines(page: Path) -> list[tuple[str, str]]:
    """(command, the rest of the line) for every distillkit command in the page's shell blocks."""
    found = []
    for language, block in FENCE.findall(page.read_text(encoding="utf-8")):
        if language not in SHELL:
            continue
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #", 1)[0]
            match = COMMAND.search(line)
            if match:
                found.append((match.group(1), match.group(2)))
    return found


@cache
def _help(command: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        console_main([command, "--help"])
    return out.getvalue()


def test_the_pages_exist_and_the_readme_is_short():
    assert len(PAGES) >= 12
    assert len((ROOT / "README.md").read_text(encoding="utf-8").splitlines()) <= 250


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_every_relative_link_resolves(page):
    broken = [t for t in _links(page) if not (page.parent / t.split("#", 1)[0]).exists()]
    assert not broken, f"{page.relative_to(ROOT)}: {broken}"


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_every_command_and_flag_shown_exists(page):
    for command, rest in _command_lines(page):
        assert command in COMMANDS, f"{page.name}: distillkit {command} is not a command ({', '.join(COMMANDS)})"
        flags = re.findall(r"(?<![\w-])--[a-z][a-z0-9_-]*", rest)
        unknown = [f for f in flags if not re.search(rf"(?<![\w-]){re.escape(f)}(?![\w-])", _help(command))]
        assert not unknown, f"{page.name}: distillkit {command} has no {unknown}"


def test_the_checker_catches_a_wrong_flag_and_a_broken_link(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("[x](missing.md)\n\n```bash\ndistillkit distill --no_such_flag 1\n```\n")
    assert _links(page) == ["missing.md"] and not (tmp_path / "missing.md").exists()
    ((command, rest),) = _command_lines(page)
    assert command == "distill" and "--no_such_flag" not in _help("distill") and "--temperature" in _help("distill")
