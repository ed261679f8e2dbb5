"""--attention_dropout: the dropout on the attention probabilities, set on built models (students/dropout.py)."""

import pytest
import torch
from transformers import BertConfig, BertForQuestionAnswering, LlamaConfig, LlamaForCausalLM

from distillkit.recipes import parse_args
from distillkit.students.dropout import set_attention_dropout


def tiny_bert(attention: float) -> BertForQuestionAnswering:
    torch.manual_seed(0)
    shape = {"vocab_size": 100, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2}
    config = BertConfig(**shape, intermediate_size=64, hidden_dropout_prob=0.0, attention_probs_dropout_prob=attention)
    return BertForQuestionAnswering(config)


def train_equals_eval(model: torch.nn.Module) -> bool:
    ids = torch.randint(0, 100, (2, 24), generator=torch.Generator().manual_seed(1))
    model.train()
    trained = model(input_ids=ids).start_logits
    model.eval()
    return torch.allclose(trained, model(input_ids=ids).start_logits)


def test_zero_removes_the_only_dropout_left():
    model = tiny_bert(0.5)
    assert not train_equals_eval(model)  # attention dropout is the only randomness left in training mode
    assert set_attention_dropout(model, 0.0) == 2  # one self-attention per layer
    assert train_equals_eval(model)
    assert model.config.attention_probs_dropout_prob == 0.0  # the saved config says it
    assert model.config.hidden_dropout_prob == 0.0


def test_hidden_dropout_is_left_alone():
    model = tiny_bert(0.0)
    model.config.hidden_dropout_prob = 0.3
    for module in model.modules():
        if type(module).__name__.endswith(("SelfOutput", "Output", "Embeddings")) and hasattr(module, "dropout"):
            module.dropout.p = 0.3
    set_attention_dropout(model, 0.0)
    assert model.bert.encoder.layer[0].output.dropout.p == 0.3
    assert model.bert.encoder.layer[0].attention.output.dropout.p == 0.3
    assert model.bert.encoder.layer[0].attention.self.dropout.p == 0.0


def test_decoder_rate_attribute():
    config = LlamaConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         num_key_value_heads=1, intermediate_size=64, attention_dropout=0.2)  # fmt: skip
    model = LlamaForCausalLM(config)
    assert set_attention_dropout(model, 0.0) == 2
    assert all(layer.self_attn.attention_dropout == 0.0 for layer in model.model.layers)
    assert model.config.attention_dropout == 0.0


def test_bad_rate_names_the_flag():
    with pytest.raises(ValueError, match="--attention_dropout 1.5"):
        set_attention_dropout(tiny_bert(0.1), 1.5)


def test_flag_parses_and_defaults_to_the_models_own():
    model_args = parse_args(["--teacher", "t", "--student", "tiny", "--output_dir", "o"])[0]
    assert model_args.attention_dropout is None
    model_args = parse_args(["--teacher", "t", "--student", "tiny", "--output_dir", "o", "--attention_dropout", "0"])[0]
    assert model_args.attention_dropout == 0.0
