"""First-order Taylor importance of a teacher's units (Molchanov et al. 2019; Michel et al. 2019 for heads): the
estimated change of the task loss when a unit is removed, |sum over a sequence of activation x gradient|, summed
over examples. `prune.py` keeps the units of highest score."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

# per architecture family: where the parts of a layer are (attribute paths inside one encoder layer)
_LAYOUTS = {
    "bert": {"q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
             "o": "attention.output.dense", "ffn_in": "intermediate.dense", "ffn_out": "output.dense"},
    "mpnet": {"q": "attention.attn.q", "k": "attention.attn.k", "v": "attention.attn.v", "o": "attention.attn.o",
              "ffn_in": "intermediate.dense", "ffn_out": "output.dense"},
}  # fmt: skip


@dataclass
class Importance:
    """Taylor scores of the teacher's units (higher: removing it changes the loss more)."""

    layers: Tensor  # (L,)
    heads: Tensor  # (L, H)
    qk_dims: Tensor  # (L, H, dh): query / key dimension j of each head
    v_dims: Tensor  # (L, H, dh): value / context dimension j of each head
    neurons: Tensor  # (L, I)
    hidden: Tensor  # (D,)
    samples: int = 0
    notes: list[str] = field(default_factory=list)


def _layout(model: nn.Module) -> tuple[str, nn.Module, nn.ModuleList]:
    base = model.base_model
    layers = getattr(getattr(base, "encoder", None), "layer", None)
    kind = "mpnet" if hasattr(getattr(base, "encoder", None), "relative_attention_bias") else "bert"

    def linear(path: str) -> bool:
        try:
            return isinstance(layers[0].get_submodule(path), nn.Linear)
        except AttributeError:
            return False

    if not isinstance(layers, nn.ModuleList) or not all(linear(path) for path in _LAYOUTS[kind].values()):
        raise ValueError(
            f"cannot prune a {type(model).__name__}: distillkit cuts BERT, RoBERTa-style and MPNet encoders "
            "(encoder.layer[i] with query / key / value / output projections and a dense FFN). Use a preset or "
            "teacher:K student for this teacher."
        )
    return kind, base, layers


def measure_importance(teacher: nn.Module, batches: list[dict[str, Tensor]]) -> Importance:
    """First-order Taylor importance of every unit on `batches` (each with `labels`), from one backward pass each.

    head h: |sum over its context dimensions and positions of context x gradient| (masking the head);
    query/key dim j: |q_j g_qj| + |k_j g_kj|; value dim j: |v_j g_vj| + |ctx_j g_ctxj|; FFN neuron: activation x
    gradient at the FFN output's input; hidden dimension d: summed over every LayerNorm output; layer: the two
    branches it adds to the residual stream (attention output and FFN output), each |branch x gradient|.
    Each is summed over examples of |sum over positions|.
    """
    kind, _, layers = _layout(teacher)
    config = teacher.config
    num_layers, heads = config.num_hidden_layers, config.num_attention_heads
    dh = config.hidden_size // heads
    scores = Importance(
        layers=torch.zeros(num_layers), heads=torch.zeros(num_layers, heads),
        qk_dims=torch.zeros(num_layers, heads, dh), v_dims=torch.zeros(num_layers, heads, dh),
        neurons=torch.zeros(num_layers, config.intermediate_size), hidden=torch.zeros(config.hidden_size),
    )  # fmt: skip
    captured: list[tuple[str, int, Tensor]] = []  # (what, layer, activation) in forward order

    def keep(what: str, index: int, tensor: Tensor) -> None:
        if tensor.requires_grad:
            tensor.retain_grad()
            captured.append((what, index, tensor))

    handles = []
    layout = _LAYOUTS[kind]
    for i, layer in enumerate(layers):
        for part in ("q", "k", "v", "o", "ffn_out"):
            module = layer.get_submodule(layout[part])
            handles.append(module.register_forward_hook(lambda m, a, out, p=part, i=i: keep(p, i, out)))
        for part in ("o", "ffn_out"):  # their inputs: the attention context and the activated FFN neurons
            module = layer.get_submodule(layout[part])
            handles.append(module.register_forward_pre_hook(lambda m, a, p=part, i=i: keep(p + "_in", i, a[0])))
    for module in teacher.modules():
        if isinstance(module, nn.LayerNorm) and module.normalized_shape == (config.hidden_size,):
            handles.append(module.register_forward_hook(lambda m, a, out: keep("ln", -1, out)))

    def taylor(what: str, tensor: Tensor) -> Tensor:
        """Per example, |sum over positions of activation x gradient| per feature, summed over examples."""
        return (tensor.detach() * tensor.grad).float().sum(dim=1).abs().sum(dim=0).cpu()

    was_training, flags = teacher.training, [p.requires_grad for p in teacher.parameters()]
    teacher.eval()
    teacher.requires_grad_(True)  # for gradients to reach the activations (the weights are left as they are)
    device = next(teacher.parameters()).device
    try:
        for batch in batches:
            captured.clear()
            batch = {k: v.to(device) for k, v in batch.items()}
            loss = teacher(**batch).loss
            if loss is None or not torch.isfinite(loss):
                continue
            loss.backward()
            for what, i, tensor in captured:
                if tensor.grad is None:
                    continue
                if what == "ln":
                    scores.hidden += taylor(what, tensor)
                elif what in ("q", "k"):
                    scores.qk_dims[i] += taylor(what, tensor).view(heads, dh)
                elif what == "v":
                    scores.v_dims[i] += taylor(what, tensor).view(heads, dh)
                elif what == "o_in":
                    scores.v_dims[i] += taylor(what, tensor).view(heads, dh)
                    prod = (tensor.detach() * tensor.grad).float()
                    scores.heads[i] += prod.view(*prod.shape[:2], heads, dh).sum(dim=(1, 3)).abs().sum(dim=0).cpu()
                elif what == "ffn_out_in":
                    scores.neurons[i] += taylor(what, tensor)
                else:  # o, ffn_out: a branch added to the residual stream
                    prod = (tensor.detach() * tensor.grad).float()
                    scores.layers[i] += prod.sum(dim=(1, 2)).abs().sum().cpu()
            scores.samples += len(batch["input_ids"])
    finally:
        for handle in handles:
            handle.remove()
        for p, flag in zip(teacher.parameters(), flags):
            p.requires_grad_(flag)
            p.grad = None
        teacher.train(was_training)
    if scores.samples == 0:
        raise ValueError("no example gave a finite loss for the pruning importance: the data needs gold labels.")
    return scores
