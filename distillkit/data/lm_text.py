"""Text for causal language models: plain documents packed into blocks, and instruction data whose completions alone
are trained on.

Files read (`read_lm_file`):
- `.txt` / `.raw`: documents separated by blank lines (WikiText's paragraphs, one article per blank-line block);
- `.csv` / `.tsv` / `.json` / `.jsonl` with a text column (`--text_column`, default `text`);
- json lines with `prompt` and `completion`, or `messages` (a chat, rendered with the tokenizer's chat template; the
  last message is the completion): instruction data.

Encoding (`pack_documents`, `encode_instructions`): documents are tokenized without special tokens, joined with the
tokenizer's EOS after each one and cut into blocks of `block_size` tokens (the training split drops its last partial
block, as Hugging Face's run_clm does; the validation split keeps it, so that every validation token is scored).
Instruction rows are one example each: prompt then completion then EOS, truncated to `block_size`, with the
prompt's labels -100 so that no loss reads them.
"""

from __future__ import annotations

import csv
import json
import os
import re
from typing import Any

IGNORE = -100
TEXT_SUFFIXES = (".txt", ".raw", ".text")


def _bad(path: str, problem: str) -> ValueError:
    return ValueError(f"text file {path!r}: {problem}")


def read_lm_file(path: str, text_column: str | None = None) -> list[dict[str, Any]]:
    """The rows of one file: {"text": ...} documents, or {"prompt", "completion"} / {"messages"} instructions."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"text file {path!r} does not exist; pass a .txt, .csv or .jsonl file.")
    lower = path.lower()
    if lower.endswith(TEXT_SUFFIXES):
        with open(path, encoding="utf-8") as f:
            blocks, current = [], []
            for line in f:
                if line.strip():
                    current.append(line.rstrip("\n"))
                elif current:
                    blocks.append("\n".join(current))
                    current = []
            if current:
                blocks.append("\n".join(current))
        rows = [{"text": b} for b in blocks]
    elif lower.endswith((".csv", ".tsv")):
        with open(path, encoding="utf-8", newline="") as f:
            reader = csv.DictReader(f, delimiter="\t" if lower.endswith(".tsv") else ",")
            column = text_column or "text"
            if reader.fieldnames is None or column not in reader.fieldnames:
                raise _bad(path, f"no column {column!r} (columns: {reader.fieldnames}); name it with --text_column.")
            rows = [{"text": r[column] or ""} for r in reader]
    elif lower.endswith((".json", ".jsonl")):
        rows = []
        with open(path, encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as err:
                    raise _bad(path, f"line {number} is not JSON ({err.msg}); write one object per line.") from None
                rows.append(_lm_row(path, number, row, text_column))
    else:
        raise _bad(path, "unknown format; use .txt (documents separated by blank lines), .csv/.tsv or .jsonl.")
    if not any(r.get("text", "").strip() or r.get("completion") or r.get("messages") for r in rows):
        raise _bad(path, "holds no text; give documents (or prompt / completion rows).")
    return rows


def _lm_row(path: str, number: int, row: Any, text_column: str | None) -> dict[str, Any]:
    if not isinstance(row, dict):
        raise _bad(path, f"line {number} is not a JSON object.")
    if "messages" in row:
        messages = row["messages"]
        if not isinstance(messages, list) or len(messages) < 2 or not all(isinstance(m, dict) for m in messages):
            raise _bad(path, f"line {number}: 'messages' must be a list of at least two {{role, content}} objects.")
        return {"messages": messages}
    if "prompt" in row or "completion" in row:
        missing = [k for k in ("prompt", "completion") if not isinstance(row.get(k), str)]
        if missing:
            raise _bad(path, f"line {number}: instruction rows need 'prompt' and 'completion' strings; missing "
                             f"{missing}.")  # fmt: skip
        return {"prompt": row["prompt"], "completion": row["completion"]}
    column = text_column or "text"
    if not isinstance(row.get(column), str):
        raise _bad(path, f"line {number} has no text column {column!r} (keys: {sorted(row)}); name it with "
                         "--text_column, or give prompt / completion or messages.")  # fmt: skip
    return {"text": row[column]}


_ARTICLE_HEADING = re.compile(r"^= [^=].* =$")  # WikiText's level-1 heading (stripped); sections: "= = Name = ="


def wikitext_articles(path: str) -> list[str]:
    """The articles of a WikiText raw file, each one string: its heading and its paragraphs joined with newlines
    (the file's blank lines between paragraphs dropped). Raises when the file has no level-1 heading."""
    articles: list[list[str]] = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if _ARTICLE_HEADING.match(line.strip()):
                articles.append([line])
            elif line.strip() and articles:
                articles[-1].append(line)
    if not articles:
        raise _bad(path, "has no WikiText article heading (a line ' = Title = '); is it a WikiText raw file?")
    return ["\n".join(a) for a in articles]


def split_wikitext(path: str, out_dir: str, validation_articles: int,
                   train_articles: int | None = None) -> dict[str, Any]:  # fmt: skip
    """Write `train.txt` (the first `train_articles`, default every article not held out) and `validation.txt` (the
    last `validation_articles`), one article per blank-line block, as `read_lm_file` reads them; returns the counts.
    WikiText-2's training file is not always at hand: this cuts one of its files by article, so that no article is
    on both sides."""
    articles = wikitext_articles(path)
    if not 0 < validation_articles < len(articles):
        raise ValueError(f"--validation_articles {validation_articles}: the file has {len(articles)} articles; "
                         f"hold out between 1 and {len(articles) - 1}.")  # fmt: skip
    cut = len(articles) - validation_articles
    if train_articles is not None and not 0 < train_articles <= cut:
        raise ValueError(f"--train_articles {train_articles}: {cut} articles are left before the held-out ones; train "
                         f"on between 1 and {cut}.")  # fmt: skip
    os.makedirs(out_dir, exist_ok=True)
    counts = {}
    for name, part in (("train", articles[: train_articles or cut]), ("validation", articles[cut:])):
        with open(os.path.join(out_dir, f"{name}.txt"), "w", encoding="utf-8") as f:
            f.write("\n\n".join(part) + "\n")
        counts[name] = {"articles": len(part), "words": sum(len(a.split()) for a in part),
                        "first": part[0].split("\n", 1)[0].strip(" =")}  # fmt: skip
    return counts


def is_instruction(rows: Any) -> bool:
    names = rows.column_names if hasattr(rows, "column_names") else list(rows[0]) if rows else []
    return "messages" in names or "completion" in names


def _eos(tokenizer: Any) -> int:
    eos = tokenizer.eos_token_id
    if eos is None:
        raise ValueError("the tokenizer has no EOS token: documents cannot be joined; give a causal-LM tokenizer.")
    return int(eos)


def pack_documents(texts: list[str], tokenizer: Any, block_size: int, keep_last: bool) -> dict[str, list]:
    """Blocks of `block_size` tokens of the documents joined with EOS; `keep_last`: keep the shorter last block."""
    eos = _eos(tokenizer)
    stream: list[int] = []
    for ids in tokenizer(list(texts), add_special_tokens=False)["input_ids"]:
        if ids:
            stream.extend(ids)
            stream.append(eos)
    if not stream:
        raise ValueError("the text has no tokens: give documents with some text in them.")
    stop = len(stream) if keep_last else len(stream) - len(stream) % block_size
    blocks = [stream[i : i + block_size] for i in range(0, stop, block_size)]
    blocks = [b for b in blocks if len(b) > 1]  # one token predicts nothing
    if not blocks:
        raise ValueError(f"the text has {len(stream)} tokens, fewer than one block of {block_size}: give more text or "
                         "lower --block_size.")  # fmt: skip
    return {"input_ids": blocks, "attention_mask": [[1] * len(b) for b in blocks], "labels": [list(b) for b in blocks]}


def _prompt_and_completion(row: dict[str, Any], tokenizer: Any) -> tuple[list[int], list[int]]:
    if row.get("messages"):
        messages = row["messages"]
        if getattr(tokenizer, "chat_template", None) is None:
            raise ValueError("instruction rows with 'messages' need a tokenizer with a chat template; give prompt / "
                             "completion rows instead.")  # fmt: skip
        prompt = tokenizer.apply_chat_template(messages[:-1], tokenize=True, add_generation_prompt=True)
        full = tokenizer.apply_chat_template(messages, tokenize=True)
        prompt, full = _ids(prompt), _ids(full)
        if full[: len(prompt)] != prompt:  # a template that renders the prefix differently: split on its length
            prompt = full[: len(prompt)]
        return prompt, full[len(prompt) :]
    prompt = tokenizer(row["prompt"], add_special_tokens=False)["input_ids"]
    completion = tokenizer(row["completion"], add_special_tokens=False)["input_ids"] + [_eos(tokenizer)]
    return list(prompt), list(completion)


def _ids(encoded: Any) -> list[int]:
    if isinstance(encoded, dict) or hasattr(encoded, "keys"):
        encoded = encoded["input_ids"]
    return [int(i) for i in encoded]


def encode_instructions(rows: list[dict[str, Any]], tokenizer: Any, block_size: int,
                        completion_only: bool = True) -> dict[str, list]:  # fmt: skip
    """One example per row: prompt + completion (+ EOS), truncated to `block_size`; the prompt's labels are -100
    when `completion_only`. A row whose completion is cut away entirely is an error naming the block size."""
    out: dict[str, list] = {"input_ids": [], "attention_mask": [], "labels": []}
    longest = 0
    for row in rows:
        prompt, completion = _prompt_and_completion(row, tokenizer)
        longest = max(longest, len(prompt))
        ids = (prompt + completion)[:block_size]
        labels = ([IGNORE] * len(prompt) + completion)[:block_size] if completion_only else list(ids)
        out["input_ids"].append(ids)
        out["attention_mask"].append([1] * len(ids))
        out["labels"].append(labels)
    # a label at position i is predicted from position i - 1: the first position's label counts for nothing
    if completion_only and not any(any(y != IGNORE for y in labels[1:]) for labels in out["labels"]):
        raise ValueError(f"every completion is cut away by --block_size {block_size} (the longest prompt has {longest} "
                         "tokens): raise --block_size or shorten the prompts.")  # fmt: skip
    return out
