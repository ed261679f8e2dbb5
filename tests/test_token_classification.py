"""Token classification: CoNLL files read exactly (IOB1 -> IOB2), entity-level F1 with conlleval's semantics, the
first-sub-word encoding with truncation counted, the soft loss over labelled positions only, and bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import BertConfig, BertForTokenClassification

from distillkit import get_task_type
from distillkit.data.conll import detect_scheme, read_conll, read_tokens, tag_names, to_iob2
from distillkit.data.words import IGNORE, encode_words
from distillkit.entity_metrics import entities, entity_scores
from distillkit.losses.registry import LossInputs, get_loss

from .conftest import VOCAB, make_tokenizer

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "distill.py"


def test_entities_follow_conlleval():
    assert entities(["B-PER", "I-PER", "O", "B-LOC"]) == {("PER", 0, 1), ("LOC", 3, 3)}
    assert entities(["I-PER", "I-PER", "I-LOC"]) == {("PER", 0, 1), ("LOC", 2, 2)}  # IOB1: I- starts an entity
    assert entities(["B-PER", "B-PER", "I-PER"]) == {("PER", 0, 0), ("PER", 1, 2)}  # B- splits touching entities
    assert entities(["O", "O"]) == set()


def test_entity_scores_by_hand():
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O"]]
    pred = [["B-PER", "I-PER", "O", "B-ORG"], ["B-ORG", "B-LOC"]]
    # gold: PER(0-1), LOC(3), ORG(0); predicted: PER(0-1), ORG(3), ORG(0), LOC(1); correct: PER, ORG(0)
    scores = entity_scores(gold, pred)
    assert scores["precision"] == pytest.approx(2 / 4) and scores["recall"] == pytest.approx(2 / 3)
    assert scores["f1"] == pytest.approx(2 * 0.5 * (2 / 3) / (0.5 + 2 / 3))
    assert scores["PER_f1"] == 1.0 and scores["LOC_f1"] == 0.0 and scores["LOC_support"] == 1.0
    assert scores["ORG_precision"] == 0.5 and scores["ORG_recall"] == 1.0
    assert entity_scores([["O"]], [["O"]])["f1"] == 0.0  # no entity at all: 0, not NaN
    partial = entity_scores([["B-PER", "I-PER"]], [["B-PER", "O"]])  # a boundary error is a miss
    assert partial["f1"] == 0.0


def test_entity_scores_agree_with_seqeval_on_random_sequences():
    seqeval = pytest.importorskip("seqeval.metrics")
    import random

    rng = random.Random(0)
    tags = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    gold = [to_iob2([[rng.choice(tags) for _ in range(rng.randint(1, 12))]])[0] for _ in range(300)]
    pred = [[t if rng.random() < 0.7 else rng.choice(tags) for t in g] for g in gold]
    ours = entity_scores(gold, pred)
    assert ours["f1"] == pytest.approx(seqeval.f1_score(gold, pred), abs=1e-9)
    assert ours["precision"] == pytest.approx(seqeval.precision_score(gold, pred), abs=1e-9)


def _write(path: Path, text: str) -> str:
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_conll_files_are_read_and_iob1_becomes_iob2(tmp_path):
    path = _write(tmp_path / "eng.train", "-DOCSTART- -X- O O\n\nEU NNP I-NP I-ORG\nrejects VBZ I-VP O\n"
                  "German JJ I-NP I-MISC\n\nPeter NNP I-NP I-PER\nBlackburn NNP I-NP I-PER\n")  # fmt: skip
    sentences, tags = read_conll(path)
    assert sentences == [["EU", "rejects", "German"], ["Peter", "Blackburn"]]
    assert detect_scheme(tags) == "IOB1"
    data = read_tokens(path)
    assert data["tags"] == [["B-ORG", "O", "B-MISC"], ["B-PER", "I-PER"]]
    assert tag_names(data["tags"]) == ("O", "B-MISC", "B-ORG", "B-PER", "I-PER")
    assert read_conll(path, tag_column=2)[1][0] == ["I-NP", "I-VP", "I-NP"]
    wnut = _write(tmp_path / "w.conll", "@paul\tO\nNew\tB-location\nYork\tI-location\n\n")
    assert detect_scheme(read_conll(wnut)[1]) == "IOB2" and read_tokens(wnut)["tags"] == [["O", "B-location",
                                                                                          "I-location"]]  # fmt: skip
    jsonl = _write(tmp_path / "t.jsonl", json.dumps({"tokens": ["a", "b"], "tags": ["B-X", "O"]}) + "\n")
    assert read_tokens(jsonl)["tokens"] == [["a", "b"]]


@pytest.mark.parametrize(
    "text,column,message",
    [
        ("a NN O\nb NN\n", -1, r"line 2 has 2 columns, the file's other lines 3"),
        ("a NN X-PER\n", -1, r"line 1: tag 'X-PER' is neither O nor B-/I-"),
        ("-DOCSTART- -X- O\n\n\n", -1, r"holds no sentences"),
        ("a NN O\n", 5, r"--tag_column 5 is out of range: .* has 3 columns"),
    ],
)
def test_bad_token_files_name_the_file_and_line(tmp_path, text, column, message):
    with pytest.raises(ValueError, match=message):
        read_conll(_write(tmp_path / "bad.conll", text), column)


def test_first_subwords_carry_the_tags_and_truncated_words_are_counted():
    tokenizer = make_tokenizer()
    from datasets import Dataset

    rows = Dataset.from_dict({"tokens": [["w1", "w2x", "w3"], ["w4"] * 20], "tags": [["B-K", "I-K", "O"], ["O"] * 20]})
    label2id = {"O": 0, "B-K": 1, "I-K": 2}
    data = encode_words(rows, tokenizer, label2id, max_seq_length=8)
    # [CLS] w1 w2 ##x... : "w2x" is two sub-words (w2 + [UNK]-like piece); only its first carries I-K
    first = data[0]
    assert first["labels"][0] == IGNORE and first["labels"][-1] == IGNORE  # [CLS], [SEP]
    assert [y for y in first["labels"] if y != IGNORE] == [1, 2, 0]
    assert first["truncated_words"] == 0 and data[1]["truncated_words"] == 20 - 6  # 8 positions: CLS + 6 + SEP
    every = encode_words(rows, tokenizer, label2id, max_seq_length=8, label_all_subwords=True)
    assert sum(y != IGNORE for y in every[0]["labels"]) == len(first["input_ids"]) - 2
    with pytest.raises(ValueError, match=r"tag\(s\) \['B-K'\] are outside the teacher's label set"):
        encode_words(rows, tokenizer, {"O": 0, "I-K": 1}, max_seq_length=8)


def test_words_cut_off_count_as_predicted_o():
    task = get_task_type("token-classification")
    config = BertConfig(num_labels=3, id2label={0: "O", 1: "B-K", 2: "I-K"}, label2id={"O": 0, "B-K": 1, "I-K": 2})
    from datasets import Dataset, DatasetDict
    from transformers import EvalPrediction

    long = ["w1", "w2", "w3"] * 8  # 24 words, cut to 6 by max_seq_length 8
    tags = ["B-K", "O", "B-K"] * 8
    raw = DatasetDict(validation=Dataset.from_dict({"tokens": [["w4", "w1"], long], "tags": [["O", "B-K"], tags]}))
    encoded = task.encode(raw, make_tokenizer(), config, 8, False)["validation"]
    assert encoded["truncated_words"] == [0, 18]
    # rows in another order than the data (evaluation may sort by length), each predicted perfectly where it was read
    rows = [encoded[1], encoded[0]]
    width = max(len(r["labels"]) for r in rows)
    labels = torch.full((2, width), IGNORE)
    logits = torch.zeros(2, width, 3)
    for i, r in enumerate(rows):
        labels[i, : len(r["labels"])] = torch.tensor(r["labels"])
        for j, y in enumerate(r["labels"]):
            logits[i, j, max(y, 0)] = 9.0
    scores = task.compute_metrics(config)(EvalPrediction(predictions=logits.numpy(), label_ids=labels.numpy()))
    # gold: 16 entities in the long sentence (4 of them read) + 1 in the short one; all 5 predicted ones are right
    assert scores["precision"] == 1.0 and scores["recall"] == pytest.approx(5 / 17)  # cut-off ones missed, not hidden
    # token accuracy over all 26 words: the 18 cut off are predicted O, 12 of them are B-K
    assert scores["accuracy"] == pytest.approx((26 - 12) / 26)


def test_the_soft_loss_never_reads_padding_or_unlabelled_positions():
    torch.manual_seed(0)
    student, teacher = torch.randn(2, 5, 3), torch.randn(2, 5, 3)
    labels = torch.tensor([[IGNORE, 1, IGNORE, 0, IGNORE], [IGNORE, 2, IGNORE, IGNORE, IGNORE]])
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])

    def kd(s, t):
        out = type("O", (), {})
        s_out, t_out = out(), out()
        s_out.logits, t_out.logits = s, t
        args = type("A", (), {"temperature": 2.0})()
        return get_loss("kd").fn(LossInputs(s_out, t_out, labels, mask, args, []))

    base = kd(student, teacher)
    changed = teacher.clone()
    changed[labels == IGNORE] = torch.randn(int((labels == IGNORE).sum()), 3) * 10  # only unlabelled / padding
    assert torch.allclose(kd(student, changed), base)
    moved = teacher.clone()
    moved[0, 1, 0] += 5.0  # a labelled position (one logit: a shift of all three would not change the softmax)
    assert not torch.allclose(kd(student, moved), base)


def _tiny_tagger(path: Path, tags: tuple[str, ...]) -> None:
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(VOCAB), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64, num_labels=len(tags),
                        id2label=dict(enumerate(tags)), label2id={t: i for i, t in enumerate(tags)})  # fmt: skip
    BertForTokenClassification(config).save_pretrained(path)
    make_tokenizer().save_pretrained(path)


@pytest.mark.parametrize(
    "train,extra,message",
    [
        ("w1 O\nw2 B-NEW\n", [], r"\['B-NEW'\] are outside the teacher's label set \['B-K', 'I-K', 'O'\]"),
        (
            "w1 O\nw2 B-K\n",
            ["--teacher_lora_r", "4"],
            r"not supported for task type 'token-classification'",
        ),  # fmt: skip
        ("w1 O\nw2\n", [], r"line 2 has 1 columns"),
    ],
)
def test_bad_token_input_exits_2_with_one_line_and_writes_nothing(tmp_path, train, extra, message):
    _tiny_tagger(tmp_path / "teacher", ("O", "B-K", "I-K"))
    path = _write(tmp_path / "train.conll", train)
    out = tmp_path / "out"
    cmd = [sys.executable, str(SCRIPT), "--teacher", str(tmp_path / "teacher"), "--student", "tiny", "--train_file",
           path, "--output_dir", str(out), "--max_steps", "2", "--report_to", "none",
           *[a.format(tmp=tmp_path) for a in extra]]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and __import__("re").search(message, errors[0]), result.stderr[-2000:]
    assert not out.exists()


@pytest.mark.skipif(not (DATA / "conll2003").is_dir(), reason="../shared/data/conll2003 is not here")
def test_the_real_conll_and_wnut_files_match_their_published_counts():
    train = read_tokens(str(DATA / "conll2003" / "eng.train"))
    assert len(train) == 14_041 and sum(len(t) for t in train["tokens"]) == 203_621
    counts = {}
    for sentence in train["tags"]:
        for kind, *_ in entities(sentence):
            counts[kind] = counts.get(kind, 0) + 1
    assert counts == {"LOC": 7_140, "MISC": 3_438, "ORG": 6_321, "PER": 6_600}
    dev = read_tokens(str(DATA / "conll2003" / "eng.testa"))
    assert len(dev) == 3_250 and sum(len(t) for t in dev["tokens"]) == 51_362
    wnut = read_tokens(str(DATA / "wnut17" / "wnut17train.conll"))
    assert len(wnut) == 3_394 and sum(len(t) for t in wnut["tokens"]) == 62_730
    assert detect_scheme(read_conll(str(DATA / "wnut17" / "wnut17train.conll"))[1]) == "IOB2"


def test_export_scores_every_variant_of_a_tagger_by_entity_f1(tmp_path):
    from distillkit.commands.export import main as export_main

    _tiny_tagger(tmp_path / "student", ("O", "B-K", "I-K"))
    rows = _tagged_rows(24, seed=5)
    dev = _write(tmp_path / "dev.conll", _conll_text(rows))
    onnx = __import__("importlib").util.find_spec("onnxruntime") is not None
    out = export_main([str(tmp_path / "student"), "--int8", *(["--onnx"] if onnx else []), "--validation_file", dev,
                       "--latency_examples", "4"])  # fmt: skip
    by_name = {r["name"]: r for r in out}
    student = by_name["student"]
    assert student["metric"] == "f1" and 0.0 <= student["metric_value"] <= 1.0
    # the float student scored as the metric scores it: its F1 from the same words computed directly
    model = BertForTokenClassification.from_pretrained(tmp_path / "student").eval()
    tokenizer = make_tokenizer()
    gold, predicted = [], []
    with torch.no_grad():
        for r in rows:
            enc = tokenizer(r["tokens"], is_split_into_words=True, return_tensors="pt")
            tags = model(**enc).logits[0].argmax(-1).tolist()
            seen, words = set(), []
            for position, word in enumerate(enc.word_ids()):
                if word is not None and word not in seen:
                    seen.add(word)
                    words.append(model.config.id2label[tags[position]])
            gold.append(r["tags"])
            predicted.append(words)
    assert student["metric_value"] == pytest.approx(entity_scores(gold, predicted)["f1"], abs=1e-9)
    assert student["agreement_with_student"] == 1.0
    int8 = next(r for n, r in by_name.items() if "int8" in n)
    assert (tmp_path / "student" / "int8" / "model.pt").is_file() and 0.5 <= int8["agreement_with_student"] <= 1.0
    if onnx:  # fp32 in onnxruntime: the same tags
        assert next(r for n, r in by_name.items() if "ONNX" in n)["agreement_with_student"] == pytest.approx(1.0)
    assert json.loads((tmp_path / "student" / "exports.json").read_text())["examples"] == 24


def _conll_text(rows) -> str:
    """Tagged rows as a CoNLL file: `word tag` lines, a blank line between sentences."""
    return "\n\n".join("\n".join(f"{w} {t}" for w, t in zip(r["tokens"], r["tags"])) for r in rows) + "\n"


def _tagged_rows(n: int, seed: int):
    """n sentences of 1 to 9 words, tags by a rule the tiny tagger can learn (w1 starts a K entity, w2 continues)."""
    import random

    from datasets import Dataset

    rng = random.Random(seed)
    tokens, tags = [], []
    for _ in range(n):
        words = [rng.choice(["w1", "w2", "w3", "w4"]) for _ in range(rng.randint(1, 9))]
        tokens.append(words)
        tags.append(["B-K" if w == "w1" else "I-K" if w == "w2" and i and words[i - 1] == "w1" else "O"
                     for i, w in enumerate(words)])  # fmt: skip
    return Dataset.from_dict({"tokens": tokens, "tags": tags})


def _token_trainer(tmp_path, teacher, data, cache=None, **kw):
    from distillkit import DistillConfig, DistillTrainer

    args = DistillConfig(output_dir=str(tmp_path / "out"), report_to="none", per_device_train_batch_size=8,
                         per_device_eval_batch_size=16, learning_rate=1e-3, logging_steps=1, save_strategy="no",
                         seed=0, disable_tqdm=True, alpha=0.5, temperature=2.0,
                         teacher_cache=str(cache) if cache else None, **kw)  # fmt: skip
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(VOCAB), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=64, num_labels=3, hidden_dropout_prob=0.0,
                        attention_probs_dropout_prob=0.0, id2label=teacher.config.id2label,
                        label2id=teacher.config.label2id)  # fmt: skip
    return DistillTrainer(model=BertForTokenClassification(config), teacher=teacher, args=args, train_dataset=data,
                          processing_class=make_tokenizer(), task_type="token-classification")  # fmt: skip


def test_the_teacher_cache_holds_each_rows_token_logits_and_gives_the_live_losses(tmp_path):
    from distillkit.cache import TokenLogits

    _tiny_tagger(tmp_path / "teacher", ("O", "B-K", "I-K"))
    teacher = BertForTokenClassification.from_pretrained(tmp_path / "teacher").eval()
    data = encode_words(_tagged_rows(40, seed=3), make_tokenizer(), teacher.config.label2id, max_seq_length=16)
    data = data.remove_columns(["words", "truncated_words"])
    cached = _token_trainer(tmp_path / "cached", teacher, data, tmp_path / "cache", max_steps=5)
    store = cached._cached_logits
    assert isinstance(store, TokenLogits) and len(store) == 40
    assert store.lengths.tolist() == [len(ids) for ids in data["input_ids"]]  # each row's real tokens, no padding
    with torch.no_grad():  # a row's cached logits are the teacher's on that row alone
        for i in (0, 7, 39):
            row = data[i]
            alone = teacher(input_ids=torch.tensor([row["input_ids"]])).logits[0]
            assert torch.allclose(store.row(i), alone, atol=1e-5)
    batch = cached.data_collator([{**data[i], "distill_index": i} for i in (3, 5, 9)])
    padded = store.padded(torch.tensor([3, 5, 9]), batch["attention_mask"])
    assert padded.shape == (*batch["input_ids"].shape, 3) and bool((padded[batch["attention_mask"] == 0] == 0).all())
    cached.train()
    live = _token_trainer(tmp_path / "live", teacher, data, max_steps=5)
    live.train()
    for name in ("loss", "loss_kd", "loss_ce"):
        a = [e[name] for e in live.state.log_history if name in e and "train_runtime" not in e]
        b = [e[name] for e in cached.state.log_history if name in e and "train_runtime" not in e]
        assert len(a) == len(b) == 5 and b == pytest.approx(a, rel=1e-4, abs=1e-6), name
    # the cache read again: the same rows, and a batch of other lengths is refused clearly
    again = _token_trainer(tmp_path / "again", teacher, data, tmp_path / "cache", max_steps=1)._cached_logits
    assert torch.equal(again.flat, store.flat)
    with pytest.raises(ValueError, match="do not fit this batch"):
        store.padded(torch.tensor([3]), torch.ones(1, 40, dtype=torch.long))
    # in several shards (40 rows, 16 a shard), written and read back: the same rows in order
    from distillkit.cache import load_or_build

    def forward(batch):
        return teacher(**{k: v for k, v in batch.items() if k in ("input_ids", "attention_mask", "token_type_ids")})

    sharded = load_or_build(str(tmp_path / "sharded"), forward, teacher, make_tokenizer(), data, cached.data_collator,
                            batch_size=8, shard_size=16, progress=False)  # fmt: skip
    assert len(list((tmp_path / "sharded").glob("logits-*.safetensors"))) == 3
    assert torch.equal(sharded.lengths, store.lengths) and torch.allclose(sharded.flat, store.flat, atol=1e-5)
    reread = load_or_build(str(tmp_path / "sharded"), forward, teacher, make_tokenizer(), data, cached.data_collator,
                           batch_size=8, shard_size=16, progress=False)  # fmt: skip
    assert torch.equal(reread.flat, sharded.flat)


@pytest.mark.parametrize("kind", ["bert", "mpnet"])
def test_a_tagger_pruned_to_its_full_size_gives_its_logits_and_a_smaller_cut_keeps_the_head(kind):
    from transformers import DataCollatorForTokenClassification, MPNetConfig, MPNetForTokenClassification

    from distillkit.students.importance import measure_importance
    from distillkit.students.prune import PruneShape, parameter_count, prune

    torch.manual_seed(0)
    shape_kw = dict(vocab_size=len(VOCAB), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                    intermediate_size=64, max_position_embeddings=64, num_labels=3)  # fmt: skip
    teacher = (BertForTokenClassification(BertConfig(**shape_kw)) if kind == "bert"
               else MPNetForTokenClassification(MPNetConfig(**shape_kw))).eval()  # fmt: skip
    tokenizer = make_tokenizer()
    data = encode_words(_tagged_rows(32, seed=4), tokenizer, {"O": 0, "B-K": 1, "I-K": 2}, max_seq_length=16)
    rows = [{k: r[k] for k in ("input_ids", "attention_mask", "labels")} for r in data]
    collate = DataCollatorForTokenClassification(tokenizer)
    batches = [collate(rows[i : i + 8]) for i in range(0, 32, 8)]
    scores = measure_importance(teacher, batches)
    inputs = {k: batches[0][k] for k in ("input_ids", "attention_mask")}
    full = prune(teacher, PruneShape(2, 4, 32, 64), scores).eval()
    with torch.no_grad():
        torch.testing.assert_close(full(**inputs).logits, teacher(**inputs).logits, atol=1e-5, rtol=0)
    small = prune(teacher, PruneShape(1, 2, 16, 32), scores)
    assert type(small) is type(teacher) and small.classifier.weight.shape == (3, 16)  # the tag head on the kept width
    task = get_task_type("token-classification")
    count = parameter_count(teacher.config, PruneShape(1, 2, 16, 32), task, kind, pooler=False)
    assert small.num_parameters() == count


def test_a_tagger_with_a_trimmed_vocabulary_trains_reads_its_own_tokens_and_loads_without_distillkit(tmp_path):
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    _tiny_tagger(tmp_path / "teacher", ("O", "B-K", "I-K"))
    rows = _tagged_rows(40, seed=6)
    train = _write(tmp_path / "train.conll", _conll_text(rows))
    out = tmp_path / "out"
    cmd = [
        sys.executable,
        str(SCRIPT),
        "--teacher",
        str(tmp_path / "teacher"),
        "--student",
        "custom",
        "--num_layers",
        "1",
        "--hidden_size",
        "16",
        "--num_heads",
        "2",
        "--trim_vocab",
        "true",
        "--train_file",
        train,
        "--validation_file",
        train,
        "--output_dir",
        str(out),
        "--num_train_epochs",
        "1",
        "--per_device_train_batch_size",
        "8",
        "--teacher_cache",
        str(tmp_path / "cache"),
        "--report_to",
        "none",
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    student = AutoModelForTokenClassification.from_pretrained(out)
    tokenizer = AutoTokenizer.from_pretrained(out)
    teacher_vocab = len(make_tokenizer())
    # the words of the training text (w1..w4) and the single characters and special tokens, not the whole vocabulary
    assert student.config.vocab_size == len(tokenizer) < teacher_vocab
    assert student.get_input_embeddings().weight.shape[0] == len(tokenizer)
    assert "f1" in " ".join(json.loads((out / "eval_results.json").read_text()))
    report = json.loads((out / "data_report.json").read_text())["vocabulary"]
    assert report["vocab_size"] == len(tokenizer)


def test_with_a_trimmed_vocabulary_the_teacher_reads_the_students_tokens_position_for_position():
    from distillkit.students.vocab import trim_vocabulary, with_teacher_ids

    teacher_tok = make_tokenizer()
    rows = _tagged_rows(20, seed=7)
    trimmed = trim_vocabulary(teacher_tok, [" ".join(w) for w in rows["tokens"]], None, 1)
    data = encode_words(rows, trimmed.tokenizer, {"O": 0, "B-K": 1, "I-K": 2}, max_seq_length=16)
    both = with_teacher_ids(data, trimmed.kept_ids)
    for row in both:
        student_tokens = trimmed.tokenizer.convert_ids_to_tokens(row["input_ids"])
        assert teacher_tok.convert_ids_to_tokens(row["teacher_input_ids"]) == student_tokens
        assert row["teacher_attention_mask"] == row["attention_mask"]
    # on the counted text, that is the teacher's own tokenization
    own = encode_words(rows, teacher_tok, {"O": 0, "B-K": 1, "I-K": 2}, max_seq_length=16)
    assert both["teacher_input_ids"] == own["input_ids"] and both["labels"] == own["labels"]


def test_augmented_sentences_change_only_o_words_and_keep_their_tags():
    from distillkit.augment import augment_tagged

    class Swap:  # every word of letters has two stand-ins
        k, identity = 2, "swap"

        def key(self, word):
            return word.lower() if word.isalpha() else None

        def prepare(self, words):
            self.seen = set(words)

        def candidates(self, word, context=(), position=0):
            return [word + "x", word + "y"]

    tokens = [["Peter", "lives", "in", "Berlin", "now"], ["EU", "rejects", "German", "call"]]
    tags = [["B-PER", "O", "O", "B-LOC", "O"], ["B-ORG", "O", "B-MISC", "O"]]
    source = Swap()
    new, new_tags, origin = augment_tagged(tokens, tags, source, n=3, p=1.0, seed=0)
    assert source.seen == {"lives", "in", "now", "rejects", "call"}  # entity words are never candidates
    assert origin == [0, 0, 0, 1, 1, 1] and len(new) == 6
    for words, labels, i in zip(new, new_tags, origin):
        assert labels == tags[i] and len(words) == len(tokens[i])
        for word, old, tag in zip(words, tokens[i], labels):
            assert word == old if tag != "O" else word in (old + "x", old + "y")
        assert words != tokens[i]
    assert augment_tagged(tokens, tags, Swap(), n=3, p=1.0, seed=0)[0] == new  # deterministic for a seed


def test_a_tagger_distilled_on_augmented_sentences_trains_on_them_with_their_tags(tmp_path):
    _tiny_tagger(tmp_path / "teacher", ("O", "B-K", "I-K"))
    rows = _tagged_rows(24, seed=8)
    train = _write(tmp_path / "train.conll", _conll_text(rows))
    out = tmp_path / "out"
    cmd = [sys.executable, str(SCRIPT), "--teacher", str(tmp_path / "teacher"), "--student", "tiny", "--train_file",
           train, "--output_dir", str(out), "--max_steps", "2", "--augment", "2", "--alpha", "0.5",
           "--report_to", "none", "--teacher_cache", str(tmp_path / "cache")]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((out / "data_report.json").read_text())
    assert 0 < report["augmented_labelled_rows"] <= 48
    unlabeled = _write(tmp_path / "more.txt", "w1 w2\n")
    cmd[cmd.index("--augment") : cmd.index("--augment") + 2] = ["--unlabeled_file", unlabeled]
    cmd[cmd.index("--output_dir") + 1] = str(tmp_path / "out2")
    refused = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert refused.returncode == 2 and "--unlabeled_file is not supported for task type" in refused.stderr


def test_a_hub_ner_data_set_is_read_as_iob2_tag_strings():
    from datasets import ClassLabel, Dataset, DatasetDict, Features, Sequence, Value

    from distillkit.data.conll import load_hub_tagged

    names = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]  # conll2003's ner_tags are IOB2 ids of a ClassLabel
    features = Features({"tokens": Sequence(Value("string")), "ner_tags": Sequence(ClassLabel(names=names))})
    split = Dataset.from_dict({"tokens": [["Peter", "Blackburn", "in", "Bonn"]], "ner_tags": [[1, 2, 0, 3]]},
                              features=features)  # fmt: skip
    seen = []

    def loader(name):
        seen.append(name)
        return DatasetDict(train=split, validation=split, test=split)

    data = load_hub_tagged("conll2003", loader)
    assert seen == ["conll2003"] and set(data) == {"train", "validation"}
    assert data["train"]["tags"] == [["B-PER", "I-PER", "O", "B-LOC"]]
    with pytest.raises(ValueError, match="has no `tokens` and `ner_tags` columns"):
        load_hub_tagged("other", lambda name: DatasetDict(train=Dataset.from_dict({"text": ["a"]})))
