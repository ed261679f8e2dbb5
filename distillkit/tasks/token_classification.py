"""Token classification (named-entity recognition): a tag per word, scored by entity-level F1.

`AutoModelForTokenClassification` teachers and students; words from CoNLL column files or json lines (`data/conll.py`,
IOB1 converted to IOB2), encoded with the first sub-word of each word carrying its tag (`data/words.py`); entity-level
precision, recall and F1 with conlleval's semantics, micro over entities and per type (`entity_metrics.py`). Words cut
off by truncation count as predicted `O`, so truncation can lower F1 but never hide gold entities.

The soft-target loss is averaged over the labelled positions (the first sub-word of each word, or every sub-word with
--label_all_subwords): the positions the hard loss and the metric read. [CLS], [SEP], padding and the other sub-words
carry no tag, so matching the teacher there would spend the student's capacity on outputs nobody reads.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
from transformers import AutoModelForTokenClassification, DataCollatorForTokenClassification, PreTrainedModel
from transformers.modeling_outputs import TokenClassifierOutput

from ..data.conll import load_hub_tagged, load_token_files, tag_names
from ..data.words import IGNORE, encode_words, tag_encoder
from ..entity_metrics import entity_scores
from .base import TaskType, copy_head

logger = logging.getLogger(__name__)


class TokenClassification(TaskType):
    """A tag per word: NER (CoNLL-2003, WNUT-17), chunking, part-of-speech tags."""

    architecture_suffix = "ForTokenClassification"
    pipeline_tag = "token-classification"
    head_description = "token-classification"
    features = frozenset({"presets", "teacher_layers", "layer_sharing", "teacher_stage", "intermediate_losses",
                          "teacher_cache", "pruning", "onnx_export", "vocab_trimming",
                          "augmentation"})  # fmt: skip
    dataset_names = ("conll2003", "wnut_17")
    per_token = True

    def __init__(self) -> None:
        # the validation split's truncated sentences, set as it is encoded: {the tag ids of their kept words: [the
        # full gold tag sequence of each such sentence]}. Evaluation may reorder rows (length-grouped sampling), so
        # a row is matched by its kept tags, not by its index.
        self.truncated: dict[tuple[int, ...], list[list[str]]] = {}

    # ---- models -------------------------------------------------------------------------------------------------

    def auto_model_class(self) -> Any:
        return AutoModelForTokenClassification

    def new_head_config(self, label_names: tuple[str, ...] | None) -> dict[str, Any]:
        names = tuple(label_names or ("O",))
        label2id = {n: i for i, n in enumerate(names)}
        return {"num_labels": len(names), "id2label": dict(enumerate(names)), "label2id": label2id}

    def head_config(self, teacher_config: Any) -> dict[str, Any]:
        return {"num_labels": teacher_config.num_labels, "id2label": dict(teacher_config.id2label),
                "label2id": dict(teacher_config.label2id)}  # fmt: skip

    def label_names(self, config: Any) -> tuple[str, ...]:
        return tuple(str(config.id2label[i]) for i in range(config.num_labels))

    def check_compatible(self, teacher_config: Any, student_config: Any) -> None:
        if self.label_names(teacher_config) != self.label_names(student_config):
            raise ValueError(
                f"teacher and student tag sets differ (teacher {list(self.label_names(teacher_config))}, student "
                f"{list(self.label_names(student_config))}). Give the student the teacher's head (its id2label)."
            )

    def check_head_size(self, name: str, config: Any, label_names: tuple[str, ...] | None) -> None:
        if label_names is not None and set(label_names) - set(self.label_names(config)):
            raise ValueError(
                f"the teacher {name!r} tags {list(self.label_names(config))}, but the data has "
                f"{sorted(set(label_names) - set(self.label_names(config)))} too. Use a teacher for these tags, a base "
                "checkpoint (it is fine-tuned first), or --finetune_teacher always to give it a new head."
            )

    def init_head(self, student: PreTrainedModel, teacher: PreTrainedModel) -> list[str]:
        """Copy the linear tag classifier when the widths match (a token head has no pooler)."""
        return ["tag classifier copied from the teacher"] if copy_head(student, teacher, "classifier.") else []

    def head_parameters(self, config: Any, width: int, pooler: bool) -> int:
        return width * config.num_labels + config.num_labels

    def output_from_logits(self, logits: torch.Tensor) -> TokenClassifierOutput:
        return TokenClassifierOutput(logits=logits)

    # ---- data ---------------------------------------------------------------------------------------------------

    def read_data(self, data_args: Any) -> Any:
        """Local CoNLL / json-lines files, else the hub data set that `--task` names (`conll2003`, `wnut_17`: their
        integer `ner_tags` turned into IOB2 tag strings); None when neither is given."""
        if data_args.train_file or data_args.validation_file:
            return load_token_files(data_args.train_file, data_args.validation_file, data_args.tag_column)
        if getattr(data_args, "task", None):
            return load_hub_tagged(data_args.task)
        return None

    def text_columns(self) -> tuple[str, str | None]:
        return ("tokens", None)

    def encode(self, raw: Any, tokenizer: Any, config: Any, max_seq_length: int, label_all_subwords: bool) -> Any:
        encoded = encode_words(raw, tokenizer, config.label2id, max_seq_length, label_all_subwords)
        if "validation" in raw:
            self.truncated = {}
            rows = encoded["validation"]
            for i in [i for i, cut in enumerate(rows["truncated_words"]) if cut]:
                key = tuple(y for y in rows[i]["labels"] if y != IGNORE)
                self.truncated.setdefault(key, []).append(list(raw["validation"][i]["tags"]))
        return encoded

    instead = {
        "cross_tokenizer": "a student with a tokenizer of its own cuts words into other sub-words, and the tag "
        "logits are per sub-word; give the student the teacher's tokenizer (a preset, teacher:K, pruned), or shrink "
        "its vocabulary with --trim_vocab",
        "ensembles": "several teachers' tag distributions are not mixed yet; distil from one --teacher",
        "lora_teacher": "fine-tune the tagger fully (leave out --teacher_lora_r)",
    }
    unlabeled_text = False  # untagged text has no words for the first-sub-word positions the losses read

    def augment_rows(self, train: Any, source: Any, n: int, p: float, seed: int, cache_dir: str) -> Any:
        """Augmented copies of the tagged sentences with only `O` words replaced (`augment_tagged`): their gold tags
        stay true, so they are labelled rows for both the hard and the soft loss."""
        from datasets import Dataset

        from ..augment import augment_tagged_cached

        words, tags, _ = augment_tagged_cached(train["tokens"], train["tags"], source, n, p, seed, cache_dir)
        columns = train.select_columns(["tokens", "tags"])
        return Dataset.from_dict({"tokens": words, "tags": tags}, features=columns.features)

    def data_collator(self, tokenizer: Any) -> Any:
        """Pads `labels` with -100 beside the inputs."""
        return DataCollatorForTokenClassification(tokenizer)

    def infer_labels(self, dataset: Any, label_column: str) -> tuple[str, ...]:
        """The training file's tags, `O` first."""
        return tag_names(dataset["tags"])

    def label_encoder(self, config: Any) -> Callable[[list[Any]], list[Any]]:
        encode = tag_encoder(config.label2id)
        return lambda rows: [encode(list(tags)) for tags in rows]

    def no_label(self, config: Any) -> Any:
        return IGNORE

    # ---- evaluation ---------------------------------------------------------------------------------------------

    def word_tags(self, logits: np.ndarray, label_ids: np.ndarray, names: tuple[str, ...]) -> tuple[list, list]:
        """(gold, predicted) tag sequences per row, read at the labelled positions (each word's first sub-word). A
        row of a truncated validation sentence gets that sentence's full gold tags, its cut-off words predicted O."""
        gold, predicted = [], []
        pending = {key: list(refs) for key, refs in self.truncated.items()}
        for row_logits, row_labels in zip(logits, label_ids):
            keep = row_labels != IGNORE
            ids = tuple(int(i) for i in row_labels[keep])
            tags = [names[int(i)] for i in row_logits[keep].argmax(-1)]
            if pending.get(ids):
                full = pending[ids].pop(0)
                gold.append(full)
                predicted.append(tags + ["O"] * (len(full) - len(tags)))
            else:
                gold.append([names[i] for i in ids])
                predicted.append(tags)
        return gold, predicted

    def compute_metrics(self, config: Any, metric_names: tuple[str, ...] | None = None,
                        metric_source: str | None = None) -> Callable[[Any], dict[str, float]]:  # fmt: skip
        """Entity precision / recall / F1 (micro) and per type, and token accuracy over words; the words of
        validation sentences cut off by truncation (known from `encode`) are scored as predicted O against their
        gold tags."""
        names = self.label_names(config)

        def compute(eval_pred: Any) -> dict[str, float]:
            logits = (
                eval_pred.predictions[0] if isinstance(eval_pred.predictions, (tuple, list)) else eval_pred.predictions
            )
            gold, predicted = self.word_tags(np.asarray(logits), np.asarray(eval_pred.label_ids), names)
            compute.last_summary = {"sentences": float(len(gold))}
            words = sum(len(g) for g in gold)
            right = sum(a == b for g, p in zip(gold, predicted) for a, b in zip(g, p))
            # token accuracy beside the entity scores: every word, cut-off ones as predicted O ("O" words count
            # too, which is why it is high on any tagger: entity F1 is the score)
            return {**entity_scores(gold, predicted), "accuracy": right / words if words else 0.0}

        compute.last_summary = None
        return compute

    def predictions(self, logits: Any, config: Any) -> Any:
        return np.asarray(logits).argmax(-1)

    def agreement(self, predictions: Any, reference: Any, config: Any) -> float:
        """The share of labelled positions (each word's first sub-word) where both predict the same tag; positions
        marked -100 in `reference` (special tokens, later sub-words, padding) are not counted."""
        predictions, reference = np.asarray(predictions), np.asarray(reference)
        counted = reference != IGNORE
        return float(np.mean(predictions[counted] == reference[counted])) if counted.any() else 1.0

    def check_teacher(self, summary: Mapping[str, float] | None, allow_weak: bool, teacher_dir: str) -> list[str]:
        return []

    def score_keys(self) -> tuple[str, ...]:
        return ("f1", "precision", "recall", "accuracy")
