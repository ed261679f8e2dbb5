"""Students cut from a decoder language model (Minitron-style structured pruning: Muralidharan et al. 2024,
Sreenivas et al. 2024), written as an ordinary `transformers` checkpoint of the teacher's own class.

Served: the Llama layout (`model.layers[i].self_attn.{q,k,v,o}_proj`, `mlp.{gate,up,down}_proj`, RMSNorms before
attention and MLP, `model.norm`, `lm_head`): Llama, SmolLM, Mistral, Qwen2 (biases on q / k / v). What can be cut:
layers, query heads, key-value groups, MLP neurons and the embedding width. The head width stays the teacher's
(`config.head_dim` is written), so the rotary dimensions stay coherent and a narrower model keeps whole heads.

Importance is read off activations on calibration blocks of the training text (no gradients, as Minitron):

- query head h: the L2 norm of its attention output (the input of `o_proj`, h's slice) per position;
- key-value group g: the sum of its query heads' scores (a group goes whole, with its query heads);
- MLP neuron: |act(gate) * up| per position (the input of `down_proj`);
- embedding channel: |RMSNorm output| per position, summed over every RMSNorm of the model width;
- each aggregated as the mean over an example's counted positions, then the L2 norm over examples (Minitron's
  (batch L2, sequence mean), the aggregation its ablation found best).

Layers are chosen by a measured criterion (`layers_by`): `perplexity` (the teacher's perplexity on the calibration
blocks with that layer skipped, one forward pass per layer: the layers whose removal costs most are kept),
`cosine` (ShortGPT's block influence, 1 - cos(layer input, layer output) averaged over positions, one pass), or
`spread` (evenly over the depth, as teacher:K). First-order scores chose layers badly on SST-2 when most layers
were removed, which is why a layer's score here is measured, not estimated.

Within a kept group the query heads of highest score are kept (the same number in every group: a config has one
ratio), so every student query head reads the key-value head it read in the teacher. RMSNorm weights are cut with
their channels (the norm's root mean square is then over the kept channels: the one approximation of a width cut).
Tied input / output embeddings stay tied.

The scores do not depend on the shape being cut to, so `save_importance` / `load_importance` keep them in a file
(`--prune_scores`): several cuts of one teacher on the same calibration blocks then score it once.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from .prune import _top, check_limits

LAYER_CRITERIA = ("perplexity", "cosine", "spread")
_PARTS = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj",
          "mlp.up_proj", "mlp.down_proj", "input_layernorm", "post_attention_layernorm")  # fmt: skip


@dataclass
class LMPruneShape:
    num_layers: int
    hidden_size: int
    num_heads: int
    num_key_value_heads: int
    intermediate_size: int


@dataclass
class LMImportance:
    heads: Tensor  # (L, H)
    neurons: Tensor  # (L, I)
    channels: Tensor  # (D,)
    layers: Tensor  # (L,): higher = more needed
    layers_by: str = "spread"
    samples: int = 0
    layer_perplexity: list[float] = field(default_factory=list)  # perplexity without each layer (`perplexity`)
    base_perplexity: float | None = None
    block_influence: Tensor | None = None  # (L,): 1 - cos(layer input, output), measured in every case


def is_decoder_lm(model: nn.Module) -> bool:
    base = getattr(model, "model", None)
    layers = getattr(base, "layers", None)
    if not isinstance(layers, nn.ModuleList) or not len(layers) or not hasattr(model, "lm_head"):
        return False
    return all(_has(layers[0], p) for p in _PARTS) and hasattr(base, "embed_tokens") and hasattr(base, "norm")


def _has(module: nn.Module, path: str) -> bool:
    try:
        module.get_submodule(path)
        return True
    except AttributeError:
        return False


def check_lm_layout(model: nn.Module) -> None:
    if not is_decoder_lm(model):
        raise ValueError(
            f"cannot prune a {type(model).__name__}: distillkit cuts decoders of the Llama layout (Llama, SmolLM, "
            "Mistral, Qwen2: model.layers[i].self_attn.q/k/v/o_proj, mlp.gate/up/down_proj, RMSNorms). Use "
            "--student teacher:K or custom for this teacher."
        )


def head_dim(config: Any) -> int:
    return getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads


def full_shape(config: Any) -> LMPruneShape:
    heads = config.num_attention_heads
    return LMPruneShape(config.num_hidden_layers, config.hidden_size, heads,
                        getattr(config, "num_key_value_heads", None) or heads, config.intermediate_size)  # fmt: skip


def check_lm_shape(teacher: nn.Module, shape: LMPruneShape) -> None:
    """No dimension above the teacher's; query heads a whole multiple of the key-value heads, no more per group
    than the teacher has."""
    check_lm_layout(teacher)
    full = full_shape(teacher.config)
    check_limits(shape, full.__dict__)
    if shape.hidden_size % shape.num_heads:  # transformers 5 validates this when the config is loaded
        raise ValueError(
            f"--hidden_size {shape.hidden_size} is not a multiple of --num_heads {shape.num_heads}: the head width "
            f"stays the teacher's {head_dim(teacher.config)}, but transformers refuses to load a config whose width "
            "does not divide by its heads, so the cut student could not be read back; choose heads that divide the "
            "width."
        )
    per_group = full.num_heads // full.num_key_value_heads
    if shape.num_heads % shape.num_key_value_heads or shape.num_heads // shape.num_key_value_heads > per_group:
        raise ValueError(
            f"--num_heads {shape.num_heads} with --num_key_value_heads {shape.num_key_value_heads}: query heads are "
            f"cut inside key-value groups, so the heads must be a multiple of the groups and at most {per_group} per "
            f"group (the teacher's {full.num_heads} heads in {full.num_key_value_heads} groups); e.g. --num_heads "
            f"{shape.num_key_value_heads * min(per_group, max(1, shape.num_heads // shape.num_key_value_heads))}."
        )


def spread(total: int, k: int) -> list[int]:
    from .init import spread_layers

    return spread_layers(total, k)


@dataclass
class LMPlan:
    layers: list[int]
    groups: list[list[int]]  # per kept layer: teacher key-value groups
    heads: list[list[int]]  # per kept layer: teacher query heads, group by group (student head j reads group j // r)
    neurons: list[Tensor]
    channels: Tensor


def lm_plan(teacher: nn.Module, shape: LMPruneShape, scores: LMImportance | None) -> LMPlan:
    config = teacher.config
    full = full_shape(config)
    if scores is None:  # the first units of each kind
        scores = LMImportance(heads=-torch.arange(full.num_heads).float().repeat(full.num_layers, 1),
                              neurons=-torch.arange(full.intermediate_size).float().repeat(full.num_layers, 1),
                              channels=-torch.arange(full.hidden_size).float(),
                              layers=-torch.arange(full.num_layers).float())  # fmt: skip
    if scores.layers_by == "spread" or shape.num_layers == full.num_layers:
        layers = spread(full.num_layers, shape.num_layers)
    else:
        layers = _top(scores.layers, shape.num_layers).tolist()
    r_t = full.num_heads // full.num_key_value_heads
    r_s = shape.num_heads // shape.num_key_value_heads
    groups, heads = [], []
    for i in layers:
        by_group = scores.heads[i].view(full.num_key_value_heads, r_t)
        kept_groups = _top(by_group.sum(dim=1), shape.num_key_value_heads).tolist()
        groups.append(kept_groups)
        heads.append([g * r_t + int(h) for g in kept_groups for h in _top(by_group[g], r_s)])
    return LMPlan(layers=layers, groups=groups, heads=heads,
                  neurons=[_top(scores.neurons[i], shape.intermediate_size) for i in layers],
                  channels=_top(scores.channels, shape.hidden_size))  # fmt: skip


def student_lm_config(teacher_config: Any, shape: LMPruneShape, layers: list[int]) -> Any:
    config = copy.deepcopy(teacher_config)
    config.head_dim = head_dim(teacher_config)  # kept: rotary dimensions and head width stay the teacher's
    config.num_hidden_layers, config.hidden_size = shape.num_layers, shape.hidden_size
    config.num_attention_heads, config.num_key_value_heads = shape.num_heads, shape.num_key_value_heads
    config.intermediate_size = shape.intermediate_size
    if isinstance(getattr(config, "layer_types", None), list):  # per-layer attention kinds (Qwen2): the kept ones
        config.layer_types = [teacher_config.layer_types[i] for i in layers]
    for name in ("max_window_layers",):  # Qwen2: layers below this index use full attention
        if isinstance(getattr(config, name, None), int):
            setattr(config, name, sum(1 for i in layers if i < getattr(teacher_config, name)))
    config.architectures = None
    return config


def _rows(tensor: Tensor, index: Tensor | None) -> Tensor:
    return tensor if index is None else tensor[index]


@torch.no_grad()
def prune_lm(teacher: nn.Module, shape: LMPruneShape, scores: LMImportance | None = None) -> nn.Module:
    """The student: `type(teacher)` at `shape`, its weights cut from the teacher's as `lm_plan` chooses."""
    check_lm_shape(teacher, shape)
    keep = lm_plan(teacher, shape, scores)
    config = student_lm_config(teacher.config, shape, keep.layers)
    dtype = next(teacher.parameters()).dtype
    student = type(teacher)(config).to(dtype=dtype)
    dh, ch = head_dim(teacher.config), keep.channels
    t_base, s_base = teacher.model, student.model
    for j, i in enumerate(keep.layers):
        src, dst = t_base.layers[i], s_base.layers[j]
        q = torch.cat([torch.arange(h * dh, (h + 1) * dh) for h in keep.heads[j]])
        kv = torch.cat([torch.arange(g * dh, (g + 1) * dh) for g in keep.groups[j]])
        n = keep.neurons[j]
        cuts = {"self_attn.q_proj": (q, ch), "self_attn.k_proj": (kv, ch), "self_attn.v_proj": (kv, ch),
                "self_attn.o_proj": (ch, q), "mlp.gate_proj": (n, ch), "mlp.up_proj": (n, ch),
                "mlp.down_proj": (ch, n)}  # fmt: skip
        for part, (rows, cols) in cuts.items():
            a, b = src.get_submodule(part), dst.get_submodule(part)
            b.weight.copy_(a.weight[rows][:, cols])
            if getattr(a, "bias", None) is not None:
                b.bias.copy_(a.bias[rows])
        for norm in ("input_layernorm", "post_attention_layernorm"):
            dst.get_submodule(norm).weight.copy_(src.get_submodule(norm).weight[ch])
    s_base.embed_tokens.weight.copy_(t_base.embed_tokens.weight[:, ch])
    s_base.norm.weight.copy_(t_base.norm.weight[ch])
    tied = getattr(teacher.config, "tie_word_embeddings", False)
    if not tied:
        student.lm_head.weight.copy_(teacher.lm_head.weight[:, ch])
    if getattr(teacher.lm_head, "bias", None) is not None:
        student.lm_head.bias.copy_(teacher.lm_head.bias)
    for name, buffer in teacher.named_buffers():  # rotary inverse frequencies: the same head width
        if name in dict(student.named_buffers()) and student.get_buffer(name).shape == buffer.shape:
            student.get_buffer(name).copy_(buffer)
    student.config.architectures = [type(student).__name__]
    full = full_shape(teacher.config)
    student.distillkit_init_notes = [
        f"pruned from the teacher ({full.num_layers} layers x {full.hidden_size}, {full.num_heads} query heads in "
        f"{full.num_key_value_heads} key-value groups, MLP {full.intermediate_size}) to {shape.num_layers} x "
        f"{shape.hidden_size}, {shape.num_heads} heads in {shape.num_key_value_heads} groups, MLP "
        f"{shape.intermediate_size}, heads of {dh}: teacher layers {[i + 1 for i in keep.layers]} kept"
        + (
            f" ({scores.layers_by}), units by activation on {scores.samples} calibration blocks"
            if scores
            else ", the first units of each kind (no importance measured)"
        )  # fmt: skip
    ]
    student.distillkit_prune_plan = keep
    return student


def bias_parts(teacher: nn.Module) -> set[str]:
    """Which projections of the teacher's layers have biases (Qwen2: q / k / v; Llama with attention_bias: all
    four; mlp_bias: the MLP's)."""
    layer = teacher.model.layers[0]
    return {p.rsplit(".", 1)[1] for p in _PARTS[:7] if getattr(layer.get_submodule(p), "bias", None) is not None}


def lm_parameter_count(teacher_config: Any, shape: LMPruneShape, biases: set[str] = frozenset()) -> int:
    """The cut student's parameters in closed form: embeddings (+ an untied output layer), per layer q / k / v / o
    and the three MLP matrices (+ the biases named in `biases`, `bias_parts(teacher)`) and two RMSNorms, and the
    final norm."""
    c, d, dh, m = teacher_config, shape.hidden_size, head_dim(teacher_config), shape.intermediate_size
    q, kv = shape.num_heads * dh, shape.num_key_value_heads * dh
    bias_size = {"q_proj": q, "k_proj": kv, "v_proj": kv, "o_proj": d, "gate_proj": m, "up_proj": m, "down_proj": d}
    layer = d * q + 2 * d * kv + q * d + 3 * d * m + 2 * d + sum(bias_size[b] for b in biases)
    embeddings = c.vocab_size * d * (1 if getattr(c, "tie_word_embeddings", False) else 2)
    return embeddings + shape.num_layers * layer + d


def prune_lm_report(teacher: nn.Module, student_config: Any, scores: LMImportance,
                    evaluate: Any = None) -> tuple[nn.Module, dict[str, Any]]:  # fmt: skip
    """Cut `teacher` to `student_config`'s shape by `scores`; returns (the student, what `prune_report.json` holds:
    the shapes, the criteria, what was kept and the scores; with `evaluate(model) -> metrics`, the teacher's, each
    dimension's cut alone and the whole cut's before training)."""
    shape = full_shape(student_config)
    student = prune_lm(teacher, shape, scores)
    keep, full = student.distillkit_prune_plan, full_shape(teacher.config)
    report: dict[str, Any] = {
        "teacher": {**full.__dict__, "head_dim": head_dim(teacher.config), "parameters": teacher.num_parameters()},
        "student": {**shape.__dict__, "head_dim": head_dim(teacher.config), "parameters": student.num_parameters()},
        "criterion": "activations on calibration blocks of the training text (Minitron): per query head the L2 norm "
        "of its attention output, per key-value group the sum of its heads, per MLP neuron |act(gate) * up|, per "
        "channel |RMSNorm output| over every norm; mean over positions, L2 over blocks",
        "layers_chosen_by": scores.layers_by,
        "samples": scores.samples,
        "calibration_perplexity": round(scores.base_perplexity, 4) if scores.base_perplexity else None,
        "layers_kept": [i + 1 for i in keep.layers],
        "layer_scores": [round(float(v), 6) for v in scores.layers],
        "layer_perplexity_without": [round(v, 4) for v in scores.layer_perplexity] or None,
        "groups_kept": {str(i + 1): g for i, g in zip(keep.layers, keep.groups)},
        "heads_kept": {str(i + 1): h for i, h in zip(keep.layers, keep.heads)},
        "channels_kept": keep.channels.tolist(),
        "head_scores": [[round(float(v), 5) for v in row] for row in scores.heads],
        "notes": student.distillkit_init_notes,
    }
    if evaluate is not None:
        report["teacher_score"] = evaluate(teacher)
        report["pruned_alone"] = {}
        heads = {"num_heads": shape.num_heads, "num_key_value_heads": shape.num_key_value_heads}
        width = {"hidden_size": shape.hidden_size}
        if shape.hidden_size % full.num_heads:  # the teacher's heads do not divide the new width: the cut's heads
            width.update(heads)
            report["hidden_size_alone_with_heads"] = shape.num_heads
        alone_shapes = {"num_layers": {"num_layers": shape.num_layers}, "hidden_size": width, "heads": heads,
                        "intermediate_size": {"intermediate_size": shape.intermediate_size}}  # fmt: skip
        for name, change in alone_shapes.items():
            alone = LMPruneShape(**{**full.__dict__, **change})
            if alone == full:
                continue
            report["pruned_alone"][name] = evaluate(prune_lm(teacher, alone, scores).eval())
        report["student_score_before_training"] = evaluate(student.eval())
    return student, report


# -- importance -------------------------------------------------------------------------------------------------


def _aggregate(per_example: Tensor) -> Tensor:
    """(batch, features) means over positions -> their L2 norm over the batch's examples, squared (summed later)."""
    return per_example.float().pow(2).sum(dim=0)


@torch.no_grad()
def measure_lm_importance(teacher: nn.Module, blocks: list[Tensor], layers_by: str = "perplexity") -> LMImportance:
    """Activation importance of every head, neuron and channel on `blocks` ((batch, length) token ids, packed: every
    position counts), and the layers' scores by `layers_by` (module docstring)."""
    if layers_by not in LAYER_CRITERIA:
        raise ValueError(f"prune_layers for a language model must be one of {LAYER_CRITERIA} (got {layers_by!r}).")
    check_lm_layout(teacher)
    full = full_shape(teacher.config)
    dh, layers = head_dim(teacher.config), teacher.model.layers
    sums = {"heads": torch.zeros(full.num_layers, full.num_heads), "channels": torch.zeros(full.hidden_size),
            "neurons": torch.zeros(full.num_layers, full.intermediate_size),
            "influence": torch.zeros(full.num_layers)}  # fmt: skip
    handles = []

    def o_in(i):
        def hook(module, args):
            x = args[0]  # (B, S, H * dh)
            norms = x.float().view(*x.shape[:2], full.num_heads, dh).norm(dim=-1).mean(dim=1)  # (B, H)
            sums["heads"][i] += _aggregate(norms).cpu()

        return hook

    def down_in(i):
        def hook(module, args):
            sums["neurons"][i] += _aggregate(args[0].float().abs().mean(dim=1)).cpu()

        return hook

    def norm_out(module, args, out):
        sums["channels"].add_(_aggregate(out.float().abs().mean(dim=1)).cpu())

    def influence(i):
        def hook(module, args, kwargs, out):
            x = args[0] if args else kwargs["hidden_states"]
            y = out[0] if isinstance(out, tuple) else out
            cos = nn.functional.cosine_similarity(x.float(), y.float(), dim=-1)  # (B, S)
            sums["influence"][i] += (1 - cos).mean(dim=1).sum().cpu()

        return hook

    for i, layer in enumerate(layers):
        handles.append(layer.self_attn.o_proj.register_forward_pre_hook(o_in(i)))
        handles.append(layer.mlp.down_proj.register_forward_pre_hook(down_in(i)))
        handles.append(layer.register_forward_hook(influence(i), with_kwargs=True))
        for norm in (layer.input_layernorm, layer.post_attention_layernorm):
            handles.append(norm.register_forward_hook(norm_out))
    handles.append(teacher.model.norm.register_forward_hook(norm_out))
    was_training = teacher.training
    teacher.eval()
    device = next(teacher.parameters()).device
    try:
        base_nll = _nll(teacher, blocks, device)
    finally:
        for handle in handles:
            handle.remove()
    samples = sum(len(b) for b in blocks)
    scores = LMImportance(heads=sums["heads"].sqrt(), neurons=sums["neurons"].sqrt(), channels=sums["channels"].sqrt(),
                          layers=sums["influence"] / max(samples, 1), layers_by=layers_by, samples=samples,
                          base_perplexity=math.exp(base_nll))  # fmt: skip
    scores.block_influence = scores.layers.clone()
    if layers_by == "perplexity":
        scores.layer_perplexity = [math.exp(_nll(teacher, blocks, device, skip=i)) for i in range(full.num_layers)]
        scores.layers = torch.tensor(scores.layer_perplexity)
    teacher.train(was_training)
    return scores


SCORE_TENSORS = ("heads", "neurons", "channels", "layers", "block_influence")


def importance_identity(teacher: nn.Module, blocks: list[Tensor], layers_by: str) -> dict[str, str]:
    """What a score file must match to be read instead of measured: the teacher's weights, the calibration blocks'
    token ids and the layer criterion."""
    from ..cache import teacher_digest

    ids = hashlib.sha256()
    for block in blocks:
        ids.update(f"{tuple(block.shape)}".encode())
        ids.update(block.detach().to("cpu", torch.int64).contiguous().numpy().tobytes())
    return {"teacher": teacher_digest(teacher), "blocks": ids.hexdigest(), "layers_by": layers_by}


def save_importance(scores: LMImportance, path: str, identity: dict[str, str]) -> None:
    """Write the scores (safetensors; the identity and the scalars in its metadata), whole or not at all."""
    from safetensors.torch import save_file

    tensors = {k: getattr(scores, k).float().contiguous() for k in SCORE_TENSORS if getattr(scores, k) is not None}
    meta = {"identity": json.dumps(identity, sort_keys=True), "layers_by": scores.layers_by,
            "samples": str(scores.samples), "layer_perplexity": json.dumps(scores.layer_perplexity),
            "base_perplexity": json.dumps(scores.base_perplexity)}  # fmt: skip
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    partial = f"{path}.partial"
    save_file(tensors, partial, metadata=meta)
    os.replace(partial, path)


def load_importance(path: str, identity: dict[str, str]) -> LMImportance | None:
    """The scores in `path` when they were measured with `identity` (teacher, blocks, criterion); None when the file
    is absent or was measured otherwise (the caller measures again and overwrites it)."""
    from safetensors import safe_open

    if not os.path.isfile(path):
        return None
    with safe_open(path, framework="pt") as f:
        meta = f.metadata() or {}
        if meta.get("identity") != json.dumps(identity, sort_keys=True):
            return None
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open is not iterable)
    return LMImportance(heads=tensors["heads"], neurons=tensors["neurons"], channels=tensors["channels"],
                        layers=tensors["layers"], layers_by=meta["layers_by"], samples=int(meta["samples"]),
                        layer_perplexity=json.loads(meta["layer_perplexity"]),
                        base_perplexity=json.loads(meta["base_perplexity"]),
                        block_influence=tensors.get("block_influence"))  # fmt: skip


@torch.no_grad()
def _nll(model: nn.Module, blocks: list[Tensor], device: Any, skip: int | None = None) -> float:
    """Mean next-token NLL over the blocks (with decoder layer `skip` passed through unchanged)."""
    handle = None
    if skip is not None:

        def identity(module, args, kwargs, out):
            x = args[0] if args else kwargs["hidden_states"]
            return (x, *out[1:]) if isinstance(out, tuple) else x

        handle = model.model.layers[skip].register_forward_hook(identity, with_kwargs=True)
    total, count = 0.0, 0
    try:
        for ids in blocks:
            ids = ids.to(device)
            logits = model(input_ids=ids, use_cache=False).logits[:, :-1].float()
            loss = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1),
                                               reduction="sum")  # fmt: skip
            total, count = total + float(loss), count + ids[:, 1:].numel()
    finally:
        if handle is not None:
            handle.remove()
    return total / max(count, 1)


__all__ = ["LMImportance", "LMPruneShape", "bias_parts", "check_lm_layout", "is_decoder_lm", "importance_identity",
           "lm_parameter_count", "load_importance", "measure_lm_importance", "prune_lm", "prune_lm_report",
           "save_importance"]  # fmt: skip
