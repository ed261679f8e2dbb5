"""The task-type interface: what differs between kinds of model (sequence classification, token classification,
question answering, causal LM) and nothing else.

A task type says which `AutoModelFor...` class its teachers and students are, how a checkpoint shows a trained head,
which config fields make a head, how a batch's labels are encoded, how predictions are scored and summarised, what
model output stands for cached or mixed logits, the card's `pipeline_tag`, and which distillkit features it supports.
The rest of distillkit receives a task type as a parameter and never branches on its name.

This module imports nothing else of distillkit: a task type is a class written against the interface below plus its
tests (`tests/tasks/` runs the contract suite on every registered type). See docs/contributing.md.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar

# feature name -> how a user turns it on (named in the refusal when a task type does not support it)
FEATURES: dict[str, str] = {
    "presets": "a preset or custom student (--student tiny|mini|small|medium|custom)",
    "teacher_layers": "a student cut to K teacher layers (--student teacher:K)",
    "pruning": "a pruned student (--student pruned)",
    "layer_sharing": "ALBERT-style sharing or factorized embeddings (--share_layers, --embedding_size)",
    "vocab_trimming": "a trimmed vocabulary (--trim_vocab)",
    "teacher_cache": "a teacher cache (--teacher_cache)",
    "cross_tokenizer": "a student with a tokenizer of its own (cross-tokenizer distillation)",
    "augmentation": "teacher-labelled extra text (--augment, --unlabeled_file)",
    "ensembles": "several teachers (--teacher A B ...)",
    "intermediate_losses": "intermediate-layer losses (--hidden_weight, --attention_weight, --embedding_weight, "
    "--minilm_weight, --intermediate_epochs)",
    "teacher_stage": "fine-tuning a teacher that has no trained head (--finetune_teacher auto|always)",
    "lora_teacher": "a LoRA teacher stage (--teacher_lora_r)",
    "onnx_export": "an ONNX export (distillkit export --onnx; encoders: --int8 too)",
}


# the columns that may hold a row's targets: `labels`, or a span head's two, named as its forward names them
TARGET_COLUMNS = ("labels", "start_positions", "end_positions")


def output_logits(output: Any) -> Any:
    """The one tensor distillkit reads off a model output: its `logits`, or a span head's start and end logits
    stacked on a last axis of 2 (`(batch, seq, 2)`: the layout of a per-token head, so that caches, exports and the
    Trainer's padding of predictions treat both alike)."""
    logits = getattr(output, "logits", None)
    if logits is not None:
        return logits
    start, end = getattr(output, "start_logits", None), getattr(output, "end_logits", None)
    if start is None or end is None:
        raise ValueError(f"a model output without logits ({type(output).__name__}): distillkit reads `logits`, or "
                         "`start_logits` and `end_logits`.")  # fmt: skip
    import torch

    return torch.stack([start, end], dim=-1)


def copy_head(student: Any, teacher: Any, prefix: str) -> bool:
    """Copy the teacher's head parameters under `prefix` ("classifier.") into the student when every one exists in
    both with the same shape (equal widths); returns whether it did."""
    import torch

    t_state, s_state = teacher.state_dict(), student.state_dict()
    keys = [k for k in s_state if k.startswith(prefix)]
    if not keys or any(k not in t_state or t_state[k].shape != s_state[k].shape for k in keys):
        return False
    with torch.no_grad():
        student.load_state_dict({k: t_state[k].detach().float() for k in keys}, strict=False)
    return True


class UnsupportedFeature(ValueError):
    """A feature asked for that the task type does not offer: raised before anything is written (exit code 2)."""


class TaskType:
    """The interface every task type implements. Subclass it, set the class attributes, implement the methods that
    raise `NotImplementedError`, and register it with `distillkit.register_task_type(name, cls)`.

    Class attributes:
        name: the registry name, as `--task_type` takes it ("sequence-classification").
        architecture_suffix: the end of a checkpoint's `architectures` entry when it carries this task's head
            ("ForSequenceClassification"); it is how a teacher's task type is inferred.
        pipeline_tag: the model card's `pipeline_tag` (a Hugging Face pipeline name).
        head_description: how messages name the head ("classification").
        features: the `FEATURES` this task type supports; the others are refused with a message.
        dataset_names: the `--task` names (hub data sets) that mean this task type.
    """

    name: ClassVar[str] = ""
    architecture_suffix: ClassVar[str] = ""
    pipeline_tag: ClassVar[str] = ""
    head_description: ClassVar[str] = "task"  # "has no trained <this> head"
    features: ClassVar[frozenset[str]] = frozenset()
    dataset_names: ClassVar[tuple[str, ...]] = ()  # --task names that mean this task type (GLUE's, "conll2003")
    per_token: ClassVar[bool] = False  # logits per token, (batch, seq, outputs), rather than per row
    label_columns: ClassVar[tuple[str, ...]] = ("labels",)  # the encoded rows' target columns (in TARGET_COLUMNS)

    # ---- models -------------------------------------------------------------------------------------------------

    def auto_model_class(self) -> Any:
        """The `transformers` Auto class of this task's models (`AutoModelForSequenceClassification`)."""
        raise NotImplementedError

    def peft_model_class(self) -> Any:
        """The `peft` Auto class that loads a task adapter (`AutoPeftModelForSequenceClassification`), or None."""
        return None

    def peft_task_type(self) -> Any:
        """The `peft.TaskType` of a LoRA teacher stage, or None when the task type offers none."""
        return None

    def has_trained_head(self, config: Any) -> bool:
        """Whether a checkpoint's config says it carries this task's trained head (else it is a base model)."""
        return any(str(a).endswith(self.architecture_suffix) for a in (getattr(config, "architectures", None) or []))

    def new_head_config(self, label_names: tuple[str, ...] | None) -> dict[str, Any]:
        """Config fields for a fresh head predicting `label_names` (from_pretrained keyword arguments)."""
        return {}

    def head_config(self, teacher_config: Any) -> dict[str, Any]:
        """Config fields a student copies from its teacher so that both heads predict the same outputs."""
        return {}

    def label_names(self, config: Any) -> tuple[str, ...]:
        """The names of a head's outputs, in order (empty when the head has no named labels)."""
        return ()

    def check_compatible(self, teacher_config: Any, student_config: Any) -> None:
        """Fail (ValueError naming the fix) when the student's head cannot learn from the teacher's outputs."""

    def check_head_size(self, name: str, config: Any, label_names: tuple[str, ...] | None) -> None:
        """Fail when a checkpoint's trained head does not predict the task's labels."""

    def student_config(self, spec: str, shape: Any, teacher_config: Any) -> Any:
        """The config of a preset or custom student of `shape`, when this task type builds its own (a language
        model keeps the teacher's architecture); None: distillkit's BERT / ALBERT students."""
        return None

    def shared_tokenizer(self, teacher_tokenizer: Any, student_tokenizer: Any) -> Any:
        """For a student with a tokenizer of its own: the one tokenizer both models can read (raising when there is
        none), or None: cross-tokenizer distillation, where each model reads its own tokenization."""
        return None

    chunked_lm_losses: ClassVar[bool] = False  # the trainer computes token losses from hidden states (causal-lm)
    higher_is_better: ClassVar[bool] = True  # the headline score (False: perplexity)
    score_scale: ClassVar[float] = 1.0  # the metrics' full mark (100: SQuAD's percentages), 1 in benchmark tables
    shared_vocabulary: ClassVar[bool] = False  # True: vocabularies of different sizes are compared over shared ids

    def init_head(self, student: Any, teacher: Any) -> list[str]:
        """Copy the teacher's head into the student where shapes allow; returns notes of what was copied."""
        return []

    def head_parameters(self, config: Any, width: int, pooler: bool) -> int:
        """Parameters of the head on top of an encoder of `width` (for closed-form size checks)."""
        return 0

    def output_from_logits(self, logits: Any) -> Any:
        """A model output holding `logits` (cached teacher logits, an ensemble's mixed ones), in the layout that
        `output_logits` reads back."""
        raise NotImplementedError

    def loss_logits(self, logits: Any, attention_mask: Any) -> Any:
        """The logits as the losses read them (`output_logits`' tensor unchanged, by default): the last axis is the
        one a softmax runs over. A span head turns its `(batch, seq, 2)` into two distributions over positions."""
        return logits

    def batch_labels(self, inputs: Mapping[str, Any]) -> Any:
        """A batch's targets as the losses read them (its `labels`, by default), or None."""
        return inputs.get("labels")

    # ---- data ---------------------------------------------------------------------------------------------------

    def read_data(self, data_args: Any) -> Any:
        """The raw splits (a `DatasetDict`) when this task type reads its own files; None: the recipe's reader (a GLUE
        task from the hub, or csv / tsv / json files with text and label columns)."""
        return None

    def encode(self, raw: Any, tokenizer: Any, config: Any, max_seq_length: int, label_all_subwords: bool) -> Any:
        """The tokenized splits when this task type encodes its own rows; None: `tokenize_dataset` on the text
        columns with `label_encoder(config)`."""
        return None

    def augment_rows(self, train: Any, source: Any, n: int, p: float, seed: int, cache_dir: str) -> Any:
        """--augment for a task type whose augmented rows keep their gold labels: the new raw training rows (a
        `Dataset` with the training split's columns), which join the labelled rows. None: the default, new texts
        that only the teacher labels (`data.unlabeled.extra_rows`)."""
        return None

    def text_columns(self) -> tuple[str, str | None] | None:
        """The columns of this task type's own raw rows (`read_data`) that hold the text and its pair: what the
        length defaults measure and vocabulary trimming counts. None: the recipe's text columns."""
        return None

    unlabeled_text = True  # --unlabeled_file: text that only the teacher labels (False: refused with a reason)

    def data_collator(self, tokenizer: Any) -> Any:
        """The collator that pads this task's batches (labels included); None: the Trainer's default."""
        return None

    def infer_labels(self, dataset: Any, label_column: str) -> tuple[str, ...]:
        """Label names read off a training split, for a head built from scratch."""
        raise NotImplementedError

    def label_encoder(self, config: Any) -> Callable[[list[Any]], list[Any]]:
        """A function from a batch of raw label values to the `labels` the model and the losses read."""
        raise NotImplementedError

    def no_label(self, config: Any) -> Any:
        """The `labels` value of a row that only the teacher labels (the hard loss ignores it)."""
        return -100

    def check_labels_in_use(self, labels: Iterable[Any], config: Any) -> None:
        """Warn when the training labels use only part of the head's outputs (training goes on)."""

    # ---- evaluation ---------------------------------------------------------------------------------------------

    def compute_metrics(self, config: Any, metric_names: tuple[str, ...] | None = None,
                        metric_source: str | None = None) -> Callable[[Any], dict[str, float]]:  # fmt: skip
        """The `compute_metrics` for a `Trainer`. The returned function keeps `last_summary`: a dict about the last
        predictions (for `prediction_notes`), or None."""
        raise NotImplementedError

    def predictions(self, logits: Any, config: Any) -> Any:
        """What a model predicts from its logits (numpy), e.g. the argmax class per row."""
        raise NotImplementedError

    def agreement(self, predictions: Any, reference: Any, config: Any) -> float:
        """The share of predictions equal to a reference model's (an export against its source)."""
        raise NotImplementedError

    def prediction_notes(self, who: str, summary: Mapping[str, float] | None) -> list[str]:
        """Warnings about a model's last predictions (e.g. one answer for almost every row)."""
        return []

    def check_teacher(self, summary: Mapping[str, float] | None, allow_weak: bool, teacher_dir: str) -> list[str]:
        """After the teacher stage: stop when the teacher learned nothing useful, else return notes."""
        return []

    def score_keys(self) -> tuple[str, ...]:
        """The metrics a card and a results table lead with, in order."""
        return ()

    def card_samples(self, teacher: Any, student: Any, tokenizer: Any) -> list[dict[str, Any]]:
        """Rows for the card beside the scores (a language model's continuations of fixed prompts); none by default."""
        return []

    # ---- features -----------------------------------------------------------------------------------------------

    def check_features(self, used: Iterable[str], what_instead: Mapping[str, str] | None = None) -> None:
        """Refuse, before anything is written, the first feature in `used` that this task type does not support."""
        for feature in used:
            if feature not in FEATURES:
                raise KeyError(f"unknown feature {feature!r}; known: {sorted(FEATURES)}")
            if feature not in self.features:
                instead = (what_instead or {}).get(feature) or self.instead.get(feature, "leave it out")
                raise UnsupportedFeature(
                    f"{FEATURES[feature]} is not supported for task type {self.name!r}: {instead}."
                )

    instead: Mapping[str, str] = {}  # feature -> why it is not offered here and what to do instead

    def supports(self, feature: str) -> bool:
        return feature in self.features

    def __repr__(self) -> str:
        return f"<task type {self.name}>"
