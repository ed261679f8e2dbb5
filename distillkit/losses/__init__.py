"""Distillation losses: pure functions with documented shapes, and the registry the trainer combines."""

from .hidden import HiddenProjection, attention_loss, hidden_state_loss
from .layer_map import build_layer_map, uniform_layer_map
from .logits import distillation_loss, hard_label_loss, regression_distill_loss, soft_target_loss
from .registry import LOSS_REGISTRY, LossInputs, LossSpec, get_loss, register_loss

__all__ = [
    "HiddenProjection",
    "LOSS_REGISTRY",
    "LossInputs",
    "LossSpec",
    "attention_loss",
    "build_layer_map",
    "distillation_loss",
    "get_loss",
    "hard_label_loss",
    "hidden_state_loss",
    "regression_distill_loss",
    "register_loss",
    "soft_target_loss",
    "uniform_layer_map",
]
