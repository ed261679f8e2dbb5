"""The frozen teacher: eval mode, no gradients, optional low precision, and only the outputs the losses need; and
the task-neutral check that a student can read its batches."""

from __future__ import annotations

import inspect
import logging
from typing import Any

import torch
from torch import nn

from .checks import cpu_has_fast_bf16
from .data import TEACHER_PREFIX, teacher_part
from .tasks.base import TARGET_COLUMNS

logger = logging.getLogger(__name__)

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def use_eager_attention(model: nn.Module, needed: bool, original: str | None) -> bool:
    """Eager attention while attention maps are `needed` (SDPA and flash kernels never materialise them); otherwise
    the `original` implementation (the one the model was built or loaded with). True when it switched to eager."""
    current = getattr(model.config, "_attn_implementation", "eager")
    if needed and current != "eager":
        model.set_attn_implementation("eager")
        return True
    if not needed and original not in (None, current):
        model.set_attn_implementation(original)
    return False


class Teacher:
    """Wraps a fine-tuned model so that it only ever predicts.

    The model is put in eval mode with every parameter frozen, optionally cast to `dtype` ("bfloat16", "float16" or
    a torch dtype) and moved to `device`. Hidden states and attention maps are requested only when asked for here;
    attention maps need the eager attention implementation (SDPA and flash kernels never materialise them), so the
    model is switched to eager only in that case.

    The wrapper is deliberately not an `nn.Module`: held by the trainer, the teacher never becomes part of the
    student's parameters, optimizer, DDP wrapper or saved files.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        dtype: str | torch.dtype | None = None,
        device: str | torch.device | None = None,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
        prefix: str = TEACHER_PREFIX,
    ):
        self.model = model
        self.prefix = prefix  # the columns of its own tokenization, when it is not the student's
        model.eval()
        model.requires_grad_(False)
        self._attn_implementation = getattr(model.config, "_attn_implementation", None)  # as loaded
        self.set_outputs(output_hidden_states, output_attentions)
        if isinstance(dtype, str):
            dtype = _DTYPES[dtype]
        on_cpu = (self.device if device is None else torch.device(device)).type == "cpu"
        if dtype == torch.bfloat16 and on_cpu and not cpu_has_fast_bf16():
            logger.warning(
                "--teacher_dtype bfloat16 on a CPU without AVX-512 BF16 or AMX: bf16 is emulated there and runs "
                "several times slower than float32 (a benchmark profile switches to float32 itself)"
            )
        if dtype is not None or device is not None:
            model.to(device=device, dtype=dtype)
        self._accepted = set(inspect.signature(model.forward).parameters)

    def set_outputs(self, hidden_states: bool, attentions: bool) -> None:
        """Ask for hidden states and attention maps from now on (or stop asking). Attention maps switch the model to
        eager attention; when they are no longer wanted, it goes back to the implementation it was loaded with."""
        self.output_hidden_states, self.output_attentions = hidden_states, attentions
        if use_eager_attention(self.model, attentions, self._attn_implementation):
            logger.info("switching the teacher to eager attention: attention maps are distilled")

    @property
    def config(self) -> Any:
        return self.model.config

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @torch.no_grad()
    def __call__(self, inputs: dict[str, Any]) -> Any:
        """Forward the model inputs of a batch (labels and other extra keys are dropped: the teacher computes no loss).

        `torch.no_grad` rather than `inference_mode`: the outputs become targets in losses whose backward pass
        saves them, which inference tensors do not allow.
        """
        inputs = teacher_part(inputs, self.prefix) or inputs  # its own tokenization of the text, when the batch has one
        model_inputs = {
            k: v.to(self.device) if torch.is_tensor(v) else v
            for k, v in inputs.items()
            if k in self._accepted and k not in TARGET_COLUMNS
        }
        return self.model(
            **model_inputs,
            output_hidden_states=self.output_hidden_states,
            output_attentions=self.output_attentions,
            return_dict=True,
        )


def check_vocabularies(teacher_config: Any, student_config: Any, cross_tokenizer: bool = False) -> None:
    """Fail early when the student cannot read the teacher's tokenized batch (with `cross_tokenizer` each model
    reads its own tokenization of the same text: then the vocabularies may differ)."""
    t_vocab, s_vocab = getattr(teacher_config, "vocab_size", None), getattr(student_config, "vocab_size", None)
    if not cross_tokenizer and t_vocab is not None and s_vocab is not None and t_vocab != s_vocab:
        raise ValueError(
            f"teacher and student vocabularies differ (teacher vocab_size={t_vocab}, student vocab_size={s_vocab}), "
            "but both read the same tokenized inputs. Build the student with the teacher's tokenizer and "
            f"vocab_size={t_vocab} (distillkit.build_student does this)."
        )
