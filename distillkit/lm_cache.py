"""The top-k teacher cache of a causal language model: per counted token, the teacher's k most likely next tokens
with their log-probabilities at the run's temperature, and the probability left to all the others.

Storage, per counted token (a position whose next token has a label, in row order, positions ascending):
`ids` (k,) uint16 when the vocabulary has at most 65,536 ids, else int32; `logp` (k,) float16; `rest` () float16,
1 - sum(exp(logp)). At k = 32 with a 49,152-token vocabulary that is 32 x 2 + 32 x 2 + 2 = 130 bytes a token, against
196,608 for the full fp32 distribution. Shards of `shard_rows` rows (`topk-00000.safetensors`, ...: the three
arrays flat and `lengths` (rows,), each row's counted tokens) are written as they are computed; `building.json` holds
the identity of a cache being written (a stopped build resumes at its first missing shard), `manifest.json`, written
last, marks it complete. The identity: the data set's fingerprint and size, the tokenizer, a digest of the teacher's
weights, k and the temperature (the stored distribution is softened at T); a folder holding another is refused.

The soft loss from the cache (`topk_divergence`) coarsens both distributions to k + 1 outcomes: the teacher's top-k
ids one by one, and one bucket for every other id (for the student: one minus its probability on those k ids). The
divergence is then exact on the coarsened distributions, and by the data-processing inequality a KL between them is
at most the KL between the full ones: the approximation drops the shape of the teacher's tail, not its mass. This is
the "sparse logits" idea of arcee's DistillKit and of Raman et al. (2023), with the remainder kept as a bucket
instead of renormalising the top-k (which would overstate the teacher's confidence on flat distributions).
"""

from __future__ import annotations

import glob
import json
import logging
import math
import os
import time
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import Tensor

from .cache import BUILDING, MANIFEST, _read_json, identity
from .progress import announce
from .resilience import atomic_write_text

logger = logging.getLogger(__name__)

SHARD_PREFIX = "topk-"


class TopKCache:
    """The cached rows: `ids`, `logp`, `rest` over every counted token, and each row's start (`offsets`)."""

    def __init__(self, ids: Tensor, logp: Tensor, rest: Tensor, lengths: Tensor, k: int, temperature: float):
        self.ids, self.logp, self.rest, self.lengths = ids, logp, rest, lengths
        self.offsets = torch.cat([torch.zeros(1, dtype=torch.long), lengths.long().cumsum(0)])
        self.k, self.temperature = k, temperature

    def __len__(self) -> int:
        return len(self.lengths)

    def bytes_per_token(self) -> float:
        per = self.ids.element_size() * self.k + self.logp.element_size() * self.k + self.rest.element_size()
        return float(per)

    def gather(self, index: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The entries of rows `index`, one after the other (the order in which a batch's counted positions are
        read: row by row, positions ascending): ids (N, k) int64, logp (N, k) float32, rest (N,) float32."""
        spans = [torch.arange(int(self.offsets[i]), int(self.offsets[i + 1])) for i in index.tolist()]
        at = torch.cat(spans) if spans else torch.zeros(0, dtype=torch.long)
        return self.ids[at].long(), self.logp[at].float(), self.rest[at].float()


def topk_entries(teacher_logits: Tensor, k: int, temperature: float) -> tuple[Tensor, Tensor, Tensor]:
    """(N, V) teacher logits -> the top-k ids, their log-probabilities at T, and the rest of the mass (N,)."""
    log_p = F.log_softmax(teacher_logits.float() / temperature, dim=-1)
    logp, ids = log_p.topk(min(k, log_p.shape[-1]), dim=-1)
    rest = (1.0 - logp.exp().sum(-1)).clamp_min(0.0)
    return ids, logp, rest


def topk_divergence(name: str, student_logits: Tensor, ids: Tensor, logp: Tensor, rest: Tensor, temperature: float,
                    beta: float = 0.5) -> Tensor:  # fmt: skip
    """The divergence `name` ("kd", "reverse_kl", "jsd") per position between the teacher's cached top-k plus a
    bucket and the student's distribution coarsened the same way, x T^2: (N, V) student logits -> (N,)."""
    from .losses.lm import _check_beta

    log_q = F.log_softmax(student_logits.float() / temperature, dim=-1)
    q_top = log_q.gather(-1, ids)  # (N, k)
    q_rest = torch.log1p(-q_top.exp().sum(-1).clamp(max=1.0 - 1e-6))  # log of the student's mass elsewhere
    p = torch.cat([logp, torch.log(rest.clamp_min(1e-12)).unsqueeze(-1)], dim=-1)  # (N, k + 1), log
    q = torch.cat([q_top, q_rest.unsqueeze(-1)], dim=-1)
    p_mass = torch.cat([logp.exp(), rest.unsqueeze(-1)], dim=-1)
    if name == "jsd":
        _check_beta(beta)
        name = {0.0: "kd", 1.0: "reverse_kl"}.get(beta, "jsd")
    if name == "kd":
        value = (p_mass * (p - q)).sum(-1)
    elif name == "reverse_kl":
        value = (q.exp() * (q - p)).sum(-1)
    else:
        m = torch.logsumexp(torch.stack([p + math.log(beta), q + math.log1p(-beta)]), dim=0)
        value = beta * (p_mass * (p - m)).sum(-1) + (1 - beta) * (q.exp() * (q - m)).sum(-1)
    return value * temperature**2


def cached_tail_kl(teacher_logits: Tensor, k: int, temperature: float = 1.0) -> Tensor:
    """KL(full || cached) per position, the cached distribution being the top-k probabilities and the rest spread
    evenly over the other ids: what the cache loses of the teacher's distribution, in nats."""
    log_p = F.log_softmax(teacher_logits.float() / temperature, dim=-1)
    vocab = log_p.shape[-1]
    logp, ids = log_p.topk(min(k, vocab), dim=-1)
    rest = (1.0 - logp.exp().sum(-1)).clamp_min(1e-12)
    tail = log_p.scatter(-1, ids, float("-inf"))  # the other ids' log-probabilities
    tail_p = tail.exp()
    uniform = torch.log(rest) - math.log(max(vocab - ids.shape[-1], 1))
    return (tail_p * (torch.nan_to_num(tail, neginf=0.0) - uniform.unsqueeze(-1))).sum(-1)


def _shard_path(directory: str, index: int) -> str:
    return os.path.join(directory, f"{SHARD_PREFIX}{index:05d}.safetensors")


def _join(pieces: list[dict[str, Tensor]], k: int, temperature: float) -> TopKCache:
    cat = {key: torch.cat([p[key] for p in pieces]) for key in ("ids", "logp", "rest", "lengths")}
    return TopKCache(cat["ids"], cat["logp"], cat["rest"], cat["lengths"], k, temperature)


@torch.no_grad()
def load_or_build_topk(directory: str, teacher: torch.nn.Module, tokenizer: Any, dataset: Any, collator: Any,
                       k: int = 32, temperature: float = 1.0, batch_size: int = 8, shard_rows: int = 256,
                       chunk_size: int = 1024, vocab_rows: int | None = None) -> TopKCache:  # fmt: skip
    """The top-k cache of `teacher` over every row of `dataset` (causal-LM blocks with `labels`), built into
    `directory` or read from it; refused (ValueError) when the folder holds a cache of something else.
    `vocab_rows`: the student's output rows when the teacher has more (its distribution is taken over the ids
    both have, as the live loss takes it)."""
    from .trainer import HeadInput

    if not k >= 1:
        raise ValueError(f"cache_top_k must be >= 1 (got {k}).")
    wanted = {**identity(teacher, tokenizer, dataset), "kind": "causal-lm top-k", "top_k": k,
              "temperature": temperature, "shard_rows": shard_rows, "vocab_rows": vocab_rows}  # fmt: skip
    manifest_path = os.path.join(directory, MANIFEST)
    manifest = _read_json(manifest_path)
    if manifest is not None:
        differs = [key for key, value in wanted.items() if manifest.get(key) != value]
        if differs:
            raise ValueError(f"the teacher cache in {directory!r} was computed for another {', '.join(differs)} and "
                             "will not be used. Point --teacher_cache at a new folder, or delete this one to "
                             "recompute it.")  # fmt: skip
        cache = _join([load_file(p) for p in sorted(glob.glob(os.path.join(directory, SHARD_PREFIX + "*")))], k,
                      temperature)  # fmt: skip
        if len(cache) != len(dataset):
            raise ValueError(f"the teacher cache in {directory!r} is corrupt ({len(cache)} rows for a dataset of "
                             f"{len(dataset)}); delete it to recompute.")  # fmt: skip
        logger.info("teacher cache: %d rows, %d tokens read from %s", len(cache), len(cache.rest), directory)
        return cache
    os.makedirs(directory, exist_ok=True)
    building = os.path.join(directory, BUILDING)
    if _read_json(building) != wanted:
        for stale in glob.glob(os.path.join(directory, SHARD_PREFIX + "*")):
            os.remove(stale)
        atomic_write_text(building, json.dumps(wanted, indent=2))
    vocab = min(teacher.get_output_embeddings().weight.shape[0], vocab_rows or 2**62)
    id_dtype = torch.uint16 if vocab <= 65536 else torch.int32
    num_shards = -(-len(dataset) // shard_rows)
    announce("teacher cache", f"{len(dataset):,} blocks in {num_shards} shard(s), top {k} of {vocab:,} ids a token, "
             f"into {directory}")  # fmt: skip
    device = next(teacher.parameters()).device
    head = teacher.get_output_embeddings()
    pieces, started, computed = [], time.perf_counter(), 0
    for shard in range(num_shards):
        path = _shard_path(directory, shard)
        rows = range(shard * shard_rows, min(len(dataset), (shard + 1) * shard_rows))
        if os.path.isfile(path):
            done = load_file(path)
            if len(done["lengths"]) == len(rows):
                pieces.append(done)
                continue
        parts: dict[str, list[Tensor]] = {"ids": [], "logp": [], "rest": [], "lengths": []}
        for start in range(rows.start, rows.stop, batch_size):
            batch = collator([dataset[i] for i in range(start, min(rows.stop, start + batch_size))])
            labels = batch["labels"]
            inputs = {k_: v.to(device) for k_, v in batch.items() if k_ in ("input_ids", "attention_mask")}
            with HeadInput(teacher) as captured:
                teacher(**inputs)
            counted = labels[:, 1:] != -100
            hidden = captured.hidden[:, :-1][counted.to(device)]
            for c in range(0, hidden.shape[0], chunk_size):
                logits = F.linear(hidden[c : c + chunk_size], head.weight, head.bias)[:, :vocab]
                ids, logp, rest = topk_entries(logits, k, temperature)
                parts["ids"].append(ids.to("cpu", id_dtype))
                parts["logp"].append(logp.to("cpu", torch.float16))
                parts["rest"].append(rest.to("cpu", torch.float16))
            parts["lengths"].append(counted.sum(1).to(torch.int32))
        tensors = {key: torch.cat(value).contiguous() for key, value in parts.items()}
        tmp = path + ".tmp"
        save_file(tensors, tmp)
        os.replace(tmp, path)
        pieces.append(tensors)
        computed += len(rows)
    atomic_write_text(manifest_path, json.dumps({**wanted, "shards": num_shards}, indent=2))
    os.remove(building)
    cache = _join(pieces, k, temperature)
    seconds = time.perf_counter() - started
    logger.info("teacher cache: %d blocks, %d tokens, %.0f bytes a token, in %s (%d blocks computed now, %.1f s)",
                len(cache), len(cache.rest), cache.bytes_per_token(), directory, computed, seconds)  # fmt: skip
    return cache
