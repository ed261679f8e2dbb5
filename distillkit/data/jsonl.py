"""Json lines read one row at a time, each with where it came from (`file, line N`) for the error messages."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any


def json_lines(path: str) -> Iterator[tuple[str, Any]]:
    """(where, row) for each non-blank line of `path`; a line that is not JSON is an error naming the line."""
    with open(path, encoding="utf-8-sig") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{path}, line {number}"
            try:
                yield where, json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{where} is not JSON ({err.msg}).") from None
