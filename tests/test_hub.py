import base64
import json
from pathlib import Path

import httpx2
import huggingface_hub
import pytest
from huggingface_hub import ModelCard
from huggingface_hub import constants as hub_constants
from transformers import AutoModelForSequenceClassification

from distillkit import parse_args
from distillkit.hub import PushError, push_student, render_card
from distillkit.recipe import run

from .conftest import rule_sentences

TOKEN = "hf_TESTTOKENdoNotLeak123"
ROOT = Path(__file__).resolve().parents[1]


def _info(**kw):
    report = dict(
        architecture="BertForSequenceClassification", layers=12, hidden_size=768, intermediate_size=3072,
        attention_heads=12, embedding_size=768, layer_groups=12, parameters=109_483_778,
        non_embedding_parameters=85_646_594, size_fp32_mb=437.94, size_fp16_mb=218.97, flops_per_token=174_587_904,
        flops_seq_len=128,
    )  # fmt: skip
    student = dict(report, architecture="AlbertForSequenceClassification", layers=4, hidden_size=256,
                   intermediate_size=1024, attention_heads=4, embedding_size=128, layer_groups=1,
                   parameters=4_861_954, size_fp32_mb=19.45, size_fp16_mb=9.72, flops_per_token=6_881_280,
                   initialisation=["word embeddings: rank-128 truncated SVD"])  # fmt: skip
    info = {
        "name": "albert-mini-sst2", "repo_id": "me/albert-mini-sst2", "teacher": "bert-base-uncased",
        "base_model": "bert-base-uncased", "license": "apache-2.0", "task": "sst2",
        "sizes": {"teacher": report, "student": student},
        "latency": {"teacher": 41.5, "student": 5.2, "note": "batch 1, 2 CPU threads"},
        "loss_weights": {"kd": 0.5, "ce": 0.5, "hidden": 1.0}, "temperature": 2.0, "layer_map": "uniform",
        "epochs": "3 epochs", "command": "python scripts/distill.py --task sst2", "recipe": True,
        "metrics": {"eval_accuracy": 0.8853, "eval_loss": 0.31}, "teacher_metrics": {"teacher_eval_accuracy": 0.9243},
    }  # fmt: skip
    return {**info, **kw}


def test_card_parses_back_with_its_metadata_and_numbers(tmp_path):
    path = tmp_path / "README.md"
    render_card(_info()).save(path)
    card = ModelCard.load(path)
    data = card.data
    assert data.library_name == "transformers" and data.base_model == "bert-base-uncased"
    assert data.license == "apache-2.0" and data.datasets == ["nyu-mll/glue"]
    assert "distillation" in data.tags
    (result,) = data.eval_results
    assert (result.metric_type, result.metric_value, result.dataset_config) == ("accuracy", 0.8853, "sst2")
    text = card.text
    assert "| accuracy | 0.9243 | 0.8853 |" in text  # the student's score next to the teacher's
    assert "4,861,954" in text and "109,483,778" in text
    assert "**22.5x** fewer parameters" in text and "**8.0x** faster" in text
    assert "ALBERT-style, 1 group(s) of shared weights" in text and "vocabulary -> 128 -> 256" in text
    assert "kd x 0.5, ce x 0.5, hidden x 1" in text and 'from_pretrained("me/albert-mini-sst2")' in text


class FakeHub:
    """The hub's HTTP API as far as create_repo + upload_folder use it, recording what would be sent."""

    def __init__(self, fail_commit: bool = False, watch: Path | None = None):
        self.requests, self.files, self.fail_commit, self.watch = [], {}, fail_commit, watch
        self.first_request_saw = None

    def __call__(self, request):
        if self.first_request_saw is None and self.watch is not None:
            self.first_request_saw = sorted(p.name for p in self.watch.iterdir())
        path = request.url.path
        self.requests.append((request.method, path, request.headers.get("authorization")))
        if path.endswith("/api/repos/create"):
            return httpx2.Response(200, json={"url": "https://hub.test/me/student", "name": "me/student"})
        if path.endswith("/api/validate-yaml"):
            return httpx2.Response(200, json={"errors": [], "warnings": []})
        if "/preupload/" in path:
            files = json.loads(request.content)["files"]
            modes = [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files]
            return httpx2.Response(200, json={"files": modes})
        if "/commit/" in path:
            if self.fail_commit:
                return httpx2.Response(401, json={"error": "Invalid credentials in Authorization header"})
            for line in request.content.decode().splitlines():
                entry = json.loads(line)
                if entry["key"] == "file":
                    self.files[entry["value"]["path"]] = base64.b64decode(entry["value"]["content"])
            url = "https://hub.test/me/student/commit/abc"
            return httpx2.Response(200, json={"commitUrl": url, "commitOid": "abc"})
        return httpx2.Response(404, json={"error": f"not part of the fake hub: {path}"})


@pytest.fixture()
def fake_hub(monkeypatch):
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hub_constants, "ENDPOINT", "https://hub.test")
    hubs = []
    original = huggingface_hub.utils._http._GLOBAL_CLIENT_FACTORY

    def install(**kw):
        hub = FakeHub(**kw)
        hubs.append(hub)
        huggingface_hub.set_client_factory(lambda: httpx2.Client(transport=httpx2.MockTransport(hub)))
        return hub

    yield install
    huggingface_hub.set_client_factory(original)


def _distill(tmp_path, teacher_dir, *extra):
    texts, labels = rule_sentences(256, 3)
    train = tmp_path / "train.tsv"
    train.write_text("sentence\tlabel\n" + "".join(f"{t}\t{y}\n" for t, y in zip(texts, labels)))
    out = tmp_path / "student"
    flags = [
        "--teacher", str(teacher_dir), "--student", "custom", "--num_layers", "1", "--hidden_size", "16",
        "--num_heads", "2", "--train_file", str(train), "--validation_file", str(train), "--output_dir", str(out),
        "--max_steps", "4", "--save_strategy", "steps", "--save_steps", "2", "--report_to", "none",
        "--disable_tqdm", "true", "--max_eval_samples", "32", *extra,
    ]  # fmt: skip
    return out, flags


def _all_bytes(directory: Path) -> bytes:
    return b"".join(p.read_bytes() for p in directory.rglob("*") if p.is_file())


def test_push_after_the_run_sends_the_student_card_and_recipe_and_never_the_token(
    tmp_path, trained_teacher_dir, fake_hub
):
    out, flags = _distill(tmp_path, trained_teacher_dir)
    hub = fake_hub(watch=out)
    run(*parse_args(flags + ["--push_to_hub", "--hub_model_id", "me/student", "--hub_token", TOKEN]))
    assert "eval_results.json" in hub.first_request_saw  # nothing went out before the run was evaluated
    assert ("POST", "/api/repos/create", f"Bearer {TOKEN}") in hub.requests
    assert {"model.safetensors", "config.json", "tokenizer.json", "README.md", "distillkit_recipe.yaml"} <= set(
        hub.files
    )
    assert not any(p.startswith(("checkpoint-", "teacher/")) or p.endswith((".bin", ".pt")) for p in hub.files)
    assert b'from_pretrained("me/student")' in hub.files["README.md"]
    assert TOKEN.encode() not in _all_bytes(out)  # not in the card, the recipe, the pickled arguments, the logs
    assert not any(TOKEN.encode() in content for content in hub.files.values())


def test_a_failed_push_says_why_and_leaves_the_student_intact(tmp_path, trained_teacher_dir, fake_hub):
    out, flags = _distill(tmp_path, trained_teacher_dir)
    fake_hub(fail_commit=True)
    with pytest.raises(PushError, match="failed.*is complete and unchanged; push it later with") as err:
        run(*parse_args(flags + ["--push_to_hub", "--hub_model_id", "me/student", "--hub_token", TOKEN]))
    assert TOKEN not in str(err.value)
    model = AutoModelForSequenceClassification.from_pretrained(out)  # the local result is whole
    assert model.config.num_labels == 2 and (out / "README.md").is_file() and (out / "eval_results.json").is_file()
    assert TOKEN.encode() not in _all_bytes(out)


def _snapshot(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def test_a_failed_push_leaves_the_folder_byte_for_byte_and_its_card_loads_the_folder(
    tmp_path, trained_teacher_dir, fake_hub
):
    out, flags = _distill(tmp_path, trained_teacher_dir)
    run(*parse_args(flags))
    card = (out / "README.md").read_text()
    assert f'from_pretrained("{out}")' in card and "AutoModelForSequenceClassification" in card  # not "student"
    before = _snapshot(out)
    fake_hub(fail_commit=True)
    with pytest.raises(PushError, match="complete and unchanged"):
        push_student(str(out), "me/student", token=TOKEN)
    assert _snapshot(out) == before
    hub = fake_hub()
    push_student(str(out), "me/student", token=TOKEN)  # now it succeeds: the card names its repository
    assert b'from_pretrained("me/student")' in hub.files["README.md"]
    assert 'from_pretrained("me/student")' in (out / "README.md").read_text()
    assert _snapshot(out).keys() == before.keys()  # nothing added (the staging copy lives elsewhere)


def test_push_script_pushes_a_trained_directory(tmp_path, trained_teacher_dir, fake_hub):
    out, flags = _distill(tmp_path, trained_teacher_dir)
    run(*parse_args(flags))
    hub = fake_hub()
    from distillkit.commands import push

    url = push.main([str(out), "--hub_model_id", "me/student", "--hub_token", TOKEN])
    assert url.endswith("/commit/abc") and "model.safetensors" in hub.files
    assert b'from_pretrained("me/student")' in hub.files["README.md"]  # the card now names its repository
    with pytest.raises(PushError, match="holds no saved student"):
        push_student(str(tmp_path), "me/student")
