"""Cached teacher outputs (offline distillation): the teacher's logits over the training set, computed once.

The cache is a folder of safetensors shards (`logits-00000.safetensors`, ...) and a `manifest.json` written last.
The manifest records what the logits are of: the dataset's fingerprint and size, the tokenizer, and a digest of the
teacher's weights. A cache whose manifest disagrees is refused with a message; a folder without a manifest is a
cache interrupted while being written, and is rebuilt from scratch.
"""

from __future__ import annotations

import glob
import hashlib
import json
import logging
import os
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch.utils.data import DataLoader

from .resilience import atomic_write_text

logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"
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


def _write_shard(directory: str, index: int, logits: torch.Tensor) -> None:
    path = os.path.join(directory, f"logits-{index:05d}.safetensors")
    tmp = path + ".tmp"
    save_file({"logits": logits.contiguous()}, tmp)
    os.replace(tmp, path)


@torch.no_grad()
def load_or_build(
    directory: str,
    teacher_forward: Any,
    teacher: torch.nn.Module,
    tokenizer: Any,
    dataset: Any,
    collator: Any,
    batch_size: int = 64,
    shard_size: int = 8192,
) -> torch.Tensor:
    """The teacher's logits for every row of `dataset`, in order, shape (num_rows, num_labels), float32 on the CPU.

    `teacher_forward(batch)` runs the teacher (the trainer's hook). Raises ValueError when the folder holds a
    complete cache of other data, another tokenizer or another teacher.
    """
    wanted = identity(teacher, tokenizer, dataset)
    manifest_path = os.path.join(directory, MANIFEST)
    if os.path.isfile(manifest_path):
        with open(manifest_path, encoding="utf-8") as f:
            manifest = json.load(f)
        differs = [key for key, value in wanted.items() if manifest.get(key) != value]
        if differs:
            raise ValueError(
                f"the teacher cache in {directory!r} was computed for another {', '.join(differs)} and will not be "
                "used. Point --teacher_cache at a new folder, or delete this one to recompute it."
            )
        shards = sorted(glob.glob(os.path.join(directory, "logits-*.safetensors")))
        logits = torch.cat([load_file(p)["logits"] for p in shards])
        if len(logits) != len(dataset):
            raise ValueError(
                f"the teacher cache in {directory!r} is corrupt ({len(logits)} rows for a dataset of "
                f"{len(dataset)}); delete it to recompute."
            )
        logger.info("teacher cache: %d rows read from %s", len(logits), directory)
        return logits

    os.makedirs(directory, exist_ok=True)
    for stale in glob.glob(os.path.join(directory, "logits-*")):  # a cache interrupted while being written
        os.remove(stale)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collator)
    computed, pending, shard = [], [], 0
    for batch in loader:
        logits = teacher_forward(batch).logits.float().cpu()
        if logits.dim() != 2:
            raise ValueError(
                "the teacher cache holds one row of logits per example: token-level tasks are not "
                "supported; train without --teacher_cache."
            )
        computed.append(logits)
        pending.append(logits)
        if sum(len(p) for p in pending) >= shard_size:
            _write_shard(directory, shard, torch.cat(pending))
            pending, shard = [], shard + 1
    if pending:
        _write_shard(directory, shard, torch.cat(pending))
    # the manifest goes last: without it, the shards above are never read as a complete cache
    atomic_write_text(manifest_path, json.dumps({**wanted, "shards": shard + bool(pending)}, indent=2))
    logits = torch.cat(computed)
    logger.info("teacher cache: %d rows computed into %s", len(logits), directory)
    return logits
