"""What every command-line entry point shares: plain tables, and errors as one paragraph with an exit code."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Any


def text_table(header: Sequence[str], rows: Sequence[Sequence[Any]], align: str = "left") -> str:
    """Rows of cells as aligned plain text (numbers are expected already formatted)."""
    cells = [[str(c) for c in header], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
    pad = str.ljust if align == "left" else str.rjust
    return "\n".join("  ".join(pad(c, w) for c, w in zip(row, widths)).rstrip() for row in cells)


def run_cli(main: Callable[[], Any], exit_codes: dict[type[BaseException], int] | None = None) -> None:
    """Run `main()`; a known error prints `error: <one paragraph>` and exits with its code (2 for bad input).

    `--debug` anywhere on the command line shows the Python traceback instead. An error's own `exit_code`
    attribute, when it has one, wins (interruptions exit with 130 / 143 as shells expect).
    """
    from .hub import PushError
    from .resilience import InterruptedRun, NonFiniteLossError

    codes = {ValueError: 2, OSError: 2, PushError: 3, NonFiniteLossError: 4, InterruptedRun: 143, **(exit_codes or {})}
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
