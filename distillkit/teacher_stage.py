"""The teacher stage: fine-tune a teacher on the task (fully, or with LoRA and then merged) before distilling it."""

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
from transformers import PreTrainedModel, Trainer
from transformers.utils import is_torch_bf16_gpu_available

from .arguments import TeacherArguments
from .checks import cpu_has_fast_bf16, total_steps
from .config import DistillConfig
from .metrics import InOrderEvaluation, evaluate_model
from .progress import TimeEstimate, announce
from .resilience import ExactResume, MarkCheckpoints, TrainingClock, latest_checkpoint, save_then_move

logger = logging.getLogger(__name__)


def _stage_precision(args: DistillConfig, teacher_args: TeacherArguments) -> dict[str, bool]:
    """The teacher stage's precision flags: --teacher_bf16 on a bf16 GPU, or on a CPU with AVX-512 BF16 or AMX
    (transformers wants use_cpu said there); a GPU without bf16, or a CPU that would emulate it (several times slower
    than fp32), trains the teacher in fp32, with a warning."""
    if args.bf16 or not teacher_args.teacher_bf16 or is_torch_bf16_gpu_available():
        return {"bf16": args.bf16 or teacher_args.teacher_bf16}
    if torch.cuda.is_available():
        logger.warning("--teacher_bf16: this GPU has no bf16, the teacher stage trains in fp32")
        return {"bf16": False}
    if not cpu_has_fast_bf16():
        logger.warning("--teacher_bf16: this CPU has no AVX-512 BF16 or AMX (bf16 would be emulated, several times "
                       "slower than fp32): the teacher stage trains in fp32")  # fmt: skip
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
    task_type: Any = None,
) -> tuple[PreTrainedModel, dict[str, float]]:
    """Fine-tune the teacher on the task (fully, or with LoRA and then merged), save it under
    `<output_dir>/<stage>`, and return it with its evaluation metrics (empty without an eval set).

    `task_type` gives the LoRA stage its `peft` task type (required with `teacher_lora_r`).

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
        from peft import LoraConfig, get_peft_model

        peft_task = task_type.peft_task_type() if task_type is not None else None
        if peft_task is None:
            raise ValueError(
                f"--teacher_lora_r: task type {getattr(task_type, 'name', None)!r} has no LoRA teacher stage; "
                "fine-tune the teacher fully (leave out --teacher_lora_r)."
            )
        lora = LoraConfig(
            task_type=peft_task,
            r=teacher_args.teacher_lora_r,
            lora_alpha=teacher_args.teacher_lora_alpha or 2 * teacher_args.teacher_lora_r,
            lora_dropout=0.1,
        )
        model = get_peft_model(teacher, lora)
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        logger.info("teacher stage: LoRA r=%d, %d trainable parameters", teacher_args.teacher_lora_r, trainable)
    collator = task_type.data_collator(tokenizer) if task_type is not None else None
    announce(f"{stage} stage", f"fine-tuning the teacher on {len(train_dataset):,} rows before distilling")
    trainer = _TeacherTrainer(
        model=model,
        args=stage_args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        processing_class=tokenizer,
        compute_metrics=compute_metrics,
        data_collator=collator,
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
        metrics = evaluate_model(
            model, tokenizer, eval_dataset, fp32, compute_metrics, prefix="teacher_eval", data_collator=collator
        )
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


class _TeacherTrainer(InOrderEvaluation, ExactResume, Trainer):
    """The teacher stage's `Trainer`: resumes exactly from its checkpoints."""
