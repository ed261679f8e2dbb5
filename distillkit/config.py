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
CUT_PROJECTIONS = ("selection", "fixed", "random")  # a cut student's hidden projections: how they start
STAGES = ("intermediate", "prediction")  # the two stages of the schedule that intermediate_epochs turns on


KD_LOSSES = ("kd", "reverse_kl", "jsd")  # the soft-target losses that alpha may weigh (losses/lm.py)


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
    kd_loss: str = field(
        default="kd",
        metadata={"help": "The soft-target loss that alpha weighs: kd (forward KL(teacher || student), the default), "
                  "reverse_kl (KL(student || teacher)) or jsd (the generalised Jensen-Shannon divergence of GKD, with "
                  "--jsd_beta). Each with T^2; see docs/losses.md."},
    )  # fmt: skip
    jsd_beta: float = field(
        default=0.5,
        metadata={"help": "--kd_loss jsd: the mixture weight beta in [0, 1] (0 = forward KL, 1 = reverse KL)."},
    )
    cache_top_k: int = field(
        default=32,
        metadata={"help": "causal-lm with --teacher_cache: the teacher's most likely next tokens kept per token (their "
                  "log-probabilities and ids, plus the rest of the mass: 130 bytes a token at 32 and a vocabulary "
                  "up to 65,536)."},
    )  # fmt: skip
    lm_chunk_size: int = field(
        default=1024,
        metadata={"help": "causal-lm: positions whose logits are computed at once by the chunked losses (memory: "
                  "chunk x vocabulary per model, instead of batch x length x vocabulary)."},
    )  # fmt: skip
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
    layer_map: str = field(default="auto", metadata={"help": f"Layer map: {LAYER_MAP_HELP}."})
    cut_projection: str = field(
        default="selection",
        metadata={"help": "A student cut from the teacher: the hidden projections (student width -> teacher width) "
                  "start as the selection of the kept channels and are trained ('selection'), stay that selection "
                  "('fixed'), or start random as for any student ('random')."},
    )  # fmt: skip
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
            "epochs and runs (offline distillation; logit losses only). From the command line or a recipe the "
            "default is <output_dir>/teacher_cache when every loss reads only the logits; none: the live teacher."
        },
    )
    teacher_backend: str = field(
        default="auto",
        metadata={
            "help": f"How the teacher scores the rows of --teacher_cache: one of {BACKENDS}. auto: onnxruntime fp32 "
            "(the same predictions, about 1.9x faster on a CPU) for caches of 2,048+ rows when onnxruntime (the "
            "export extra) is installed and the teacher is fp32 on the CPU, else PyTorch as loaded; torch; int8 "
            "(PyTorch dynamic); onnx; onnx-int8. The manifest records the backend used."
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
        if self.kd_loss not in KD_LOSSES:
            raise ValueError(f"kd_loss must be one of {KD_LOSSES} (got {self.kd_loss!r}): the soft-target loss alpha "
                             "weighs.")  # fmt: skip
        if not 0.0 <= self.jsd_beta <= 1.0:
            raise ValueError(f"jsd_beta must be in [0, 1] (got {self.jsd_beta}): 0 is the forward KL, 1 the reverse "
                             "KL.")  # fmt: skip
        if not self.cache_top_k >= 1:
            raise ValueError(f"cache_top_k must be >= 1 (got {self.cache_top_k}): the teacher's top ids kept a token.")
        if not self.lm_chunk_size >= 1:
            raise ValueError(f"lm_chunk_size must be >= 1 (got {self.lm_chunk_size}).")
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
        if self.cut_projection not in CUT_PROJECTIONS:
            raise ValueError(f"cut_projection must be one of {CUT_PROJECTIONS} (got {self.cut_projection!r}).")
        if isinstance(self.teacher_cache, str) and self.teacher_cache.strip().lower() in ("none", ""):
            self.teacher_cache = None  # --teacher_cache none: the live teacher in every step
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
        if self.dataloader_pin_memory and not _has_accelerator():
            self.dataloader_pin_memory = False  # pinned memory serves copies to a GPU: on a CPU it only warns
        super().__post_init__()

    def pairs_positions(self) -> bool:
        """Whether an active loss compares the two models position by position (hidden states, attention maps,
        attention projections): with a trimmed vocabulary the teacher then reads the student's own tokens."""
        from .losses import get_loss

        return any(get_loss(name).pairs_positions for name in self.loss_weights())

    def loss_weights(self, stage: str | None = None) -> dict[str, float]:
        """The active losses as {registered name: weight}, in a fixed order; zero weights are left out.

        stage None: every active term. "intermediate": the intermediate terms only (stage 1 of the two-stage
        schedule); "prediction": the others (kd, ce and extra losses: stage 2)."""
        weights = {
            self.kd_loss: self.alpha,
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


def _has_accelerator() -> bool:
    import torch

    accelerator = getattr(torch, "accelerator", None)
    return bool(accelerator.is_available()) if accelerator is not None else torch.cuda.is_available()


def _args_section(cls: type, own: set[str]) -> str:
    """An `Args:` section generated from the fields' help texts (each written once, in `field(metadata=...)`)."""
    import dataclasses
    import textwrap

    lines = ["", "    Args:"]
    for f in dataclasses.fields(cls):
        if f.name in own and f.metadata.get("help"):
            text = textwrap.fill(f"{f.name}: {f.metadata['help']}", 112, subsequent_indent="            ")
            lines.append("        " + text)
    lines.append("        ...and every `transformers.TrainingArguments` field (output_dir, learning_rate, ...).")
    return "\n".join(lines) + "\n"


DistillConfig.__doc__ = (DistillConfig.__doc__ or "") + _args_section(DistillConfig, set(DistillConfig.__annotations__))
