"""The teacher stage: load a teacher (a checkpoint, a base model or a LoRA adapter) and fine-tune it when needed."""

from __future__ import annotations

import dataclasses
import glob
import json
import logging
import os
import shutil
from typing import Any

import torch
from accelerate.state import AcceleratorState
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer, PreTrainedModel, Trainer
from transformers.utils import is_torch_bf16_gpu_available

from .checks import total_steps
from .config import DistillConfig, TeacherArguments
from .metrics import evaluate_model
from .progress import TimeEstimate, announce
from .resilience import ExactResume, MarkCheckpoints, TrainingClock, latest_checkpoint, save_then_move

logger = logging.getLogger(__name__)

ADAPTER_CONFIG = "adapter_config.json"


def is_adapter_dir(path: str) -> bool:
    return os.path.isfile(os.path.join(path, ADAPTER_CONFIG))


def _adapter_base(path: str) -> str:
    with open(os.path.join(path, ADAPTER_CONFIG), encoding="utf-8") as f:
        return json.load(f)["base_model_name_or_path"]


def check_weights(path: str, what: str, allow_pickle: bool = False) -> None:
    """A local model directory must hold safetensors weights; pickle checkpoints only with `allow_pickle`."""
    if not os.path.isdir(path):
        return  # a hub name: from_pretrained fetches it (use_safetensors refuses a pickle-only repository)
    if glob.glob(os.path.join(path, "*.safetensors")):
        return
    pickles = [os.path.basename(p) for p in glob.glob(os.path.join(path, "*.bin"))]
    if pickles and allow_pickle:
        return
    if pickles:
        raise ValueError(
            f"{what} directory {path!r} holds only pickle weights {pickles}, which distillkit does not load by "
            "default (unpickling can run code). Convert them once to safetensors (`from_pretrained(dir)` then "
            "`save_pretrained(dir)` where you trust the files), or pass --allow_pickle_weights."
        )
    raise ValueError(f"{what} directory {path!r} holds no model weights (*.safetensors); point to a saved model.")


def has_trained_head(name_or_path: str, trust_remote_code: bool = False) -> bool:
    """Whether the checkpoint already carries a sequence-classification head (else it is a base model)."""
    if os.path.isdir(name_or_path) and is_adapter_dir(name_or_path):
        return True  # a task adapter: LoRA weights plus the trained head
    config = AutoConfig.from_pretrained(name_or_path, trust_remote_code=trust_remote_code)
    return any(a.endswith("ForSequenceClassification") for a in (config.architectures or []))


def load_tokenizer(name_or_path: str, trust_remote_code: bool = False) -> Any:
    """The teacher's tokenizer; for an adapter directory without tokenizer files, its base model's."""
    try:
        return AutoTokenizer.from_pretrained(name_or_path, trust_remote_code=trust_remote_code)
    except (OSError, ValueError):
        if os.path.isdir(name_or_path) and is_adapter_dir(name_or_path):
            return AutoTokenizer.from_pretrained(_adapter_base(name_or_path), trust_remote_code=trust_remote_code)
        raise


def load_teacher(
    name_or_path: str,
    label_names: tuple[str, ...] | None = None,
    *,
    new_head: bool = False,
    trust_remote_code: bool = False,
    allow_pickle: bool = False,
) -> PreTrainedModel:
    """Load the teacher as an `AutoModelForSequenceClassification`.

    An adapter directory (`adapter_config.json`) is loaded onto its base model and merged (plain weights are faster
    to run). A base checkpoint, or any checkpoint with `new_head`, gets a fresh head for `label_names` (() means
    one regression output). A trained head is kept, and must have as many labels as the task.
    """
    check_weights(name_or_path, "teacher", allow_pickle)
    safetensors_only = not allow_pickle
    if os.path.isdir(name_or_path) and is_adapter_dir(name_or_path):
        from peft import AutoPeftModelForSequenceClassification

        model = AutoPeftModelForSequenceClassification.from_pretrained(
            name_or_path, trust_remote_code=trust_remote_code, use_safetensors=True
        )
        logger.info("teacher: LoRA adapter %s merged into its base model", name_or_path)
        return model.merge_and_unload()
    if label_names is not None and (new_head or not has_trained_head(name_or_path, trust_remote_code)):
        num_labels = len(label_names) or 1
        return AutoModelForSequenceClassification.from_pretrained(
            name_or_path,
            trust_remote_code=trust_remote_code,
            use_safetensors=safetensors_only,
            num_labels=num_labels,
            id2label=dict(enumerate(label_names or ("score",))),
            label2id={n: i for i, n in enumerate(label_names or ("score",))},
            problem_type="regression" if num_labels == 1 else "single_label_classification",
            ignore_mismatched_sizes=new_head,
        )
    model = AutoModelForSequenceClassification.from_pretrained(
        name_or_path, trust_remote_code=trust_remote_code, use_safetensors=safetensors_only
    )
    if label_names is not None and model.config.num_labels != (len(label_names) or 1):
        raise ValueError(
            f"the teacher {name_or_path!r} was fine-tuned with {model.config.num_labels} labels but the task has "
            f"{len(label_names) or 1}. Use a teacher for this task, a base checkpoint (it is fine-tuned first), or "
            "--finetune_teacher always to give it a new head."
        )
    return model


def _stage_precision(args: DistillConfig, teacher_args: TeacherArguments) -> dict[str, bool]:
    """The teacher stage's precision flags: --teacher_bf16 on a bf16 GPU, or on the CPU (transformers wants use_cpu
    said there); a GPU without bf16 trains the teacher in fp32, with a warning."""
    if args.bf16 or not teacher_args.teacher_bf16 or is_torch_bf16_gpu_available():
        return {"bf16": args.bf16 or teacher_args.teacher_bf16}
    if torch.cuda.is_available():
        logger.warning("--teacher_bf16: this GPU has no bf16, the teacher stage trains in fp32")
        return {"bf16": False}
    return {"bf16": True, "use_cpu": True}


def finetune_teacher(
    teacher: PreTrainedModel,
    tokenizer: Any,
    train_dataset: Any,
    eval_dataset: Any,
    args: DistillConfig,
    teacher_args: TeacherArguments,
    compute_metrics: Any,
    stage: str = "teacher",
    resume: bool = False,
) -> tuple[PreTrainedModel, dict[str, float]]:
    """Fine-tune the teacher on the task (fully, or with LoRA and then merged), save it under
    `<output_dir>/<stage>`, and return it with its evaluation metrics (empty without an eval set).

    The stage runs at least `teacher_min_steps` optimisation steps: on a small data set a few epochs are only a few
    dozen steps, too few for a fine-tuning that beats the majority class.
    """
    output_dir = os.path.join(args.output_dir, stage)  # teacher, or teacher-2 ... for an ensemble's other teachers
    max_steps = teacher_args.teacher_max_steps
    if max_steps <= 0 and teacher_args.teacher_min_steps > 0:
        epochs = teacher_args.teacher_num_train_epochs
        planned = total_steps(args, len(train_dataset), teacher_args.teacher_batch_size, epochs)
        if planned < teacher_args.teacher_min_steps:
            max_steps = teacher_args.teacher_min_steps
            logger.info(
                "teacher stage: %g epochs of %d rows are %d steps, fewer than teacher_min_steps: training %d steps",
                teacher_args.teacher_num_train_epochs,
                len(train_dataset),
                planned,
                max_steps,
            )
    stage_args = dataclasses.replace(
        args,
        output_dir=output_dir,
        learning_rate=teacher_args.teacher_learning_rate,
        num_train_epochs=teacher_args.teacher_num_train_epochs,
        max_steps=max_steps,
        per_device_train_batch_size=teacher_args.teacher_batch_size,
        eval_strategy="no",
        save_strategy="steps" if teacher_args.teacher_save_steps else "no",
        save_steps=teacher_args.teacher_save_steps or args.save_steps,
        save_total_limit=1,
        load_best_model_at_end=False,
        push_to_hub=False,
        **_stage_precision(args, teacher_args),
    )
    model = teacher
    if teacher_args.teacher_lora_r:
        from peft import LoraConfig, TaskType, get_peft_model

        lora = LoraConfig(
            task_type=TaskType.SEQ_CLS,
            r=teacher_args.teacher_lora_r,
            lora_alpha=teacher_args.teacher_lora_alpha or 2 * teacher_args.teacher_lora_r,
            lora_dropout=0.1,
        )
        model = get_peft_model(teacher, lora)
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        logger.info("teacher stage: LoRA r=%d, %d trainable parameters", teacher_args.teacher_lora_r, trainable)
    announce(f"{stage} stage", f"fine-tuning the teacher on {len(train_dataset):,} rows before distilling")
    trainer = _TeacherTrainer(
        model=model,
        args=stage_args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        processing_class=tokenizer,
        compute_metrics=compute_metrics,
        callbacks=[TimeEstimate("teacher stage"), MarkCheckpoints()],
    )
    checkpoint = latest_checkpoint(output_dir) if resume else None  # a stopped teacher stage goes on from there
    clock = TrainingClock(checkpoint)
    trainer.add_callback(clock)  # after MarkCheckpoints: it adds its figure to the marker
    if checkpoint:
        logger.info("teacher stage: resuming from %s", checkpoint)
    trainer.train(resume_from_checkpoint=checkpoint)
    mixed_for_stage_only = stage_args.bf16 and not args.bf16
    if mixed_for_stage_only:  # --teacher_bf16: the autocast wrapper goes, the teacher is evaluated and run in fp32
        # accelerate wrapped the instance's forward in autocast; the class's own forward is the fp32 one
        if trainer.model.__dict__.pop("_original_forward", None) is not None:
            trainer.model.__dict__.pop("forward", None)
        AcceleratorState._reset_state()  # the student's Accelerator sets its own precision (the process group stays)
    if teacher_args.teacher_lora_r:
        model = model.merge_and_unload()
    if eval_dataset is None:
        metrics = {}
    elif mixed_for_stage_only:
        fp32 = dataclasses.replace(stage_args, bf16=False)
        metrics = evaluate_model(model, tokenizer, eval_dataset, fp32, compute_metrics, prefix="teacher_eval")
    else:
        metrics = trainer.evaluate(metric_key_prefix="teacher_eval")
    model.distillkit_train_seconds = clock.seconds  # training alone, over every resumption (None: not known)
    if args.should_save:  # complete or absent: a resumed run reuses this teacher

        def save(tmp: str) -> None:
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
            with open(os.path.join(tmp, "eval_results.json"), "w", encoding="utf-8") as f:
                json.dump(metrics, f, indent=2)

        save_then_move(output_dir, save)
        for done in glob.glob(os.path.join(output_dir, "checkpoint-*")):  # the stage is complete: its model is saved
            shutil.rmtree(done, ignore_errors=True)
    return model.eval(), metrics


class _TeacherTrainer(ExactResume, Trainer):
    """The teacher stage's `Trainer`: resumes exactly from its checkpoints."""
