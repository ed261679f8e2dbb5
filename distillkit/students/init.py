"""Initialising a student from its teacher: cut layers, SVD-factorized embeddings, a shared layer from a teacher layer.

Each function returns what it did as short notes, which `build_student` logs: a student that silently started from
random weights would be a surprise.
"""

from __future__ import annotations

import copy
import logging

import torch
from torch import nn
from transformers import PreTrainedModel

logger = logging.getLogger(__name__)


def spread_layers(teacher_layers: int, k: int) -> list[int]:
    """K teacher layer indices (0-based) spread evenly from the first to the last layer.

    12 -> 6 gives [0, 2, 4, 7, 9, 11], the layers DistilBERT (Sanh et al. 2019) kept; K = 1 keeps layer 0, the one
    that reads the embeddings directly.
    """
    if not 1 <= k <= teacher_layers:
        raise ValueError(
            f"cannot keep {k} layers of a {teacher_layers}-layer teacher; use teacher:K with "
            f"1 <= K <= {teacher_layers}."
        )
    if k == 1:
        return [0]
    return [int(i * (teacher_layers - 1) / (k - 1) + 0.5) for i in range(k)]


def find_layer_list(model: nn.Module) -> str:
    """The dotted name of the `nn.ModuleList` holding the model's `num_hidden_layers` transformer layers."""
    depth = model.config.num_hidden_layers
    candidates = [
        (sum(p.numel() for p in m.parameters()), name)
        for name, m in model.named_modules()
        if isinstance(m, nn.ModuleList) and len(m) == depth and name
    ]
    if not candidates:
        raise ValueError(
            f"a {type(model).__name__} teacher cannot be cut into teacher:K: its layers are not a list of "
            f"num_hidden_layers={depth} modules (ALBERT shares them, for one). Use a preset student instead "
            "(--student tiny|mini|small|medium)."
        )
    return max(candidates)[1]


def cut_teacher(teacher: PreTrainedModel, k: int, copy_weights: bool = True) -> tuple[PreTrainedModel, list[str]]:
    """The teacher's own architecture with K of its layers (spread over the depth), plus embeddings and head."""
    prefix = find_layer_list(teacher) + "."
    chosen = spread_layers(teacher.config.num_hidden_layers, k)
    config = copy.deepcopy(teacher.config)
    config.num_hidden_layers = k
    student = type(teacher)(config)
    if not copy_weights:
        return student, [f"teacher:{k}: the teacher's architecture with {k} layers, randomly initialised"]
    state = {}
    for key, value in teacher.state_dict().items():
        if key.startswith(prefix):
            index, rest = key[len(prefix) :].split(".", 1)
            if int(index) in chosen:
                state[f"{prefix}{chosen.index(int(index))}.{rest}"] = value.detach().clone()
        else:
            state[key] = value.detach().clone()
    student.load_state_dict(state, strict=True)
    return student, [f"teacher:{k}: copied teacher layers {chosen} (0-based), embeddings and head"]


def svd_factorize(weight: torch.Tensor, rank: int, width: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Factorize a (vocab, teacher_width) embedding matrix for a student of `width` with embeddings of size `rank`.

    The teacher's rows are first expressed in `width` coordinates: the top-`width` right singular directions when
    the student is narrower, zero-padded when it is wider, unchanged when equal; call that W_s, (vocab, width).
    Its truncated SVD W_s ~ U_r S_r V_r^T is the best rank-r approximation (Eckart-Young); we return
        embeddings = U_r S_r, (vocab, rank)   the factorized word embeddings
        mapping    = V_r,     (width, rank)   the embedding -> hidden map (its weight, for nn.Linear(rank, width))
        basis      = (teacher_width, width)   the change of coordinates, to carry position embeddings over too
    so that embeddings @ mapping.T is the rank-r approximation of W_s (of W itself when the widths are equal).
    """
    w = weight.detach().float()
    teacher_width = w.shape[1]
    if width < teacher_width:
        basis = _pad_columns(torch.linalg.svd(w, full_matrices=False).Vh[:width].T, width)  # (teacher_width, width)
    else:
        basis = torch.eye(teacher_width, width)
    u, s, vh = torch.linalg.svd(w @ basis, full_matrices=False)
    # a vocabulary smaller than the rank (only in toy models) has fewer singular values: pad with zeros
    return _pad_columns(u[:, :rank] * s[:rank], rank), _pad_columns(vh[:rank].T, rank), basis


def _pad_columns(matrix: torch.Tensor, columns: int) -> torch.Tensor:
    missing = columns - matrix.shape[1]
    padded = torch.cat([matrix, matrix.new_zeros(matrix.shape[0], missing)], dim=1) if missing > 0 else matrix
    return padded.contiguous()


def _position_offset(teacher: PreTrainedModel) -> int:
    # RoBERTa-style embeddings number positions from padding_idx + 1; BERT-style students from 0
    padding_idx = getattr(getattr(teacher.base_model, "embeddings", None), "padding_idx", None)
    return 0 if padding_idx is None else padding_idx + 1


def _teacher_embeddings(teacher: PreTrainedModel) -> dict[str, torch.Tensor]:
    embeddings = getattr(teacher.base_model, "embeddings", None)
    found = {"word": teacher.get_input_embeddings().weight.detach().float()}
    for name in ("position", "token_type"):
        module = getattr(embeddings, f"{name}_embeddings", None)
        if isinstance(module, nn.Embedding):
            found[name] = module.weight.detach().float()
    if "position" in found:
        found["position"] = found["position"][_position_offset(teacher) :]
    return found


@torch.no_grad()
def init_embeddings(student: PreTrainedModel, teacher: PreTrainedModel) -> list[str]:
    """Initialise the student's embeddings from the teacher's (BERT or ALBERT student, any teacher width)."""
    emb = student.base_model.embeddings
    width = student.config.hidden_size
    rank = getattr(student.config, "embedding_size", width)
    source = _teacher_embeddings(teacher)
    teacher_width = source["word"].shape[1]
    mapping_layer = getattr(getattr(student.base_model, "encoder", None), "embedding_hidden_mapping_in", None)

    if rank == width == teacher_width:
        # same width: copy as is (a rotation would not commute with the LayerNorm)
        emb.word_embeddings.weight.copy_(source["word"])
        projected = {k: v for k, v in source.items() if k != "word"}
        to_rank = torch.eye(teacher_width)
        if mapping_layer is not None:
            mapping_layer.weight.copy_(torch.eye(width))
            mapping_layer.bias.zero_()
        if isinstance(getattr(teacher.base_model.embeddings, "LayerNorm", None), nn.LayerNorm):
            emb.LayerNorm.load_state_dict(teacher.base_model.embeddings.LayerNorm.state_dict())
        note = "embeddings copied from the teacher"
    else:
        words, mapping, basis = svd_factorize(source["word"], rank, width)
        emb.word_embeddings.weight.copy_(words)
        to_rank = basis @ mapping  # (teacher_width, rank): teacher coordinates -> the student's embedding space
        projected = {k: v for k, v in source.items() if k != "word"}
        if mapping_layer is not None:
            mapping_layer.weight.copy_(mapping)
            mapping_layer.bias.zero_()
            note = f"word embeddings: rank-{rank} truncated SVD of the teacher's ({teacher_width} -> {width} wide)"
        else:
            note = f"word embeddings: the teacher's projected on its top {width} singular directions"
    for name, matrix in projected.items():
        target = getattr(emb, f"{name}_embeddings").weight
        rows = min(target.shape[0], matrix.shape[0])
        target[:rows].copy_(matrix[:rows] @ to_rank)
    return [note + (f"; {', '.join(projected)} embeddings carried over" if projected else "")]


# ALBERT layer parameter -> the same parameter in a BERT-style or an MPNet teacher layer
_ALBERT_LAYER_SOURCES = {
    "attention.query": ("attention.self.query", "attention.attn.q"),
    "attention.key": ("attention.self.key", "attention.attn.k"),
    "attention.value": ("attention.self.value", "attention.attn.v"),
    "attention.dense": ("attention.output.dense", "attention.attn.o"),
    "attention.LayerNorm": ("attention.output.LayerNorm", "attention.LayerNorm"),
    "ffn": ("intermediate.dense",),
    "ffn_output": ("output.dense",),
    "full_layer_layer_norm": ("output.LayerNorm",),
}


@torch.no_grad()
def init_shared_layers(student: PreTrainedModel, teacher: PreTrainedModel) -> list[str]:
    """Initialise each shared ALBERT layer group from a teacher layer (spread over the depth) when shapes match."""
    groups = student.base_model.encoder.albert_layer_groups
    try:
        prefix = find_layer_list(teacher) + "."
    except ValueError:
        return [f"shared layers: random ({type(teacher).__name__} layers cannot be mapped)"]
    chosen = spread_layers(teacher.config.num_hidden_layers, len(groups))
    teacher_state = teacher.state_dict()
    for group, t_index in zip(groups, chosen):
        layer = group.albert_layers[0]
        new_state = {}
        for key, target in layer.state_dict().items():
            module_name, param = key.rsplit(".", 1)
            sources = [f"{prefix}{t_index}.{s}.{param}" for s in _ALBERT_LAYER_SOURCES.get(module_name, ())]
            source = next((teacher_state[s] for s in sources if s in teacher_state), None)
            if source is None or source.shape != target.shape:
                return [f"shared layers: random (teacher layer shapes differ from the student's at {key})"]
            new_state[key] = source.detach().float().clone()
        layer.load_state_dict(new_state)
    return [f"shared layer groups initialised from teacher layers {chosen} (0-based)"]


def log_notes(notes: list[str]) -> list[str]:
    for note in notes:
        logger.info("student initialisation: %s", note)
    return notes
