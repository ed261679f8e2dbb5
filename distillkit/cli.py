"""What every command-line entry point shares: plain tables, and errors as one paragraph with an exit code."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from typing import Any


def text_table(header: Sequence[str], rows: Sequence[Sequence[Any]], align: str = "left") -> str:
    """Rows of cells as aligned plain text (numbers are expected already formatted)."""
    cells = [[str(c) for c in header], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
    pad = str.ljust if align == "left" else str.rjust
    return "\n".join("  ".join(pad(c, w) for c, w in zip(row, widths)).rstrip() for row in cells)


def run_cli(
    main: Callable[[], Any], exit_codes: dict[type[BaseException], int] | None = None, debug: bool | None = None
) -> None:
    """Run `main()`; a known error prints `error: <one paragraph>` and exits with its code (2 for bad input).

    `--debug` on the command line (or `debug=True`) shows the Python traceback instead. An error's own `exit_code`
    attribute, when it has one, wins (interruptions exit with 130 / 143 as shells expect).
    """
    from .hub import PushError
    from .resilience import InterruptedRun, NonFiniteLossError

    codes = {ValueError: 2, OSError: 2, PushError: 3, NonFiniteLossError: 4, InterruptedRun: 143, **(exit_codes or {})}
    if debug is None:
        debug = "--debug" in sys.argv
        if debug:
            sys.argv.remove("--debug")
    try:
        main()
    except tuple(codes) as err:
        if debug:
            raise
        code = getattr(err, "exit_code", None) or next(c for t, c in codes.items() if isinstance(err, t))
        prefix = "" if isinstance(err, InterruptedRun) else "error: "
        print(f"{prefix}{' '.join(str(err).split())}", file=sys.stderr)
        raise SystemExit(code) from None


def _accelerate_prefix(parent: list[str] | None = None) -> list[str]:
    """`accelerate launch [its options]` when this process was started by it (read from the parent's command
    line, Linux only), else []: so that a recorded command can be run again as it was typed."""
    if parent is None:
        try:
            with open(f"/proc/{os.getppid()}/cmdline", "rb") as f:
                parent = [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
        except OSError:
            return []
    names = [os.path.basename(a) for a in parent]
    if "launch" not in parent or not any(n.startswith("accelerate") for n in names[: parent.index("launch")]):
        return []
    options = parent[parent.index("launch") + 1 :]
    here = os.path.abspath(sys.argv[0])
    for i, token in enumerate(options):  # the launch options end where the script (or `-m module`) begins
        if token in ("-m", "--module") or os.path.abspath(token) == here or token.endswith(".py"):
            return ["accelerate", "launch", *options[:i]]
    return ["accelerate", "launch", *options]


def invocation(command: str) -> list[str]:
    """How the user started `command`, as typed: `distillkit distill`, `python -m distillkit distill`,
    `python scripts/distill.py`, each behind `accelerate launch ...` when it launched this process."""
    first = sys.argv[0] if sys.argv else ""
    if os.path.basename(first) == "__main__.py" and os.path.basename(os.path.dirname(first)) == "distillkit":
        own, python = ["-m", "distillkit", command], ["python"]
    elif first.endswith(".py"):
        own, python = [first], ["python"]
    else:  # the console command
        own, python = ["distillkit", command], []
    launcher = _accelerate_prefix()
    return [*launcher, *own] if launcher else [*python, *own]


def command_name(command: str) -> str:
    """The command as the user can type it in messages (`distillkit push`, or the script they used)."""
    return " ".join(invocation(command))


def portable(text: str | None) -> str | None:
    """The text with this machine's folders written as a reader's would be: the home folder as ~, the folder above
    the working directory (where ../shared lives beside a checkout) as .., so that published JSON holds no
    machine paths."""
    if not text:
        return text
    home, parent = os.path.expanduser("~"), os.path.dirname(os.getcwd())
    text = text.replace(home + "/", "~/")
    return text.replace(parent + "/", "../") if parent not in ("", "/") else text
