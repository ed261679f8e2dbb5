"""Cached teacher outputs (offline distillation): the teacher's logits over the training set, computed once.

The cache is a folder of safetensors shards (`logits-00000.safetensors`, ...) and a `manifest.json` written last.
The manifest records what the logits are of: the dataset's fingerprint and size, the tokenizer, a digest of the
teacher's weights and the scoring backend (`scoring.py`). A cache whose manifest disagrees is refused with a message.

Shard k holds rows [k * shard_size, (k + 1) * shard_size) in dataset order. Sequence-level logits are one row per
example, `(rows, labels)`. Token-level logits (a tagger's, `(batch, length, labels)` from the teacher) are kept for
each example's real tokens only (its attention mask), rows of different lengths one after the other: `logits`
`(tokens, labels)` and `lengths` `(rows,)`; `TokenLogits` reads them back and pads them to a training batch's
shape. Within a shard the rows are scored in
batches of similar length (sorted, then put back in order): short-text data is padded to its own length rather
than to the longest row of a random batch, which on SST-2 roughly doubles the teacher's throughput. While a cache
is being written, `building.json` holds its identity; a build that was interrupted resumes at the first missing
shard when the identity matches, and starts afresh otherwise.
"""

from __future__ import annotations

import glob
import hashlib
import json
import logging
import os
import time
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from .data import teacher_part
from .progress import announce
from .resilience import atomic_write_text
from .scoring import make_scorer, resolve_backend
from .tasks.base import output_logits

logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"
BUILDING = "building.json"  # the identity of a cache being written: its shards may be reused
INDEX_COLUMN = "distill_index"  # the row number that carries an example to its cached logits


def teacher_digest(model: torch.nn.Module) -> str:
    """sha256 over the teacher's parameter names, shapes, dtypes and values."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
        digest.update(tensor.detach().to("cpu").contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def tokenizer_digest(tokenizer: Any) -> str:
    if tokenizer is None:  # batches tokenized outside the trainer: the dataset fingerprint covers the ids
        return "none"
    vocab = sorted(tokenizer.get_vocab().items())
    return hashlib.sha256(json.dumps([type(tokenizer).__name__, vocab]).encode()).hexdigest()


def identity(teacher: torch.nn.Module, tokenizer: Any, dataset: Any) -> dict[str, Any]:
    return {
        "dataset_fingerprint": getattr(dataset, "_fingerprint", None),
        "num_rows": len(dataset),
        "tokenizer": tokenizer_digest(tokenizer),
        "teacher": teacher_digest(teacher),
    }


def _shard_path(directory: str, index: int) -> str:
    return os.path.join(directory, f"logits-{index:05d}.safetensors")


def _write_shard(directory: str, index: int, logits: torch.Tensor, lengths: torch.Tensor | None = None) -> None:
    path = _shard_path(directory, index)
    tmp = path + ".tmp"
    tensors = {"logits": logits.contiguous()}
    if lengths is not None:
        tensors["lengths"] = lengths.contiguous()
    save_file(tensors, tmp)
    os.replace(tmp, path)


class TokenLogits:
    """Cached token-level logits: each row's real tokens, rows one after the other (`flat` `(tokens, labels)`,
    `lengths` `(rows,)`). `padded(index, attention_mask)` is a training batch's `(batch, length, labels)` tensor:
    each row's logits at the positions its mask marks (either padding side), zeros elsewhere."""

    def __init__(self, flat: torch.Tensor, lengths: torch.Tensor):
        self.flat, self.lengths = flat, lengths.long()
        self.starts = torch.cumsum(self.lengths, 0) - self.lengths

    def __len__(self) -> int:
        return len(self.lengths)

    def row(self, i: int) -> torch.Tensor:
        start = int(self.starts[i])
        return self.flat[start : start + int(self.lengths[i])]

    def padded(self, index: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        mask = attention_mask.bool().cpu()
        lengths = self.lengths[index]
        if not torch.equal(mask.sum(-1), lengths):
            raise ValueError(
                "the teacher cache's token logits do not fit this batch (rows of other lengths): the training rows "
                "changed since the cache was written; delete the cache folder to recompute it."
            )
        out = torch.zeros(*mask.shape, self.flat.shape[-1])
        out[mask] = torch.cat([self.row(int(i)) for i in index])
        return out


def _shard_rows(tensors: dict[str, torch.Tensor]) -> int:
    return len(tensors["lengths"]) if "lengths" in tensors else len(tensors["logits"])


def _join(pieces: list[dict[str, torch.Tensor]]) -> torch.Tensor | TokenLogits:
    logits = torch.cat([p["logits"] for p in pieces])
    if pieces and "lengths" in pieces[0]:
        return TokenLogits(logits, torch.cat([p["lengths"] for p in pieces]))
    return logits


def _mask_of(batch: dict[str, Any]) -> torch.Tensor:
    own = teacher_part(batch) or batch  # the teacher's own tokenization when the batch carries one
    return own["attention_mask"].bool()


def _read_json(path: str) -> dict[str, Any] | None:
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def row_lengths(dataset: Any) -> list[int]:
    """Tokens per row, in the teacher's own tokenization when the rows carry one (cross-tokenizer data)."""
    column = "teacher_input_ids" if "teacher_input_ids" in dataset.column_names else "input_ids"
    return [len(ids) for ids in dataset[column]]


def length_sorted_batches(lengths: list[int], rows: range, batch_size: int) -> list[list[int]]:
    """The row numbers in `rows`, sorted by length (ties in row order), in batches of `batch_size`."""
    order = sorted(rows, key=lambda i: lengths[i])
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


@torch.no_grad()
def load_or_build(
    directory: str,
    teacher_forward: Any,
    teacher: torch.nn.Module,
    tokenizer: Any,
    dataset: Any,
    collator: Any,
    batch_size: int = 64,
    shard_size: int = 4096,
    backend: str = "torch",
    progress: bool = True,
    extra_identity: dict[str, Any] | None = None,
) -> torch.Tensor | TokenLogits:
    """The teacher's logits for every row of `dataset`, in order, float32 on the CPU: shape (num_rows, num_labels)
    for sequence-level logits, a `TokenLogits` for token-level ones.

    `teacher_forward(batch)` runs the teacher (the trainer's hook) for the `torch` backend; the other backends
    score a converted copy of `teacher` (see `scoring.make_scorer`). Raises ValueError when the folder holds a
    complete cache of other data, another tokenizer, another teacher or another backend. `extra_identity` adds what
    else the logits depend on (an ensemble's teachers, weights and mode).
    """
    backend = resolve_backend(backend, teacher, len(dataset))
    wanted = {**identity(teacher, tokenizer, dataset), **(extra_identity or {}), "backend": backend,
              "shard_size": shard_size}  # fmt: skip
    manifest_path = os.path.join(directory, MANIFEST)
    manifest = _read_json(manifest_path)
    if manifest is not None:
        differs = [key for key, value in wanted.items() if manifest.get(key) != value]
        if differs:
            raise ValueError(
                f"the teacher cache in {directory!r} was computed for another {', '.join(differs)} and will not be "
                "used. Point --teacher_cache at a new folder, or delete this one to recompute it."
            )
        shards = sorted(glob.glob(os.path.join(directory, "logits-*.safetensors")))
        logits = _join([load_file(p) for p in shards])
        if len(logits) != len(dataset):
            raise ValueError(
                f"the teacher cache in {directory!r} is corrupt ({len(logits)} rows for a dataset of "
                f"{len(dataset)}); delete it to recompute."
            )
        logger.info("teacher cache: %d rows read from %s", len(logits), directory)
        return logits

    os.makedirs(directory, exist_ok=True)
    building = os.path.join(directory, BUILDING)
    if _read_json(building) != wanted:  # another cache was being written here: its shards are of no use
        for stale in glob.glob(os.path.join(directory, "logits-*")):
            os.remove(stale)
        atomic_write_text(building, json.dumps(wanted, indent=2))
    num_shards = -(-len(dataset) // shard_size)
    lengths = row_lengths(dataset)
    announce("teacher cache", f"{len(dataset):,} rows in {num_shards} shard(s), backend {backend}, into {directory}")
    score = None
    pieces, computed, started = [], 0, time.perf_counter()
    for shard in range(num_shards):
        rows = range(shard * shard_size, min(len(dataset), (shard + 1) * shard_size))
        path = _shard_path(directory, shard)
        if os.path.isfile(path):
            done = load_file(path)
            if _shard_rows(done) == len(rows):  # written by an interrupted build of this same cache
                pieces.append(done)
                continue
        out: torch.Tensor | None = None
        token_rows: dict[int, torch.Tensor] = {}  # token-level logits: row -> its real tokens' logits
        batches = length_sorted_batches(lengths, rows, batch_size)
        for batch_rows in tqdm(
            batches, desc=f"teacher cache, shard {shard + 1}/{num_shards}", leave=False, disable=not progress
        ):
            columns = dataset[batch_rows]
            batch = collator([{k: v[j] for k, v in columns.items()} for j in range(len(batch_rows))])
            if score is None:
                score = _scorer(backend, teacher_forward, teacher, batch)
            logits = score(batch)
            if logits.dim() == 3:  # per token: each row's real tokens
                mask = _mask_of(batch)
                for j, row in enumerate(batch_rows):
                    token_rows[row] = logits[j][mask[j]]
                continue
            if logits.dim() != 2:
                raise ValueError(
                    f"the teacher cache holds logits per example or per token; this teacher's have shape "
                    f"{tuple(logits.shape)}: train without --teacher_cache."
                )
            if out is None:
                out = torch.empty(len(rows), logits.shape[-1])
            out[torch.tensor(batch_rows) - rows.start] = logits
        if token_rows:
            ordered = [token_rows[row] for row in rows]
            flat, row_sizes = torch.cat(ordered), torch.tensor([len(r) for r in ordered])
            _write_shard(directory, shard, flat, row_sizes)
            pieces.append({"logits": flat, "lengths": row_sizes})
        else:
            _write_shard(directory, shard, out)
            pieces.append({"logits": out})
        computed += len(rows)
    # the manifest goes last: without it, the shards above are never read as a complete cache
    atomic_write_text(manifest_path, json.dumps({**wanted, "shards": num_shards}, indent=2))
    os.remove(building)
    logits = _join(pieces)
    seconds = time.perf_counter() - started
    logger.info(
        "teacher cache: %d rows in %s (%d computed now, %.1f rows/s)",
        len(logits),
        directory,
        computed,
        computed / seconds if computed and seconds > 0 else float("nan"),
    )
    return logits


def _scorer(backend: str, teacher_forward: Any, teacher: torch.nn.Module, example: dict[str, Any]) -> Any:
    if backend == "torch":  # the trainer's own hook: teacher_* inputs, dtype and device handled there
        return lambda batch: output_logits(teacher_forward(batch)).float().cpu()
    own = teacher_part(example) or example  # the teacher's own tokenization when the batch carries one
    scorer = make_scorer(backend, teacher, own)
    return lambda batch: scorer(teacher_part(batch) or batch)
