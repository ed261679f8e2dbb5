"""One student run of the benchmark (a student, a variant, a seed) as a `DistillRecipe`: the benchmark's own data
(a fixed shuffle, shared tokenization, the plan's teacher already fine-tuned) in place of the recipe's `load_data`,
`load_teachers` and `tokenize`; the recipe's own `build_student`, `check`, `finish_student` and `make_trainer`."""

from __future__ import annotations

from typing import Any

from datasets import DatasetDict

from ..checks import check_trim, teacher_reads_student_tokens
from ..config import INTERMEDIATE_WEIGHTS
from ..data import member_prefix, teacher_view, tokenize_dataset
from ..data.unlabeled import extra_rows, load_unlabeled, training_texts, with_teacher_only_rows
from ..recipe import DistillRecipe
from ..recipes import parse_args
from ..run_teachers import TeacherSetup, member_tokenizers, pick_student_tokenizer
from ..students.vocab import trim_vocabulary, with_teacher_ids
from ..tasks import get_task_type
from .plan import local_name


class BenchRun(DistillRecipe):
    """A distilled ("kd") or hard-label ("baseline") run of one plan entry."""

    def __init__(self, bench: Any, spec: dict[str, Any], variant: str, seed: int, flags: list[str],
                 teachers: list[tuple[Any, Any]]):  # fmt: skip
        model_args, data_args, teacher_args, args = parse_args(flags)
        model_args.student = local_name(model_args.student, bench.cli.local_models)
        if variant == "baseline":  # the gold labels alone: plain fine-tuning of the same student
            args.alpha, args.extra_losses, args.intermediate_epochs = 0.0, [], 0.0
            for weight in INTERMEDIATE_WEIGHTS:
                setattr(args, weight, 0.0)
        super().__init__(model_args, data_args, teacher_args, args, command=[])
        self.bench, self.spec, self.variant, self.seed = bench, spec, variant, seed
        self.teachers = teachers if variant == "kd" else teachers[:1]  # the baseline runs no other teacher
        self.task_type = get_task_type("sequence-classification")
        self.resume = None

    def prepare(self) -> None:
        """Everything up to the trainer: the recipe's steps, with the benchmark's data."""
        self.load_data()
        self.load_teachers()
        self.build_student()
        self.tokenize()
        self.check()
        self.teacher_stage()  # no teacher is fine-tuned here: this reads the plan teacher's scores
        self.finish_student()
        self.resume_steps = True  # --prune_steps: a step stopped with the session goes on from its checkpoint
        self.prune_in_steps()

    def load_data(self) -> None:
        bench, data_args = self.bench, self.data_args
        self.task, self.text_column, self.pair_column = bench.task, bench.text_column, None
        self.raw = DatasetDict(train=bench.subset(self.spec["train_samples"]), validation=bench.validation)
        self.data_report = {}
        self.unlabeled = None
        if self.variant == "kd" and data_args.unlabeled_file:
            self.unlabeled = load_unlabeled(data_args.unlabeled_file, self.text_column)

    def load_teachers(self) -> None:
        (teacher, teacher_tok), others = self.teachers[0], self.teachers[1:]
        self.setups = [TeacherSetup("teacher", "teacher", teacher, teacher_tok, False, self.bench.teacher_dir)]
        self.setups += [TeacherSetup(f"teacher-{i + 2}", f"teacher-{i + 2}", m, t, False, None)
                        for i, (m, t) in enumerate(others)]  # fmt: skip
        self.ensemble = len(self.setups) > 1
        self.teacher, self.tokenizer = teacher, teacher_tok
        self.student_tokenizer = pick_student_tokenizer(self.model_args, teacher_tok)
        self.cross = self.student_tokenizer is not teacher_tok
        if self.ensemble and self.cross:
            raise ValueError(f"{self.spec['name']}: an ensemble's student must share the plan teacher's tokenizer.")
        self.members = member_tokenizers(self.setups, self.student_tokenizer) if self.ensemble else None
        if self.ensemble:
            self.own_columns = {member_prefix(i + 1): t for i, t in enumerate(self.members) if t}
        else:
            self.own_columns = self.cross and teacher_tok

    def tokenize(self) -> None:
        """The student's tokenization, shared by the runs on the same rows and tokenizers; the text only the teacher
        labels (augmentation seed 0 for every seed: the runs share it and its teacher cache)."""
        bench, data_args, model_args, args = self.bench, self.data_args, self.model_args, self.args
        self.encode = self.encode_args()
        labelled = self.raw["train"]
        if self.variant == "kd" and (data_args.augment or data_args.unlabeled_file):
            self.extra, counts = extra_rows(data_args, self.unlabeled, labelled, self.teacher, self.tokenizer,
                                            self.text_column, None, 0, str(bench.out / "augment"))  # fmt: skip
            bench.log(f"{self.spec['name']}: {len(labelled)} labelled rows + {counts} labelled by the teacher")
        if model_args.trim_vocab:  # the teacher's vocabulary cut to this run's training text
            check_trim(model_args, args, self.ensemble, self.cross)
            texts, _ = training_texts(labelled, self.extra, self.text_column, None)
            self.trimmed = trim_vocabulary(self.tokenizer, texts, None, model_args.trim_vocab_min_count)
            # one tokenizer object per vocabulary: the tokenized data below is cached by its identity
            tokenizer = bench.trimmed_tokenizers.setdefault(tuple(self.trimmed.kept_ids), self.trimmed.tokenizer)
            self.trimmed.tokenizer = self.student_tokenizer = tokenizer
            self.cross, self.own_columns = True, self.tokenizer
            self.aligned = teacher_reads_student_tokens(model_args, args)  # a layer loss: the student's tokens
        own = None if self.aligned else self.own_columns or None
        key = (self.spec["train_samples"], id(self.student_tokenizer), tuple(own) if isinstance(own, dict) else
               (own is not None,))  # fmt: skip
        if key not in bench.data_cache:
            bench.data_cache[key] = tokenize_dataset(self.raw, self.student_tokenizer, **self.encode,
                                                     teacher_tokenizer=own)  # fmt: skip
        train = bench.data_cache[key]["train"]
        if self.extra is not None:
            train = with_teacher_only_rows(train, self.extra, self.student_tokenizer, self.encode,
                                           self.tokenizer if self.cross and not self.aligned else None)  # fmt: skip
        validation = bench.data_cache[key]["validation"]
        if self.aligned:  # the student's tokens in the teacher's ids, position for position
            train, validation = (with_teacher_ids(d, self.trimmed.kept_ids) for d in (train, validation))
        self.data = DatasetDict(train=train, validation=validation)
        # pruning scores the teacher's units on the rows it reads (a trimmed vocabulary's rows carry its ids too)
        self.teacher_data = {"train": teacher_view(train) if self.cross else train}
        if self.variant == "kd" and (args.intermediate_epochs or not any(getattr(args, w) for w in
                                                                          INTERMEDIATE_WEIGHTS)):  # fmt: skip
            # logit-only distillation (and stage 2 of the two-stage schedule) reads the teacher's logits from a
            # cache shared by the runs on the same data
            args.teacher_cache = str(bench.out / "teacher_cache" / train._fingerprint)
