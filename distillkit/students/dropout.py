"""Attention dropout, set on a built model: `--attention_dropout P` for the teacher stage and the student.

Why it is a flag: PyTorch's `scaled_dot_product_attention` runs a fused kernel on the CPU only without dropout; with
dropout on the attention probabilities (BERT's and MPNet's 0.1) it falls back to the math path, which materialises
the (batch, heads, length, length) scores and drops them. Measured on 2 CPU cores (AVX-512 BF16), all-MiniLM-L6-v2
with a span head, batch 32 x 256 tokens, one training step under bf16 autocast: 5.0 s with the checkpoint's 0.1,
2.9 s with 0 (hidden dropout 0.1 kept in both). Long windows (question answering) pay most.
"""

from __future__ import annotations

import logging

from torch import nn

logger = logging.getLogger("distillkit")

# BERT-likes; Llama and DistilBERT; GPT-2
CONFIG_FIELDS = ("attention_probs_dropout_prob", "attention_dropout", "attn_pdrop")
MODULE_DROPOUTS = ("dropout", "attn_dropout", "attention_dropout")  # an attention module's dropout on its scores
MODULE_RATES = ("attention_dropout", "dropout_prob")  # rates kept as floats and read at each forward (Llama)


def is_attention(module: nn.Module) -> bool:
    """Attention modules by their class name: `BertSelfAttention`, `MPNetSelfAttention`, `LlamaAttention`,
    `GPT2Attention`, DistilBERT's `MultiHeadSelfAttention` (their `dropout` acts on the scores; the output's dropout
    lives in another module, `...SelfOutput`, or under another name, GPT-2's `resid_dropout`)."""
    return type(module).__name__.endswith("Attention")


def set_attention_dropout(model: nn.Module, p: float) -> int:
    """Set the dropout on the attention probabilities of every attention module of `model` (and in its config, so
    that the saved model says it) to `p`. Returns the number of modules changed; none found is logged."""
    if not 0.0 <= p < 1.0:
        raise ValueError(f"--attention_dropout {p} is not a probability in [0, 1): use 0 to turn it off.")
    config = getattr(model, "config", None)
    for name in CONFIG_FIELDS:
        if config is not None and isinstance(getattr(config, name, None), float):
            setattr(config, name, p)
    changed = 0
    for module in model.modules():
        if not is_attention(module):
            continue
        hit = False
        for name in MODULE_DROPOUTS:
            child = getattr(module, name, None)
            if isinstance(child, nn.Dropout):
                child.p, hit = p, True
        for name in MODULE_RATES:
            if isinstance(getattr(module, name, None), float):
                setattr(module, name, p)
                hit = True
        changed += hit
    if not changed:
        logger.warning("--attention_dropout: no attention module with a dropout found in %s: unchanged",
                       type(model).__name__)  # fmt: skip
    return changed
