"""The bad-input sweep: every case goes through the command line and must stop before training with exit code 2,
one paragraph that names the problem and the fix, no traceback (unless --debug), and nothing in the output folder."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from .conftest import rule_sentences, tiny_bert

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "distill.py"

NO_SHAPE = {"--num_layers": None, "--hidden_size": None, "--num_heads": None}  # flags the case removes
# (case, what the command line changes, the message it must print)
CASES = [
    ("temperature 0", {"--temperature": "0"}, r"temperature must be > 0 \(got 0.0\)"),
    ("alpha 1.5", {"--alpha": "1.5"}, r"alpha must be in \[0, 1\] \(got 1.5\)"),
    ("layer map out of range", {"--hidden_weight": "1", "--layer_map": "1:9"}, r"layer_map pair 1:9 is out of range"),
    ("label count mismatch", {"--student": "{three_labels}"}, r"different label counts .* num_labels=2"),
    ("vocabulary mismatch", {"--student": "{other_vocab}"}, r"vocabularies differ .* vocab_size=45"),
    ("missing column", {"--text_column": "text"}, r"column\(s\) \['text'\] not found in the train data"),
    ("missing file", {"--train_file": "{tmp}/nope.tsv"}, r"train file '.*nope.tsv' does not exist"),
    ("empty file", {"--train_file": "{empty}"}, r"is empty; give a file with a header"),
    ("header without rows", {"--train_file": "{header_only}"}, r"has a header but no rows"),
    ("unknown task", {"--task": "sst3"}, r"unknown task 'sst3'; known tasks: cola, sst2"),
    ("unknown preset", {"--student": "huge"}, r"unknown student preset 'huge'; known: tiny, mini, small, medium"),
    ("embedding size above width", {"--embedding_size": "64"}, r"embedding_size=64 must be between 1 and hidden"),
    ("heads not dividing the width", {"--num_heads": "3"}, r"num_heads=3 does not divide hidden_size=16"),
    (
        "teacher:K too deep",
        {"--student": "teacher:9", **NO_SHAPE},
        r"teacher:9 asks for more layers than the teacher has \(2\)",
    ),
    ("unwritable output directory", {"--output_dir": "{train}/out"}, r"cannot be created: .* is a file"),
    ("pickle-only teacher", {"--teacher": "{pickled}"}, r"holds only pickle weights .* --allow_pickle_weights"),
    ("labels outside the label set", {"--train_file": "{bad_labels}"}, r"label 7 is outside the teacher's label set"),
    ("pair task, one text column", {"--task": "mrpc"}, r"task 'mrpc' is a sentence-pair task"),
    ("unknown recipe field", {"--config": "{bad_recipe}"}, r"unknown field\(s\) \['temprature'\]"),
    ("missing recipe", {"--config": "{tmp}/none.yaml"}, r"recipe '.*none.yaml' does not exist"),
    ("resume without a checkpoint", {"--resume_from_checkpoint": "latest"}, r"holds no complete checkpoint"),
    ("push without a repository", {"--push_to_hub": "true"}, r"--push_to_hub needs --hub_model_id"),
    ("a cache of other data", {"--teacher_cache": "{foreign_cache}"}, r"teacher cache in .* was computed for another"),
    (
        "evaluation without validation data",
        {"--eval_strategy": "steps", "--eval_steps": "15"},
        r"--eval_strategy steps evaluates during training, but no validation data was given",
    ),
    (
        "best model without validation data",
        {"--load_best_model_at_end": "true", "--save_strategy": "no"},
        r"needs validation data",
    ),
    ("an empty label", {"--train_file": "{empty_label}"}, r"labels.tsv', line 3: the label \('label'\) is empty"),
    (
        "a row with an extra field",
        {"--train_file": "{extra_field}"},
        r"fields.tsv', line 3: expected 2 fields .* found 3",
    ),
    ("negative teacher_min_steps", {"--teacher_min_steps": "-1"}, r"teacher_min_steps must be >= 0"),
    ("negative augment", {"--augment": "-1"}, r"augment must be >= 0 new texts per training text \(got -1\)"),
    ("augment_p of 0", {"--augment": "2", "--augment_p": "0"}, r"augment_p must be in \(0, 1\] \(got 0.0\)"),
    ("augment_p above 1", {"--augment": "2", "--augment_p": "1.5"}, r"augment_p must be in \(0, 1\]"),
    (
        "an augment_mlm that is no masked LM",
        {"--augment": "2", "--augment_mlm": "{teacher}"},
        r"--augment_mlm '.*' is not a masked language model",
    ),
    ("a missing unlabeled file", {"--unlabeled_file": "{tmp}/none.txt"}, r"unlabeled file '.*none.txt' does not exist"),
    ("an empty unlabeled file", {"--unlabeled_file": "{blank_txt}"}, r"unlabeled file '.*blank.txt' is empty"),
    (
        "an unlabeled file without the text column",
        {"--unlabeled_file": "{no_text_column}"},
        r"unlabeled file '.*other.csv' has no column\(s\) \['sentence'\]",
    ),
    (
        "unlabeled text with alpha 0",
        {"--unlabeled_file": "{unlabeled_txt}", "--alpha": "0"},
        r"alpha=0 trains on gold labels alone",
    ),
    (
        "a fast backend without a cache",
        {"--teacher_backend": "int8"},
        r"teacher_backend 'int8' scores the teacher cache",
    ),
    (
        "an unknown backend",
        {"--teacher_backend": "tpu", "--teacher_cache": "{tmp}/c"},
        r"teacher_backend must be one of",
    ),
    (
        "a pruned student wider than the teacher",
        {"--student": "pruned", "--hidden_size": "64"},
        r"a pruned student keeps part of the teacher: --hidden_size 64 must be between 1 and the teacher's 32",
    ),
    (
        "a pruned student whose heads do not fit",
        {"--student": "pruned", "--hidden_size": "24", "--num_heads": "1"},  # a head of 24 > the teacher's 16
        r"--num_heads 1 does not fit --hidden_size 24",
    ),
    (
        "a pruned student of a teacher without a trained head, never fine-tuned",
        {"--student": "pruned", "--teacher": "{base_teacher}", "--finetune_teacher": "never"},
        r"has no trained classification head",
    ),
    ("prune_samples 0", {"--student": "pruned", "--prune_samples": "0"}, r"prune_samples must be >= 1 \(got 0\)"),
    (
        "saved pruning scores for an encoder",
        {"--student": "pruned", "--prune_scores": "{tmp}/scores.safetensors"},
        r"--prune_scores keeps a decoder LM's activation scores",
    ),
    (
        "two stages without an intermediate term",
        {"--intermediate_epochs": "1"},
        r"intermediate_epochs=1 trains the intermediate terms alone first, but none is on",
    ),
    (
        "minilm heads that divide no width",
        {"--minilm_weight": "1", "--minilm_heads": "3"},
        r"minilm_heads=3 must divide both widths \{'student': 16, 'teacher': 32\}",
    ),
]
# token classification (a tagger teacher, CoNLL files): each names the file and the line where there is one
TAGGER = {"--teacher": "{tagger}", "--train_file": "{good_conll}"}
CASES += [
    ("token file: a line of another width", {**TAGGER, "--train_file": "{ragged_conll}"},
     r"ragged.conll, line 3 has 2 columns, the file's other lines 3"),
    ("token file: a tag outside the teacher's set", {**TAGGER, "--train_file": "{new_tag_conll}"},
     r"\['B-NEW'\] are outside the teacher's label set \['B-K', 'I-K', 'O'\]"),
    ("token file: a tag that is no IOB tag", {**TAGGER, "--train_file": "{bad_tag_conll}"},
     r"bad_tag.conll, line 2: tag 'K' is neither O nor B-/I- followed by a type"),
    ("token file: no sentences", {**TAGGER, "--train_file": "{docstart_conll}"}, r"docstart.conll' holds no sentences"),
    ("token file: tag column out of range", {**TAGGER, "--tag_column": "4"},
     r"--tag_column 4 is out of range: .*good.conll has 3 columns"),
    ("token task: a feature it does not offer", {**TAGGER, "--teacher_lora_r": "4"},
     r"not supported for task type 'token-classification': fine-tune the tagger fully"),
    ("token file: json lines with numbered ner_tags", {**TAGGER, "--train_file": "{numbered_jsonl}"},
     r"numbered.jsonl, line 1: the tags are numbers \(\[1, 2, 0\]...\); distillkit reads tag names"),
]  # fmt: skip
# question answering (a span teacher, SQuAD files): the question's id or the file's missing key is named
SPANS = {"--teacher": "{span_teacher}", "--train_file": "{good_squad}", "--task_type": "question-answering"}
CASES += [
    ("squad file: not SQuAD-shaped", {**SPANS, "--train_file": "{shapeless_squad}"},
     r"shapeless.json has no 'data' \(found \['version'\]\): not SQuAD-shaped"),
    ("squad file: an answer away from its offset", {**SPANS, "--train_file": "{moved_squad}"},
     r"question 'q2': the answer 'w3' is not at answer_start 0 of its context \(found 'w9'\)"),
    ("squad file: an unanswerable question", {**SPANS, "--train_file": "{v2_squad}"},
     r"question 'q3' has no answer \(a SQuAD v2 unanswerable question\?\)"),
    ("squad: a stride as long as the room left", {**SPANS, "--max_seq_length": "12", "--doc_stride": "8"},
     r"--doc_stride 8 must be smaller than the room left for the context \(8 tokens"),
    ("squad: a question longer than max_seq_length", {**SPANS, "--train_file": "{long_question_squad}",
     "--max_seq_length": "8"}, r"question 'q4' has 9 tokens, more than max_seq_length 8 leaves"),
    ("squad: a feature it does not offer", {**SPANS, "--augment": "1"},
     r"not supported for task type 'question-answering': augmented contexts would move the answers' offsets"),
]  # fmt: skip
# the models themselves: a typo in a folder, a kind of teacher no task type distils
CASES += [
    ("a teacher folder with a typo", {"--teacher": "{tmp}/teachr"}, r"teacher folder '.*teachr' \(--teacher\) does "
     r"not exist: check the path"),
    ("a student folder with a typo", {"--student": "../studnt/", **NO_SHAPE}, r"student folder '../studnt/' "
     r"\(--student\) does not exist"),
    ("a seq2seq teacher", {"--teacher": "{t5_lm}"}, r"is a sequence-to-sequence model \(T5ForConditionalGeneration\); "
     r"distillkit distils sequence-classification, token-classification, question-answering, causal-lm models"),
]  # fmt: skip
# causal language models (a GPT-2 teacher with a word-level tokenizer; text files)
LM = {"--teacher": "{gpt2_lm}", "--train_file": "{lm_txt}", "--block_size": "16"}
CASES += [
    ("causal-lm: a teacher without an LM head", {**LM, "--teacher": "{base_teacher}", "--task_type": "causal-lm"},
     r"not supported for task type 'causal-lm': a language model is its own trained head"),
    ("causal-lm: an encoder preset", {**LM, "--student": "tiny", **NO_SHAPE}, r"--student tiny: the presets are "
     r"BERT-shaped encoders, not language models. Use --student custom"),
    ("causal-lm: instruction rows without a completion", {**LM, "--train_file": "{no_completion_jsonl}"},
     r"line 1: instruction rows need 'prompt' and 'completion' strings; missing \['completion'\]"),
    ("causal-lm: completions cut away", {**LM, "--train_file": "{long_prompt_jsonl}", "--block_size": "4"},
     r"every completion is cut away by --block_size 4 \(the longest prompt has 6 tokens\)"),
    ("causal-lm: a text file without text", {**LM, "--train_file": "{blank_txt}"}, r"holds no text"),
    ("causal-lm: a pruned GPT-2", {**LM, "--student": "pruned", **NO_SHAPE}, r"cannot prune a GPT2LMHeadModel: "
     r"distillkit cuts decoders of the Llama layout"),
    ("causal-lm: pruned heads across key-value groups", {**LM, "--teacher": "{llama_lm}", "--student": "pruned",
     "--num_heads": "3", "--num_key_value_heads": "2", "--num_layers": None, "--hidden_size": "24"},
     r"--num_heads 3 with --num_key_value_heads 2: query heads are cut inside key-value groups"),
    ("causal-lm: an encoder's layer score", {**LM, "--teacher": "{llama_lm}", "--student": "pruned", **NO_SHAPE,
     "--prune_layers": "importance"}, r"--prune_layers importance is the encoders' first-order score"),
    ("causal-lm: a trimmed vocabulary", {**LM, "--trim_vocab": "true"}, r"not supported for task type 'causal-lm': "
     r"a trimmed language model cannot emit the words it lost"),
]  # fmt: skip
if importlib.util.find_spec("tensorboard") is None:  # what a user without tensorboard sees
    CASES.append(
        ("tensorboard not installed", {"--report_to": "tensorboard"}, r"--report_to tensorboard: tensorboard is not "
         r"installed. Install it \(pip install tensorboard\)")
    )  # fmt: skip


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, trained_teacher_dir):
    tmp = tmp_path_factory.mktemp("bad")
    texts, labels = rule_sentences(64, 0)
    train = tmp / "train.tsv"
    train.write_text("sentence\tlabel\n" + "".join(f"{t}\t{y}\n" for t, y in zip(texts, labels)))
    (tmp / "empty.tsv").write_text("")
    (tmp / "header.tsv").write_text("sentence\tlabel\n")
    (tmp / "labels.tsv").write_text("sentence\tlabel\nw1 w2\t0\nw3\t7\n")
    (tmp / "empty_labels.tsv").write_text("sentence\tlabel\nw1 w2\t0\nw3\t\n")
    (tmp / "fields.tsv").write_text("sentence\tlabel\nw1 w2\t0\nw3\tw4\t1\n")
    (tmp / "blank.txt").write_text("\n \n")
    (tmp / "more.txt").write_text("w1 w2\nw3 w4\n")
    (tmp / "other.csv").write_text("text\nw1 w2\n")
    (tmp / "bad.yaml").write_text("teacher: x\ntemprature: 2\n")
    (tmp / "foreign_cache").mkdir()
    (tmp / "foreign_cache" / "manifest.json").write_text('{"dataset_fingerprint": "other", "num_rows": 3}')
    tiny_bert(layers=1, hidden=16, num_labels=3).save_pretrained(tmp / "three_labels")
    tiny_bert(layers=1, hidden=16, vocab_size=99).save_pretrained(tmp / "other_vocab")
    pickled = tmp / "pickled"
    pickled.mkdir()
    teacher = tiny_bert()
    teacher.config.save_pretrained(pickled)
    torch.save(teacher.state_dict(), pickled / "pytorch_model.bin")
    from transformers import BertModel

    BertModel(tiny_bert().config).save_pretrained(tmp / "base")
    from transformers import BertForTokenClassification

    from .conftest import make_tokenizer

    tags = ("O", "B-K", "I-K")
    tagger = BertForTokenClassification(tiny_bert(num_labels=3).config)
    tagger.config.id2label, tagger.config.label2id = dict(enumerate(tags)), {t: i for i, t in enumerate(tags)}
    tagger.config.architectures = ["BertForTokenClassification"]
    tagger.save_pretrained(tmp / "tagger")
    make_tokenizer().save_pretrained(tmp / "tagger")
    (tmp / "good.conll").write_text("w1 X B-K\nw2 X I-K\nw3 X O\n\nw4 X O\n")
    (tmp / "ragged.conll").write_text("w1 X B-K\nw2 X I-K\nw3 O\n")
    (tmp / "new_tag.conll").write_text("w1 X B-NEW\nw2 X O\n")
    (tmp / "bad_tag.conll").write_text("w1 X O\nw2 X K\n")
    (tmp / "docstart.conll").write_text("-DOCSTART- -X- O\n\n")
    (tmp / "numbered.jsonl").write_text('{"tokens": ["w1", "w2", "w3"], "ner_tags": [1, 2, 0]}\n')
    from transformers import GPT2Config, GPT2LMHeadModel

    from .lm_fixtures import counting_text, lm_tokenizer, tiny_llama, write_text

    llama = tiny_llama(layers=1)  # 4 query heads in 2 key-value groups
    llama.config.architectures = ["LlamaForCausalLM"]
    llama.save_pretrained(tmp / "llama_lm")
    lm_tokenizer(tmp / "llama_lm")

    lm = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=50, n_positions=32))
    lm.config.architectures = ["GPT2LMHeadModel"]
    lm.save_pretrained(tmp / "gpt2_lm")
    lm_tokenizer(tmp / "gpt2_lm")
    write_text(tmp / "lm.txt", counting_text(40, 0))
    (tmp / "no_completion.jsonl").write_text('{"prompt": "one two"}\n')
    (tmp / "long_prompt.jsonl").write_text('{"prompt": "one two three four five six", "completion": "seven"}\n')
    from transformers import T5Config, T5ForConditionalGeneration

    t5 = T5ForConditionalGeneration(T5Config(vocab_size=50, d_model=16, d_kv=8, d_ff=32, num_layers=1, num_heads=2))
    t5.config.architectures = ["T5ForConditionalGeneration"]
    t5.save_pretrained(tmp / "t5_lm")
    conll = {name: tmp / f"{name}.conll" for name in ("good", "ragged", "new_tag", "bad_tag", "docstart")}
    from transformers import BertForQuestionAnswering

    spans = BertForQuestionAnswering(tiny_bert().config)
    spans.config.architectures = ["BertForQuestionAnswering"]
    spans.save_pretrained(tmp / "span_teacher")
    make_tokenizer().save_pretrained(tmp / "span_teacher")

    def squad(name: str, qid: str, question: str, context: str, text: str, start: int | None) -> Path:
        answers = [] if start is None else [{"text": text, "answer_start": start}]
        qa = {"id": qid, "question": question, "answers": answers, **({"is_impossible": True} if start is None else {})}
        doc = {"data": [{"title": "t", "paragraphs": [{"context": context, "qas": [qa]}]}]}
        (tmp / f"{name}.json").write_text(__import__("json").dumps(doc))
        return tmp / f"{name}.json"

    good = squad("good", "q1", "w1", "w7 w1 w9 w8", "w1", 3)
    shapeless = tmp / "shapeless.json"
    shapeless.write_text('{"version": "1.1"}')
    squads = {
        "good_squad": good,
        "shapeless_squad": shapeless,
        "moved_squad": squad("moved", "q2", "w3", "w9 w3", "w3", 0),
        "v2_squad": squad("v2", "q3", "w3", "w9 w8", "", None),
        "long_question_squad": squad("long", "q4", " ".join(f"w{i}" for i in range(9)), "w7 w1", "w1", 3),
    }
    return {
        "tagger": tmp / "tagger", **{f"{k}_conll": v for k, v in conll.items()},
        "numbered_jsonl": tmp / "numbered.jsonl", "gpt2_lm": tmp / "gpt2_lm", "t5_lm": tmp / "t5_lm",
        "llama_lm": tmp / "llama_lm", "lm_txt": tmp / "lm.txt", "no_completion_jsonl": tmp / "no_completion.jsonl",
        "long_prompt_jsonl": tmp / "long_prompt.jsonl",
        "span_teacher": tmp / "span_teacher", **squads,
        "base_teacher": tmp / "base", "tmp": tmp, "train": train, "empty": tmp / "empty.tsv",
        "header_only": tmp / "header.tsv",
        "bad_labels": tmp / "labels.tsv", "bad_recipe": tmp / "bad.yaml", "three_labels": tmp / "three_labels",
        "other_vocab": tmp / "other_vocab", "pickled": pickled, "teacher": trained_teacher_dir,
        "foreign_cache": tmp / "foreign_cache", "empty_label": tmp / "empty_labels.tsv",
        "extra_field": tmp / "fields.tsv", "blank_txt": tmp / "blank.txt", "unlabeled_txt": tmp / "more.txt",
        "no_text_column": tmp / "other.csv",
    }  # fmt: skip


def _command(inputs, change, out, debug=False):
    flags = {
        "--teacher": str(inputs["teacher"]), "--student": "custom", "--num_layers": "1", "--hidden_size": "16",
        "--num_heads": "2", "--train_file": str(inputs["train"]), "--output_dir": str(out), "--max_steps": "2",
        "--report_to": "none",
    }  # fmt: skip
    flags.update({k: v.format(**inputs) for k, v in change.items() if v is not None})
    flags = {k: v for k, v in flags.items() if change.get(k, "") is not None}
    args = [x for kv in flags.items() for x in kv]
    return [sys.executable, str(SCRIPT), *args, *(["--debug"] if debug else [])]


@pytest.mark.parametrize("case,change,message", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_refused_cleanly(tmp_path, inputs, case, change, message):
    out = tmp_path / "out"
    result = subprocess.run(_command(inputs, change, out), capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, (case, result.returncode, result.stderr[-2000:])
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr[-2000:]  # one paragraph
    assert __import__("re").search(message, errors[0]), errors[0]
    assert "Traceback" not in result.stderr
    assert not out.exists() or not any(out.iterdir()), sorted(p.name for p in out.iterdir())


def test_debug_shows_the_traceback(tmp_path, inputs):
    result = subprocess.run(_command(inputs, {"--alpha": "1.5"}, tmp_path / "out", debug=True), capture_output=True,
                            text=True, timeout=300)  # fmt: skip
    assert result.returncode != 0 and "Traceback" in result.stderr and "alpha must be in [0, 1]" in result.stderr


def test_the_sweep_covers_enough_cases():
    assert len(CASES) >= 15
