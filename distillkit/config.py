"""Configuration: `DistillConfig` (TrainingArguments plus the distillation fields) and the model / data arguments."""

from __future__ import annotations

from dataclasses import dataclass, field

from transformers import TrainingArguments

from .ensemble import ENSEMBLE_MODES, ensemble_weights
from .losses.hidden import ATTENTION_LOSS_KINDS, HIDDEN_LOSS_KINDS
from .losses.layer_map import LAYER_MAP_HELP
from .scoring import BACKENDS, check_backend

TEACHER_DTYPES = ("float32", "bfloat16", "float16")
# the weights of the terms that read inside the teacher (states, maps, Q/K/V): they need the live teacher (no
# cache) and the student's own tokenization, and a hard-label baseline turns them all off
INTERMEDIATE_WEIGHTS = ("hidden_weight", "attention_weight", "embedding_weight", "minilm_weight")
STAGES = ("intermediate", "prediction")  # the two stages of the schedule that intermediate_epochs turns on


@dataclass
class DistillConfig(TrainingArguments):
    """`TrainingArguments` with the distillation fields; every value is checked in `__post_init__`."""

    temperature: float = field(
        default=2.0,
        metadata={"help": "Softmax temperature T of the soft-target loss (> 0). The soft loss is scaled by T^2."},
    )
    alpha: float = field(
        default=0.5,
        metadata={
            "help": "Weight of the soft-target loss in [0, 1]; the hard-label loss gets 1 - alpha. "
            "1.0 trains from the teacher alone (no labels needed), 0.0 is plain fine-tuning."
        },
    )
    hidden_weight: float = field(
        default=0.0, metadata={"help": "Weight (>= 0) of hidden-state matching over the layer map; 0 turns it off."}
    )
    hidden_loss: str = field(
        default="ln_mse",
        metadata={"help": f"Distance for hidden-state and embedding matching: {HIDDEN_LOSS_KINDS}. ln_mse (the "
                  "default): MSE after a parameter-free layer norm of both sides, so that a weight means the same for "
                  "teachers of any activation scale; mse: plain MSE; cosine: 1 - cosine similarity."},
    )  # fmt: skip
    attention_weight: float = field(
        default=0.0, metadata={"help": "Weight (>= 0) of attention-map matching over the layer map; 0 turns it off."}
    )
    attention_loss: str = field(
        default="kl", metadata={"help": f"Distance between attention maps: {ATTENTION_LOSS_KINDS}."}
    )
    embedding_weight: float = field(
        default=0.0, metadata={"help": "Weight (>= 0) of embedding-output matching; 0 turns it off."}
    )
    minilm_weight: float = field(
        default=0.0,
        metadata={
            "help": "Weight (>= 0) of MiniLM self-attention relation distillation (Q-Q, K-K, V-V relations of the "
            "student's last layer against the teacher's --minilm_layer); 0 turns it off. Works across widths."
        },
    )
    minilm_layer: int = field(
        default=-1, metadata={"help": "The teacher layer for the minilm loss, 1-based; -1 the last (MiniLMv2 found "
                              "an upper-middle layer better for large teachers)."}
    )  # fmt: skip
    minilm_heads: int | None = field(
        default=None,
        metadata={"help": "Relation heads A_r of the minilm loss; must divide both widths (default: the student's "
                  "attention heads)."},
    )  # fmt: skip
    layer_map: str = field(default="uniform", metadata={"help": f"Layer map: {LAYER_MAP_HELP}."})
    teacher_weights: list[float] | None = field(
        default=None,
        metadata={"help": "Several teachers: their weights in the ensemble, in the order of --teacher (>= 0, "
                  "normalised; default equal)."},
    )  # fmt: skip
    ensemble_mode: str = field(
        default="probs",
        metadata={"help": "Several teachers: 'probs' (soft targets = the weighted mean of their probabilities at the "
                  "temperature: the ensemble's own distribution) or 'logits' (the weighted mean of their logits)."},
    )  # fmt: skip
    intermediate_teacher: int = field(
        default=1,
        metadata={"help": "Several teachers: which one (1-based, in the order of --teacher) the intermediate-layer "
                  "losses read; its tokenizer must be the student's."},
    )  # fmt: skip
    intermediate_epochs: float = field(
        default=0.0,
        metadata={
            "help": "Two-stage schedule (TinyBERT's task distillation): train the student on the intermediate terms "
            "alone (hidden, attention, embedding, minilm) for this many epochs, then on the prediction-layer terms "
            "(kd, ce, extra losses) for num_train_epochs (or max_steps). Each stage has its own learning-rate "
            "schedule and a fresh optimizer state; the classifier is not trained in stage 1. 0: every term "
            "together (joint training)."
        },
    )
    extra_losses: list[str] = field(
        default_factory=list,
        metadata={"help": "Registered losses to add, as 'name' or 'name:weight' (weight 1 when omitted)."},
    )
    teacher_cache: str | None = field(
        default=None,
        metadata={
            "help": "A folder for the teacher's logits over the training set, computed once and reused by later "
            "epochs and runs (offline distillation; logit losses only)."
        },
    )
    teacher_backend: str = field(
        default="auto",
        metadata={
            "help": f"How the teacher scores the rows of --teacher_cache: one of {BACKENDS}. auto: onnxruntime fp32 "
            "(the same predictions, about 1.9x faster on a CPU) for caches of 2,048+ rows when distillkit[export] is "
            "installed and the teacher is fp32 on the CPU, else PyTorch as loaded; torch; int8 (PyTorch dynamic); "
            "onnx; onnx-int8. The manifest records the backend used."
        },
    )
    train_sampling_strategy: str = field(
        default="group_by_length",
        metadata={
            "help": "Sampler for training (TrainingArguments' field, with another default): 'group_by_length' "
            "(distillkit's default: shuffled batches of similar length, so short texts are not padded to the longest "
            "of a random batch), 'random', 'sequential' or 'batch_rebalance'.",
            "choices": ["random", "sequential", "group_by_length", "batch_rebalance"],
        },
    )
    teacher_dtype: str | None = field(
        default=None,
        metadata={"help": f"Run the frozen teacher in this dtype, one of {TEACHER_DTYPES}; default: as loaded."},
    )

    def __post_init__(self):
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0 (got {self.temperature}); 1.0 is the plain softmax, 2-4 usual.")
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1] (got {self.alpha}): 1 = teacher only, 0 = labels only.")
        for name in INTERMEDIATE_WEIGHTS:
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0 (got {getattr(self, name)}); 0 turns the loss off.")
        if self.ensemble_mode not in ENSEMBLE_MODES:
            raise ValueError(f"ensemble_mode must be one of {ENSEMBLE_MODES} (got {self.ensemble_mode!r}).")
        if self.teacher_weights:
            ensemble_weights(self.teacher_weights, len(self.teacher_weights))  # negative / all-zero weights fail here
        if not self.intermediate_epochs >= 0:
            raise ValueError(f"intermediate_epochs must be >= 0 (got {self.intermediate_epochs}); 0 trains jointly.")
        if self.intermediate_epochs > 0:
            if not any(getattr(self, name) > 0 for name in INTERMEDIATE_WEIGHTS):
                raise ValueError(
                    f"intermediate_epochs={self.intermediate_epochs:g} trains the intermediate terms alone first, but "
                    f"none is on: give one a weight (e.g. --hidden_weight 1 --attention_weight 1, or --minilm_weight "
                    "1), or set intermediate_epochs to 0."
                )
            if self.ddp_find_unused_parameters is None:
                self.ddp_find_unused_parameters = True  # stage 1 leaves the classifier out of the loss
        if self.hidden_loss not in HIDDEN_LOSS_KINDS:
            raise ValueError(f"hidden_loss must be one of {HIDDEN_LOSS_KINDS} (got {self.hidden_loss!r}).")
        if self.attention_loss not in ATTENTION_LOSS_KINDS:
            raise ValueError(f"attention_loss must be one of {ATTENTION_LOSS_KINDS} (got {self.attention_loss!r}).")
        check_backend(self.teacher_backend)
        if self.teacher_backend not in ("auto", "torch") and not self.teacher_cache:
            raise ValueError(
                f"teacher_backend {self.teacher_backend!r} scores the teacher cache: give --teacher_cache DIR too, or "
                "leave teacher_backend at torch."
            )
        if self.teacher_dtype is not None and self.teacher_dtype not in TEACHER_DTYPES:
            raise ValueError(f"teacher_dtype must be one of {TEACHER_DTYPES} or unset (got {self.teacher_dtype!r}).")
        if isinstance(self.extra_losses, str):
            self.extra_losses = [x for x in self.extra_losses.split(",") if x.strip()]
        self.loss_weights()  # parses extra_losses, so a malformed entry fails here and not at the first step
        super().__post_init__()

    def loss_weights(self, stage: str | None = None) -> dict[str, float]:
        """The active losses as {registered name: weight}, in a fixed order; zero weights are left out.

        stage None: every active term. "intermediate": the intermediate terms only (stage 1 of the two-stage
        schedule); "prediction": the others (kd, ce and extra losses: stage 2)."""
        weights = {
            "kd": self.alpha,
            "ce": 1.0 - self.alpha,
            "hidden": self.hidden_weight,
            "attention": self.attention_weight,
            "embedding": self.embedding_weight,
            "minilm": self.minilm_weight,
        }
        for entry in self.extra_losses:
            name, _, weight = entry.partition(":")
            try:
                weights[name.strip()] = float(weight) if weight else 1.0
            except ValueError:
                raise ValueError(
                    f"extra_losses entry {entry!r} must be 'name' or 'name:weight' with a number as weight."
                ) from None
        active = {name: w for name, w in weights.items() if w != 0.0}
        if stage is None:
            return active
        if stage not in STAGES:
            raise ValueError(f"stage must be one of {STAGES} or None (got {stage!r}).")
        intermediate = {name.removesuffix("_weight") for name in INTERMEDIATE_WEIGHTS}
        return {n: w for n, w in active.items() if (n in intermediate) == (stage == "intermediate")}


@dataclass
class ModelArguments:
    teacher: str | None = field(
        default=None,
        metadata={
            "help": "The fine-tuned teacher: a hub name or a local directory. Several (--teacher A B C) distill "
            "their ensemble (see --teacher_weights, --ensemble_mode).",
            "nargs": "+",
        },
    )
    student: str | None = field(
        default=None,
        metadata={
            "help": "The student: a preset (tiny, mini, small, medium), 'custom' (with --num_layers and "
            "--hidden_size), teacher:K (the teacher with K of its layers), or a local directory / hub name."
        },
    )
    num_layers: int | None = field(default=None, metadata={"help": "Student depth (overrides the preset's)."})
    hidden_size: int | None = field(default=None, metadata={"help": "Student width (overrides the preset's)."})
    num_heads: int | None = field(default=None, metadata={"help": "Student attention heads (default width / 64)."})
    intermediate_size: int | None = field(default=None, metadata={"help": "Student FFN width (default 4 x width)."})
    embedding_size: int | None = field(
        default=None, metadata={"help": "Factorized embeddings of this size (<= width): an ALBERT student."}
    )
    prune_layers: str = field(
        default="spread",
        metadata={"help": "--student pruned: which layers to keep. spread (evenly over the depth, the last included: "
                  "a first-order score does not predict removing most layers) or importance (the highest scores)."},
    )  # fmt: skip
    prune_samples: int = field(
        default=512,
        metadata={"help": "--student pruned: training examples on which the teacher's units are scored (first-order "
                  "Taylor importance) before it is cut."},
    )  # fmt: skip
    trim_vocab: bool = field(
        default=False,
        metadata={"help": "Keep only the vocabulary the training text uses (plus single characters and special "
                  "tokens) in the student's embeddings, and save the matching tokenizer with it: SST-2 uses 13,487 "
                  "of MPNet's 30,527 tokens. WordPiece and Unigram tokenizers; logit losses only."},
    )  # fmt: skip
    trim_vocab_min_count: int = field(
        default=1, metadata={"help": "With --trim_vocab: keep the tokens seen at least this many times."}
    )
    share_layers: bool = field(
        default=False, metadata={"help": "ALBERT-style cross-layer sharing: layers share one set of weights."}
    )
    num_hidden_groups: int = field(
        default=1, metadata={"help": "With --share_layers: split the layers into this many groups of shared weights."}
    )
    init_from_teacher: bool = field(
        default=True, metadata={"help": "Start the student from the teacher's weights where shapes allow."}
    )
    trust_remote_code: bool = field(
        default=False, metadata={"help": "Allow custom modelling code from the hub. Off unless you ask for it."}
    )
    teacher_name: str | None = field(
        default=None,
        metadata={"help": "How the model card names the teacher (its hub id) when --teacher is a local copy."},
    )
    allow_pickle_weights: bool = field(
        default=False,
        metadata={
            "help": "Load pickle checkpoints (pytorch_model.bin) when no safetensors exist. Only for files "
            "you trust: unpickling can run code."
        },
    )

    def __post_init__(self):
        # --teacher A B: every teacher in `teachers`; `teacher` stays the first (one teacher is the usual case)
        names = self.teacher if isinstance(self.teacher, (list, tuple)) else [self.teacher] if self.teacher else []
        self.teachers = [str(n) for n in names]
        self.teacher = self.teachers[0] if self.teachers else None
        if self.prune_layers not in ("spread", "importance"):
            raise ValueError(f"prune_layers must be spread or importance (got {self.prune_layers!r}).")
        if self.prune_samples < 1:
            raise ValueError(
                f"prune_samples must be >= 1 (got {self.prune_samples}): --student pruned scores the teacher's units "
                "on that many training examples (512 is the default)."
            )
        if self.trim_vocab_min_count < 1:
            raise ValueError(
                f"trim_vocab_min_count must be >= 1 (got {self.trim_vocab_min_count}): --trim_vocab keeps the tokens "
                "the training text uses at least that many times (1, the default, keeps every one)."
            )


@dataclass
class TeacherArguments:
    finetune_teacher: str = field(
        default="auto",
        metadata={
            "help": "auto: fine-tune the teacher on the task first when it has no trained classification head (a "
            "base checkpoint); always: fine-tune it anyway; never: use it as is."
        },
    )
    teacher_learning_rate: float = field(default=5e-5, metadata={"help": "Learning rate of the teacher stage."})
    teacher_num_train_epochs: float = field(default=3.0, metadata={"help": "Epochs of the teacher stage."})
    teacher_max_steps: int = field(default=-1, metadata={"help": "If > 0, the teacher stage's step count."})
    teacher_batch_size: int = field(default=32, metadata={"help": "Per-device batch size of the teacher stage."})
    teacher_lora_r: int | None = field(
        default=None, metadata={"help": "Fine-tune the teacher with LoRA of this rank (peft) instead of fully."}
    )
    teacher_lora_alpha: int | None = field(default=None, metadata={"help": "LoRA alpha (default 2 x rank)."})
    teacher_save_steps: int = field(
        default=0,
        metadata={"help": "Checkpoint the teacher stage every N steps (the newest kept), so that a run stopped there "
                  "resumes it (--resume_from_checkpoint latest); 0: no checkpoints (a stopped stage starts again)."},
    )  # fmt: skip
    teacher_bf16: bool = field(
        default=False,
        metadata={"help": "Train the teacher stage in bf16 mixed precision (autocast; the weights stay fp32), whatever "
                  "--bf16 says for the student. On a CPU with AVX-512 BF16 or AMX it is about 3x faster (MPNet-base, "
                  "batch 32: 2.3 -> 0.8 s a step on 2 cores). The teacher is still evaluated, saved and run in fp32."},
    )  # fmt: skip
    teacher_min_steps: int = field(
        default=250,
        metadata={
            "help": "The teacher stage trains at least this many optimisation steps (more epochs on small data; "
            "about 3 epochs of RTE at batch 32, as the transformers text-classification examples run); "
            "0 turns the minimum off. teacher_max_steps, when set, wins."
        },
    )
    allow_weak_teacher: bool = field(
        default=False,
        metadata={
            "help": "Go on distilling even when the fine-tuned teacher scores no better than always answering the "
            "majority class (by default the run stops there and says how to train the teacher longer)."
        },
    )

    def __post_init__(self):
        if self.finetune_teacher not in ("auto", "always", "never"):
            raise ValueError(f"finetune_teacher must be auto, always or never (got {self.finetune_teacher!r}).")
        if self.teacher_save_steps < 0:
            raise ValueError(f"teacher_save_steps must be >= 0 (got {self.teacher_save_steps}); 0 saves none.")
        if self.teacher_min_steps < 0:
            raise ValueError(f"teacher_min_steps must be >= 0 (got {self.teacher_min_steps}); 0 turns it off.")
        if self.teacher_lora_r is not None and self.teacher_lora_r < 1:
            raise ValueError(
                f"teacher_lora_r must be >= 1 (got {self.teacher_lora_r}); leave it unset for full tuning."
            )


@dataclass
class DataArguments:
    task: str | None = field(
        default=None,
        metadata={
            "help": "A GLUE task (cola, sst2, mrpc, qqp, stsb, mnli, qnli, rte, wnli): its columns, labels "
            "and metric; its data from the hub unless --train_file is given."
        },
    )
    dataset_name: str | None = field(
        default=None, metadata={"help": "How the model card names the data, when it is not a GLUE task."}
    )
    train_file: str | None = field(default=None, metadata={"help": "Training data: a .csv, .tsv or .json(l) file."})
    validation_file: str | None = field(default=None, metadata={"help": "Validation data, same formats."})
    text_column: str | None = field(
        default=None, metadata={"help": "Column holding the (first) text (default: the task's, else 'sentence')."}
    )
    text_pair_column: str | None = field(
        default=None, metadata={"help": "Column holding the second text of a pair (default: the task's)."}
    )
    label_column: str | None = field(
        default="label", metadata={"help": "Column holding the gold label; unset to train without labels (alpha=1)."}
    )
    max_seq_length: int = field(default=128, metadata={"help": "Longer inputs are truncated to this many tokens."})
    max_train_samples: int | None = field(default=None, metadata={"help": "Keep only the first N training rows."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Keep only the first N validation rows."})
    unlabeled_file: str | None = field(
        default=None,
        metadata={
            "help": "Text that only the teacher labels (.txt, one text per line; or csv / tsv / json with the text "
            "column(s)): it joins the training set for the distillation terms and never reaches the hard-label loss."
        },
    )
    augment: int = field(
        default=0,
        metadata={"help": "New texts per training text by word replacement (TinyBERT-style), labelled by the teacher."},
    )
    augment_p: float = field(default=0.4, metadata={"help": "Chance that a word is replaced, in (0, 1]."})
    augment_k: int = field(default=15, metadata={"help": "Candidates per word (its K nearest / most likely words)."})
    augment_mlm: str | None = field(
        default=None,
        metadata={
            "help": "A masked language model (hub name or folder) whose predictions for the masked word are the "
            "candidates; default: the word's nearest neighbours in the teacher's input embeddings (no download)."
        },
    )

    def __post_init__(self):
        from .augment import check_augment

        check_augment(self.augment, self.augment_p)
        if self.augment_k < 1:
            raise ValueError(f"augment_k must be >= 1 (got {self.augment_k}).")
