"""Extractive question answering: the answer is a span of the context, predicted as a start and an end position.

`AutoModelForQuestionAnswering` teachers and students; SQuAD v1.1 data (the official JSON or json lines,
`data/squad.py`); each question and its context cut into windows of `max_seq_length` tokens that overlap by
`--doc_stride` (`data/qa_features.py`), a question's windows kept together and in order; exact match and F1 with
the official SQuAD v1.1 normalisation (`squad_metrics.py`), from the best span over a question's windows.

Targets are HF's own columns, `start_positions` and `end_positions` (both the first token, `[CLS]`, in a window that
does not hold the whole answer), so that a plain `Trainer` fine-tunes a teacher with the model's own loss.

Losses. A span head's output is read as `(batch, seq, 2)` (`output_logits`) and given to the losses as two
distributions over the window's positions, `(batch, 2, seq)` (`loss_logits`): the soft-target loss is the KL of the
start distributions and of the end distributions, each with T^2, averaged (mean over the 2 x batch distributions);
the hard loss is the cross-entropy at the gold start and at the gold end, averaged (the model's own loss). Padding
positions are masked out of both softmaxes. Every other position counts: the context's tokens (where answers are),
`[CLS]` (the target of a window without the answer, so the student must learn when a window has none), the
question's tokens and the separators (the teacher gives them almost no probability; matching that costs nothing and
keeps the student's distribution the teacher's). Intermediate losses are per token and unchanged.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
from transformers import AutoModelForQuestionAnswering, PreTrainedModel
from transformers.modeling_outputs import QuestionAnsweringModelOutput

from ..data.qa_features import best_answers, encode_qa
from ..squad_metrics import squad_scores
from .base import TaskType, copy_head

logger = logging.getLogger(__name__)

SPAN_LABELS = ("start", "end")
MASKED = -1e9  # the logit of a padding position in the losses' softmaxes (exp gives 0 in fp32)


def default_doc_stride(max_seq_length: int) -> int:
    """The windows' overlap when --doc_stride is not given: a third of the window (SQuAD's usual 128 at 384)."""
    return max(1, max_seq_length // 3)


def span_logits(predictions: Any) -> np.ndarray:
    """Predictions as `(windows, seq, 2)`: from distillkit's trainer (already so) or a plain `Trainer`, whose span
    head gives a tuple (start `(windows, seq)`, end `(windows, seq)`)."""
    if isinstance(predictions, (tuple, list)):
        if len(predictions) == 2 and np.asarray(predictions[0]).ndim == 2:
            return np.stack([np.asarray(predictions[0]), np.asarray(predictions[1])], axis=-1)
        predictions = predictions[0]
    return np.asarray(predictions)


class QuestionAnswering(TaskType):
    """Extractive QA: SQuAD v1.1 and data in its layout (every question answered in its context)."""

    architecture_suffix = "ForQuestionAnswering"
    pipeline_tag = "question-answering"
    head_description = "question-answering"
    features = frozenset({"presets", "teacher_layers", "pruning", "layer_sharing", "vocab_trimming", "teacher_cache",
                          "intermediate_losses", "teacher_stage", "onnx_export"})  # fmt: skip
    dataset_names = ("squad",)
    per_token = True
    label_columns = ("start_positions", "end_positions")

    instead = {
        "augmentation": "augmented contexts would move the answers' offsets; it is not offered for question "
        "answering yet (leave out --augment and --unlabeled_file)",
        "ensembles": "several teachers' start and end distributions are not mixed yet; distil from one --teacher",
        "cross_tokenizer": "a student with a tokenizer of its own has other token positions, and the start and end "
        "distributions are over positions; give the student the teacher's tokenizer (a preset, teacher:K, pruned), "
        "or shrink its vocabulary with --trim_vocab",
        "lora_teacher": "fine-tune the teacher fully (leave out --teacher_lora_r)",
    }
    unlabeled_text = False  # a text without a question and an answer gives the span head nothing to read

    def __init__(self) -> None:
        self.doc_stride: int | None = None  # None: default_doc_stride(max_seq_length)
        self.n_best_size, self.max_answer_length = 20, 30
        # the validation windows of each encoding, by their number (a teacher's and a trimmed student's encoding
        # of the same rows are the same windows): example_index, offset_mapping, and the questions' rows
        self.eval_windows: dict[int, dict[str, Any]] = {}

    # ---- models -------------------------------------------------------------------------------------------------

    def auto_model_class(self) -> Any:
        return AutoModelForQuestionAnswering

    def new_head_config(self, label_names: tuple[str, ...] | None) -> dict[str, Any]:
        return {"num_labels": 2}

    def head_config(self, teacher_config: Any) -> dict[str, Any]:
        return {"num_labels": 2}

    def label_names(self, config: Any) -> tuple[str, ...]:
        return SPAN_LABELS

    def check_compatible(self, teacher_config: Any, student_config: Any) -> None:
        for who, config in (("teacher", teacher_config), ("student", student_config)):
            if config.num_labels != 2:
                raise ValueError(f"the {who}'s question-answering head has {config.num_labels} outputs, not 2 (start "
                                 "and end): build it with num_labels=2.")  # fmt: skip

    def check_head_size(self, name: str, config: Any, label_names: tuple[str, ...] | None) -> None:
        if config.num_labels != 2:
            raise ValueError(
                f"the teacher {name!r} has a span head of {config.num_labels} outputs, not 2 (start and end): use a "
                "SQuAD-style teacher, or a base checkpoint (it is fine-tuned first)."
            )

    def init_head(self, student: PreTrainedModel, teacher: PreTrainedModel) -> list[str]:
        """Copy the span head (`qa_outputs`, a linear layer to 2 outputs) when the widths match."""
        return ["span head (qa_outputs) copied from the teacher"] if copy_head(student, teacher, "qa_outputs.") else []

    def head_parameters(self, config: Any, width: int, pooler: bool) -> int:
        return width * 2 + 2  # qa_outputs; no pooler

    def output_from_logits(self, logits: torch.Tensor) -> QuestionAnsweringModelOutput:
        """`(batch, seq, 2)` logits (a cache's rows, padded) as a span head's output."""
        return QuestionAnsweringModelOutput(start_logits=logits[..., 0], end_logits=logits[..., 1])

    def loss_logits(self, logits: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        """`(batch, seq, 2)` -> `(batch, 2, seq)`: a start and an end distribution over each window's positions,
        padding masked out (MASKED, in fp32)."""
        spans = logits.float().transpose(1, 2)
        if attention_mask is None:
            return spans
        return spans.masked_fill(~attention_mask.bool()[:, None, : spans.shape[-1]], MASKED)

    def batch_labels(self, inputs: Mapping[str, Any]) -> Any:
        """`(batch, 2)`: each window's gold start and end position."""
        start, end = inputs.get("start_positions"), inputs.get("end_positions")
        if start is None or end is None:
            return None
        return torch.stack([start.reshape(-1), end.reshape(-1)], dim=1)

    # ---- data ---------------------------------------------------------------------------------------------------

    def read_data(self, data_args: Any) -> Any:
        """Local SQuAD files (official JSON or json lines), else the hub's `squad` when `--task squad`; also takes
        the window and answer settings (--doc_stride, --n_best_size, --max_answer_length) from `data_args`."""
        from datasets import Dataset, DatasetDict

        from ..data.squad import read_squad

        self.doc_stride = getattr(data_args, "doc_stride", None)
        self.n_best_size = getattr(data_args, "n_best_size", None) or 20
        self.max_answer_length = getattr(data_args, "max_answer_length", None) or 30
        files = {"train": getattr(data_args, "train_file", None), "validation": data_args.validation_file}
        if any(files.values()):
            return DatasetDict({split: Dataset.from_list(read_squad(path)) for split, path in files.items() if path})
        if getattr(data_args, "task", None):
            from datasets import load_dataset

            hub = load_dataset("squad")
            return DatasetDict({"train": hub["train"], "validation": hub["validation"]})
        return None

    def text_columns(self) -> tuple[str, str | None]:
        return ("question", "context")

    def encode(self, raw: Any, tokenizer: Any, config: Any, max_seq_length: int, label_all_subwords: bool) -> Any:
        """Each split's windows: model inputs and `start_positions` / `end_positions`; the validation windows'
        offsets and questions are kept for the metric."""
        from datasets import Dataset, DatasetDict

        stride = self.doc_stride or default_doc_stride(max_seq_length)
        single = not hasattr(raw, "items")  # one Dataset (encoded and kept for evaluation as it is)
        out = {}
        for split, rows in [(None, raw)] if single else raw.items():
            features = encode_qa(rows[:], tokenizer, max_seq_length, stride)
            if split in (None, "validation"):
                self.eval_windows[len(features["input_ids"])] = {
                    "example_index": features["example_index"], "offset_mapping": features["offset_mapping"],
                    "ids": list(rows["id"]), "contexts": list(rows["context"]),
                    "answers": [list(a["text"]) for a in rows["answers"]],
                }  # fmt: skip
            windows = len(features["input_ids"])
            if windows > len(rows):
                logger.info("%s: %d questions in %d windows of %d tokens (doc_stride %d)", split, len(rows), windows,
                            max_seq_length, stride)  # fmt: skip
            keep = [k for k in ("input_ids", "attention_mask", "token_type_ids", *self.label_columns) if k in features]
            out[split] = Dataset.from_dict({k: features[k] for k in keep})
        return out[None] if single else DatasetDict(out)

    def infer_labels(self, dataset: Any, label_column: str) -> tuple[str, ...]:
        return SPAN_LABELS

    def label_encoder(self, config: Any) -> Callable[[list[Any]], list[Any]]:
        def refuse(rows: list[Any]) -> list[Any]:
            raise ValueError("question answering encodes its own windows (QuestionAnswering.encode): its answers are "
                             "not a label column.")  # fmt: skip

        return refuse

    # ---- evaluation ---------------------------------------------------------------------------------------------

    def answers(self, logits: Any) -> tuple[dict[str, str], dict[str, list[str]]]:
        """(predicted answer per question id, reference answers per id) from the validation windows' logits, which
        must come in the order of the windows (evaluation runs in order for this task type)."""
        spans = span_logits(logits)
        windows = self.eval_windows.get(len(spans))
        if windows is None:
            raise ValueError(f"{len(spans)} predicted windows, but the validation split was encoded into "
                             f"{sorted(self.eval_windows)} windows: encode the evaluation rows with this task type "
                             "first.")  # fmt: skip
        texts = best_answers(spans[..., 0], spans[..., 1], windows["example_index"], windows["offset_mapping"],
                             windows["contexts"], self.n_best_size, self.max_answer_length)  # fmt: skip
        predicted = dict(zip(windows["ids"], texts))
        return predicted, dict(zip(windows["ids"], windows["answers"]))

    def compute_metrics(self, config: Any, metric_names: tuple[str, ...] | None = None,
                        metric_source: str | None = None) -> Callable[[Any], dict[str, float]]:  # fmt: skip
        """Exact match and F1 (SQuAD v1.1, percent) over the validation questions, from the best span of each
        question's windows. Evaluation must keep the windows' order: the function says so (`in_order`)."""

        def compute(eval_pred: Any) -> dict[str, float]:
            predicted, references = self.answers(eval_pred.predictions)
            empty = sum(1 for text in predicted.values() if not text.strip())
            compute.last_summary = {"questions": float(len(predicted)), "empty": empty / max(1, len(predicted))}
            return squad_scores(predicted, references)

        compute.last_summary = None
        compute.in_order = True
        return compute

    def predictions(self, logits: Any, config: Any) -> Any:
        """Each window's most likely start and end position, `(windows, 2)`."""
        return span_logits(logits).argmax(axis=1)

    def agreement(self, predictions: Any, reference: Any, config: Any) -> float:
        """The share of windows where both predict the same start and the same end."""
        predictions, reference = np.asarray(predictions), np.asarray(reference)
        return float(np.mean((predictions == reference).all(axis=-1))) if len(reference) else 1.0

    def prediction_notes(self, who: str, summary: Mapping[str, float] | None) -> list[str]:
        if summary and summary.get("empty", 0.0) > 0.5:
            return [
                f"the {who} found no valid span (start <= end, inside the context, at most max_answer_length tokens) "
                f"for {summary['empty']:.0%} of the questions: it has not learned where answers are."
            ]
        return []

    score_scale = 100.0  # exact match and F1 in percent, as the official SQuAD script prints them

    def score_keys(self) -> tuple[str, ...]:
        return ("f1", "exact_match")
