"""The main job as a recipe: data -> teachers (fine-tuned first if needed) -> student -> distillation -> outputs.

`DistillRecipe` runs it as named steps (torchtune's recipes): `load_data`, `load_teachers`, `build_student`,
`tokenize`, `check`, `teacher_stage`, `finish_student`, `prune_in_steps`, `make_trainer`, `write_run_files`, `train`,
`evaluate`, `write_outputs`, `push`. A subclass, or the SST-2 benchmark, calls or overrides any of them. Every check on
the inputs runs before anything is written to the output directory; the first write is the run's recipe, just before
training starts.
"""

from __future__ import annotations

import copy
import logging
import os
import sys
from typing import Any

from datasets import DatasetDict, concatenate_datasets
from transformers import set_seed

from .arguments import DataArguments, ModelArguments, TeacherArguments
from .checks import (
    check_evaluation,
    check_report_to,
    check_trim,
    fit_max_seq_length,
    scaled_logging_steps,
    teacher_reads_student_tokens,
    warn_if_not_smaller,
)
from .cli import invocation
from .config import DistillConfig
from .data import member_prefix, tokenize_dataset
from .data.unlabeled import (
    augment_cache_dir,
    augment_source,
    extra_rows,
    load_unlabeled,
    training_texts,
    with_teacher_only_rows,
)
from .defaults import choose_defaults
from .hub import push_student, teacher_scores_line
from .metrics import evaluate_model
from .plan import build_plan, weights_text
from .progress import TimeEstimate, announce
from .prune_schedule import run_prune_steps, step_shapes
from .recipe_steps import (
    DATA_REPORT,
    PRUNE_REPORT,
    RunResult,
    check_writable,
    load_run_data,
    make_student,
    prune_student,
    resolve_run_task_type,
    train_with_signals,
    used_features,
    write_outputs,
    write_run_files,
)
from .resilience import StopOnSignal, finished_run, resolve_resume, resume_requested
from .run_teachers import ensemble_scores, load_teachers, member_tokenizers, pick_student_tokenizer, stage_members
from .students import format_size_table, size_report
from .students.dropout import set_attention_dropout
from .students.vocab import trim_embeddings, trim_vocabulary, with_teacher_ids
from .tasks import UnsupportedFeature
from .teacher_stage import finetune_teacher
from .trainer import DistillTrainer

logger = logging.getLogger(__name__)

_PUSH_FIELDS = ("push_to_hub", "hub_model_id", "hub_token", "hub_private_repo")

__all__ = ["DATA_REPORT", "PRUNE_REPORT", "DistillRecipe", "RunResult", "evaluate_model", "make_student",
           "pick_student_tokenizer", "run"]  # fmt: skip


class DistillRecipe:
    """One distillation run, as named steps that `run()` calls in order.

    Args:
        model_args, data_args, teacher_args, args: the four argument dataclasses (`parse_args` makes them).
        command: the command line recorded in the recipe and the card (default: this process's).
    """

    def __init__(
        self,
        model_args: ModelArguments,
        data_args: DataArguments,
        teacher_args: TeacherArguments,
        args: DistillConfig,
        command: list[str] | None = None,
    ):
        self.model_args, self.data_args, self.teacher_args, self.args = model_args, data_args, teacher_args, args
        self.command = command or [*invocation("distill"), *sys.argv[1:]]
        self.notes: list[str] = []  # warnings for the card
        self.trimmed = self.prune_report = self.extra = None
        self.aligned = False  # the teacher's columns are the student's tokens in the teacher's ids (--trim_vocab)
        self.defaults: list[Any] = []  # the defaults chosen for fields nobody set (defaults.Choice)

    # ---- the run ------------------------------------------------------------------------------------------------

    def run(self) -> RunResult:
        """Run the whole job. Everything that could fail after training is checked before the first step."""
        self.check_arguments()
        self.load_data()  # bad files fail before any model
        self.resume = resolve_resume(self.args.resume_from_checkpoint, self.args.output_dir)
        if self.resume is not None and (done := finished_run(self.args.output_dir, self.resume)) is not None:
            return RunResult(output_dir=self.args.output_dir, **done)
        check_writable(self.args.output_dir)
        self.load_teachers()
        self.build_student()
        self.choose_defaults()
        self.tokenize()
        self.check()
        self.show_plan()
        # ---- every input is checked (the teacher cache, when the trainer is built): outputs are written from here
        self.teacher_stage()
        self.finish_student()
        self.prune_in_steps()
        self.make_trainer()
        self.write_run_files()
        self.train()
        self.evaluate()
        self.write_outputs()
        self.push()
        return self.result

    def check_arguments(self) -> None:
        """Models given, push settings taken out of the arguments, logging integrations installed, the task type
        resolved and every feature asked for supported by it."""
        model_args, args = self.model_args, self.args
        if not model_args.teacher or not model_args.student:
            raise ValueError("--teacher and --student are required (a hub name or a local directory each).")
        # the hub settings are taken out of the arguments: nothing is pushed before the run is finished and
        # evaluated, and the token is neither pickled with the arguments nor written into the recipe
        self.push_settings = {k: getattr(args, k) for k in _PUSH_FIELDS}
        if self.push_settings["push_to_hub"] and not self.push_settings["hub_model_id"]:
            raise ValueError("--push_to_hub needs --hub_model_id NAME (the repository to create or update).")
        args.push_to_hub, args.hub_token = False, None
        check_report_to(args.report_to)
        self.task_type = resolve_run_task_type(self.data_args, model_args)
        self.task_type.check_features(used_features(model_args, self.data_args, self.teacher_args, args))

    def load_data(self) -> None:
        """The raw splits (`self.raw`), the GLUE task if any, the text columns, the data report; extra text only the
        teacher labels is read here too, so that a bad file fails before any model is loaded."""
        data_args, args = self.data_args, self.args
        self.task, self.raw, self.text_column, self.pair_column, self.data_report = load_run_data(
            data_args, self.task_type
        )
        self.unlabeled = None
        if data_args.unlabeled_file and not self.task_type.unlabeled_text:
            raise UnsupportedFeature(
                f"--unlabeled_file is not supported for task type {self.task_type.name!r}: untagged text gives the "
                "losses no word positions to read. Leave it out; --augment adds tagged copies of the training "
                "sentences instead."
            )
        if data_args.unlabeled_file:
            self.unlabeled = load_unlabeled(data_args.unlabeled_file, self.text_column, self.pair_column)
        if (self.unlabeled is not None or data_args.augment) and "kd" not in args.loss_weights():
            raise ValueError(
                "--unlabeled_file and --augment add rows that only the teacher labels, but alpha=0 trains on gold "
                "labels alone: set alpha > 0 (e.g. 0.5), or leave out the extra text."
            )
        check_evaluation(args, "validation" in self.raw)

    def load_teachers(self) -> None:
        """Every teacher (`self.setups`; the first is `self.teacher`), the student's tokenizer and whether each
        teacher reads its own tokenization."""
        model_args, args = self.model_args, self.args
        set_seed(args.seed)  # a base teacher gets a freshly initialised head: seeded, so that runs repeat
        self.setups = load_teachers(model_args, self.teacher_args, self.task, self.raw, self.data_args.label_column,
                                    args.output_dir, self.resume, self.task_type)  # fmt: skip
        self.ensemble = len(self.setups) > 1  # several teachers: an ensemble, checked in load_teachers
        first = self.setups[0]
        self.teacher, self.tokenizer = first.model, first.tokenizer
        self.student_tokenizer = pick_student_tokenizer(model_args, self.tokenizer)
        if self.student_tokenizer is not self.tokenizer:  # a task type may read one tokenization for both models
            shared = self.task_type.shared_tokenizer(self.tokenizer, self.student_tokenizer)
            if shared is not None:
                self.tokenizer = self.student_tokenizer = shared
        self.cross = self.student_tokenizer is not self.tokenizer  # each model tokenizes the text itself
        if self.cross:
            self.task_type.check_features(["cross_tokenizer"])
        if first.needs_stage:
            self.task_type.check_features(["teacher_stage"])
            if model_args.attention_dropout is not None:  # the stage trains it (a frozen teacher runs in eval mode)
                set_attention_dropout(self.teacher, model_args.attention_dropout)
        self.members = member_tokenizers(self.setups, self.student_tokenizer) if self.ensemble else None
        # the columns of each teacher that tokenizes differently from the student: "teacher_*", or "teacher_<k>_*"
        if self.ensemble:
            self.own_columns = {member_prefix(i + 1): t for i, t in enumerate(self.members) if t}
        else:
            self.own_columns = self.cross and self.tokenizer

    def build_student(self) -> None:
        """The student as built from the (base) teacher; rebuilt in `finish_student` after a teacher stage."""
        self.student = make_student(self.model_args, self.teacher, self.args.seed, self.task_type)
        if self.model_args.attention_dropout is not None:  # before the plan's probe times a step
            set_attention_dropout(self.student, self.model_args.attention_dropout)
        configs = {"teacher": self.teacher.config, "student": self.student.config}
        self.data_args.max_seq_length = fit_max_seq_length(self.data_args.max_seq_length, configs)

    def choose_defaults(self) -> None:
        """distillkit's defaults for the fields the command line and the recipe left unset (`defaults.py`): the
        measured recipes' learning rate for this kind of student, batch, warm-up, alpha, a sequence length from the
        data, and the teacher cache when only logits are distilled. Each is logged and written into the recipe."""
        self.defaults = choose_defaults(self)
        if any(c.field == "teacher_cache" for c in self.defaults):
            try:
                self.task_type.check_features(["teacher_cache"])
            except UnsupportedFeature:  # a task type without a cache: the live teacher, as before
                self.args.teacher_cache = None
                self.defaults = [c for c in self.defaults if c.field != "teacher_cache"]

    def encode_args(self) -> dict[str, Any]:
        """How every split is tokenized (`tokenize_dataset`'s arguments): columns, length, the task's labels."""
        return {
            "text_column": self.text_column,
            "text_pair_column": self.pair_column,
            "label_column": self.data_args.label_column,
            "max_seq_length": self.data_args.max_seq_length,
            "label_encoder": self.task_type.label_encoder(self.teacher.config),
        }

    def encode_rows(self, raw: Any, tokenizer: Any) -> Any:
        """Raw splits in one tokenizer's encoding: the task type's own encoding (words and tags), or
        `tokenize_dataset` with `encode_args`."""
        own = self.task_type.encode(raw, tokenizer, self.teacher.config, self.data_args.max_seq_length,
                                    self.data_args.label_all_subwords)  # fmt: skip
        return own if own is not None else tokenize_dataset(raw, tokenizer, **self.encode)

    def tokenize(self) -> None:
        """`self.teacher_data` in the teacher's tokenization, `self.data` in the student's (with the teacher's own
        columns when they differ), plus the rows only the teacher labels."""
        data_args, model_args, args = self.data_args, self.model_args, self.args
        encode = self.encode = self.encode_args()
        extra_args = self.add_labelled_augmentation()
        self.teacher_data = self.encode_rows(self.raw, self.tokenizer)
        self.extra, self.data_report["teacher_labelled"] = extra_rows(
            extra_args, self.unlabeled, self.raw["train"], self.teacher, self.tokenizer, self.text_column,
            self.pair_column, args.seed, augment_cache_dir(args.teacher_cache),
        )  # fmt: skip
        if model_args.trim_vocab:  # the student's own tokenizer: the teacher's, cut to the training text's tokens
            check_trim(model_args, args, self.ensemble, self.cross)
            texts, pairs = training_texts(self.raw["train"], self.extra, self.text_column, self.pair_column)
            texts = [" ".join(t) if isinstance(t, list) else t for t in texts]  # a tagger's words: the same tokens
            self.trimmed = trim_vocabulary(self.tokenizer, texts, pairs, model_args.trim_vocab_min_count)
            self.student_tokenizer, self.cross, self.own_columns = self.trimmed.tokenizer, True, self.tokenizer
            self.data_report["vocabulary"] = self.trimmed.report()
        own = self.own_columns
        data = None
        if own and self.trimmed is not None:
            # the teacher reads the student's tokens in its own ids, position for position, where a task type
            # encodes its own rows (a tagger's words carry their tags on sub-word positions) or a layer loss pairs
            # positions (or where asked); else it reads its own tokenization of the text (a rare word whole)
            data = self.task_type.encode(self.raw, self.student_tokenizer, self.teacher.config,
                                         data_args.max_seq_length, data_args.label_all_subwords)  # fmt: skip
            self.aligned = teacher_reads_student_tokens(model_args, args, data is not None)
            if self.aligned and data is None:
                data = tokenize_dataset(self.raw, self.student_tokenizer, **encode)
        if data is None and own:
            data = tokenize_dataset(self.raw, self.student_tokenizer, **encode, teacher_tokenizer=own)
        self.data = data or self.teacher_data
        if self.extra is not None:  # rows for the distillation terms only: no gold label
            train = with_teacher_only_rows(self.data["train"], self.extra, self.student_tokenizer, encode,
                                           None if self.aligned else own or None,
                                           self.task_type.no_label(self.teacher.config))  # fmt: skip
            self.data = DatasetDict({**self.data, "train": train})
            logger.info("training rows: %d labelled + %s labelled by the teacher alone", len(self.raw["train"]),
                        len(self.extra))  # fmt: skip
        if self.aligned:
            self.data = with_teacher_ids(self.data, self.trimmed.kept_ids)
            logger.info("the teacher reads the student's trimmed-vocabulary tokens in its own ids (positions match)")

    def add_labelled_augmentation(self) -> Any:
        """--augment for a task type whose augmented rows keep their gold labels (a tagger's: only `O` words are
        replaced): they join the labelled training rows here. Returns the data arguments for the rows only the
        teacher labels (augmentation off when it was done here)."""
        data_args, args = self.data_args, self.args
        if not data_args.augment:
            return data_args
        source = augment_source(data_args, self.teacher, self.tokenizer)
        added = self.task_type.augment_rows(self.raw["train"], source, data_args.augment, data_args.augment_p,
                                            args.seed, augment_cache_dir(args.teacher_cache))  # fmt: skip
        if added is None:
            return data_args
        self.data_report["augmented_labelled_rows"] = len(added)
        logger.info("training rows: %d labelled + %d augmented copies with their tags", len(self.raw["train"]),
                    len(added))  # fmt: skip
        train = self.raw["train"].select_columns(added.column_names)
        self.raw = DatasetDict({**self.raw, "train": concatenate_datasets([train, added])})
        rest = copy.copy(data_args)
        rest.augment = 0
        return rest

    def check(self) -> None:
        """The checks that need the models and the data: metrics, losses against the models, labels in use."""
        args, task = self.args, self.task
        self.compute_metrics = self.task_type.compute_metrics(self.teacher.config, task.metrics if task else None,
                                                              task.name if task else None)  # fmt: skip
        main = self.setups[args.intermediate_teacher - 1] if self.ensemble else self.setups[0]
        main_cross = self.members[args.intermediate_teacher - 1] is not None if self.ensemble else self.cross
        DistillTrainer.check_setup(self.student, main.model.config, args, self.data["train"], main_cross,
                                   self.task_type, args.intermediate_teacher == 1, self.aligned)  # fmt: skip
        if "labels" in self.data["train"].column_names:
            self.task_type.check_labels_in_use(self.data["train"]["labels"], self.teacher.config)
        warn_if_not_smaller(self.student.num_parameters(), self.teacher.num_parameters())  # shared tensors once
        scaled_logging_steps(args, len(self.data["train"]))

    def show_plan(self) -> None:
        """One block before anything trains: the teacher stage or not, the cache or the live teacher, the steps, batch
        and learning rate (and why), each part's time from a probe of a few passes on a real batch (`plan.py`)."""
        self.plan = build_plan(self)
        announce("plan", "what this run will do")
        logger.info("plan:\n%s", self.plan.text())

    def teacher_stage(self) -> None:
        """Fine-tune the teachers that need it (the first, then an ensemble's others); read earlier scores."""
        args, teacher_args, first = self.args, self.teacher_args, self.setups[0]
        self.result = RunResult(output_dir=args.output_dir, metrics={}, teacher_dir=first.stage_dir)
        self.result.read_teacher_metrics()
        if first.needs_stage:
            self.teacher, self.result.teacher_metrics = finetune_teacher(
                self.teacher, self.tokenizer, self.teacher_data["train"], self.teacher_data.get("validation"), args,
                teacher_args, self.compute_metrics, resume=resume_requested(args.resume_from_checkpoint),
                task_type=self.task_type,
            )  # fmt: skip
            first.model, self.result.teacher_dir = self.teacher, os.path.join(args.output_dir, "teacher")
            scores = teacher_scores_line(self.result.teacher_metrics)
            logger.info("teacher stage done: %s", scores or "(no validation data: not scored)")
            summary = self.compute_metrics.last_summary
            allow_weak, where = teacher_args.allow_weak_teacher, self.result.teacher_dir
            self.notes += self.task_type.check_teacher(summary, allow_weak, where)
        if self.ensemble:
            self.notes += stage_members(self.setups, self.raw, self.encode, args, teacher_args, self.compute_metrics,
                                        self.task_type)  # fmt: skip

    def finish_student(self) -> None:
        """The student from the fine-tuned teacher: rebuilt after a teacher stage, cut by importance for
        --student pruned, its embeddings trimmed for --trim_vocab."""
        model_args, first = self.model_args, self.setups[0]
        # after a stage in this run; a resumed run loaded the fine-tuned teacher before `build_student` already
        if first.needs_stage and model_args.init_from_teacher:
            self.student = make_student(model_args, self.teacher, self.args.seed, self.task_type)
        if model_args.student == "pruned":  # cut by importance, measured on the (fine-tuned) teacher
            steps = model_args.prune_steps
            self.prune_shapes = step_shapes(self.teacher.config, self.student, steps) if steps > 1 else None
            first = self.prune_shapes[0] if steps > 1 else None
            self.student, self.prune_report = prune_student(self, self.teacher_data, first)
        if self.trimmed is not None:
            self.student = trim_embeddings(self.student, self.trimmed.kept_ids)
        if model_args.attention_dropout is not None:
            set_attention_dropout(self.student, model_args.attention_dropout)

    def make_trainer(self) -> None:
        """The `DistillTrainer` (it checks and builds the teacher cache), and the models' sizes."""
        args, seq_len = self.args, self.data_args.max_seq_length
        announce("distillation", f"{len(self.data['train']):,} rows, losses {weights_text(args.loss_weights())}")
        self.trainer = self.new_trainer(self.student, args)
        sizes = {"teacher": size_report(self.teacher, seq_len), "student": size_report(self.student, seq_len)}
        sizes["student"]["initialisation"] = getattr(self.student, "distillkit_init_notes", [])
        self.result.sizes = sizes
        logger.info("model sizes (FLOPs per token at sequence length %d):\n%s", seq_len, format_size_table(sizes))

    def new_trainer(self, student: Any, args: DistillConfig) -> DistillTrainer:
        """A `DistillTrainer` of `student` with `args` on the run's data and teachers (the run's own, or one step of
        --prune_steps)."""
        self.stop = StopOnSignal()
        teacher_tok = {"teacher_processing_class": self.members if self.ensemble else self.tokenizer}
        return DistillTrainer(
            model=student,
            teacher=[s.model for s in self.setups] if self.ensemble else self.teacher,
            args=args,
            train_dataset=self.data["train"],
            eval_dataset=self.data.get("validation"),
            processing_class=self.student_tokenizer,
            compute_metrics=self.compute_metrics,
            callbacks=[self.stop, TimeEstimate("distillation")],
            task_type=self.task_type,
            **(teacher_tok if self.ensemble or self.cross else {}),
            aligned_teacher_tokens=self.aligned,
        )

    def prune_in_steps(self) -> None:
        """--prune_steps N: the steps before the last, each trained and cut further (`prune_schedule.py`); the
        student is then the last cut, which the recipe's own training distils for the last step's share."""
        if self.model_args.student == "pruned" and self.model_args.prune_steps > 1:
            run_prune_steps(self)

    def write_run_files(self) -> None:
        """The recipe, the size report, the data report (and the prune report), before the first step."""
        if self.args.should_save:  # the teacher cache was checked as the trainer was built: write the run down
            write_run_files(self)

    def train(self) -> None:
        """Train (a signal leaves a checkpoint and the command that resumes), then save the student."""
        trainer = self.trainer
        train_metrics = train_with_signals(trainer, self.resume, self.stop, self.command)
        trainer.save_model()  # the student and its tokenizer, loadable with plain transformers
        trainer.log_metrics("train", train_metrics)
        trainer.save_metrics("train", train_metrics)
        self.result.metrics = dict(train_metrics)

    def evaluate(self) -> None:
        """The student's validation scores, then the teacher's (or the ensemble's and each member's) beside them."""
        trainer, args, result = self.trainer, self.args, self.result
        if "validation" in self.data:
            announce("evaluation", f"{len(self.data['validation']):,} validation rows")
            eval_metrics = trainer.evaluate()
            trainer.log_metrics("eval", eval_metrics)
            trainer.save_metrics("eval", eval_metrics)
            result.metrics.update(eval_metrics)
            self.notes += self.task_type.prediction_notes("student", self.compute_metrics.last_summary)
        trainer.save_state()
        if "validation" in self.data and self.ensemble:  # the ensemble's scores for the card, and each teacher's
            result.teacher_metrics, result.members = ensemble_scores(trainer, self.setups, self.raw, self.encode,
                                                                     args, self.compute_metrics)  # fmt: skip
        elif "validation" in self.data and not result.teacher_metrics:  # the teacher's, for the card's comparison
            collator = self.task_type.data_collator(self.tokenizer)
            result.teacher_metrics = evaluate_model(self.teacher, self.tokenizer, self.teacher_data["validation"],
                                                    args, self.compute_metrics, prefix="teacher_eval",
                                                    data_collator=collator)  # fmt: skip
            self.notes += self.task_type.prediction_notes("teacher", self.compute_metrics.last_summary)

    def write_outputs(self) -> None:
        """The teacher's scores, latencies and the model card."""
        if self.args.should_save:
            write_outputs(self)

    def push(self) -> None:
        """Push the finished student (the main process, once)."""
        push = self.push_settings
        if push["push_to_hub"] and self.args.should_save:
            push_student(self.args.output_dir, push["hub_model_id"], push["hub_token"], push["hub_private_repo"])


def run(
    model_args: ModelArguments,
    data_args: DataArguments,
    teacher_args: TeacherArguments,
    args: DistillConfig,
    command: list[str] | None = None,
) -> RunResult:
    """Run the whole job (`DistillRecipe(...).run()`)."""
    return DistillRecipe(model_args, data_args, teacher_args, args, command).run()
