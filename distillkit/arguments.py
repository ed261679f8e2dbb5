"""The run's arguments beside `DistillConfig`: the models (`ModelArguments`), the teacher stage
(`TeacherArguments`) and the data (`DataArguments`); each field's help text is its flag's `--help`."""

from __future__ import annotations

from dataclasses import dataclass, field

PRUNE_LAYER_CRITERIA = ("spread", "importance", "perplexity", "cosine")  # the last two: decoder LMs
TEACHER_VIEWS = ("auto", "own", "student")  # --trim_vocab_teacher_view


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
    num_key_value_heads: int | None = field(
        default=None,
        metadata={"help": "A decoder student's key-value heads (grouped-query attention; --student pruned cuts query "
                  "heads inside the kept groups). Default: the teacher's grouping."},
    )  # fmt: skip
    embedding_size: int | None = field(
        default=None, metadata={"help": "Factorized embeddings of this size (<= width): an ALBERT student."}
    )
    prune_layers: str = field(
        default="spread",
        metadata={"help": "--student pruned: which layers to keep. spread (evenly over the depth, the last included: "
                  "a first-order score does not predict removing most layers) or importance (the highest scores); "
                  "for a decoder LM also perplexity (keep the layers whose removal costs the most perplexity; its "
                  "default) or cosine (block influence, 1 - cos of a layer's input and output)."},
    )  # fmt: skip
    prune_samples: int = field(
        default=512,
        metadata={"help": "--student pruned: training examples on which the teacher's units are scored (first-order "
                  "Taylor importance) before it is cut."},
    )  # fmt: skip
    prune_steps: int = field(
        default=1,
        metadata={"help": "--student pruned (encoders): cut the teacher towards the student's shape in this many "
                  "steps, distilling between them (each dimension shrinks by the same factor at every step; the "
                  "training steps are split evenly over them, so the total equals one cut's). 1: one cut."},
    )  # fmt: skip
    prune_scores: str | None = field(
        default=None,
        metadata={"help": "--student pruned, decoder LMs: a file for the teacher's importance scores. Read when it "
                  "holds scores of the same teacher, calibration blocks and --prune_layers; else they are measured "
                  "and written there, so several cuts of one teacher score it once."},
    )  # fmt: skip
    prune_eval: bool = field(
        default=True,
        metadata={"help": "--student pruned: score the teacher, each dimension cut alone and the cut student on the "
                  "validation set for prune_report.json (one evaluation of a teacher-sized model per dimension); "
                  "false skips them."},
    )  # fmt: skip
    attention_dropout: float | None = field(
        default=None,
        metadata={"help": "Dropout on the attention probabilities of the student and of the teacher stage (default: "
                  "each model's own, 0.1 for BERT-likes). 0 lets PyTorch use its fused attention kernel while "
                  "training: about 1.7x faster steps on the CPU at 256 tokens (docs/troubleshooting.md)."},
    )  # fmt: skip
    trim_vocab: bool = field(
        default=False,
        metadata={"help": "Keep only the vocabulary the training text uses (plus single characters and special "
                  "tokens) in the student's embeddings, and save the matching tokenizer with it: SST-2 uses 13,487 "
                  "of MPNet's 30,527 tokens. WordPiece and Unigram tokenizers."},
    )  # fmt: skip
    trim_vocab_min_count: int = field(
        default=1, metadata={"help": "With --trim_vocab: keep the tokens seen at least this many times."}
    )
    trim_vocab_teacher_view: str = field(
        default="auto",
        metadata={"help": "With --trim_vocab, what the teacher reads: 'own' (its own tokenization of the text: a word "
                  "the trimmed vocabulary lost reaches it whole), 'student' (the student's tokens in the teacher's "
                  "ids, position for position: what the intermediate losses and a tagger's tags need), or 'auto' "
                  "(student with an intermediate loss or a token-level task, else own)."},
    )  # fmt: skip
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
        if self.prune_layers not in PRUNE_LAYER_CRITERIA:
            raise ValueError(f"prune_layers must be one of {', '.join(PRUNE_LAYER_CRITERIA)} (got "
                             f"{self.prune_layers!r}).")  # fmt: skip
        if self.prune_samples < 1:
            raise ValueError(
                f"prune_samples must be >= 1 (got {self.prune_samples}): --student pruned scores the teacher's units "
                "on that many training examples (512 is the default)."
            )
        if self.prune_steps < 1:
            raise ValueError(f"prune_steps must be >= 1 (got {self.prune_steps}): 1 cuts the teacher once, N in N "
                             "steps with distillation between them.")  # fmt: skip
        if self.prune_steps > 1 and self.student != "pruned":
            raise ValueError(f"--prune_steps {self.prune_steps} cuts a student from the teacher in steps: it needs "
                             f"--student pruned (got --student {self.student}).")  # fmt: skip
        if self.trim_vocab_teacher_view not in TEACHER_VIEWS:
            raise ValueError(f"trim_vocab_teacher_view must be one of {', '.join(TEACHER_VIEWS)} (got "
                             f"{self.trim_vocab_teacher_view!r}).")  # fmt: skip
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
    task_type: str | None = field(
        default=None,
        metadata={"help": "The kind of model distilled: sequence-classification (or any registered task type). "
                  "Default: from --task, else from the teacher's head (a ...ForSequenceClassification checkpoint), "
                  "else sequence-classification."},
    )  # fmt: skip
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
    tag_column: int = field(
        default=-1, metadata={"help": "token-classification: the CoNLL column holding the tag (0-based; -1 the last)."}
    )
    label_all_subwords: bool = field(
        default=False,
        metadata={"help": "token-classification: every sub-word of a word carries its tag in training (default: the "
                  "first sub-word only; evaluation always reads the first)."},
    )  # fmt: skip
    doc_stride: int | None = field(
        default=None,
        metadata={"help": "question-answering: tokens of overlap between a context's windows (default: a third of "
                  "max_seq_length, 128 at 384); it must be smaller than the room the question leaves."},
    )  # fmt: skip
    n_best_size: int = field(
        default=20, metadata={"help": "question-answering: the top start and end positions tried per window."}
    )
    max_answer_length: int = field(
        default=30, metadata={"help": "question-answering: the longest answer span, in tokens."}
    )
    max_seq_length: int = field(default=128, metadata={"help": "Longer inputs are truncated to this many tokens."})
    block_size: int | None = field(
        default=None,
        metadata={"help": "causal-lm: tokens per block of packed text, and the longest instruction example (default: "
                  "max_seq_length; capped at the models' positions)."},
    )  # fmt: skip
    completion_only_loss: bool = field(
        default=True,
        metadata={"help": "causal-lm instruction data (prompt / completion, messages): only the completion's tokens "
                  "count for every loss; false counts the prompt's too."},
    )  # fmt: skip
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
