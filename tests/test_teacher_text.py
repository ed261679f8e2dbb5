"""More teacher-scored text: the length-sorted, resumable, backend-aware cache; unlabeled rows; augmentation."""

import json
import os
import tempfile

import pytest
import torch
from transformers import BertTokenizer, DataCollatorWithPadding

from distillkit.augment import EmbeddingNeighbours, MaskedLMCandidates, augment_cached, augment_texts, whole_words
from distillkit.cache import BUILDING, MANIFEST, length_sorted_batches, load_or_build
from distillkit.commands import distill
from distillkit.data.unlabeled import NO_LABEL, load_unlabeled
from distillkit.losses import hard_label_loss
from distillkit.scoring import make_scorer

from .conftest import rule_dataset, rule_sentences, tiny_bert


def _forward(model):
    @torch.no_grad()
    def forward(batch):
        return model(**{k: v for k, v in batch.items() if k != "labels"})

    return forward


@pytest.fixture()
def scored(tokenizer, trained_teacher):
    data = rule_dataset(tokenizer, 300, 5)
    return trained_teacher, data, DataCollatorWithPadding(tokenizer)


def test_length_sorted_building_gives_the_logits_of_each_row(tmp_path, tokenizer, scored):
    teacher, data, collate = scored
    logits = load_or_build(str(tmp_path / "c"), _forward(teacher), teacher, tokenizer, data, collate, batch_size=16)
    for i in (0, 7, 123, 299):  # each row alone, unpadded: the same logits as in its sorted batch
        row = collate([{k: data[i][k] for k in ("input_ids", "attention_mask", "token_type_ids")}])
        torch.testing.assert_close(logits[i], teacher(**row).logits[0].detach(), atol=1e-5, rtol=1e-5)
    assert json.loads((tmp_path / "c" / MANIFEST).read_text())["backend"] == "torch"
    assert not (tmp_path / "c" / BUILDING).exists()


def test_batches_are_sorted_by_length_within_their_rows():
    lengths = [5, 1, 3, 3, 9, 2]
    assert length_sorted_batches(lengths, range(0, 6), 4) == [[1, 5, 2, 3], [0, 4]]
    assert length_sorted_batches(lengths, range(2, 5), 2) == [[2, 3], [4]]


def test_an_interrupted_build_resumes_at_the_first_missing_shard(tmp_path, tokenizer, scored):
    teacher, data, collate = scored
    whole = load_or_build(str(tmp_path / "a"), _forward(teacher), teacher, tokenizer, data, collate, 16, 100)
    calls = []

    def dies_in_second_shard(batch):
        calls.append(len(batch["input_ids"]))
        if sum(calls) > 100:
            raise KeyboardInterrupt
        return _forward(teacher)(batch)

    with pytest.raises(KeyboardInterrupt):
        load_or_build(str(tmp_path / "b"), dies_in_second_shard, teacher, tokenizer, data, collate, 16, 100)
    assert (tmp_path / "b" / "logits-00000.safetensors").is_file() and not (tmp_path / "b" / MANIFEST).exists()
    calls.clear()

    def counting(batch):
        calls.append(len(batch["input_ids"]))
        return _forward(teacher)(batch)

    resumed = load_or_build(str(tmp_path / "b"), counting, teacher, tokenizer, data, collate, 16, 100)
    assert sum(calls) == 200  # shards 2 and 3 only
    torch.testing.assert_close(resumed, whole, atol=0, rtol=0)


def test_a_cache_of_another_backend_is_refused(tmp_path, tokenizer, scored):
    teacher, data, collate = scored
    load_or_build(str(tmp_path / "c"), _forward(teacher), teacher, tokenizer, data, collate, 32)
    with pytest.raises(ValueError, match="computed for another backend"):
        load_or_build(str(tmp_path / "c"), _forward(teacher), teacher, tokenizer, data, collate, 32, backend="int8")


@pytest.mark.parametrize("backend", ["int8", "onnx", "onnx-int8"])
def test_fast_backends_agree_with_fp32(tmp_path, tokenizer, scored, backend):
    teacher, data, collate = scored
    batch = collate([{k: data[i][k] for k in ("input_ids", "attention_mask", "token_type_ids")} for i in range(64)])
    reference = make_scorer("torch", teacher, batch)(batch)
    fast = make_scorer(backend, teacher, batch, work_dir=str(tmp_path))(batch)
    assert fast.shape == reference.shape
    assert (fast.argmax(-1) == reference.argmax(-1)).float().mean() > 0.9
    if backend == "onnx":
        torch.testing.assert_close(fast, reference, atol=1e-4, rtol=1e-4)
        before = set(os.listdir(tempfile.gettempdir()))
        scratch = make_scorer(backend, teacher, batch)  # its files in a temporary folder, gone once it is built
        torch.testing.assert_close(scratch(batch), reference, atol=1e-4, rtol=1e-4)
        assert not [n for n in set(os.listdir(tempfile.gettempdir())) - before if n.startswith("distillkit-onnx-")]


def test_the_hard_label_loss_ignores_rows_without_a_gold_label():
    logits = torch.randn(6, 3)
    labels = torch.tensor([0, NO_LABEL, 2, NO_LABEL, 1, NO_LABEL])
    keep = labels != NO_LABEL
    expected = torch.nn.functional.cross_entropy(logits[keep], labels[keep])
    torch.testing.assert_close(hard_label_loss(logits, labels), expected)
    assert hard_label_loss(logits, torch.full((6,), NO_LABEL)).item() == 0.0  # a batch of unlabeled rows
    targets = torch.tensor([0.5, float("nan"), 2.0])
    regression = hard_label_loss(torch.randn(3, 1), targets)
    assert torch.isfinite(regression)


def _tsv(path, n, seed):
    texts, labels = rule_sentences(n, seed)
    path.write_text("sentence\tlabel\n" + "".join(f"{t}\t{y}\n" for t, y in zip(texts, labels)))
    return path


def test_unlabeled_rows_never_reach_the_hard_label_loss(tmp_path, trained_teacher_dir, monkeypatch):
    import distillkit.losses.registry as registry

    seen = []
    original = registry.hard_label_loss

    def spy(logits, labels, *args, **kwargs):
        seen.append(labels.detach().clone())
        return original(logits, labels, *args, **kwargs)

    monkeypatch.setattr(registry, "hard_label_loss", spy)
    train = _tsv(tmp_path / "train.tsv", 96, 1)
    texts, _ = rule_sentences(160, 9)
    (tmp_path / "more.txt").write_text("\n".join(texts) + "\n\n")
    out = tmp_path / "out"
    distill.main([
        "--teacher", str(trained_teacher_dir), "--student", "custom", "--num_layers", "1", "--hidden_size", "16",
        "--num_heads", "2", "--train_file", str(train), "--unlabeled_file", str(tmp_path / "more.txt"),
        "--output_dir", str(out), "--num_train_epochs", "1", "--per_device_train_batch_size", "16",
        "--save_strategy", "no", "--report_to", "none", "--disable_tqdm", "true",
    ])  # fmt: skip
    labels = torch.cat(seen)
    assert len(labels) == 96 + 160  # one epoch over every row
    assert int((labels != NO_LABEL).sum()) == 96  # only the labelled rows carry a label to the hard-label loss
    assert set(labels[labels != NO_LABEL].tolist()) <= {0, 1}
    report = json.loads((out / "data_report.json").read_text())
    assert report["teacher_labelled"] == {"unlabeled_rows": 160, "augmented_rows": 0}


def test_unlabeled_files_in_every_format(tmp_path):
    (tmp_path / "a.csv").write_text('text,other\n"x, y",1\nz,2\n')
    assert load_unlabeled(str(tmp_path / "a.csv"), "text")["text"] == ["x, y", "z"]
    (tmp_path / "b.tsv").write_text("s1\ts2\n007\tb\n")
    assert load_unlabeled(str(tmp_path / "b.tsv"), "s1", "s2").to_dict() == {"s1": ["007"], "s2": ["b"]}
    with pytest.raises(ValueError, match=r"has no column\(s\) \['text'\]"):
        load_unlabeled(str(tmp_path / "b.tsv"), "text")
    (tmp_path / "c.txt").write_text("\n\n")
    with pytest.raises(ValueError, match="is empty"):
        load_unlabeled(str(tmp_path / "c.txt"), "sentence")


# ---- augmentation -------------------------------------------------------------------------------------------------

NEIGHBOURS = {"good": "great", "bad": "awful", "film": "movie", "plot": "story"}


@pytest.fixture()
def planted():
    """A WordPiece vocabulary and an embedding matrix in which each word's nearest neighbour is planted."""
    words = [w for pair in NEIGHBOURS.items() for w in pair] + ["the", "was", "and", "a", "##s", "##ing"]
    tokenizer = BertTokenizer(
        vocab={t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words])},
        do_lower_case=True,
    )
    vocab = tokenizer.get_vocab()
    gen = torch.Generator().manual_seed(0)
    emb = torch.randn(len(vocab), 32, generator=gen)
    for a, b in NEIGHBOURS.items():
        emb[vocab[b]] = emb[vocab[a]] + 0.01 * torch.randn(32, generator=gen)
    return tokenizer, emb


def test_embedding_neighbours_are_the_planted_ones_and_whole_words(planted):
    tokenizer, emb = planted
    source = EmbeddingNeighbours(tokenizer, emb, k=3)
    assert "##s" not in whole_words(tokenizer) and "[MASK]" not in whole_words(tokenizer)
    assert "a" not in whole_words(tokenizer)  # one letter: not replaced
    source.prepare(set(NEIGHBOURS) | set(NEIGHBOURS.values()))
    for a, b in NEIGHBOURS.items():
        assert source.candidates(a)[0] == b and source.candidates(b)[0] == a
        assert all(not c.startswith("##") for c in source.candidates(a))


TEXTS = ["the film was good", "a bad plot and a good film", "The plot was bad"]


def test_augmentation_is_deterministic_new_and_distinct(planted):
    tokenizer, emb = planted
    source = EmbeddingNeighbours(tokenizer, emb, k=2)
    first = augment_texts(TEXTS, None, source, n=4, p=0.5, seed=1)
    again = augment_texts(TEXTS, None, source, n=4, p=0.5, seed=1)
    other = augment_texts(TEXTS, None, source, n=4, p=0.5, seed=2)
    assert first == again and first != other
    texts, _, origin = first
    assert len(texts) > len(TEXTS)
    for i, text in enumerate(TEXTS):
        made = [t for t, o in zip(texts, origin) if o == i]
        assert text not in made and len(made) == len(set(made)) and 0 < len(made) <= 4
    assert any(t.startswith("The ") for t, o in zip(texts, origin) if o == 2)  # the case of a word is kept


def test_pairs_are_augmented_together_and_consistently(planted):
    tokenizer, emb = planted
    source = EmbeddingNeighbours(tokenizer, emb, k=1)  # one candidate: a replaced word has one substitute
    firsts = ["the film was good", "the plot was bad"]
    seconds = ["good film", "bad plot and bad film"]
    texts, pairs, origin = augment_texts(firsts, seconds, source, n=3, p=0.6, seed=0)
    assert len(texts) == len(pairs) == len(origin)
    for text, pair, i in zip(texts, pairs, origin):
        assert (text, pair) != (firsts[i], seconds[i])
        for word, substitute in (("film", "movie"), ("good", "great"), ("bad", "awful"), ("plot", "story")):
            if word in firsts[i].split() and word in seconds[i].split():  # replaced on both sides or neither
                assert (substitute in text.split()) == (substitute in pair.split()), (text, pair)


def test_augmentation_is_cached(tmp_path, planted):
    tokenizer, emb = planted
    source = EmbeddingNeighbours(tokenizer, emb, k=2)
    made = augment_cached(TEXTS, None, source, 3, 0.5, 0, str(tmp_path))
    files = list(tmp_path.glob("augment-*.json"))
    assert len(files) == 1
    source.candidates = None  # a second call must read the file, not generate
    assert augment_cached(TEXTS, None, source, 3, 0.5, 0, str(tmp_path)) == made


def test_a_masked_lm_gives_candidates_and_anything_else_is_refused(tmp_path, tokenizer):
    from transformers import BertConfig, BertForMaskedLM

    from .conftest import VOCAB

    torch.manual_seed(0)
    mlm = BertForMaskedLM(BertConfig(vocab_size=len(VOCAB), hidden_size=32, num_hidden_layers=1,
                                     num_attention_heads=2, intermediate_size=64))  # fmt: skip
    mlm.save_pretrained(tmp_path / "mlm")
    tokenizer.save_pretrained(tmp_path / "mlm")
    source = MaskedLMCandidates(str(tmp_path / "mlm"), k=3)
    found = source.candidates("w1", ["w1", " ", "w2", " ", "w3"], 0)
    assert len(found) == 3 and "w1" not in found and all(w in VOCAB for w in found)
    tiny_bert().save_pretrained(tmp_path / "classifier")
    with pytest.raises(ValueError, match="is not a masked language model"):
        MaskedLMCandidates(str(tmp_path / "classifier"))


def test_a_run_with_augmented_text(tmp_path, trained_teacher_dir):
    train = _tsv(tmp_path / "train.tsv", 64, 1)
    out = tmp_path / "out"
    distill.main([
        "--teacher", str(trained_teacher_dir), "--student", "custom", "--num_layers", "1", "--hidden_size", "16",
        "--num_heads", "2", "--train_file", str(train), "--augment", "2", "--teacher_cache", str(tmp_path / "cache"),
        "--teacher_backend", "int8", "--output_dir", str(out), "--max_steps", "3", "--save_strategy", "no",
        "--report_to", "none", "--disable_tqdm", "true",
    ])  # fmt: skip
    report = json.loads((out / "data_report.json").read_text())
    assert report["teacher_labelled"]["augmented_rows"] > 64  # about 2 per sentence
    manifest = json.loads((tmp_path / "cache" / MANIFEST).read_text())
    assert manifest["backend"] == "int8" and manifest["num_rows"] == 64 + report["teacher_labelled"]["augmented_rows"]
    assert list((tmp_path / "cache" / "augment").glob("augment-*.json"))


def test_auto_takes_onnx_for_a_large_cpu_cache_and_torch_otherwise(monkeypatch):
    import importlib.util

    from distillkit.scoring import AUTO_ONNX_ROWS, resolve_backend

    model = tiny_bert()
    installed = all(importlib.util.find_spec(m) for m in ("onnx", "onnxscript", "onnxruntime"))
    assert resolve_backend("auto", model, AUTO_ONNX_ROWS) == ("onnx" if installed else "torch")
    assert resolve_backend("auto", model, AUTO_ONNX_ROWS - 1) == "torch"
    assert resolve_backend("auto", model.to(torch.bfloat16), AUTO_ONNX_ROWS) == "torch"  # the user chose a dtype
    assert resolve_backend("int8", model, 10) == "int8"
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)  # without distillkit[export]
    assert resolve_backend("auto", tiny_bert(), AUTO_ONNX_ROWS) == "torch"
