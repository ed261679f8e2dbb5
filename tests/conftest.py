"""Tiny models, a tokenizer and a synthetic task built in code: the tests never download anything."""

from __future__ import annotations

import os
import random

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for the hub, and let `evaluate` fall back at once

import pytest  # noqa: E402
import torch
from datasets import Dataset
from transformers import BertConfig, BertForSequenceClassification, BertTokenizer

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
WORDS = [f"w{i}" for i in range(40)]
VOCAB = SPECIALS + WORDS
KEYWORDS = WORDS[:5]  # the synthetic rule: label 1 iff the sentence contains one of these words


def tiny_bert(layers: int = 2, hidden: int = 32, heads: int = 2, num_labels: int = 2, seed: int = 0, **kw):
    torch.manual_seed(seed)
    shape = dict(
        vocab_size=len(VOCAB),
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=2 * hidden,
        max_position_embeddings=64,
        num_labels=num_labels,
    )
    config = BertConfig(**{**shape, **kw})
    return BertForSequenceClassification(config)


def make_tokenizer(directory=None) -> BertTokenizer:
    # transformers 5 builds a WordPiece tokenizer straight from a {token: id} mapping
    return BertTokenizer(vocab={token: i for i, token in enumerate(VOCAB)}, do_lower_case=True)


def save_base_encoder(directory) -> None:
    """A 2 x 32 BERT encoder without a task head, with the test tokenizer: a base checkpoint such as
    all-mpnet-base-v2, which the teacher stage fine-tunes."""
    from transformers import BertModel

    config = BertConfig(vocab_size=len(VOCAB), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64)  # fmt: skip
    BertModel(config).save_pretrained(directory)
    make_tokenizer().save_pretrained(directory)


def rule_sentences(n: int, seed: int) -> tuple[list[str], list[int]]:
    """Random sentences of 3-8 words; the label says whether a keyword occurs (about half do)."""
    rng = random.Random(seed)
    texts, labels = [], []
    for _ in range(n):
        words = [rng.choice(WORDS) for _ in range(rng.randint(3, 8))]
        texts.append(" ".join(words))
        labels.append(int(any(w in KEYWORDS for w in words)))
    return texts, labels


def write_tsv(path, n: int, seed: int):
    """A GLUE-style TSV (sentence, label) of `n` keyword-rule sentences; returns the path."""
    texts, labels = rule_sentences(n, seed)
    path.write_text("sentence\tlabel\n" + "".join(f"{t}\t{y}\n" for t, y in zip(texts, labels)))
    return path


def rule_dataset(tokenizer, n: int, seed: int, with_labels: bool = True) -> Dataset:
    texts, labels = rule_sentences(n, seed)
    data = {"sentence": texts, **({"label": labels} if with_labels else {})}
    return Dataset.from_dict(data).map(
        lambda b: {
            **tokenizer(b["sentence"], truncation=True, max_length=32),
            **({"labels": b["label"]} if with_labels else {}),
        },
        batched=True,
        remove_columns=list(data),
    )


def train_teacher(tokenizer, steps: int = 150, seed: int = 0) -> BertForSequenceClassification:
    """A tiny BERT trained on the keyword rule with a plain loop (about a second on a CPU)."""
    teacher = tiny_bert(layers=2, hidden=32, heads=2, seed=seed)
    opt = torch.optim.AdamW(teacher.parameters(), lr=2e-3)
    rng = random.Random(seed)
    for _ in range(steps):
        texts, labels = rule_sentences(32, rng.randrange(1 << 30))
        batch = tokenizer(texts, padding=True, return_tensors="pt")
        loss = teacher(**batch, labels=torch.tensor(labels)).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    return teacher.eval()


@pytest.fixture(scope="session")
def tokenizer():
    return make_tokenizer()


@pytest.fixture(scope="session")
def trained_teacher_dir(tmp_path_factory, tokenizer):
    """A directory holding the trained teacher and its tokenizer, as a user's fine-tuned checkpoint would."""
    directory = tmp_path_factory.mktemp("teacher")
    teacher = train_teacher(tokenizer)
    teacher.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture()
def trained_teacher(trained_teacher_dir):
    return BertForSequenceClassification.from_pretrained(trained_teacher_dir)
