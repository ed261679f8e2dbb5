"""SQuAD data and scores (the groundwork of the question-answering task type): hand-worked cases."""

import json

import pytest

from distillkit.data.squad import read_squad
from distillkit.squad_metrics import exact_match, normalize_answer, squad_scores, token_f1


@pytest.mark.parametrize(
    "text,normal",
    [("The  Denver Broncos!", "denver broncos"), ("An apple, a day.", "apple day"), ("theatre", "theatre"),
     ("U.S.-based", "usbased"), ("  ", "")],
)  # fmt: skip
def test_normalisation_is_squad_v1_1s(text, normal):
    assert normalize_answer(text) == normal


def test_token_f1_and_exact_match_worked_by_hand():
    assert token_f1("Denver Broncos", "the Denver Broncos team") == pytest.approx(0.8)  # p 1, r 2/3
    assert token_f1("broncos broncos", "broncos") == pytest.approx(2 / 3)  # a shared token counts once: p 1/2, r 1
    assert token_f1("Carolina", "Denver Broncos") == 0.0
    assert token_f1("the", "a") == 0.0 and exact_match("the", "a") == 1.0  # both normalise to nothing (as v1.1)
    assert exact_match("the cat", "Cat.") == 1.0 and exact_match("cats", "cat") == 0.0


def test_scores_take_the_best_reference_and_count_missing_predictions_as_wrong():
    references = {"q1": ["Denver Broncos", "Broncos"], "q2": ["1990", "the year 1990"], "q3": ["Santa Clara"]}
    scores = squad_scores({"q1": "denver broncos", "q2": "in 1990"}, references)
    # q1: exact; q2: best F1 against "1990" (p 1/2, r 1: 2/3), no exact match; q3: no prediction
    assert scores["exact_match"] == pytest.approx(100 / 3)
    assert scores["f1"] == pytest.approx(100 * (1 + 2 / 3 + 0) / 3)
    with pytest.raises(ValueError, match="1 predictions for questions that have no references"):
        squad_scores({"q9": "x"}, references)


def _official(tmp_path, qas, context="Super Bowl 50 was played in Santa Clara."):
    path = tmp_path / "squad.json"
    path.write_text(json.dumps({"data": [{"title": "SB", "paragraphs": [{"context": context, "qas": qas}]}]}))
    return str(path)


def test_the_official_layout_and_json_lines_give_the_same_rows(tmp_path):
    qas = [{"id": "a1", "question": "Where?", "answers": [{"text": "Santa Clara", "answer_start": 28}] * 2}]
    rows = read_squad(_official(tmp_path, qas))
    answers = {"text": ["Santa Clara"] * 2, "answer_start": [28, 28]}
    context = "Super Bowl 50 was played in Santa Clara."
    assert rows == [{"id": "a1", "title": "SB", "context": context, "question": "Where?", "answers": answers}]
    lines = tmp_path / "rows.jsonl"
    lines.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert read_squad(str(lines)) == rows


def test_an_answer_away_from_its_offset_names_the_question(tmp_path):
    qas = [{"id": "a7", "question": "Where?", "answers": [{"text": "Santa Clara", "answer_start": 27}]}]
    with pytest.raises(ValueError, match=r"question 'a7': the answer 'Santa Clara' is not at answer_start 27 .*"
                       r"found ' Santa Clar'"):  # fmt: skip
        read_squad(_official(tmp_path, qas))


def test_unanswerable_questions_and_other_shapes_are_refused_with_the_reason(tmp_path):
    qas = [{"id": "v2", "question": "Who?", "answers": [], "is_impossible": True}]
    with pytest.raises(ValueError, match=r"question 'v2' has no answer \(a SQuAD v2 unanswerable question\?\)"):
        read_squad(_official(tmp_path, qas))
    with pytest.raises(ValueError, match=r"article 0, paragraph 0, a question has no 'id'"):
        read_squad(_official(tmp_path, [{"question": "Who?", "answers": []}]))
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"version": "1.1", "articles": []}))
    with pytest.raises(ValueError, match=r"has no 'data' \(found \['articles', 'version'\]\): not SQuAD-shaped"):
        read_squad(str(other))


# ---- windows over long contexts, and spans back to text ------------------------------------------------------------

CONTEXT = " ".join(f"w{i}" for i in range(10, 22))  # 12 words of 3 characters: w15 starts at character 20


def _rows(question="w1 w2", answer="w15 w16"):
    return {"question": [question], "context": [CONTEXT],
            "answers": [{"text": [answer], "answer_start": [CONTEXT.index(answer)]}]}  # fmt: skip


def test_windows_overlap_by_the_stride_and_mark_the_answer_where_it_lies_whole():
    from distillkit.data.qa_features import encode_qa

    from .conftest import make_tokenizer

    tokenizer = make_tokenizer()
    # 10 tokens: [CLS] 2 question tokens [SEP], 5 of context, [SEP]; windows start 3 context tokens apart
    features = encode_qa(_rows(), tokenizer, max_seq_length=10, doc_stride=2)
    windows = [tokenizer.decode([i for i, o in zip(ids, offs) if o is not None])
               for ids, offs in zip(features["input_ids"], features["offset_mapping"])]  # fmt: skip
    assert windows == ["w10 w11 w12 w13 w14", "w13 w14 w15 w16 w17", "w16 w17 w18 w19 w20", "w19 w20 w21"]
    assert features["example_index"] == [0, 0, 0, 0]
    # the answer is whole only in the second window; the third holds w16 alone: [CLS] there
    assert list(zip(features["start_positions"], features["end_positions"])) == [(0, 0), (6, 7), (0, 0), (0, 0)]
    ids = features["input_ids"][1]
    assert tokenizer.decode(ids[6:8]) == "w15 w16"
    assert features["offset_mapping"][1][:4] == [None] * 4  # [CLS] and the question are not context


def test_the_best_span_over_a_questions_windows_is_read_back_as_context_text():
    import numpy as np

    from distillkit.data.qa_features import best_answers, encode_qa

    from .conftest import make_tokenizer

    features = encode_qa(_rows(), make_tokenizer(), max_seq_length=10, doc_stride=2)
    starts, ends = np.zeros((4, 10)), np.zeros((4, 10))
    starts[1, 6], ends[1, 7] = 5.0, 5.0  # w15 .. w16 in the second window: 10
    starts[2, 5], ends[2, 6] = 4.0, 4.0  # w17 .. w18 in the third window: 8, lower
    starts[0, 0], ends[0, 0] = 50.0, 50.0  # [CLS]: never an answer
    starts[3, 6], ends[3, 4] = 9.0, 9.0  # end before start: not a span
    texts = best_answers(starts, ends, features["example_index"], features["offset_mapping"], [CONTEXT])
    assert texts == ["w15 w16"]
    short = best_answers(starts, ends, features["example_index"], features["offset_mapping"], [CONTEXT],
                         max_answer_length=1)  # fmt: skip
    assert short != ["w15 w16"] and len(short[0].split()) == 1


def test_a_stride_that_leaves_no_progress_and_a_question_too_long_are_refused():
    from distillkit.data.qa_features import encode_qa

    from .conftest import make_tokenizer

    with pytest.raises(ValueError, match=r"--doc_stride 5 must be smaller than the room left for the context \(5"):
        encode_qa(_rows(), make_tokenizer(), max_seq_length=10, doc_stride=5)
    with pytest.raises(ValueError, match=r"question 0 has 8 tokens, more than max_seq_length 10 leaves"):
        encode_qa(_rows(question="w1 w2 w3 w4 w5 w6 w7 w8"), make_tokenizer(), max_seq_length=10, doc_stride=2)
