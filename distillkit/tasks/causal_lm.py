"""Causal language models: token-level distillation of decoder LMs (Llama, SmolLM, Qwen2, Mistral, GPT-2).

`AutoModelForCausalLM` teachers and students; plain text packed into blocks, or instruction data with only the
completion's tokens counted (`data/lm_text.py`); scored by perplexity on the validation text (exp of the mean
next-token negative log-likelihood over every counted token of its blocks, each block scored on its own: block =
`--block_size`, stride = the block, so no token is scored twice and none sees context from the block before) and
next-token top-1 accuracy.

Positions that count, for every loss: a position whose next token is a target (its label is not -100: all of a
text block's tokens but the first, an instruction's completion tokens). The losses are computed per token in chunks
of positions from each model's last hidden states (`losses/lm.py`: `kd` = forward KL, `reverse_kl`, `jsd`, and the
next-token cross-entropy as the hard loss), so no (batch, length, vocabulary) logits are ever held for either model.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from transformers import AutoModelForCausalLM
from transformers.modeling_outputs import CausalLMOutput

from .base import TaskType

logger = logging.getLogger(__name__)

IGNORE = -100
CARD_PROMPTS = ("The history of the city", "In 1990, the band released", "The most important thing about")


def _token(vocab: dict[str, int], i: int) -> str | None:
    return next((t for t, j in vocab.items() if j == i), None)


class LMCollator:
    """Pads `input_ids` (with the pad token, else EOS), `attention_mask` (0) and `labels` (-100) to the longest row."""

    def __init__(self, tokenizer: Any):
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.pad = int(pad if pad is not None else 0)

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        width = max(len(f["input_ids"]) for f in features)
        batch: dict[str, list] = {"input_ids": [], "attention_mask": [], "labels": []}
        for f in features:
            gap = width - len(f["input_ids"])
            batch["input_ids"].append(list(f["input_ids"]) + [self.pad] * gap)
            batch["attention_mask"].append(list(f.get("attention_mask") or [1] * len(f["input_ids"])) + [0] * gap)
            batch["labels"].append(list(f.get("labels") or f["input_ids"]) + [IGNORE] * gap)
        out = {k: torch.tensor(v, dtype=torch.long) for k, v in batch.items()}
        for key in features[0]:  # other columns (the cache's row index): stacked as they are
            if key not in out and not isinstance(features[0][key], (list, str)):
                out[key] = torch.tensor([f[key] for f in features])
        return out


def token_statistics(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(batch, seq, vocab) logits -> (batch, seq, 2): at each position the negative log-likelihood of the next token
    and the predicted next token (the last position, which predicts nothing, holds zeros). What evaluation keeps of
    a language model's logits, so that no (rows, seq, vocab) array is gathered."""
    nll = torch.zeros(labels.shape, dtype=torch.float32, device=logits.device)
    top = torch.zeros(labels.shape, dtype=torch.float32, device=logits.device)
    shifted = labels[:, 1:]
    counted = shifted != IGNORE
    log_probs = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    picked = log_probs.gather(-1, shifted.clamp_min(0).unsqueeze(-1)).squeeze(-1)
    nll[:, :-1] = torch.where(counted, -picked, torch.zeros_like(picked))
    top[:, :-1] = logits[:, :-1].argmax(-1).float()
    return torch.stack([nll, top], dim=-1)


def lm_scores(stats: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Perplexity and next-token top-1 accuracy from `token_statistics` rows and their labels (padded with -100)."""
    stats, labels = np.asarray(stats, dtype=np.float64), np.asarray(labels)
    width = min(stats.shape[1], labels.shape[1])
    stats, labels = stats[:, :width], labels[:, :width]
    target = np.full(labels.shape, IGNORE)
    target[:, :-1] = labels[:, 1:]
    counted = target != IGNORE
    tokens = int(counted.sum())
    if not tokens:
        return {"perplexity": float("nan"), "accuracy": 0.0, "tokens": 0.0}
    nll = float(stats[..., 0][counted].mean())
    accuracy = float((stats[..., 1][counted] == target[counted]).mean())
    scores = {"perplexity": float(np.exp(nll)), "nll": nll, "accuracy": accuracy, "tokens": float(tokens)}
    if stats.shape[-1] >= 3 and bool((stats[..., 2][counted] >= 0).all()):  # the teacher's top-1 beside the student's
        scores["teacher_agreement"] = float((stats[..., 1][counted] == stats[..., 2][counted]).mean())
    return scores


class CausalLM(TaskType):
    """Next-token prediction: decoder LMs distilled token by token."""

    architecture_suffix = "ForCausalLM"
    pipeline_tag = "text-generation"
    head_description = "language-model"
    features = frozenset({"presets", "teacher_layers", "teacher_cache", "pruning"})
    per_token = True
    shared_vocabulary = True  # padded embedding rows and added tokens: compared over the ids both have
    chunked_lm_losses = True  # the trainer computes the losses from hidden states in chunks (losses/lm.py)
    unlabeled_text = False

    def __init__(self) -> None:
        self.block_size: int | None = None
        self.completion_only = True

    # ---- models -------------------------------------------------------------------------------------------------

    def auto_model_class(self) -> Any:
        return AutoModelForCausalLM

    def has_trained_head(self, config: Any) -> bool:
        archs = [str(a) for a in (getattr(config, "architectures", None) or [])]
        return any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in archs)

    def check_compatible(self, teacher_config: Any, student_config: Any) -> None:
        t_vocab, s_vocab = getattr(teacher_config, "vocab_size", None), getattr(student_config, "vocab_size", None)
        if t_vocab is not None and s_vocab is not None and s_vocab > t_vocab:
            raise ValueError(f"the student's vocabulary ({s_vocab} rows) is larger than the teacher's ({t_vocab}): "
                             "the student would predict ids the teacher never scores; give it the teacher's "
                             "tokenizer and vocabulary.")  # fmt: skip
        if t_vocab is not None and s_vocab is not None and t_vocab > s_vocab:
            logger.info("vocabularies: the teacher has %d output rows, the student %d: the losses compare the first "
                        "%d ids; the teacher's other %d rows (padding, added tokens) are dropped", t_vocab, s_vocab,
                        s_vocab, t_vocab - s_vocab)  # fmt: skip
        if getattr(student_config, "final_logit_softcapping", None) or getattr(
            teacher_config, "final_logit_softcapping", None
        ):
            raise ValueError("models with final_logit_softcapping (Gemma 2) are not distilled yet: the chunked "
                             "losses read the output layer's plain logits.")  # fmt: skip

    def student_config(self, spec: str, shape: Any, teacher_config: Any) -> Any:
        """`custom`: the teacher's own architecture at the student's shape (its tokenizer, vocabulary, positions,
        norms and rotary settings); the presets are BERT encoders and are refused for a language model."""
        from .base import UnsupportedFeature

        if spec != "custom":
            raise UnsupportedFeature(
                f"--student {spec}: the presets are BERT-shaped encoders, not language models. Use --student custom "
                "with --num_layers --hidden_size --num_heads --intermediate_size (the teacher's own architecture at "
                "that shape), --student teacher:K, or a checkpoint with the teacher's tokenizer."
            )
        config = copy.deepcopy(teacher_config)
        config.num_hidden_layers = shape.num_layers
        config.hidden_size = shape.hidden_size
        config.intermediate_size = shape.intermediate_size
        heads_before = getattr(teacher_config, "num_attention_heads", shape.num_heads)
        config.num_attention_heads = shape.num_heads
        if hasattr(config, "num_key_value_heads"):  # the teacher's grouping kept where it divides
            kv = getattr(teacher_config, "num_key_value_heads", None) or heads_before
            ratio = max(1, heads_before // kv)
            config.num_key_value_heads = shape.num_heads // ratio if shape.num_heads % ratio == 0 else shape.num_heads
        if hasattr(config, "head_dim"):
            config.head_dim = shape.hidden_size // shape.num_heads
        for gpt2_name, value in (("n_layer", shape.num_layers), ("n_embd", shape.hidden_size),
                                 ("n_head", shape.num_heads), ("n_inner", shape.intermediate_size)):  # fmt: skip
            if hasattr(config, gpt2_name):
                setattr(config, gpt2_name, value)
        config.architectures = None
        return config

    def shared_tokenizer(self, teacher_tokenizer: Any, student_tokenizer: Any) -> Any:
        """The tokenizer both models read when the student came with one of its own: the student's, when every
        token it knows has the same id in the teacher's (the teacher may know more: added tokens); otherwise an
        error naming the first ids on which they disagree (cross-tokenizer LM distillation is not offered)."""
        teacher_vocab, student_vocab = teacher_tokenizer.get_vocab(), student_tokenizer.get_vocab()
        teacher_ids = {i: t for t, i in teacher_vocab.items()}
        differ = sorted(i for t, i in student_vocab.items() if teacher_ids.get(i) != t)
        if differ:
            shown = ", ".join(f"id {i}: student {_token(student_vocab, i)!r}, teacher {teacher_ids.get(i)!r}"
                              for i in differ[:3])  # fmt: skip
            raise ValueError(
                f"the teacher's and the student's tokenizers disagree on {len(differ)} ids ({shown}); the causal-lm "
                "losses compare next-token distributions id by id. Give the student the teacher's tokenizer (a "
                "student of the same model family), or --student teacher:K / custom."
            )
        logger.info("the student's tokenizer (%d tokens) agrees with the teacher's (%d) on every id it has: both read "
                    "the student's tokenization", len(student_vocab), len(teacher_vocab))  # fmt: skip
        return student_tokenizer

    def output_from_logits(self, logits: Any) -> Any:
        return CausalLMOutput(logits=logits)

    # ---- data ---------------------------------------------------------------------------------------------------

    def read_data(self, data_args: Any) -> Any:
        """Local text files (`data/lm_text.py`); the block size and the completion-only setting are kept here."""
        from datasets import Dataset, DatasetDict

        from ..data.lm_text import read_lm_file

        self.block_size = getattr(data_args, "block_size", None) or getattr(data_args, "max_seq_length", None)
        self.completion_only = getattr(data_args, "completion_only_loss", True) is not False
        files = {"train": getattr(data_args, "train_file", None), "validation": data_args.validation_file}
        column = getattr(data_args, "text_column", None)
        if any(files.values()):
            return DatasetDict({split: Dataset.from_list(read_lm_file(path, column))
                                for split, path in files.items() if path})  # fmt: skip
        if getattr(data_args, "task", None):
            raise ValueError(f"--task {data_args.task}: causal-lm reads text files; give --train_file and "
                             "--validation_file (.txt, .csv or .jsonl).")  # fmt: skip
        return None

    def text_columns(self) -> tuple[str, str | None]:
        return ("text", None)

    def encode(self, raw: Any, tokenizer: Any, config: Any, max_seq_length: int, label_all_subwords: bool) -> Any:
        """Text blocks of `block_size` tokens (documents joined with EOS), or one example per instruction row with
        the prompt's labels -100."""
        from datasets import Dataset, DatasetDict

        from ..data.lm_text import encode_instructions, is_instruction, pack_documents

        block = self.block_size or max_seq_length
        limit = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
        if limit and block > limit:
            logger.warning("--block_size %d is more than the teacher's %d positions: blocks of %d", block, limit, limit)
            block = limit
        single = not hasattr(raw, "items")
        out = {}
        for split, rows in [(None, raw)] if single else raw.items():
            if is_instruction(rows):
                columns = encode_instructions(list(rows), tokenizer, block, self.completion_only)
            else:
                columns = pack_documents(list(rows["text"]), tokenizer, block, keep_last=split != "train")
            out[split] = Dataset.from_dict(columns)
            counted = sum(sum(1 for y in labels[1:] if y != IGNORE) for labels in columns["labels"])
            logger.info("%s: %d blocks of up to %d tokens, %d counted tokens", split or "data", len(out[split]),
                        block, counted)  # fmt: skip
        return out[None] if single else DatasetDict(out)

    def data_collator(self, tokenizer: Any) -> Any:
        return LMCollator(tokenizer)

    def infer_labels(self, dataset: Any, label_column: str) -> tuple[str, ...]:
        return ()

    def label_encoder(self, config: Any) -> Callable[[list[Any]], list[Any]]:
        return lambda rows: rows

    # ---- evaluation ---------------------------------------------------------------------------------------------

    def compute_metrics(self, config: Any, metric_names: tuple[str, ...] | None = None,
                        metric_source: str | None = None) -> Callable[[Any], dict[str, float]]:  # fmt: skip
        """Perplexity and next-token accuracy from the per-position statistics that evaluation keeps
        (`token_statistics`, applied to each batch's logits by `reduce_logits` before anything is gathered)."""

        def compute(eval_pred: Any) -> dict[str, float]:
            stats = eval_pred.predictions
            stats = stats[0] if isinstance(stats, (tuple, list)) else stats
            scores = lm_scores(stats, eval_pred.label_ids)
            compute.last_summary = {"tokens": scores["tokens"]}
            return scores

        compute.last_summary = None
        compute.reduce_logits = lambda logits, labels: token_statistics(
            logits[0] if isinstance(logits, tuple) else logits, labels
        )
        return compute

    def predictions(self, logits: Any, config: Any) -> Any:
        return np.asarray(logits).argmax(-1)

    def agreement(self, predictions: Any, reference: Any, config: Any) -> float:
        predictions, reference = np.asarray(predictions), np.asarray(reference)
        return float(np.mean(predictions == reference)) if reference.size else 1.0

    def score_keys(self) -> tuple[str, ...]:
        return ("perplexity", "accuracy")

    def card_samples(self, teacher: Any, student: Any, tokenizer: Any, new_tokens: int = 20) -> list[dict[str, Any]]:
        """Greedy continuations of CARD_PROMPTS by the teacher and the student (on the student's device, in its
        dtype), for the card: a reader sees at once what the perplexities mean."""

        def continue_text(model: Any, prompt: str) -> str:
            device = next(model.parameters()).device
            ids = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)["input_ids"].to(device)
            pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
            with torch.no_grad():
                out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=new_tokens,
                                     do_sample=False, pad_token_id=pad)  # fmt: skip
            text = tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True)
            return " ".join(text.split()).replace("|", "\\|")  # one table cell

        rows = []
        for prompt in CARD_PROMPTS:
            rows.append({"prompt": prompt, "teacher": continue_text(teacher.eval(), prompt),
                         "student": continue_text(student.eval(), prompt), "new_tokens": new_tokens})  # fmt: skip
        return rows

    higher_is_better = False  # perplexity: retention is the teacher's over the student's

    instead = {
        "layer_sharing": "ALBERT-style sharing and factorized embeddings build ALBERT encoders, not decoders; use "
        "--student teacher:K or custom",
        "vocab_trimming": "a trimmed language model cannot emit the words it lost; keep the teacher's vocabulary",
        "cross_tokenizer": "the losses compare next-token distributions id by id; give the student the teacher's "
        "tokenizer",
        "augmentation": "text that only the teacher labels is plain text here: add it to --train_file instead",
        "ensembles": "several LM teachers are not mixed yet; distil from one --teacher",
        "intermediate_losses": "hidden-state and attention matching for decoders is not offered yet; use the "
        "token-level losses (--alpha, --kd_loss)",
        "teacher_stage": "a language model is its own trained head: give a causal LM teacher (a base encoder cannot "
        "be fine-tuned into one here)",
        "lora_teacher": "fine-tune the teacher outside distillkit (no teacher stage for language models)",
        "onnx_export": "an ONNX graph of a decoder without its KV cache would generate slowly, and one with it is not "
        "offered yet; `distillkit export DIR --int8` measures the dynamically quantized decoder instead",
    }
