"""Tiny causal language models built in code for the causal-lm tests: a word-level tokenizer with BOS / EOS / pad,
2-layer Llama and GPT-2 models, and text with a pattern a model can learn (counting words)."""

from __future__ import annotations

import random
from pathlib import Path

import torch

NUMBERS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
WORDS = NUMBERS + ["the", "cat", "sat", "on", "mat", "and", "then", "a", "dog", "ran", ".", "?", "answer", ":"]


def lm_tokenizer(directory: str | Path | None = None, words: list[str] | None = None):
    """A word-level fast tokenizer over `words` (default WORDS) with <s>, </s>, <pad> and <unk> (ids 0-3)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(["<s>", "</s>", "<pad>", "<unk>", *(WORDS if words is None else words)])}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                        unk_token="<unk>")  # fmt: skip
    if directory is not None:
        tokenizer.save_pretrained(directory)
    return tokenizer


def tiny_llama(vocab_size: int | None = None, layers: int = 2, seed: int = 0, **kw):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=vocab_size or len(WORDS) + 4, hidden_size=32, num_hidden_layers=layers,
                         num_attention_heads=4, num_key_value_heads=2, intermediate_size=64,
                         max_position_embeddings=128, tie_word_embeddings=True, bos_token_id=0, eos_token_id=1,
                         pad_token_id=2, **kw)  # fmt: skip
    return LlamaForCausalLM(config)


def tiny_gpt2(seed: int = 0):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    config = GPT2Config(vocab_size=len(WORDS) + 4, n_embd=32, n_layer=2, n_head=2, n_positions=128, bos_token_id=0,
                        eos_token_id=1, pad_token_id=2)  # fmt: skip
    return GPT2LMHeadModel(config)


def counting_text(n: int, seed: int) -> list[str]:
    """Documents that count up from a random number: learnable next tokens."""
    rng = random.Random(seed)
    docs = []
    for _ in range(n):
        start = rng.randrange(5)
        docs.append(" ".join(NUMBERS[start : start + rng.randint(3, 5)] + ["."]))
    return docs


def write_text(path: Path, docs: list[str]) -> Path:
    path.write_text("\n\n".join(docs) + "\n", encoding="utf-8")
    return path


def train_lm(model, tokenizer, docs: list[str], steps: int = 150, lr: float = 3e-3):
    """A few steps of plain next-token training, so that a teacher knows the pattern."""
    ids = tokenizer(" ".join(d + " </s>" for d in docs), add_special_tokens=False, return_tensors="pt")["input_ids"]
    blocks = ids[0, : ids.shape[1] - ids.shape[1] % 32].view(-1, 32)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    model.train()
    for step in range(steps):
        batch = blocks[(step * 8) % len(blocks) :][:8]
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return model.eval()
