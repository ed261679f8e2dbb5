"""Local data files read exactly: csv (standard quoting), tsv (no quoting, as GLUE writes it) and json lines.

GLUE's TSV files are not CSV-quoted: a field that begins with `"` is ordinary text (MRPC, RTE and SST-2 have such
rows), so a CSV parser either merges fields or drops quote characters. Delimited files are therefore read here with
Python's `csv` module, tab files with `QUOTE_NONE`; every row must have the header's number of fields, and an error
names the file, the line and what was found. A UTF-8 byte-order mark, Windows line ends and blank lines are
accepted. Columns whose every value is an integer (or a number) become integers (or floats); the rest stay text,
byte for byte.
"""

from __future__ import annotations

import csv
import os
import re
import sys
from typing import Any

from datasets import Dataset, DatasetDict, load_dataset

# extension -> delimiter (None: json lines through the `datasets` json builder)
FORMATS: dict[str, str | None] = {".csv": ",", ".tsv": "\t", ".json": None, ".jsonl": None}
_INT = re.compile(r"^-?\d+$")
_FLOAT = re.compile(r"^-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?$")  # no leading zeros: "007" is text


def read_delimited(path: str, delimiter: str, split: str = "data") -> tuple[dict[str, list[Any]], list[int]]:
    """Columns of a csv / tsv file as {name: values} and the file line number of each row.

    A tab file is read without quoting (GLUE's convention); a comma file with standard CSV quoting.
    """
    quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # long documents in one field are fine
    with open(path, encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f, delimiter=delimiter, quoting=quoting, strict=quoting != csv.QUOTE_NONE)
        try:
            header = next(row for row in reader if row)
            names = [name.strip() for name in header]
            rows, lines = [], []
            for row in reader:
                if not row or row == [""]:
                    continue  # a blank line (GLUE files end with one)
                if len(row) != len(names):
                    raise ValueError(
                        f"{split} file {path!r}, line {reader.line_num}: expected {len(names)} fields (the header's "
                        f"{names}) but found {len(row)}: {row[:4]}{' ...' if len(row) > 4 else ''}. "
                        + (
                            "Tab-separated files are read without quoting, as GLUE writes them: a stray tab in a "
                            "text splits it."
                            if delimiter == "\t"
                            else "Quote fields that contain commas (standard CSV), or save the file as .tsv."
                        )
                    )
                rows.append(row)
                lines.append(reader.line_num)
        except StopIteration:
            raise ValueError(
                f"{split} file {path!r} is empty; give a file with a header and at least one row."
            ) from None
        except csv.Error as err:
            raise ValueError(
                f"{split} file {path!r}, line {reader.line_num}: {err}. Check the file's quoting."
            ) from None
        except UnicodeDecodeError as err:
            raise ValueError(f"{split} file {path!r} is not UTF-8 text ({err.reason} at byte {err.start}).") from None
    if len(set(names)) != len(names):
        raise ValueError(f"{split} file {path!r} repeats a column name in its header {names}.")
    columns = {name: [row[i] for row in rows] for i, name in enumerate(names)}
    return {name: _typed(values) for name, values in columns.items()}, lines


def _typed(values: list[str]) -> list[Any]:
    """Integers when every value is one and reads back the same (no "007"), numbers (scores) when every value is
    one, else the text as it was."""
    if values and all(_INT.match(v) and str(int(v)) == v for v in values):
        return [int(v) for v in values]
    if values and all(_FLOAT.match(v) for v in values):
        return [float(v) for v in values]
    return values


def check_labels(columns: dict[str, list[Any]], lines: list[int], label_column: str, path: str, split: str) -> None:
    """A missing or empty label is an error that names the file and the line, never a class of its own."""
    values = columns.get(label_column)
    if values is None:
        return  # a split without labels (a test split); a missing column is reported with the other columns
    for value, line in zip(values, lines):
        if value is None or (isinstance(value, str) and not value.strip()):
            raise ValueError(
                f"{split} file {path!r}, line {line}: the label ({label_column!r}) is empty. Give every row a label, "
                "or remove the row."
            )


def read_file(path: str, split: str = "train", label_column: str | None = None) -> Dataset:
    """One local data file (csv, tsv or json lines) as a Dataset; bad files fail here with file and line.

    With `label_column`, rows whose label is missing or empty are refused (named by file and line).
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{split} file {path!r} does not exist; check the path given to --{split}_file.")
    if os.path.getsize(path) == 0:
        raise ValueError(f"{split} file {path!r} is empty; give a file with a header and at least one row.")
    ext = os.path.splitext(path)[1].lower()
    if ext not in FORMATS:
        raise ValueError(
            f"{split} file {path!r} has extension {ext!r}; use one of {sorted(FORMATS)} (for CoNLL token files, "
            "give --task_type token-classification)."
        )
    delimiter = FORMATS[ext]
    columns, lines = _read_json(path, split) if delimiter is None else read_delimited(path, delimiter, split)
    if not lines:
        raise ValueError(f"{split} file {path!r} has a header but no rows.")
    if label_column:
        check_labels(columns, lines, label_column, path, split)
    return Dataset.from_dict(columns)


def load_files(
    train_file: str | None = None, validation_file: str | None = None, label_column: str | None = None
) -> DatasetDict:
    """Read local data files (csv, tsv or json lines) into a DatasetDict with "train" and / or "validation"."""
    files = {split: path for split, path in (("train", train_file), ("validation", validation_file)) if path}
    if not files:
        raise ValueError("no data given: pass --task NAME or --train_file (and --validation_file), csv, tsv or json.")
    kinds = {FORMATS.get(os.path.splitext(path)[1].lower(), "?") is None for path in files.values()}
    if len(kinds) > 1:
        raise ValueError(f"train and validation files must share a format (got {sorted(files.values())}).")
    return DatasetDict({split: read_file(path, split, label_column) for split, path in files.items()})


def _read_json(path: str, split: str) -> tuple[dict[str, list[Any]], list[int]]:
    try:
        data = load_dataset("json", data_files={split: path})[split]
    except Exception as err:  # pyarrow / json errors of many types: one clear message instead
        raise ValueError(
            f"could not read {split} file {path!r} as json lines: {err}. Check the file's format."
        ) from err
    return data.to_dict(), list(range(1, len(data) + 1))
