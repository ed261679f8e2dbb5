"""Model cards and pushes: what a student is, how it was made, how big, fast and good it is; then to a hub.

The facts behind a card are kept as `distillkit_card.json` next to the student, so that later steps (exports) can
add to them and render the card again. Rendering uses `huggingface_hub.ModelCard` with the Jinja template in
`distillkit/templates/student.md` (shipped inside the package), so the YAML metadata (base model, datasets,
model-index results, tags) is what the hub reads.
"""

from __future__ import annotations

import json
import os
import shlex
import tempfile
from typing import Any

from huggingface_hub import EvalResult, HfApi, ModelCard, ModelCardData

from .resilience import atomic_write_text

TEMPLATE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "templates", "student.md")
CARD_INFO = "distillkit_card.json"
RECIPE_FILE = "distillkit_recipe.yaml"
# never pushed: checkpoints (they hold optimizer state), the fine-tuned teacher and its cached logits, pickled
# arguments, run logs (the ONNX export goes along; the int8 TorchScript file does not: it only runs with the same
# torch)
PUSH_IGNORE = [
    "checkpoint-*",
    "checkpoint-*/**",
    "teacher/**",
    "teacher_cache/**",
    "*.bin",
    "*.pt",
    "runs/**",
    "int8/**",
]

GLUE_DATASET = "nyu-mll/glue"


class PushError(RuntimeError):
    """A push failed; the local output directory is untouched and complete."""


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else "n/a" if value is None else str(value)


def score_items(metrics: dict[str, Any]) -> list[tuple[str, float]]:
    """The task scores among a Trainer's metrics: numbers, without loss, runtime, throughput and epoch."""
    skip = ("loss", "runtime", "samples_per_second", "steps_per_second", "epoch")
    return [(k, v) for k, v in metrics.items() if isinstance(v, (int, float)) and not k.endswith(skip)]


def teacher_scores_line(metrics: dict[str, Any]) -> str:
    """A teacher's scores in one line ("accuracy 0.9232, f1_macro 0.9231"), empty when there are none."""
    return ", ".join(f"{k.removeprefix('teacher_eval_')} {v:.4f}" for k, v in score_items(metrics))


def _scores(info: dict[str, Any]) -> list[dict[str, str]]:
    student = {k.removeprefix("eval_"): v for k, v in (info.get("metrics") or {}).items()}
    teacher = {k.split("eval_", 1)[-1]: v for k, v in (info.get("teacher_metrics") or {}).items()}
    return [
        {"metric": name, "teacher": _fmt(teacher.get(name)), "student": _fmt(value)}
        for name, value in score_items(student)
    ]


def hub_dataset(info: dict[str, Any]) -> str | None:
    """The hub dataset the student was trained on: GLUE only when the data came from the hub, not local files."""
    if "data" in info:
        return (info["data"] or {}).get("hub_dataset")
    return GLUE_DATASET if info.get("task") else None  # cards written before the data report


def dataset_label(info: dict[str, Any]) -> str | None:
    """How the card names the data: the given name, GLUE TASK from the hub, or TASK from local files."""
    task = info.get("task")
    if info.get("dataset_name"):
        return info["dataset_name"]
    if task:
        source = hub_dataset(info)
        if source == GLUE_DATASET:
            return f"GLUE {task.upper()}"
        return f"{source} (hub)" if source else f"{task.upper()} (local files)"
    return None


def data_lines(info: dict[str, Any]) -> list[str]:
    """One line per split: the file (or hub split) and how many rows were read and used."""
    lines = []
    for split, entry in ((info.get("data") or {}).get("splits") or {}).items():
        where = f"`{os.path.basename(entry['file'])}`" if entry.get("file") else f"the hub's {split} split"
        used, read = entry["rows_used"], entry["rows_read"]
        lines.append(f"{split}: {where}, {used:,} rows" + (f" (the first {used:,} of {read:,})" if used < read else ""))
    return lines


def card_data(info: dict[str, Any]) -> ModelCardData:
    """The YAML metadata: library, base model (the teacher), dataset, model-index results, tags, license."""
    task = info.get("task")
    dataset = hub_dataset(info)
    pipeline_tag = info.get("pipeline_tag") or "text-classification"  # cards written before task types
    results = [
        EvalResult(
            task_type=pipeline_tag,
            dataset_type=dataset or "custom",
            dataset_name=dataset_label(info) or "custom data",
            dataset_config=task if dataset else None,
            dataset_split="validation",
            metric_type=row["metric"],
            metric_value=float(row["student"]),
        )
        for row in _scores(info)
    ]
    return ModelCardData(
        library_name="transformers",
        pipeline_tag=pipeline_tag,
        base_model=info.get("base_model"),
        datasets=[dataset] if dataset else None,
        license=info.get("license"),
        tags=["distillation", "distillkit", "knowledge-distillation"],
        model_name=info["name"],
        eval_results=results or None,
    )


def load_target(info: dict[str, Any]) -> str:
    """What the card's snippet loads: the hub repository once there is one, else the student's folder as the run
    was given it (`outputs/student`), never a bare folder name that looks like a hub id."""
    return info.get("repo_id") or info.get("path") or f"./{info['name']}"


def auto_class_name(task_type: str | None) -> str:
    """The Auto class that loads the student (`AutoModelForTokenClassification` for a tagger)."""
    from .tasks import get_task_type

    return get_task_type(task_type or "sequence-classification").auto_model_class().__name__


def render_card(info: dict[str, Any], template: str = TEMPLATE) -> ModelCard:
    sizes = info["sizes"]
    student, teacher = sizes["student"], sizes["teacher"]
    shared = student.get("layer_groups", student["layers"]) < student["layers"]
    factorized = student.get("embedding_size", student["hidden_size"]) < student["hidden_size"]
    return ModelCard.from_template(
        card_data(info),
        template_path=template,
        name=info["name"],
        repo_id=load_target(info),
        auto_class=auto_class_name(info.get("task_type")),
        teacher=info["teacher"],
        ensemble=info.get("ensemble") or [],
        ensemble_mode=info.get("ensemble_mode"),
        dataset=dataset_label(info),
        data_lines=data_lines(info),
        warnings=info.get("warnings") or [],
        student=student,
        teacher_size=teacher,
        sharing=f"ALBERT-style, {student['layer_groups']} group(s) of shared weights" if shared else "none",
        embeddings=f"factorized: vocabulary -> {student['embedding_size']} -> {student['hidden_size']}"
        if factorized
        else f"{student['embedding_size']} wide",
        param_ratio=teacher["parameters"] / student["parameters"],
        flops_ratio=teacher["flops_per_token"] / student["flops_per_token"],
        latency=info.get("latency"),
        initialisation="; ".join(student.get("initialisation") or ["random"]),
        scores=_scores(info),
        losses=", ".join(f"{k} x {v:g}" for k, v in info["loss_weights"].items()),
        temperature=info["temperature"],
        layer_map=info["layer_map"],
        epochs=info.get("epochs", ""),
        command=info.get("command", ""),
        recipe=info.get("recipe", False),
        exports=info.get("exports"),
        exports_metric=info.get("exports_metric", "metric"),
        exports_note=info.get("exports_note", ""),
        lm_exports=info.get("lm_exports"),
        lm_exports_note=info.get("lm_exports_note", ""),
        lm_int8_snippet=info.get("lm_int8_snippet", ""),
        samples=info.get("samples") or [],
    )


def write_card(output_dir: str, info: dict[str, Any]) -> str:
    """Write `distillkit_card.json` and the rendered `README.md` into the student directory; returns the card text."""
    os.makedirs(output_dir, exist_ok=True)
    card = str(render_card(info))
    atomic_write_text(os.path.join(output_dir, CARD_INFO), json.dumps(info, indent=2))
    atomic_write_text(os.path.join(output_dir, "README.md"), card)
    return card


def read_card_info(output_dir: str) -> dict[str, Any]:
    path = os.path.join(output_dir, CARD_INFO)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"{output_dir!r} has no {CARD_INFO}: it is not a student directory written by distillkit."
        )
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def push_student(
    output_dir: str,
    repo_id: str,
    token: str | None = None,
    private: bool | None = None,
    api: HfApi | None = None,
) -> str:
    """Push a finished student directory (weights, tokenizer, card, recipe) to `repo_id`; returns the commit URL.

    The token is only handed to the client (None: the usual discovery, HF_TOKEN or the cached login). Any failure
    becomes a `PushError` that says why, without the token, and that the local directory is complete.
    """
    if not os.path.isfile(os.path.join(output_dir, "config.json")):
        raise PushError(f"{output_dir!r} holds no saved student (config.json); nothing to push.")
    api = api or HfApi()
    with tempfile.TemporaryDirectory(prefix="distillkit-push-") as staging:
        # the card names the repo it lives in; it is rewritten in a staging copy (hard links: no weights are
        # copied), and in the student's own folder only once the push succeeded
        info = read_card_info(output_dir) if os.path.isfile(os.path.join(output_dir, CARD_INFO)) else None
        folder = output_dir
        if info is not None and info.get("repo_id") != repo_id:
            folder = _link_tree(output_dir, os.path.join(staging, "student"))
            write_card(folder, {**info, "repo_id": repo_id})
        try:
            api.create_repo(repo_id, token=token, private=private, exist_ok=True, repo_type="model")
            commit = api.upload_folder(
                repo_id=repo_id,
                folder_path=folder,
                token=token,
                repo_type="model",
                ignore_patterns=PUSH_IGNORE,
                commit_message="Upload a student distilled with distillkit",
            )
        except Exception as err:  # network, auth, quota: the local result stays as it is, byte for byte
            reason = (str(err).replace(token, "<token>") if token else str(err)).strip().splitlines() or [""]
            raise PushError(
                f"push of {output_dir!r} to {repo_id!r} failed: {type(err).__name__}: {reason[0]}. The student in "
                f"{output_dir!r} is complete and unchanged; push it later with "
                f"`distillkit push {output_dir} --hub_model_id {repo_id}`."
            ) from None
        if folder != output_dir:
            write_card(output_dir, {**info, "repo_id": repo_id})
    return str(getattr(commit, "commit_url", commit))


def _link_tree(source: str, target: str) -> str:
    """A copy of `source` at `target` made of hard links (a plain copy where the file system has none), without
    what is never pushed; the card files are real copies, as they are rewritten there."""
    import fnmatch
    import shutil

    for root, dirs, files in os.walk(source):
        rel = os.path.relpath(root, source)
        dirs[:] = [d for d in dirs if not any(fnmatch.fnmatch(os.path.normpath(os.path.join(rel, d)), p.removesuffix(
            "/**")) for p in PUSH_IGNORE if p.endswith("/**"))]  # fmt: skip
        os.makedirs(os.path.join(target, rel), exist_ok=True)
        for name in files:
            src, dst = os.path.join(root, name), os.path.normpath(os.path.join(target, rel, name))
            if name in (CARD_INFO, "README.md") and rel == ".":
                shutil.copyfile(src, dst)
                continue
            try:
                os.link(src, dst)
            except OSError:
                shutil.copy2(src, dst)
    return target


def _teacher_license(teacher: str) -> str | None:
    card = os.path.join(teacher, "README.md")
    if not os.path.isfile(card):
        return None  # a hub teacher: its license is on its own card; nothing is fetched for ours
    try:
        return ModelCard.load(card).data.license
    except Exception:  # a README without metadata
        return None


def card_info(
    model_args: Any,
    task: Any,
    args: Any,
    trainer: Any,
    result: Any,
    latency: dict[str, Any] | None,
    command: list[str],
    dataset_name: str | None = None,
    task_type: Any = None,
) -> dict[str, Any]:
    teacher = model_args.teacher_name or model_args.teacher
    names = getattr(model_args, "teachers", None) or [model_args.teacher]
    base_model = None if os.path.isdir(teacher) else teacher
    ensemble = []
    if len(names) > 1:  # several teachers: each named with its weight and scores; the hub's base_model lists them
        teacher = " + ".join(names)
        base_model = [n for n in names if not os.path.isdir(n)] or None
        for member in getattr(result, "members", None) or []:
            scores = teacher_scores_line(member["metrics"])
            ensemble.append({"name": member["name"], "weight": member["weight"], "scores": scores or "not scored"})
    length = f"{args.max_steps} steps" if args.max_steps > 0 else f"{args.num_train_epochs:g} epochs"
    if getattr(trainer, "stage_weights", None):  # the two-stage schedule
        stage1 = trainer.stage_weights["intermediate"]
        length = (f"two stages: {args.intermediate_epochs:g} epochs ({trainer.stage1_steps} steps) on the intermediate "
                  f"terms {', '.join(stage1)} alone, then {length} on the prediction layer")  # fmt: skip
    return {
        "name": os.path.basename(os.path.normpath(args.output_dir)),
        "path": os.path.normpath(args.output_dir),  # what a local card's snippet loads
        "repo_id": None,  # named by push_student once a push succeeded: a failed push leaves the card as it is
        "teacher": teacher,
        "base_model": base_model,
        "ensemble": ensemble,
        "ensemble_mode": args.ensemble_mode,
        "license": _teacher_license(model_args.teacher),
        "task": task.name if task else None,
        "task_type": task_type.name if task_type is not None else None,
        "pipeline_tag": task_type.pipeline_tag if task_type is not None else None,
        "dataset_name": dataset_name,
        "sizes": result.sizes,
        "latency": latency,
        "loss_weights": trainer.loss_weights,
        "temperature": args.temperature,
        "layer_map": f"{args.layer_map} ({', '.join(f'{s}:{t}' for s, t in trainer.layer_map)})",
        "epochs": f"{length}, batch {args.per_device_train_batch_size} per device, learning rate "
        f"{args.learning_rate:g}",
        "command": shlex.join(command),
        "recipe": True,
        "metrics": {k: v for k, v in result.metrics.items() if k.startswith("eval_")},
        "teacher_metrics": result.teacher_metrics,
    }
