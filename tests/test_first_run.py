"""What a new user meets first: model names checked before anything loads (a typo, an unreachable hub)."""

import time

import httpx2
import pytest
from huggingface_hub import HfApi
from huggingface_hub import constants as hub_constants
from huggingface_hub.errors import RepositoryNotFoundError

from distillkit.loading import check_model_source, looks_like_path


@pytest.mark.parametrize(
    "name,path",
    [("../teachr", True), ("/abs/dir", True), ("~/models/x", True), ("out/teacher/", True), ("a/b/c", True),
     ("bert-base-uncased", False), ("sentence-transformers/all-MiniLM-L6-v2", False)],
)  # fmt: skip
def test_names_that_can_only_be_folders(name, path):
    assert looks_like_path(name) is path


def test_a_hub_name_on_a_machine_without_network_fails_at_once(monkeypatch):
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", False)
    calls = []

    def no_network(self, repo_id, **kw):
        calls.append((repo_id, kw.get("timeout")))
        raise httpx2.ConnectError("[Errno -2] Name or service not known")

    monkeypatch.setattr(HfApi, "model_info", no_network)
    start = time.perf_counter()
    with pytest.raises(OSError, match=r"is not a folder here and the hub cannot be reached \(ConnectError: .*"
                       r"Offline, give a local folder .*HF_HUB_OFFLINE=1"):  # fmt: skip
        check_model_source("someone/some-teacher", "teacher", "--teacher")
    assert time.perf_counter() - start < 2 and calls == [("someone/some-teacher", 10)]  # one request, no retries


def test_a_hub_name_the_hub_does_not_have(monkeypatch):
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", False)

    def missing(self, repo_id, **kw):
        raise RepositoryNotFoundError("404", response=httpx2.Response(404, request=httpx2.Request("GET", "https://x")))

    monkeypatch.setattr(HfApi, "model_info", missing)
    with pytest.raises(FileNotFoundError, match="is neither a folder here nor a model on the hub"):
        check_model_source("someone/teachr", "teacher", "--teacher")


def test_offline_mode_and_local_folders_ask_nothing_of_the_network(monkeypatch, tmp_path):
    def fail(*a, **kw):
        raise AssertionError("the hub was asked")

    monkeypatch.setattr(HfApi, "model_info", fail)
    check_model_source(str(tmp_path), "teacher", "--teacher")  # a folder
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    check_model_source("someone/some-teacher", "teacher", "--teacher")  # offline: from_pretrained reads the cache
    (tmp_path / "f.txt").write_text("x")
    with pytest.raises(ValueError, match="is a file; give the teacher's folder"):
        check_model_source(str(tmp_path / "f.txt"), "teacher", "--teacher")
