"""Vocabulary trimming: the student keeps the tokens its training text uses, with a tokenizer to match."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter

import pytest
import torch
from datasets import Dataset
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import AutoTokenizer, BertTokenizer, PreTrainedTokenizerFast

from distillkit import parse_args
from distillkit.data import teacher_view, tokenize_dataset
from distillkit.recipe import run
from distillkit.students.vocab import trim_embeddings, trim_vocabulary

from .conftest import KEYWORDS, SPECIALS, VOCAB, WORDS, tiny_bert

USED = WORDS[:25]  # the training text below uses these words only (w25..w39 never occur)


def sentences(n: int, seed: int) -> tuple[list[str], list[int]]:
    """Keyword-rule sentences from the first 25 words alone."""
    g = torch.Generator().manual_seed(seed)
    texts = [" ".join(USED[i] for i in torch.randint(len(USED), (int(k),), generator=g))
             for k in torch.randint(3, 9, (n,), generator=g)]  # fmt: skip
    return texts, [int(any(w in KEYWORDS for w in t.split())) for t in texts]


# a WordPiece vocabulary with single characters, so that a word the trimmed vocabulary lost still tokenizes
PIECES = SPECIALS + ["a", "b", "c", "##a", "##b", "##c", "ab", "ba", "cab", "##ab"]


def test_trimmed_tokenizer_keeps_used_tokens_characters_and_specials_in_their_old_order():
    tokenizer = BertTokenizer(vocab={t: i for i, t in enumerate(PIECES)}, do_lower_case=True)
    trimmed = trim_vocabulary(tokenizer, ["ba ba", "ba"])
    kept = [PIECES[i] for i in trimmed.kept_ids]
    assert kept == SPECIALS + ["a", "b", "c", "##a", "##b", "##c", "ba"]  # not ab, cab, ##ab: unused
    new = trimmed.tokenizer
    assert len(new) == len(kept)
    assert new("ba")["input_ids"] == [kept.index("[CLS]"), kept.index("ba"), kept.index("[SEP]")]
    # a word whose pieces were dropped falls back to characters, not to [UNK]
    assert new.convert_ids_to_tokens(new("cab")["input_ids"]) == ["[CLS]", "c", "##a", "##b", "[SEP]"]
    assert tokenizer.convert_ids_to_tokens(tokenizer("cab")["input_ids"]) == ["[CLS]", "cab", "[SEP]"]
    assert new.pad_token_id == kept.index("[PAD]") and new.unk_token_id == kept.index("[UNK]")


def test_min_count_drops_rare_tokens_and_must_be_positive(tokenizer):
    texts = ["w1 w1 w2", "w1 w3"]
    assert {VOCAB[i] for i in trim_vocabulary(tokenizer, texts).kept_ids} == set(SPECIALS) | {"w1", "w2", "w3"}
    assert {VOCAB[i] for i in trim_vocabulary(tokenizer, texts, min_count=2).kept_ids} == set(SPECIALS) | {"w1"}
    with pytest.raises(ValueError, match="at least 1"):
        trim_vocabulary(tokenizer, texts, min_count=0)


def test_a_trimmed_student_computes_what_the_untrimmed_one_did(tokenizer):
    texts, _ = sentences(50, seed=5)
    trimmed = trim_vocabulary(tokenizer, texts)
    assert len(trimmed.kept_ids) == len(SPECIALS) + len(USED)
    model = tiny_bert(seed=3).eval()
    before = model(**tokenizer(texts, padding=True, return_tensors="pt")).logits
    trim_embeddings(model, trimmed.kept_ids)
    assert model.get_input_embeddings().num_embeddings == model.config.vocab_size == len(trimmed.kept_ids)
    after = model(**trimmed.tokenizer(texts, padding=True, return_tensors="pt")).logits
    torch.testing.assert_close(after, before)
    assert "vocabulary trimmed" in model.distillkit_init_notes[-1]


def test_unigram_tokenizers_are_trimmed_too():
    pieces = [("<unk>", 0.0), ("<pad>", 0.0), ("▁", -2.0), ("▁a", -1.0), ("▁ab", -1.5), ("b", -2.5), ("a", -2.5),
              ("▁b", -1.2), ("c", -3.0), ("▁c", -2.0), ("▁cab", -1.0)]  # fmt: skip
    backend = Tokenizer(models.Unigram(pieces, unk_id=0, byte_fallback=False))
    backend.pre_tokenizer = pre_tokenizers.Metaspace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", pad_token="<pad>")
    trimmed = trim_vocabulary(tokenizer, ["ab a", "a"])
    kept = [pieces[i][0] for i in trimmed.kept_ids]
    assert "▁ab" in kept and "▁cab" not in kept and "c" in kept  # used, unused, a single character
    new = trimmed.tokenizer
    assert new.convert_ids_to_tokens(new("ab a")["input_ids"]) == ["▁ab", "▁a"]
    assert new.unk_token_id == kept.index("<unk>")
    assert "<unk>" not in new.convert_ids_to_tokens(new("cab")["input_ids"])  # pieces, not unknown


def test_byte_level_bpe_is_refused_with_the_alternative():
    backend = Tokenizer(models.BPE({"a": 0, "b": 1, "ab": 2, "<pad>": 3}, [("a", "b")]))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>")
    with pytest.raises(ValueError, match="embedding_size"):
        trim_vocabulary(tokenizer, ["ab"])


def test_the_teachers_view_of_trimmed_rows_is_its_own_tokenization(tokenizer):
    texts = [" ".join(WORDS[20 + (i * 7 + j) % 20] for j in range(5)) for i in range(20)]  # w20..w39: ids move down
    raw = Dataset.from_dict({"sentence": texts, "label": [i % 2 for i in range(20)]})
    both = tokenize_dataset(raw, trim_vocabulary(tokenizer, texts).tokenizer, teacher_tokenizer=tokenizer)
    assert both["input_ids"] != tokenizer(texts)["input_ids"]  # the student's ids are renumbered
    view = teacher_view(both)
    assert set(view.column_names) == {"input_ids", "token_type_ids", "attention_mask", "labels"}
    assert view["input_ids"] == tokenizer(texts)["input_ids"] and view["labels"] == raw["label"]
    plain = tokenize_dataset(raw, tokenizer)
    assert teacher_view(plain) is plain  # data of one tokenization is returned as it is


def _flags(tmp_path, teacher_dir, *more):
    texts, labels = sentences(120, seed=8)
    train = tmp_path / "train.tsv"
    train.write_text("sentence\tlabel\n" + "".join(f"{t}\t{y}\n" for t, y in zip(texts, labels)))
    return [
        "--teacher", str(teacher_dir), "--student", "tiny", "--hidden_size", "32", "--num_heads", "2",
        "--train_file", str(train), "--validation_file", str(train), "--output_dir", str(tmp_path / "out"),
        "--report_to", "none", "--use_cpu", "true", "--max_steps", "4", "--per_device_train_batch_size", "16",
        "--trim_vocab", "true", *more,
    ]  # fmt: skip


def test_pipeline_saves_a_trimmed_student_that_loads_with_plain_transformers(tmp_path, trained_teacher_dir):
    result = run(*parse_args(_flags(tmp_path, trained_teacher_dir)), command=["test"])
    assert "eval_accuracy" in result.metrics
    out = tmp_path / "out"
    script = (
        "import sys; from transformers import AutoModelForSequenceClassification, AutoTokenizer\n"
        f"m = AutoModelForSequenceClassification.from_pretrained({str(out)!r}); t = AutoTokenizer.from_pretrained("
        f"{str(out)!r})\nprint(m.config.vocab_size, len(t), m(**t(['w1 w2 w39'], return_tensors='pt')).logits.shape)"
    )
    printed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    vocab_size, tokenizer_size, shape = printed.split(maxsplit=2)
    assert int(vocab_size) == int(tokenizer_size) == len(SPECIALS) + len(USED)
    assert shape.strip() == "torch.Size([1, 2])"  # w39, never seen in training, reads as [UNK]
    assert set(AutoTokenizer.from_pretrained(out).get_vocab()) == set(SPECIALS) | set(USED)
    assert json.loads((out / "data_report.json").read_text())["vocabulary"]["vocab_size"] == len(SPECIALS) + 25
    assert f"| vocabulary (tokens) | {len(VOCAB)} | {len(SPECIALS) + 25} |" in (out / "README.md").read_text()


def _tokenized(flags):
    """A recipe run up to its tokenized data."""
    from distillkit.recipe import DistillRecipe

    recipe = DistillRecipe(*parse_args(flags), command=[])
    recipe.check_arguments()
    recipe.load_data()
    recipe.resume = None
    recipe.load_teachers()
    recipe.build_student()
    recipe.choose_defaults()
    recipe.tokenize()
    return recipe


def test_with_a_layer_loss_the_teacher_reads_the_trimmed_students_tokens_position_for_position(
    tmp_path, trained_teacher_dir
):
    # the words seen fewer times than the median leave the trimmed vocabulary: the student reads them as [UNK], and
    # the teacher's own tokenization would read them whole
    counts = sorted(Counter(" ".join(sentences(120, seed=8)[0]).split()).values())
    min_count = str(counts[len(counts) // 2])
    flags = _flags(tmp_path, trained_teacher_dir, "--trim_vocab_min_count", min_count, "--hidden_weight", "1",
                   "--attention_weight", "1")  # fmt: skip
    recipe = _tokenized(flags)
    kept, unk = recipe.trimmed.kept_ids, recipe.student_tokenizer.unk_token_id
    assert recipe.aligned
    for split in ("train", "validation"):
        rows = recipe.data[split]
        assert rows["teacher_input_ids"] == [[kept[i] for i in ids] for ids in rows["input_ids"]]
        assert rows["teacher_attention_mask"] == rows["attention_mask"]
    assert any(unk in ids for ids in recipe.data["train"]["input_ids"])  # the rare words: [UNK] for both models
    # without a layer loss the teacher reads its own tokenization (the rare words whole)
    own = _tokenized(_flags(tmp_path, trained_teacher_dir, "--trim_vocab_min_count", min_count))
    assert not own.aligned
    assert teacher_view(own.data["train"])["input_ids"] == own.teacher_data["train"]["input_ids"]
    assert own.data["train"]["teacher_input_ids"] != recipe.data["train"]["teacher_input_ids"]
    # asked for, the student's view without a layer loss; the teacher's own view with one is refused
    asked = _tokenized(_flags(tmp_path, trained_teacher_dir, "--trim_vocab_min_count", min_count,
                              "--trim_vocab_teacher_view", "student"))  # fmt: skip
    assert asked.aligned and asked.data["train"]["teacher_input_ids"] == recipe.data["train"]["teacher_input_ids"]
    with pytest.raises(ValueError, match="teacher_view own: the teacher cannot read its own tokenization here"):
        _tokenized([*flags, "--trim_vocab_teacher_view", "own"])
    with pytest.raises(ValueError, match="trim_vocab_teacher_view must be one of auto, own, student"):
        parse_args([*flags, "--trim_vocab_teacher_view", "mine"])
    # and the run trains both layer losses through the trimmed vocabulary
    result = run(*parse_args(flags), command=["test"])
    assert "eval_accuracy" in result.metrics
    logged = json.loads((tmp_path / "out" / "trainer_state.json").read_text())["log_history"]
    assert any("loss_hidden" in entry and "loss_attention" in entry for entry in logged)


def test_min_count_below_one_is_refused_at_parse_time(tmp_path, trained_teacher_dir):
    with pytest.raises(ValueError, match="trim_vocab_min_count must be >= 1"):
        parse_args(_flags(tmp_path, trained_teacher_dir, "--trim_vocab_min_count", "0"))


def test_published_records_name_the_trimmed_vocabulary():
    from distillkit.commands.results import records

    run = {"name": "s", "variant": "kd", "seed": 0, "accuracy": 0.8, "vocabulary": {"vocab_size": 123}}
    row = {"name": "s", "variant": "kd", "parameters": 10, "accuracy": 0.8, "retained": 0.9}
    result = {"teacher": {}, "runs": [run, {**run, "name": "u", "vocabulary": None}],
              "rows": [row, {**row, "name": "u"}]}  # fmt: skip
    assert [r["vocab_size"] for r in records(result)] == [123, None]


def test_the_teacher_view_script_counts_the_rows_a_trimmed_vocabulary_splits(tokenizer):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "scripts" / "trim_teacher_view.py"
    spec = importlib.util.spec_from_file_location("trim_teacher_view", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    texts = ["w1 w2", "w1 w3", "w1 w2 w2"]  # w3 is seen once: gone at min count 2
    trimmed = trim_vocabulary(tokenizer, texts, min_count=2)
    own, student = script.views(tokenizer, trimmed, texts, 16)
    assert own == tokenizer(texts)["input_ids"]
    assert [a != b for a, b in zip(own, student)] == [False, True, False]
    assert tokenizer.convert_ids_to_tokens(student[1]) == ["[CLS]", "w1", "[UNK]", "[SEP]"]
