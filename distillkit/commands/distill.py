"""`distillkit distill`: distill a teacher into a student, the whole job in one command.

    distillkit distill --teacher DIR_OR_HUB_NAME --student tiny --task sst2 --output_dir outputs/student
    distillkit distill --teacher DIR --student teacher:3 --train_file train.tsv --validation_file dev.tsv
    accelerate launch -m distillkit distill --config recipes/sst2-bert-base-to-tiny.yaml

A teacher without a trained classification head (a base checkpoint) is fine-tuned on the task first. Every
DistillConfig / TrainingArguments field is a flag (`--help` lists them); `--config` reads a YAML recipe whose fields
the flags override. `--resume_from_checkpoint latest` continues an interrupted run. Bad input exits with code 2 and
a message that names the fix (`--debug` shows the traceback); an interruption (Ctrl-C, SIGTERM) writes a checkpoint
and exits with 130 / 143; a NaN loss exits with 4; a failed push with 3.
"""

from __future__ import annotations

import logging
import sys

from ..recipe import RunResult, run
from ..recipes import parse_args
from . import invocation


def main(argv: list[str] | None = None) -> RunResult:
    argv = list(sys.argv[1:] if argv is None else argv)
    model_args, data_args, teacher_args, args = parse_args(argv, prog=" ".join(invocation("distill")))
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    return run(model_args, data_args, teacher_args, args, command=[*invocation("distill"), *argv])
