"""Extractive question answering: questions and contexts as model windows, and spans back to answer text.

`encode_qa` turns each (question, context) into one or more windows of at most `max_seq_length` tokens: the
question, then as much of the context as fits, the next window starting `doc_stride` tokens of overlap before the
previous one ended (a fast tokenizer's overflowing tokens). Each window keeps the row it came from (`example_index`,
so a question's windows stay together), its tokens' character offsets in the context (None for the question and the
special tokens), and for training the answer's first and last token (`start_positions`, `end_positions`; both the
first token, `[CLS]`, when the answer is not wholly inside the window, as in SQuAD's BERT recipe).

`best_answers` reads the answer of each question off its windows' start and end logits: per window the
`n_best_size` highest starts and ends, spans inside the context with start <= end and at most `max_answer_length`
tokens, scored by start + end logit; the best span over the question's windows, as characters of the context.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

QUESTION_FIRST = "the question first, then the context"


def context_room(tokenizer: Any, question_tokens: int, max_seq_length: int) -> int:
    """Tokens left for the context in a window after the question and the special tokens."""
    specials = tokenizer.num_special_tokens_to_add(pair=True)
    return max_seq_length - question_tokens - specials


def check_windows(tokenizer: Any, questions: Sequence[str], max_seq_length: int, doc_stride: int,
                  ids: Sequence[str] | None = None) -> None:  # fmt: skip
    """Every question leaves room for context, and the stride is shorter than that room (else no window moves on).
    `ids` name the questions in the messages (else their row numbers)."""
    lengths = [len(ids) for ids in tokenizer(list(questions), add_special_tokens=False)["input_ids"]]
    longest = max(range(len(lengths)), key=lengths.__getitem__)
    room = context_room(tokenizer, lengths[longest], max_seq_length)
    if room < 1:
        raise ValueError(
            f"question {ids[longest] if ids is not None else longest!r} has {lengths[longest]} tokens, more than "
            f"max_seq_length {max_seq_length} leaves "
            "with the special tokens: raise --max_seq_length, or leave such questions out."
        )
    if doc_stride >= room:
        raise ValueError(
            f"--doc_stride {doc_stride} must be smaller than the room left for the context ({room} tokens with the "
            f"longest question at max_seq_length {max_seq_length}): windows would not move on. Lower --doc_stride "
            "(128 at max_seq_length 384 is SQuAD's usual)."
        )


def encode_qa(rows: Any, tokenizer: Any, max_seq_length: int, doc_stride: int, with_positions: bool = True):
    """The windows of `rows` (`question`, `context`, and `answers` when `with_positions`) as a dict of lists:
    input_ids, attention_mask (token_type_ids when the tokenizer makes them), example_index, offset_mapping, and
    start_positions / end_positions."""
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError("question answering needs a fast tokenizer (offset mappings); this one is not.")
    if tokenizer.padding_side != "right":
        raise ValueError("question answering windows put the question first: use a tokenizer that pads on the right.")
    questions = [q.lstrip() for q in rows["question"]]
    contexts = list(rows["context"])
    check_windows(tokenizer, questions, max_seq_length, doc_stride, rows.get("id"))
    encoded = tokenizer(
        questions, contexts, truncation="only_second", max_length=max_seq_length, stride=doc_stride,
        return_overflowing_tokens=True, return_offsets_mapping=True, padding=False,
    )  # fmt: skip
    sample = encoded.pop("overflow_to_sample_mapping")
    features: dict[str, list] = {k: list(v) for k, v in encoded.items() if k != "offset_mapping"}
    features["example_index"] = list(sample)
    offsets, starts, ends = [], [], []
    for i, window in enumerate(encoded["offset_mapping"]):
        sequence = encoded.sequence_ids(i)
        offsets.append([tuple(o) if s == 1 else None for o, s in zip(window, sequence)])
        if not with_positions:
            continue
        answers = rows["answers"][sample[i]]
        first = answers["answer_start"][0]
        last = first + len(answers["text"][0])
        inside = [t for t, o in enumerate(offsets[-1]) if o is not None]
        if not inside or window[inside[0]][0] > first or window[inside[-1]][1] < last:
            starts.append(0)  # the answer is not (wholly) in this window: [CLS]
            ends.append(0)
            continue
        start = next(t for t in inside if window[t][1] > first)
        end = next(t for t in reversed(inside) if window[t][0] < last)
        starts.append(start)
        ends.append(end)
    features["offset_mapping"] = offsets
    if with_positions:
        features["start_positions"], features["end_positions"] = starts, ends
    return features


def best_answers(
    start_logits: Sequence[np.ndarray],
    end_logits: Sequence[np.ndarray],
    example_index: Sequence[int],
    offset_mapping: Sequence[Sequence[tuple[int, int] | None]],
    contexts: Sequence[str],
    n_best_size: int = 20,
    max_answer_length: int = 30,
) -> list[str]:
    """The answer text of each context (its question's best span over all its windows; "" when none is valid)."""
    best: dict[int, tuple[float, str]] = {}
    for window, example in enumerate(example_index):
        starts, ends, offsets = np.asarray(start_logits[window]), np.asarray(end_logits[window]), offset_mapping[window]
        length = min(len(offsets), len(starts))
        top_starts = np.argsort(starts[:length])[::-1][:n_best_size]
        top_ends = np.argsort(ends[:length])[::-1][:n_best_size]
        for s in top_starts:
            if offsets[s] is None:
                continue
            for e in top_ends:
                if offsets[e] is None or e < s or e - s + 1 > max_answer_length:
                    continue
                score = float(starts[s] + ends[e])
                if example not in best or score > best[example][0]:
                    best[example] = (score, contexts[example][offsets[s][0] : offsets[e][1]])
    return [best.get(i, (0.0, ""))[1] for i in range(len(contexts))]
