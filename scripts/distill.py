#!/usr/bin/env python
"""Distill a fine-tuned sequence-classification teacher into a student.

    python scripts/distill.py --teacher DIR_OR_HUB_NAME --student DIR_OR_HUB_NAME \
        --train_file train.tsv --validation_file dev.tsv --output_dir outputs/student
    accelerate launch scripts/distill.py --config recipes/sst2-distilbert-to-tiny.yaml

Every DistillConfig / TrainingArguments field is a flag (`--help` lists them); `--config` reads a YAML recipe whose
fields the flags override.
"""

from __future__ import annotations

import logging
import os
import shlex
import sys

from transformers import AutoModelForSequenceClassification, AutoTokenizer, set_seed

from distillkit import DistillTrainer, load_files, parse_args, tokenize_dataset
from distillkit.hub import render_model_card
from distillkit.students import build_student, format_size_table, size_report, write_size_report

logger = logging.getLogger("distillkit")


def main(argv: list[str] | None = None) -> dict[str, float]:
    model_args, data_args, args = parse_args(argv)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    if not model_args.teacher or not model_args.student:
        raise SystemExit("error: --teacher and --student are required (a hub name or a local directory each).")

    # data first: a missing file or column fails before any model is loaded
    raw = load_files(data_args.train_file, data_args.validation_file)
    if "train" not in raw:
        raise SystemExit("error: --train_file is required to train a student.")
    for split, limit in (("train", data_args.max_train_samples), ("validation", data_args.max_eval_samples)):
        if limit is not None and split in raw:
            raw[split] = raw[split].select(range(min(limit, len(raw[split]))))

    trust = model_args.trust_remote_code
    tokenizer = AutoTokenizer.from_pretrained(model_args.teacher, trust_remote_code=trust)
    teacher = AutoModelForSequenceClassification.from_pretrained(
        model_args.teacher, trust_remote_code=trust, use_safetensors=True
    )
    set_seed(args.seed)  # the student's random initialisation is part of the run
    student = build_student(
        model_args.student,
        teacher,
        num_layers=model_args.num_layers,
        hidden_size=model_args.hidden_size,
        num_heads=model_args.num_heads,
        intermediate_size=model_args.intermediate_size,
        embedding_size=model_args.embedding_size,
        share_layers=model_args.share_layers,
        num_hidden_groups=model_args.num_hidden_groups,
        init_from_teacher=model_args.init_from_teacher,
        trust_remote_code=trust,
    )
    sizes = {
        "teacher": size_report(teacher, data_args.max_seq_length),
        "student": size_report(student, data_args.max_seq_length),
    }
    sizes["student"]["initialisation"] = getattr(student, "distillkit_init_notes", [])
    logger.info(
        "model sizes (FLOPs per token at sequence length %d):\n%s", data_args.max_seq_length, format_size_table(sizes)
    )
    if args.should_save:
        write_size_report(args.output_dir, sizes)

    data = tokenize_dataset(
        raw,
        tokenizer,
        text_column=data_args.text_column,
        text_pair_column=data_args.text_pair_column,
        label_column=data_args.label_column,
        max_seq_length=data_args.max_seq_length,
        label2id=teacher.config.label2id,
    )
    trainer = DistillTrainer(
        model=student,
        teacher=teacher,
        args=args,
        train_dataset=data["train"],
        eval_dataset=data.get("validation"),
        processing_class=tokenizer,
    )
    train_result = trainer.train(resume_from_checkpoint=args.resume_from_checkpoint)
    trainer.save_model()  # the student and its tokenizer, loadable with plain transformers
    trainer.log_metrics("train", train_result.metrics)
    trainer.save_metrics("train", train_result.metrics)
    metrics = dict(train_result.metrics)
    if "validation" in data:
        eval_metrics = trainer.evaluate()
        trainer.log_metrics("eval", eval_metrics)
        trainer.save_metrics("eval", eval_metrics)
        metrics.update(eval_metrics)
    trainer.save_state()
    if args.should_save:
        card = render_model_card(
            name=os.path.basename(os.path.normpath(args.output_dir)),
            teacher=model_args.teacher,
            sizes=sizes,
            loss_weights=trainer.loss_weights,
            temperature=args.temperature,
            layer_map=args.layer_map,
            command=shlex.join(["python", "scripts/distill.py", *(sys.argv[1:] if argv is None else argv)]),
            metrics={k: v for k, v in metrics.items() if k.startswith("eval_")},
        )
        with open(os.path.join(args.output_dir, "README.md"), "w", encoding="utf-8") as f:
            f.write(card)
    return metrics


if __name__ == "__main__":
    try:
        main()
    except (ValueError, FileNotFoundError) as err:  # bad input: say what is wrong and how to fix it, no traceback
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
