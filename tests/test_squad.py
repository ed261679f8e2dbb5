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
