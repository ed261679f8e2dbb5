"""Task-neutral loading: the weights check (safetensors unless pickles are allowed), LoRA adapter directories,
tokenizers, and teachers and students as the `AutoModelFor...` class of the task type they are handed."""

from __future__ import annotations

import contextlib
import glob
import json
import logging
import os
from typing import Any

from transformers import AutoConfig, AutoTokenizer, PreTrainedModel

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


def looks_like_path(name: str) -> bool:
    """A name that can only be a folder: it starts with `/`, `./`, `../` or `~`, ends with `/`, or has a backslash
    or more than one `/` (a hub id is `name` or `owner/name`)."""
    return name.startswith(("/", "./", "../", "~")) or name.endswith("/") or "\\" in name or name.count("/") > 1


def check_model_source(name: str, what: str, flag: str) -> None:
    """Fail at once, with what to do, when `name` is neither a local model folder nor a model the hub has.

    A name that looks like a path and does not exist is a missing folder (not a hub id with odd characters); a hub
    name is checked with one quick request, so that a typo or an offline machine is said in a second, not after the
    download's retries. With HF_HUB_OFFLINE=1, or a copy in the local hub cache, nothing is asked of the network."""
    from huggingface_hub import constants, try_to_load_from_cache

    expanded = os.path.expanduser(name)
    if os.path.isdir(expanded):
        return
    if os.path.exists(expanded):
        raise ValueError(f"{flag} {name!r} is a file; give the {what}'s folder (the one with config.json) or a hub id.")
    if looks_like_path(name):
        parent = os.path.dirname(os.path.normpath(expanded)) or "."
        hint = f" ({parent!r} does not exist either)" if not os.path.isdir(parent) else ""
        raise FileNotFoundError(f"{what} folder {name!r} ({flag}) does not exist{hint}: check the path.")
    if constants.HF_HUB_OFFLINE or isinstance(try_to_load_from_cache(name, "config.json"), str):
        return  # offline mode reads the cache (from_pretrained says when the copy is missing)
    from huggingface_hub import HfApi
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError

    try:
        HfApi().model_info(name, timeout=10)
    except GatedRepoError:
        return  # it exists; from_pretrained says what access it needs
    except RepositoryNotFoundError:
        raise FileNotFoundError(
            f"{what} {name!r} ({flag}) is neither a folder here nor a model on the hub (or it is private: log in "
            "with `hf auth login`): check the name."
        ) from None
    except HfHubHTTPError:
        return  # the hub answered: from_pretrained reports its own error
    except Exception as err:  # no network: say it now, not after the download's retries
        raise OSError(
            f"{what} {name!r} ({flag}) is not a folder here and the hub cannot be reached ({type(err).__name__}: "
            f"{str(err).strip().splitlines()[0] if str(err).strip() else 'no answer'}). Offline, give a local folder "
            "(`distillkit fetch-models --out models` writes the benchmark's teachers), or set HF_HUB_OFFLINE=1 to "
            "use a copy in the hub cache."
        ) from None


def load_config(name_or_path: str, trust_remote_code: bool = False) -> Any:
    """A checkpoint's config (an adapter directory's is its base model's, with the adapter's task head noted)."""
    if os.path.isdir(name_or_path) and is_adapter_dir(name_or_path):
        return AutoConfig.from_pretrained(_adapter_base(name_or_path), trust_remote_code=trust_remote_code)
    return AutoConfig.from_pretrained(name_or_path, trust_remote_code=trust_remote_code)


def has_trained_head(name_or_path: str, task_type: Any, trust_remote_code: bool = False) -> bool:
    """Whether the checkpoint already carries `task_type`'s trained head (else it is a base model)."""
    if os.path.isdir(name_or_path) and is_adapter_dir(name_or_path):
        return True  # a task adapter: LoRA weights plus the trained head
    return task_type.has_trained_head(AutoConfig.from_pretrained(name_or_path, trust_remote_code=trust_remote_code))


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
    task_type: Any,
    new_head: bool = False,
    trust_remote_code: bool = False,
    allow_pickle: bool = False,
) -> PreTrainedModel:
    """Load the teacher as `task_type`'s `AutoModelFor...` class.

    An adapter directory (`adapter_config.json`) is loaded onto its base model and merged (plain weights are faster
    to run). A base checkpoint, or any checkpoint with `new_head`, gets a fresh head for `label_names` (the task
    type says what () means: one regression output for sequence classification). A trained head is kept, and must
    fit the task's labels (`task_type.check_head_size`).
    """
    check_weights(name_or_path, "teacher", allow_pickle)
    safetensors_only = not allow_pickle
    if os.path.isdir(name_or_path) and is_adapter_dir(name_or_path):
        peft_class = task_type.peft_model_class()
        if peft_class is None:
            raise ValueError(f"{name_or_path!r} is a LoRA adapter, which task type {task_type.name!r} cannot load.")
        model = peft_class.from_pretrained(name_or_path, trust_remote_code=trust_remote_code, use_safetensors=True)
        logger.info("teacher: LoRA adapter %s merged into its base model", name_or_path)
        return model.merge_and_unload()
    auto = task_type.auto_model_class()
    if label_names is not None and (new_head or not has_trained_head(name_or_path, task_type, trust_remote_code)):
        with quiet_transformers():  # its head is missing by design: said below, in one line, with what happens next
            model = auto.from_pretrained(
                name_or_path,
                trust_remote_code=trust_remote_code,
                use_safetensors=safetensors_only,
                ignore_mismatched_sizes=new_head,
                **task_type.new_head_config(label_names),
            )
        logger.info("teacher %s: a new %s head for %d labels (the checkpoint has none; the teacher stage trains it)",
                    name_or_path, auto.__name__.removeprefix("AutoModelFor"), len(label_names) or 1)  # fmt: skip
        return model
    model = auto.from_pretrained(name_or_path, trust_remote_code=trust_remote_code, use_safetensors=safetensors_only)
    task_type.check_head_size(name_or_path, model.config, label_names)
    return model


@contextlib.contextmanager
def quiet_transformers():
    """transformers' warnings silenced for a moment where they say nothing useful: the load report (MISSING
    weights) of a head that is new by design, the default-loss note of a config traced for export."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)


def load_student(
    name_or_path: str,
    teacher: PreTrainedModel,
    *,
    task_type: Any,
    trust_remote_code: bool = False,
    allow_pickle: bool = False,
) -> PreTrainedModel:
    """Load a student from a hub name or a local directory as `task_type`'s model.

    A checkpoint that already has the task's head keeps it (and must match the teacher's outputs); a bare encoder
    gets a fresh head with the teacher's labels.
    """
    check_weights(name_or_path, "student", allow_pickle)
    config = AutoConfig.from_pretrained(name_or_path, trust_remote_code=trust_remote_code)
    kwargs = {} if task_type.has_trained_head(config) else task_type.head_config(teacher.config)
    quiet = quiet_transformers() if kwargs else contextlib.nullcontext()
    with quiet:  # a bare encoder's head is new by design: distillation trains it
        model = task_type.auto_model_class().from_pretrained(
            name_or_path, trust_remote_code=trust_remote_code, use_safetensors=not allow_pickle, **kwargs
        )
    if kwargs:
        logger.info("student %s: a new head with the teacher's labels (distillation trains it)", name_or_path)
    return model


def model_class(task_type: Any, config: Any) -> type:
    """The concrete `...For<Task>` class of `task_type` for a config (`BertConfig` -> `BertForSequenceClassification`),
    constructed directly by the builders as `cls(config)`."""
    auto = task_type.auto_model_class()
    try:
        return auto._model_mapping[type(config)]
    except KeyError:
        raise ValueError(
            f"{type(config).__name__} has no {auto.__name__.removeprefix('AutoModel')} model in transformers: "
            f"task type {task_type.name!r} cannot build this student."
        ) from None
