"""One configuration system: the dataclasses are the schema, a recipe is flat YAML of their fields, flags override."""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Sequence
from typing import Any

import yaml
from transformers import HfArgumentParser

from .arguments import DataArguments, ModelArguments, TeacherArguments
from .config import DistillConfig
from .defaults import given_fields


def build_parser(prog: str | None = None) -> HfArgumentParser:
    parser = HfArgumentParser((ModelArguments, DataArguments, TeacherArguments, DistillConfig), prog=prog)
    parser.add_argument("--config", default=None, help="A YAML recipe of the fields below; flags override it.")
    return parser


def load_recipe(path: str, parser: HfArgumentParser | None = None) -> dict[str, Any]:
    """Read a recipe: a flat YAML mapping of dataclass field names. Unknown keys are an error that names them."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"recipe {path!r} does not exist; pass --config path/to/recipe.yaml.")
    with open(path, encoding="utf-8") as f:
        values = yaml.safe_load(f) or {}
    if not isinstance(values, dict):
        raise ValueError(f"recipe {path!r} must be a flat mapping of field: value (got {type(values).__name__}).")
    known = {action.dest for action in (parser or build_parser())._actions}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"recipe {path!r} has unknown field(s) {unknown}; see `distillkit distill --help`.")
    return values


def parse_args(
    argv: Sequence[str] | None = None, prog: str | None = None
) -> tuple[ModelArguments, DataArguments, TeacherArguments, DistillConfig]:
    """Parse `--config recipe.yaml` (optional) and command-line flags into the four dataclasses; flags win."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(prog)
    known, _ = parser.parse_known_args(argv)
    recipe = load_recipe(known.config, parser) if known.config else {}
    if recipe:
        # the recipe becomes the parser's defaults, so any flag given on the command line overrides it
        parser.set_defaults(**recipe)
    # the fourth output is the namespace left over after the dataclasses took their fields (here: `config`)
    model_args, data_args, teacher_args, distill_args, _ = parser.parse_args_into_dataclasses(argv)
    # what the user set (flags and recipe fields): distillkit's defaults (`defaults.py`) fill in only the rest
    distill_args.distillkit_given = given_fields(argv, parser, recipe)
    return model_args, data_args, teacher_args, distill_args


def recipe_values(*configs: Any, keep: frozenset[str] | set[str] = frozenset()) -> dict[str, Any]:
    """The fields of these dataclasses that differ from their defaults, and those in `keep` (what the user set,
    which distillkit's defaults would otherwise fill in on a second run), as plain YAML values: the recipe of a run.

    Tokens are never included (any field ending in `_token`).
    """
    values: dict[str, Any] = {}
    for config in configs:
        # the fields' declared defaults, not a fresh instance: building a TrainingArguments resets accelerate's
        # process state, which under DDP would detach this process from its group
        for f in dataclasses.fields(config):
            if not f.init or f.name.endswith("_token"):
                continue
            value = getattr(config, f.name)
            if f.name == "teacher" and len(getattr(config, "teachers", ())) > 1:
                value = list(config.teachers)  # an ensemble: every teacher
            default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
            value = getattr(value, "value", value)  # enums -> their string
            if value == getattr(default, "value", default) and f.name not in keep:
                continue
            if not value and default in (None, "none", False, "", ()) and f.name not in keep:
                continue  # `__post_init__` turned an unset default into its empty form (None -> [], False)
            if not isinstance(value, (str, int, float, bool, list, dict, type(None))):
                continue  # objects `__post_init__` built from defaults (accelerator_config): not recipe values
            values[f.name] = value
    return values


# fields that name files or folders: written absolute (when they exist here) so the recipe works from any folder
PATH_FIELDS = ("teacher", "student", "train_file", "validation_file", "teacher_cache", "output_dir", "logging_dir")


def dump_recipe(
    path: str,
    *configs: Any,
    header: str = "",
    absolute_paths: bool = False,
    keep: frozenset[str] | set[str] = frozenset(),
) -> None:
    """Write `recipe_values(*configs)` as a flat YAML recipe that `--config` reads back.

    With `absolute_paths`, local paths (the output folder, and any other path field that exists on disk; hub names
    are left alone) are written absolute, so that the recipe runs the same from another folder.
    """
    values = recipe_values(*configs, keep=keep)
    if absolute_paths:

        def absolute(name: str, value: Any) -> Any:
            if isinstance(value, list):
                return [absolute(name, v) for v in value]
            if isinstance(value, str) and value and (name == "output_dir" or os.path.exists(value)):
                return os.path.abspath(value)
            return value

        for name in PATH_FIELDS:
            if name in values:
                values[name] = absolute(name, values[name])
    with open(path, "w", encoding="utf-8") as f:
        if header:
            f.write("".join(f"# {line}\n" for line in header.splitlines()))
        yaml.safe_dump(values, f, sort_keys=False)
