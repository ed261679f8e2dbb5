"""`DistillTrainer`: a `transformers.Trainer` whose loss is a weighted sum of registered distillation losses."""

from __future__ import annotations

import logging
import os
from types import SimpleNamespace
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import PreTrainedModel, Trainer, TrainerCallback

from .cache import INDEX_COLUMN, TokenLogits, load_or_build
from .collator import DistillCollator
from .config import STAGES, DistillConfig
from .data import TEACHER_PREFIX, member_prefix
from .ensemble import TeacherEnsemble, ensemble_identity, ensemble_members
from .frozen_teacher import Teacher, use_eager_attention
from .losses.hidden import HiddenProjection
from .losses.registry import LossInputs
from .losses.relations import QKVCapture
from .metrics import InOrderEvaluation
from .progress import announce
from .resilience import ExactResume, NonFiniteLossError, mark_complete, save_then_move
from .stages import TwoStageSchedule
from .tasks import TARGET_COLUMNS, TaskType, output_logits, resolve_task_type
from .trainer_checks import check_models, check_setup

logger = logging.getLogger(__name__)

DISTILL_MODULES_NAME = "distill_modules.safetensors"


class DistillTrainer(InOrderEvaluation, TwoStageSchedule, ExactResume, Trainer):
    """Trains `model` (the student) to imitate `teacher`.

        trainer = DistillTrainer(model=student, teacher=teacher, args=DistillConfig(...),
                                 train_dataset=..., eval_dataset=..., processing_class=tokenizer)

    The loss is `sum(weight * term)` over the losses that `args.loss_weights()` turns on, each looked up in the loss
    registry; every term is logged on its own as `loss_<name>`. Override `teacher_forward` or `compute_distill_loss`
    in a subclass to change how the teacher is run or how the terms are combined. Learned projections of the
    intermediate losses live in `self.distill_modules`: they are optimised with the student, saved in checkpoints,
    and never written into the saved student.

    `teacher=[t1, t2, ...]` distills an ensemble (`distillkit.ensemble`): its soft targets mix the teachers'
    probabilities with `args.teacher_weights`; `teacher_processing_class` is then a list, None for a teacher that
    reads the student's tokenization.

    With `args.intermediate_epochs > 0` one `train()` runs two stages (TinyBERT's task distillation): the first
    `stage1_steps` steps train the intermediate terms alone (the classifier gets no gradient), the rest the
    prediction-layer terms; each stage has its own learning-rate schedule, the optimizer state is reset between
    them, and a checkpoint of either stage resumes in that stage (the stage follows from the global step).
    """

    # compute_distill_loss returns a per-batch mean: let the Trainer divide it by the accumulation steps
    loss_is_scaled_for_ga = False

    def __init__(
        self,
        model: PreTrainedModel | None = None,
        teacher: PreTrainedModel | Teacher | list[PreTrainedModel | Teacher] | None = None,
        args: DistillConfig | None = None,
        task_type: str | TaskType | None = None,
        **kwargs: Any,
    ):
        """
        Args:
            model: the student (any `PreTrainedModel` of the task type).
            teacher: the frozen teacher: a model, a `Teacher`, or a list of them (an ensemble).
            args: the `DistillConfig` (TrainingArguments plus the distillation fields).
            task_type: the task type, by name or as a `TaskType` (`distillkit.get_task_type`); default: the one the
                student's config names (its `architectures`), else sequence classification. It gives the default
                `compute_metrics`, the teacher/student head check and the output of cached logits.
            teacher_processing_class: the teacher's tokenizer when it is not the student's (cross-tokenizer
                distillation); for an ensemble, a list with None where a teacher reads the student's tokenization.
            aligned_teacher_tokens: True when the data's `teacher_*` columns are the student's own tokens in the
                teacher's ids, position for position (a trimmed vocabulary: `students.vocab.with_teacher_ids`):
                the intermediate-layer losses are then allowed, as for a shared tokenizer.
            **kwargs: everything `transformers.Trainer` takes (train_dataset, eval_dataset, processing_class,
                data_collator, compute_metrics, callbacks, ...).
        """
        if model is None or teacher is None:
            raise ValueError("DistillTrainer needs both a student (model=...) and a teacher (teacher=...).")
        if args is None:
            args = DistillConfig(output_dir="distill_output")
        if not isinstance(args, DistillConfig):
            raise TypeError(
                f"args must be a DistillConfig (got {type(args).__name__}); it carries the distillation "
                "fields (temperature, alpha, loss weights, layer map)."
            )
        self.task_type = resolve_task_type(task_type, model)
        teacher_tokenizer = kwargs.pop("teacher_processing_class", None)
        aligned = bool(kwargs.pop("aligned_teacher_tokens", False))
        self.ensemble = None  # several teachers: (models, their tokenizers, weights, intermediate teacher's index)
        if isinstance(teacher, (list, tuple)):
            self.ensemble = ensemble_members(teacher, teacher_tokenizer, args)
            models, tokenizers, _, main = self.ensemble
            for other, own in zip(models, tokenizers):
                self.check_models(other.config, model.config, own is not None, self.task_type)
            teacher_model, teacher_tokenizer = models[main], tokenizers[main]
            self.cross_tokenizer = teacher_tokenizer is not None  # for the intermediate losses: the one they read
            others = {member_prefix(i + 1): tok for i, tok in enumerate(tokenizers) if tok is not None}
            if others and kwargs.get("data_collator") is None:
                kwargs["data_collator"] = DistillCollator(kwargs.get("processing_class"), others)
        else:
            teacher_model = teacher.model if isinstance(teacher, Teacher) else teacher
            columns = getattr(kwargs.get("train_dataset"), "column_names", None) or []
            self.cross_tokenizer = teacher_tokenizer is not None or TEACHER_PREFIX + "input_ids" in columns
        cut_here = self.ensemble is None or self.ensemble[3] == 0  # a cut student's teacher is the first one
        self.loss_weights, self.loss_specs, self.layer_map = self.check_setup(
            model,
            teacher_model.config,
            args,
            kwargs.get("train_dataset"),
            self.cross_tokenizer,
            self.task_type,
            cut_here,
            aligned and self.ensemble is None,
        )
        if self.cross_tokenizer and kwargs.get("data_collator") is None:
            if kwargs.get("processing_class") is None or teacher_tokenizer is None:
                raise ValueError(
                    "the data holds the teacher's own tokenization (teacher_* columns): give both tokenizers, "
                    "processing_class=student_tokenizer and teacher_processing_class=teacher_tokenizer, so that "
                    "each encoding is padded with its own pad token."
                )
            own = self.task_type.data_collator(kwargs["processing_class"])
            kwargs["data_collator"] = DistillCollator(kwargs["processing_class"], teacher_tokenizer,
                                                      student_collator=own)  # fmt: skip
        # two stages: {stage: its weights}; the first stage's length is known when training starts
        self.stage_weights = {st: args.loss_weights(st) for st in STAGES} if args.intermediate_epochs > 0 else None
        self.stage1_steps = 0
        self._stage: str | None = None  # the stage the models are set up for (None: joint training)
        self._optimizer_reset_at: int | None = None
        self._student_attn = getattr(model.config, "_attn_implementation", None)  # as built
        # alpha=0 and no other term: plain fine-tuning on the labels (a baseline), the teacher is never run
        self._needs_teacher = any(spec.needs_teacher for spec in self.loss_specs.values())
        if kwargs.get("data_collator") is None and kwargs.get("processing_class") is not None:
            kwargs["data_collator"] = self.task_type.data_collator(kwargs["processing_class"])
        if kwargs.get("compute_metrics") is None:
            kwargs["compute_metrics"] = self.task_type.compute_metrics(model.config)

        super().__init__(model=model, args=args, **kwargs)
        if args.label_names is None:  # the task type's target columns (a span head's forward names two of them)
            self.label_names = list(self.task_type.label_columns)

        # (re)wrapped here: which outputs the teacher must return depends on the active losses (set_stage)
        if self.ensemble is None:
            self.teacher = Teacher(teacher_model, dtype=args.teacher_dtype, device=args.device)
        else:  # each teacher reads its own columns when it tokenizes differently
            models, _, weights, main = self.ensemble
            members = [
                Teacher(m, dtype=args.teacher_dtype, device=args.device, prefix=member_prefix(i + 1))
                for i, m in enumerate(models)
            ]
            self.teacher = TeacherEnsemble(members, weights, args.temperature, args.ensemble_mode, main)
        built = {
            name: spec.build_module(model.config, teacher_model.config, self.layer_map)
            for name, spec in self.loss_specs.items()
            if spec.build_module is not None
        }
        self.distill_modules = nn.ModuleDict({k: m for k, m in built.items() if m is not None}).to(args.device)
        # a student cut from the teacher: its heads imitate their sources, its projections start as its channels
        self.cut = getattr(model, "distillkit_cut", None) if cut_here else None
        self.head_map = self.cut.head_map(self.layer_map) if self.cut is not None else None
        if self.cut is not None and args.cut_projection != "random":
            for module in self.distill_modules.values():
                if isinstance(module, HiddenProjection):
                    module.start_as_selection(self.cut.hidden, fixed=args.cut_projection == "fixed")
        # the Trainer clears the student's gradients after each optimizer step (model.zero_grad()), not the
        # optimizer's: without this the projections' gradients would pile up over the whole run
        self.add_callback(_ClearGradients(self.distill_modules))
        self._qkv = None  # (student capture, teacher capture) for losses that read the attention projections
        self._batch_qkv = None  # what they captured for the batch in compute_loss
        if any(spec.needs_qkv for spec in self.loss_specs.values()):
            self._qkv = (
                QKVCapture(model, -1, model.config.num_hidden_layers),
                QKVCapture(teacher_model, args.minilm_layer, teacher_model.config.num_hidden_layers),
            )
        self._cached_logits = None
        if args.teacher_cache and self.train_dataset is not None and self._needs_teacher:
            self.set_stage("prediction" if self.stage_weights else None)  # the cache holds logits only
            with args.main_process_first(desc="teacher cache"):  # the main process computes, the others read
                ensemble = self.ensemble is not None  # scored as run here (torch), and identified by every teacher
                if self.task_type.chunked_lm_losses:  # a language model: the teacher's top-k per counted token
                    from .lm_cache import load_or_build_topk

                    self._cached_logits = load_or_build_topk(
                        args.teacher_cache, teacher_model, self.processing_class, self.train_dataset,
                        self.data_collator, k=args.cache_top_k, temperature=args.temperature,
                        batch_size=args.per_device_eval_batch_size, chunk_size=args.lm_chunk_size,
                        vocab_rows=model.get_output_embeddings().weight.shape[0],
                    )  # fmt: skip
                else:
                    members = ensemble_identity(self.ensemble[0], self.ensemble[2], args) if ensemble else None
                    self._cached_logits = load_or_build(
                        args.teacher_cache, self.teacher, teacher_model, self.processing_class, self.train_dataset,
                        self.data_collator, batch_size=args.per_device_eval_batch_size,
                        backend="torch" if ensemble else args.teacher_backend, progress=not args.disable_tqdm,
                        extra_identity=members,
                    )  # fmt: skip
            self.train_dataset = self.train_dataset.add_column(INDEX_COLUMN, list(range(len(self.train_dataset))))
        self._term_sums: dict[str, tuple[torch.Tensor, int]] = {}  # {name: (sum since the last log, steps)}
        self._term_steps = 0
        self.set_stage("intermediate" if self.stage_weights else None)
        logger.info("distillation losses %s, layer map %s", self.loss_weights, self.layer_map)

    def set_stage(self, stage: str | None) -> None:
        """Set the models up for a stage's losses: which terms are summed, whether hidden states and attention maps
        are asked for (attention maps need eager attention: each model goes back to its own implementation when
        they are not), and whether the attention projections are read. None: every term (joint training)."""
        self._stage = stage
        self.active_weights = self.loss_weights if stage is None else self.stage_weights[stage]
        specs = [self.loss_specs[name] for name in self.active_weights]
        self._needs_hidden = any(spec.needs_hidden_states for spec in specs)
        self._needs_attn = any(spec.needs_attentions for spec in specs)
        self._reads_qkv = self._qkv is not None and any(spec.needs_qkv for spec in specs)
        self.teacher.set_outputs(self._needs_hidden, self._needs_attn)
        use_eager_attention(self.model, self._needs_attn, self._student_attn)

    check_setup = staticmethod(check_setup)  # every check that can fail before training (trainer_checks.py)
    check_models = staticmethod(check_models)

    # ---- the hooks -----------------------------------------------------------------------------------------------

    def teacher_forward(self, inputs: dict[str, Any]) -> Any:
        """Run the frozen teacher on the batch; returns its outputs (logits, and states / maps if a loss needs them).
        Training batches read the logits from the teacher cache when there is one."""
        index = inputs.get(INDEX_COLUMN)
        if index is not None and self._cached_logits is not None and self._stage != "intermediate":
            cached = self._cached_logits
            if isinstance(cached, TokenLogits):  # per token: padded to this batch's positions
                logits = cached.padded(index.cpu(), inputs["attention_mask"])
            else:
                logits = cached[index.cpu()]
            return self.task_type.output_from_logits(logits.to(self.args.device))
        return self.teacher(inputs)

    def compute_distill_loss(
        self, student_outputs: Any, teacher_outputs: Any, inputs: dict[str, Any]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Combine the active registered losses: returns (weighted sum, {name: unweighted detached term})."""
        labels = self.task_type.batch_labels(inputs)
        total = None
        terms: dict[str, torch.Tensor] = {}
        for name, weight in self.active_weights.items():
            spec = self.loss_specs[name]
            if spec.needs_labels and labels is None:
                raise ValueError(
                    f"the {name!r} loss needs labels but the batch has none; give labels or set alpha=1.0."
                )
            value = spec.fn(
                LossInputs(
                    student_outputs=student_outputs,
                    teacher_outputs=teacher_outputs,
                    labels=labels,
                    attention_mask=inputs.get("attention_mask"),
                    args=self.args,
                    layer_map=self.layer_map,
                    module=self.distill_modules[name] if name in self.distill_modules else None,  # noqa: SIM401 (no .get)
                    qkv=self._batch_qkv if spec.needs_qkv else None,
                    head_map=self.head_map,
                )
            )
            terms[name] = value.detach()
            total = weight * value if total is None else total + weight * value
        self.check_finite(terms)
        return total, terms

    def check_finite(self, terms: dict[str, torch.Tensor]) -> None:
        """One host sync per step: a NaN must stop the run at the step where it appears, not poison the
        checkpoints."""
        if not bool(torch.isfinite(torch.stack([t.float() for t in terms.values()])).all()):
            bad = {n: v.item() for n, v in terms.items() if not torch.isfinite(v)}
            raise NonFiniteLossError(
                f"loss term(s) {bad} became non-finite at step {self.state.global_step}. Likely causes: fp16 overflow "
                "in the teacher (use --teacher_dtype bfloat16 or float32) or in the student (--bf16 instead of "
                "--fp16), or a learning rate too high (lower --learning_rate)."
            )

    def record_terms(self, model: Any, terms: dict[str, torch.Tensor]) -> None:
        """Add a training step's terms to the sums that the next log averages (`loss_<name>`)."""
        if not model.training:
            return
        for name, value in terms.items():
            total_so_far, steps = self._term_sums.get(name, (0.0, 0))
            self._term_sums[name] = (total_so_far + value, steps + 1)
        self._term_steps += 1

    # ---- Trainer overrides ---------------------------------------------------------------------------------------

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if self.task_type.chunked_lm_losses:  # a language model: token losses in chunks from hidden states
            return self.compute_lm_loss(model, inputs, return_outputs)
        loss, terms, student_outputs = self.loss_terms(model, inputs)
        self.record_terms(model, terms)
        if return_outputs:
            # only the logits go on to evaluation: hidden states and attention maps would be gathered as predictions
            return loss, {"loss": loss, "logits": output_logits(student_outputs)}
        return loss

    def loss_terms(self, model, inputs) -> tuple[torch.Tensor, dict[str, torch.Tensor], Any]:
        """One batch through both models: (weighted loss, {name: unweighted term}, the student's outputs). Also what
        a script reads to see the losses of a student before any training (scripts/cut_layer_losses.py)."""
        # the student computes no loss of its own: labels are only for the registered losses
        student_inputs = {
            k: v for k, v in inputs.items()
            if k not in (*TARGET_COLUMNS, INDEX_COLUMN) and not k.startswith(TEACHER_PREFIX)
        }  # fmt: skip
        if (stage := self.stage_at(self.state.global_step)) != self._stage:
            self.set_stage(stage)
        for capture in self._qkv if self._reads_qkv else ():
            capture.start()
        student_outputs = model(
            **student_inputs, output_hidden_states=self._needs_hidden, output_attentions=self._needs_attn
        )
        teacher_outputs = self.teacher_forward(inputs) if self._needs_teacher else None
        self._batch_qkv = tuple(c.take() for c in self._qkv) if self._reads_qkv else None
        mask = inputs.get("attention_mask")
        loss, terms = self.compute_distill_loss(
            self.loss_view(student_outputs, mask), self.loss_view(teacher_outputs, mask), inputs
        )
        return loss, terms, student_outputs

    def compute_lm_loss(self, model, inputs, return_outputs=False):
        """A language model's step: each model's last hidden states at the counted positions (a position whose next
        token has a label) go through its output layer in chunks (`losses.lm.fused_lm_losses`); neither model's
        (batch, length, vocabulary) logits are ever built. Evaluation returns per-position statistics (the
        next token's NLL and the predicted token) in place of logits."""
        from .losses.lm import chunked_token_statistics, fused_lm_losses

        labels = inputs["labels"]
        student_inputs = {k: v for k, v in inputs.items()
                          if k not in (*TARGET_COLUMNS, INDEX_COLUMN) and not k.startswith(TEACHER_PREFIX)}  # fmt: skip
        student = self.accelerator.unwrap_model(model)
        with HeadInput(student) as captured:
            model(**student_inputs)
        hidden = captured.hidden
        counted = labels[:, 1:] != -100
        targets = labels[:, 1:][counted]
        rows = hidden[:, :-1][counted]
        teacher_rows = teacher_head = cached = None
        index = inputs.get(INDEX_COLUMN)
        if index is not None and self._cached_logits is not None:  # the teacher's top-k, read from the cache
            cached = tuple(x.to(rows.device) for x in self._cached_logits.gather(index.cpu()))
            if cached[0].shape[0] != rows.shape[0]:
                raise ValueError(f"the teacher cache holds {cached[0].shape[0]} tokens for this batch's rows, which "
                                 f"count {rows.shape[0]}: it was built for other data; delete it to "
                                 "recompute.")  # fmt: skip
        elif self._needs_teacher and any(n != "ce" for n in self.active_weights):
            teacher_model = self.teacher.model
            with HeadInput(teacher_model) as t_captured:
                self.teacher(inputs)
            teacher_rows = t_captured.hidden[:, :-1][counted]
            teacher_head = teacher_model.get_output_embeddings()
        args = self.args
        loss, terms = fused_lm_losses(rows, student.get_output_embeddings(), targets, self.active_weights,
                                      teacher_rows, teacher_head, args.temperature, args.jsd_beta,
                                      args.lm_chunk_size, cached)  # fmt: skip
        self.check_finite(terms)
        self.record_terms(model, terms)
        if return_outputs:
            stats = chunked_token_statistics(hidden, student.get_output_embeddings(), labels, args.lm_chunk_size,
                                             teacher_rows, teacher_head)  # fmt: skip
            return loss, {"loss": loss, "logits": stats}
        return loss

    returns_token_statistics = property(lambda self: self.task_type.chunked_lm_losses)

    def loss_view(self, outputs: Any, attention_mask: Any) -> Any:
        """A model output as the losses read it: the task type's `loss_logits` as `.logits` (a span head's start and
        end distributions), hidden states and attention maps as they are; most task types' outputs unchanged."""
        if outputs is None:
            return None
        logits = output_logits(outputs)
        view = self.task_type.loss_logits(logits, attention_mask)
        if view is logits:
            return outputs
        return SimpleNamespace(logits=view, hidden_states=getattr(outputs, "hidden_states", None),
                               attentions=getattr(outputs, "attentions", None))  # fmt: skip

    def training_step(self, model, inputs, num_items_in_batch=None):
        step = self.state.global_step
        if self.stage_weights is not None and step == self.stage1_steps and self._optimizer_reset_at != step:
            # stage 2 starts: a fresh optimizer state, as if it were a run of its own (done at this step whether the
            # run got here straight or resumed from the checkpoint at the end of stage 1)
            getattr(self.optimizer, "optimizer", self.optimizer).state.clear()
            self._optimizer_reset_at = step
            announce("distillation stage 2/2", f"prediction layer {self.stage_weights['prediction']}, steps "
                     f"{step + 1}-{self.state.max_steps}")  # fmt: skip
        loss = super().training_step(model, inputs, num_items_in_batch)
        # The projections live outside the DDP-wrapped student, so DDP does not average their gradients: do it here,
        # once per optimizer step (gradients accumulate locally over the accumulation micro-steps in between).
        if self.accelerator.num_processes > 1 and self.accelerator.sync_gradients and len(self.distill_modules):
            grads = [p.grad for p in self.distill_modules.parameters() if p.grad is not None]
            for grad in grads:
                torch.distributed.all_reduce(grad)
                grad.div_(self.accelerator.num_processes)
        return loss

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs and self._term_steps:  # a training log: add each term's mean since the last one
            names = list(self._term_sums)
            means = torch.stack([torch.as_tensor(self._term_sums[n][0]) / self._term_sums[n][1] for n in names])
            means = self.accelerator.reduce(means.float().to(self.args.device), reduction="mean")
            for name, value in zip(names, means.tolist()):
                logs[f"loss_{name}"] = round(value, 6)
            if self.stage_weights is not None:
                logs["distill_stage"] = 1 if self._stage == "intermediate" else 2
            self._term_sums, self._term_steps = {}, 0
        super().log(logs, start_time)

    def _set_signature_columns_if_needed(self) -> None:
        super()._set_signature_columns_if_needed()
        if self._cached_logits is not None and INDEX_COLUMN not in self._signature_columns:
            self._signature_columns.append(INDEX_COLUMN)  # keep the row index: it finds each example's logits
        for dataset in (self.train_dataset, self.eval_dataset):  # keep the teacher's own tokenization
            for column in getattr(dataset, "column_names", None) or []:
                if column.startswith(TEACHER_PREFIX) and column not in self._signature_columns:
                    self._signature_columns.append(column)

    def create_optimizer(self, model=None):
        optimizer = super().create_optimizer(model)
        params = [p for p in self.distill_modules.parameters() if p.requires_grad]
        known = {id(p) for group in optimizer.param_groups for p in group["params"]}
        if params and id(params[0]) not in known:
            optimizer.add_param_group({"params": params, "weight_decay": self.args.weight_decay})
        return optimizer

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        """Checkpoints are saved as usual (their completion marker is written last); the final student is written to
        a temporary folder and moved into place, so a crash never leaves a half-written student."""
        if _internal_call:
            return super().save_model(output_dir, _internal_call)
        save_then_move(output_dir or self.args.output_dir, lambda tmp: super(DistillTrainer, self).save_model(tmp))

    def _save_checkpoint(self, model, trial) -> None:
        super()._save_checkpoint(model, trial)
        if self.args.should_save:
            checkpoint = os.path.join(self._get_output_dir(trial=trial), f"checkpoint-{self.state.global_step}")
            mark_complete(checkpoint, self.state.global_step)

    def _save_optimizer_and_scheduler(self, output_dir: str) -> None:
        super()._save_optimizer_and_scheduler(output_dir)
        if len(self.distill_modules) and self.args.should_save:
            state = {k: v.detach().cpu().contiguous() for k, v in self.distill_modules.state_dict().items()}
            save_file(state, os.path.join(output_dir, DISTILL_MODULES_NAME))

    def _load_optimizer_and_scheduler(self, checkpoint: str | None) -> None:
        if checkpoint is not None and len(self.distill_modules):
            path = os.path.join(checkpoint, DISTILL_MODULES_NAME)
            if os.path.isfile(path):
                self.distill_modules.load_state_dict(load_file(path, device=str(self.args.device)))
            else:
                logger.warning("%s has no %s: the loss projections start afresh", checkpoint, DISTILL_MODULES_NAME)
        super()._load_optimizer_and_scheduler(checkpoint)


class HeadInput:
    """`with HeadInput(model) as captured: model(**inputs)`: the input of the model's output layer (its last hidden
    states, after the final norm) is kept in `captured.hidden`, and the layer itself is given an empty slice of
    positions, so that the forward pass builds no logits. The model is still called as a whole (a DDP wrapper's
    hooks run as usual)."""

    def __init__(self, model: nn.Module):
        self.head = model.get_output_embeddings()
        if self.head is None:
            raise ValueError(f"{type(model).__name__} has no output layer (get_output_embeddings() is None): the "
                             "causal-lm losses read the last hidden states through it.")  # fmt: skip
        self.hidden = None
        self._handle = None

    def _hook(self, module, args):
        self.hidden = args[0]
        return (args[0][..., :0, :],) + tuple(args[1:])

    def __enter__(self) -> HeadInput:
        self._handle = self.head.register_forward_pre_hook(self._hook)
        return self

    def __exit__(self, *exc) -> None:
        self._handle.remove()
        if self.hidden is None and exc[0] is None:
            raise RuntimeError("the output layer was not called on the hidden states: this architecture is not "
                               "supported by the chunked causal-lm losses.")  # fmt: skip


class _ClearGradients(TrainerCallback):
    """Clears a module's gradients after every optimizer step (for modules that live outside the student)."""

    def __init__(self, module: nn.Module):
        self.module = module

    def on_optimizer_step(self, args, state, control, **kwargs):
        self.module.zero_grad(set_to_none=True)
