"""Local files read exactly: GLUE's unquoted TSV, standard CSV, and errors that name the file and the line."""

import pytest

from distillkit.data import load_files, read_delimited

# GLUE quirks: fields that start or end with a quote, unbalanced quotes, quotes in the middle, a field that is only
# a quote, a tab-free text with commas; as MRPC / RTE have them
QUIRKY = [
    ('"The Lord of the Rings" won.', "It won.", 1),
    ('He said "no', 'no"', 0),
    ('"', 'a "quoted" word', 1),
    ("plain, with commas, and 'single' quotes", '""', 0),
    ('ends with a quote"', '"starts with one', 1),
]


def _tsv(rows, bom=False, crlf=False, trailing_blank=True):
    newline = "\r\n" if crlf else "\n"
    lines = ["sentence1\tsentence2\tlabel"] + [f"{a}\t{b}\t{y}" for a, b, y in rows]
    text = newline.join(lines) + newline + (newline if trailing_blank else "")
    return ("\ufeff" if bom else "") + text


@pytest.mark.parametrize("bom", [False, True])
@pytest.mark.parametrize("crlf", [False, True])
def test_glue_tsv_fields_come_back_byte_for_byte(tmp_path, bom, crlf):
    path = tmp_path / "train.tsv"
    path.write_bytes(_tsv(QUIRKY, bom=bom, crlf=crlf).encode("utf-8"))
    data = load_files(str(path), label_column="label")["train"]
    assert data.column_names == ["sentence1", "sentence2", "label"]  # the byte-order mark is not in the name
    assert len(data) == len(QUIRKY)
    assert data["sentence1"] == [a for a, _, _ in QUIRKY]
    assert data["sentence2"] == [b for _, b, _ in QUIRKY]
    assert data["label"] == [y for _, _, y in QUIRKY]


def test_a_tsv_with_a_quoted_first_field_keeps_its_field_count_and_text(tmp_path):
    # the CSV reading of this row merges the two sentences (the quote opens a field that runs past the tab)
    path = tmp_path / "dev.tsv"
    path.write_text('sentence\tlabel\n"Quoted\tstart and more text\t1\nplain\t0\n')
    with pytest.raises(ValueError, match=r"dev.tsv', line 2: expected 2 fields .* found 3"):
        load_files(str(path))
    path.write_text('sentence\tlabel\n"Quoted" start, then text\t1\nplain\t0\n')
    data = load_files(str(path))["train"]
    assert data["sentence"] == ['"Quoted" start, then text', "plain"] and data["label"] == [1, 0]


def test_a_row_with_the_wrong_field_count_names_file_line_and_count(tmp_path):
    path = tmp_path / "train.tsv"
    path.write_text("sentence1\tsentence2\tlabel\na\tb\t0\nc\td\te\t1\n")
    with pytest.raises(ValueError, match=r"train file '.*train.tsv', line 3: expected 3 fields .* found 4"):
        load_files(str(path))


def test_an_empty_label_is_an_error_naming_file_and_line(tmp_path):
    path = tmp_path / "train.tsv"
    path.write_text("sentence\tlabel\na\t0\nb\t\nc\t1\n")
    with pytest.raises(ValueError, match=r"train.tsv', line 3: the label \('label'\) is empty"):
        load_files(str(path), label_column="label")
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"text": "a", "label": "x"}\n{"text": "b", "label": null}\n')
    with pytest.raises(ValueError, match=r"rows.jsonl', line 2: the label"):
        load_files(str(rows), label_column="label")


def test_csv_keeps_standard_quoting(tmp_path):
    path = tmp_path / "train.csv"
    path.write_text('text,label\n"a, b and ""c""",pos\nplain,neg\n')
    data = load_files(str(path))["train"]
    assert data["text"] == ['a, b and "c"', "plain"] and data["label"] == ["pos", "neg"]


def test_columns_are_typed_only_when_every_value_fits(tmp_path):
    path = tmp_path / "train.tsv"
    path.write_text("sentence\tlabel\tscore\tid\n007\t1\t3.5\tx1\n12\t0\t4\t2\n")
    columns, lines = read_delimited(str(path), "\t")
    # "007" would not come back as written from an integer: the column stays text
    assert columns == {"sentence": ["007", "12"], "label": [1, 0], "score": [3.5, 4.0], "id": ["x1", "2"]}
    assert lines == [2, 3]


def test_a_stsb_style_float_label_stays_a_number(tmp_path):
    path = tmp_path / "train.tsv"
    path.write_text("sentence1\tsentence2\tlabel\na\tb\t3.8\nc\td\t0\n")
    assert load_files(str(path))["train"]["label"] == [3.8, 0.0]


def test_blank_lines_and_a_header_only_file(tmp_path):
    path = tmp_path / "train.tsv"
    path.write_text("sentence\tlabel\n\na\t1\n\n")
    assert len(load_files(str(path))["train"]) == 1
    path.write_text("sentence\tlabel\n\n")
    with pytest.raises(ValueError, match="has a header but no rows"):
        load_files(str(path))
