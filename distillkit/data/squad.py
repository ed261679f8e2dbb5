"""Extractive question-answering data: the official SQuAD JSON (`data` -> articles -> `paragraphs` -> `context`,
`qas`) and json lines with `id`, `question`, `context`, `answers` (`text` and `answer_start` lists, as `datasets`
writes SQuAD). Rows come out in `datasets`' SQuAD layout: `id`, `title`, `context`, `question`, `answers`.

Every answer must lie at its offset in the context: a mismatch is an error that names the question. SQuAD v2's
unanswerable questions (`is_impossible`, or no answer) are refused: distillkit reads SQuAD v1.1, where every question
has an answer in its context.
"""

from __future__ import annotations

import json
from typing import Any

from .jsonl import json_lines


def _need(mapping: Any, key: str, where: str) -> Any:
    if not isinstance(mapping, dict) or key not in mapping:
        found = sorted(mapping) if isinstance(mapping, dict) else type(mapping).__name__
        raise ValueError(f"{where} has no {key!r} (found {found}): not SQuAD-shaped.")
    return mapping[key]


def check_answers(qid: str, context: str, texts: list[str], starts: list[int], where: str) -> None:
    """Each answer's text must be the context's characters at its `answer_start`."""
    if not texts:
        raise ValueError(
            f"{where}: question {qid!r} has no answer (a SQuAD v2 unanswerable question?). distillkit reads SQuAD "
            "v1.1, where every question is answered in its context; leave such questions out."
        )
    if len(texts) != len(starts):
        raise ValueError(f"{where}: question {qid!r} has {len(texts)} answer texts but {len(starts)} answer_start.")
    for text, start in zip(texts, starts):
        if not isinstance(start, int) or context[start : start + len(text)] != text:
            found = context[start : start + len(text)] if isinstance(start, int) else start
            raise ValueError(
                f"{where}: question {qid!r}: the answer {text!r} is not at answer_start {start} of its context "
                f"(found {found!r}); fix the offset or the text."
            )


def read_squad_json(path: str) -> list[dict[str, Any]]:
    """The rows of an official SQuAD JSON file."""
    with open(path, encoding="utf-8-sig") as f:
        try:
            document = json.load(f)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path} is not JSON ({err.msg}, line {err.lineno}).") from None
    return squad_rows(document, path)


def squad_rows(document: Any, path: str) -> list[dict[str, Any]]:
    """The rows of a parsed official SQuAD document."""
    rows = []
    for a, article in enumerate(_need(document, "data", path)):
        title = article.get("title", "") if isinstance(article, dict) else ""
        for p, paragraph in enumerate(_need(article, "paragraphs", f"{path}: article {a}")):
            where = f"{path}: article {a}, paragraph {p}"
            context = _need(paragraph, "context", where)
            for qa in _need(paragraph, "qas", where):
                qid = str(_need(qa, "id", f"{where}, a question"))
                if qa.get("is_impossible"):
                    check_answers(qid, context, [], [], path)  # refused with the reason
                answers = _need(qa, "answers", f"{path}: question {qid!r}")
                texts = [str(_need(x, "text", f"{path}: question {qid!r}, an answer")) for x in answers]
                starts = [_need(x, "answer_start", f"{path}: question {qid!r}, an answer") for x in answers]
                check_answers(qid, context, texts, starts, path)
                question = _need(qa, "question", f"{path}: question {qid!r}")
                rows.append({"id": qid, "title": title, "context": context, "question": question,
                             "answers": {"text": texts, "answer_start": starts}})  # fmt: skip
    if not rows:
        raise ValueError(f"{path} holds no questions.")
    return rows


def read_squad_jsonl(path: str) -> list[dict[str, Any]]:
    """The rows of json lines in `datasets`' SQuAD layout."""
    rows = []
    for where, row in json_lines(path):
        for key in ("id", "question", "context", "answers"):
            _need(row, key, where)
        answers = row["answers"]
        texts, starts = _need(answers, "text", f"{where}: answers"), _need(answers, "answer_start", where)
        qid = str(row["id"])
        check_answers(qid, row["context"], list(texts), list(starts), where)
        rows.append({"id": qid, "title": row.get("title", ""), "context": row["context"],
                     "question": row["question"], "answers": {"text": list(texts),
                     "answer_start": list(starts)}})  # fmt: skip
    if not rows:
        raise ValueError(f"{path} holds no questions.")
    return rows


def read_squad(path: str) -> list[dict[str, Any]]:
    """An official SQuAD JSON file (holding `data`) or json lines (`.jsonl`, or a `.json` file of one row a line)."""
    if path.endswith(".jsonl"):
        return read_squad_jsonl(path)
    with open(path, encoding="utf-8-sig") as f:
        text = f.read()
    try:
        document = json.loads(text)
    except json.JSONDecodeError:
        return read_squad_jsonl(path)  # several objects: json lines
    if isinstance(document, dict) and "data" in document:
        return squad_rows(document, path)
    if isinstance(document, dict) and "context" in document:
        return read_squad_jsonl(path)  # json lines of one row
    found = sorted(document) if isinstance(document, dict) else type(document).__name__
    raise ValueError(f"{path} has no 'data' (found {found}): not SQuAD-shaped (the official layout, or json lines "
                     "with id, question, context, answers).")  # fmt: skip
