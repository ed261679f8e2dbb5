"""`DistillTrainer`: a `transformers.Trainer` whose loss is a weighted sum of registered distillation losses."""

from __future__ import annotations

import logging
import os
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import PreTrainedModel, Trainer
from transformers.modeling_outputs import SequenceClassifierOutput

from .cache import INDEX_COLUMN, load_or_build
from .collator import DistillCollator
from .config import INTERMEDIATE_WEIGHTS, DistillConfig
from .data import TEACHER_PREFIX
from .losses.layer_map import LayerMap, build_layer_map
from .losses.registry import LossInputs, LossSpec, get_loss
from .losses.relations import QKVCapture, find_qkv
from .metrics import build_compute_metrics
from .resilience import NonFiniteLossError, mark_complete, save_then_move
from .teacher import Teacher, check_teacher_student

logger = logging.getLogger(__name__)

DISTILL_MODULES_NAME = "distill_modules.safetensors"
_LABEL_COLUMNS = ("labels", "label", "label_ids")


class DistillTrainer(Trainer):
    """Trains `model` (the student) to imitate `teacher`.

        trainer = DistillTrainer(model=student, teacher=teacher, args=DistillConfig(...),
                                 train_dataset=..., eval_dataset=..., processing_class=tokenizer)

    The loss is `sum(weight * term)` over the losses that `args.loss_weights()` turns on, each looked up in the loss
    registry; every term is logged on its own as `loss_<name>`. Override `teacher_forward` or `compute_distill_loss`
    in a subclass to change how the teacher is run or how the terms are combined. Learned projections of the
    intermediate losses live in `self.distill_modules`: they are optimised with the student, saved in checkpoints,
    and never written into the saved student.
    """

    # compute_distill_loss returns a per-batch mean: let the Trainer divide it by the accumulation steps
    loss_is_scaled_for_ga = False

    def __init__(
        self,
        model: PreTrainedModel | None = None,
        teacher: PreTrainedModel | Teacher | None = None,
        args: DistillConfig | None = None,
        **kwargs: Any,
    ):
        if model is None or teacher is None:
            raise ValueError("DistillTrainer needs both a student (model=...) and a teacher (teacher=...).")
        if args is None:
            args = DistillConfig(output_dir="distill_output")
        if not isinstance(args, DistillConfig):
            raise TypeError(
                f"args must be a DistillConfig (got {type(args).__name__}); it carries the distillation "
                "fields (temperature, alpha, loss weights, layer map)."
            )
        teacher_model = teacher.model if isinstance(teacher, Teacher) else teacher
        teacher_tokenizer = kwargs.pop("teacher_processing_class", None)
        columns = getattr(kwargs.get("train_dataset"), "column_names", None) or []
        self.cross_tokenizer = teacher_tokenizer is not None or TEACHER_PREFIX + "input_ids" in columns
        self.loss_weights, self.loss_specs, self.layer_map = self.check_setup(
            model, teacher_model.config, args, kwargs.get("train_dataset"), cross_tokenizer=self.cross_tokenizer
        )
        if self.cross_tokenizer and kwargs.get("data_collator") is None:
            if kwargs.get("processing_class") is None or teacher_tokenizer is None:
                raise ValueError(
                    "the data holds the teacher's own tokenization (teacher_* columns): give both tokenizers, "
                    "processing_class=student_tokenizer and teacher_processing_class=teacher_tokenizer, so that "
                    "each encoding is padded with its own pad token."
                )
            kwargs["data_collator"] = DistillCollator(kwargs["processing_class"], teacher_tokenizer)
        self._needs_hidden = any(spec.needs_hidden_states for spec in self.loss_specs.values())
        self._needs_attn = any(spec.needs_attentions for spec in self.loss_specs.values())
        # alpha=0 and no other term: plain fine-tuning on the labels (a baseline), the teacher is never run
        self._needs_teacher = any(spec.needs_teacher for spec in self.loss_specs.values())
        if self._needs_attn and getattr(model.config, "_attn_implementation", "eager") != "eager":
            model.set_attn_implementation("eager")  # SDPA never materialises the attention maps
        if kwargs.get("compute_metrics") is None:
            kwargs["compute_metrics"] = build_compute_metrics(model.config.num_labels)

        super().__init__(model=model, args=args, **kwargs)

        # (re)wrapped here: which outputs the teacher must return depends on the active losses
        self.teacher = Teacher(
            teacher_model,
            dtype=args.teacher_dtype,
            device=args.device,
            output_hidden_states=self._needs_hidden,
            output_attentions=self._needs_attn,
        )
        built = {
            name: spec.build_module(model.config, teacher_model.config, self.layer_map)
            for name, spec in self.loss_specs.items()
            if spec.build_module is not None
        }
        self.distill_modules = nn.ModuleDict({k: m for k, m in built.items() if m is not None}).to(args.device)
        self._qkv = None  # (student capture, teacher capture) for losses that read the attention projections
        self._batch_qkv = None  # what they captured for the batch in compute_loss
        if any(spec.needs_qkv for spec in self.loss_specs.values()):
            self._qkv = (
                QKVCapture(model, -1, model.config.num_hidden_layers),
                QKVCapture(teacher_model, args.minilm_layer, teacher_model.config.num_hidden_layers),
            )
        self._cached_logits = None
        if args.teacher_cache and self.train_dataset is not None and self._needs_teacher:
            with args.main_process_first(desc="teacher cache"):  # the main process computes, the others read
                self._cached_logits = load_or_build(
                    args.teacher_cache, self.teacher, teacher_model, self.processing_class, self.train_dataset,
                    self.data_collator, batch_size=args.per_device_eval_batch_size, backend=args.teacher_backend,
                    progress=not args.disable_tqdm,
                )  # fmt: skip
            self.train_dataset = self.train_dataset.add_column(INDEX_COLUMN, list(range(len(self.train_dataset))))
        self._term_sums: dict[str, torch.Tensor] = {}
        self._term_steps = 0
        logger.info("distillation losses %s, layer map %s", self.loss_weights, self.layer_map)

    @staticmethod
    def check_setup(
        model: PreTrainedModel,
        teacher_config: Any,
        args: DistillConfig,
        train_dataset: Any = None,
        cross_tokenizer: bool = False,
    ) -> tuple[dict[str, float], dict[str, LossSpec], LayerMap]:
        """Every check that can fail before training, without building anything: teacher / student fit, the loss
        names, the layer map, and labels for the losses that need them. Returns (weights, loss specs, layer map)."""
        check_teacher_student(teacher_config, model.config, cross_tokenizer)
        weights = args.loss_weights()
        specs = {name: get_loss(name) for name in weights}
        layer_map = build_layer_map(args.layer_map, model.config.num_hidden_layers, teacher_config.num_hidden_layers)
        needing = [n for n, s in specs.items() if s.needs_hidden_states or s.needs_attentions or s.needs_qkv]
        if cross_tokenizer and needing:
            raise ValueError(
                f"the teacher and the student use different tokenizers, so their token positions do not line up and "
                f"the intermediate-layer losses {needing} cannot be computed. Set their weights to 0 "
                f"({' '.join(f'--{w} 0' for w in INTERMEDIATE_WEIGHTS)}) to distill the logits only, or use "
                "a student that shares the teacher's tokenizer (a preset, custom or teacher:K student)."
            )
        if args.teacher_cache and needing:
            raise ValueError(
                f"--teacher_cache holds the teacher's logits only, but the losses {needing} need its hidden states "
                "or attention maps; turn those losses off or train without the cache."
            )
        if "minilm" in specs:
            heads = args.minilm_heads or model.config.num_attention_heads
            widths = {"student": model.config.hidden_size, "teacher": teacher_config.hidden_size}
            if any(w % heads for w in widths.values()):
                raise ValueError(
                    f"minilm_heads={heads} must divide both widths {widths}: the relations re-split Q, K and V into "
                    "that many heads. Set --minilm_heads to a common divisor."
                )
            args.minilm_heads = heads
            find_qkv(model)  # an architecture without query / key / value projections is refused here
        needs_labels = [name for name, spec in specs.items() if spec.needs_labels]
        columns = getattr(train_dataset, "column_names", None)
        if needs_labels and columns is not None and not any(c in columns for c in _LABEL_COLUMNS):
            raise ValueError(
                f"the losses {needs_labels} need gold labels, but the training data has no label column (columns: "
                f"{columns}). Add a 'labels' column (--label_column NAME) or distill from the teacher alone with "
                "alpha=1.0."
            )
        return weights, specs, layer_map

    # ---- the hooks -----------------------------------------------------------------------------------------------

    def teacher_forward(self, inputs: dict[str, Any]) -> Any:
        """Run the frozen teacher on the batch; returns its outputs (logits, and states / maps if a loss needs them).
        Training batches read the logits from the teacher cache when there is one."""
        index = inputs.get(INDEX_COLUMN)
        if index is not None and self._cached_logits is not None:
            return SequenceClassifierOutput(logits=self._cached_logits[index.cpu()].to(self.args.device))
        return self.teacher(inputs)

    def compute_distill_loss(
        self, student_outputs: Any, teacher_outputs: Any, inputs: dict[str, Any]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Combine the active registered losses: returns (weighted sum, {name: unweighted detached term})."""
        labels = inputs.get("labels")
        total = None
        terms: dict[str, torch.Tensor] = {}
        for name, weight in self.loss_weights.items():
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
                )
            )
            terms[name] = value.detach()
            total = weight * value if total is None else total + weight * value
        # one host sync per step: a NaN must stop the run at the step where it appears, not poison the checkpoints
        if not bool(torch.isfinite(torch.stack([t.float() for t in terms.values()])).all()):
            bad = {n: v.item() for n, v in terms.items() if not torch.isfinite(v)}
            raise NonFiniteLossError(
                f"loss term(s) {bad} became non-finite at step {self.state.global_step}. Likely causes: fp16 overflow "
                "in the teacher (use --teacher_dtype bfloat16 or float32) or in the student (--bf16 instead of "
                "--fp16), or a learning rate too high (lower --learning_rate)."
            )
        return total, terms

    # ---- Trainer overrides ---------------------------------------------------------------------------------------

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        # the student computes no loss of its own: labels are only for the registered losses
        student_inputs = {
            k: v for k, v in inputs.items() if k not in ("labels", INDEX_COLUMN) and not k.startswith(TEACHER_PREFIX)
        }
        for capture in self._qkv or ():
            capture.start()
        student_outputs = model(
            **student_inputs, output_hidden_states=self._needs_hidden, output_attentions=self._needs_attn
        )
        teacher_outputs = self.teacher_forward(inputs) if self._needs_teacher else None
        self._batch_qkv = tuple(c.take() for c in self._qkv) if self._qkv else None
        loss, terms = self.compute_distill_loss(student_outputs, teacher_outputs, inputs)
        if model.training:
            for name, value in terms.items():
                self._term_sums[name] = self._term_sums.get(name, 0.0) + value
            self._term_steps += 1
        if return_outputs:
            # only the logits go on to evaluation: hidden states and attention maps would be gathered as predictions
            return loss, {"loss": loss, "logits": student_outputs.logits}
        return loss

    def training_step(self, model, inputs, num_items_in_batch=None):
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
            means = torch.stack([torch.as_tensor(self._term_sums[n]) for n in names]).float() / self._term_steps
            means = self.accelerator.reduce(means.to(self.args.device), reduction="mean")
            for name, value in zip(names, means.tolist()):
                logs[f"loss_{name}"] = round(value, 6)
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
