import json
import subprocess
import sys

import pytest
import torch
from transformers import AlbertConfig, AlbertForSequenceClassification, BertConfig, BertForSequenceClassification

from distillkit import build_student
from distillkit.losses import soft_target_loss
from distillkit.students import PRESETS, size_report, spread_layers, svd_factorize

V, P, TYPES, C = 1000, 128, 2, 3  # the teacher's vocabulary, positions, token types, labels


@pytest.fixture(scope="module")
def teacher():
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=V,
        hidden_size=64,
        num_hidden_layers=4,
        num_attention_heads=2,
        intermediate_size=256,
        max_position_embeddings=P,
        num_labels=C,
        id2label={0: "neg", 1: "neu", 2: "pos"},
        label2id={"neg": 0, "neu": 1, "pos": 2},
    )
    return BertForSequenceClassification(config).eval()


def _layer(h: int, i: int) -> int:
    # q, k, v, out projections with biases; attention LayerNorm; FFN in and out; output LayerNorm
    return 4 * (h * h + h) + 2 * h + (h * i + i) + (i * h + h) + 2 * h


def bert_count(h: int, i: int, layers: int) -> int:
    return (V + P + TYPES) * h + 2 * h + layers * _layer(h, i) + (h * h + h) + (h * C + C)


def albert_count(h: int, i: int, groups: int, e: int) -> int:
    embeddings = (V + P + TYPES) * e + 2 * e
    return embeddings + (e * h + h) + groups * _layer(h, i) + (h * h + h) + (h * C + C)


KINDS = {
    "plain": {},
    "shared": {"share_layers": True},
    "shared2": {"share_layers": True, "num_hidden_groups": 2},
    "factorized": {"embedding_size": 32},
    "shared+factorized": {"share_layers": True, "embedding_size": 32},
}


@pytest.mark.parametrize("preset", list(PRESETS))
@pytest.mark.parametrize("kind", list(KINDS))
def test_parameter_counts_match_the_closed_form(teacher, preset, kind):
    kw = KINDS[kind]
    layers, h = PRESETS[preset]
    student = build_student(preset, teacher, init_from_teacher=False, **kw)
    if kind == "plain":
        expected = bert_count(h, 4 * h, layers)
        assert isinstance(student, BertForSequenceClassification)
    else:
        groups = kw.get("num_hidden_groups", 1) if kw.get("share_layers") else layers
        expected = albert_count(h, 4 * h, groups, kw.get("embedding_size", h))
        assert isinstance(student, AlbertForSequenceClassification)
    assert sum(p.numel() for p in student.parameters()) == expected
    report = size_report(student)
    assert report["parameters"] == expected
    assert report["size_fp32_mb"] == pytest.approx(expected * 4 / 1e6, abs=0.01)
    assert report["size_fp16_mb"] == pytest.approx(expected * 2 / 1e6, abs=0.01)


def test_presets_take_the_teachers_vocabulary_labels_and_shape_rules(teacher):
    for name, (layers, width) in PRESETS.items():
        config = build_student(name, teacher, init_from_teacher=False).config
        assert (config.num_hidden_layers, config.hidden_size) == (layers, width)
        assert config.num_attention_heads == width // 64 and config.intermediate_size == 4 * width
        assert config.vocab_size == V and config.num_labels == C
        assert config.id2label == {0: "neg", 1: "neu", 2: "pos"}
        assert config.max_position_embeddings == P
    custom = build_student("custom", teacher, num_layers=3, hidden_size=96, num_heads=3, init_from_teacher=False)
    assert (custom.config.num_hidden_layers, custom.config.hidden_size, custom.config.num_attention_heads) == (3, 96, 3)
    assert custom.config.intermediate_size == 384


def test_flops_count_compute_not_storage(teacher):
    plain = size_report(build_student("mini", teacher, init_from_teacher=False), seq_len=128)
    shared = size_report(build_student("mini", teacher, init_from_teacher=False, share_layers=True), seq_len=128)
    h, i, layers = 256, 1024, 4
    assert plain["flops_per_token"] == layers * (2 * (4 * h * h + 2 * h * i) + 4 * 128 * h)
    assert shared["flops_per_token"] == plain["flops_per_token"] + 2 * h * h  # plus the embedding map
    assert shared["parameters"] < plain["parameters"] / 2


def test_sharing_really_shares(teacher):
    student = build_student("mini", teacher, share_layers=True, init_from_teacher=False)
    layer_keys = {k.split(".albert_layers")[0] for k in student.state_dict() if "albert_layer_groups" in k}
    assert layer_keys == {"albert.encoder.albert_layer_groups.0"}  # one set of layer weights for 4 layers

    calls = []
    group = student.albert.encoder.albert_layer_groups[0]
    hook = group.register_forward_hook(lambda m, i, o: calls.append((m, m.albert_layers[0].ffn.weight.clone())))
    batch = {"input_ids": torch.randint(5, V, (2, 7)), "labels": torch.tensor([0, 2])}
    student.train()
    student(**batch).loss.backward()
    assert len(calls) == 4 and all(m is group for m, _ in calls)  # every layer ran the same module
    before = calls[0][1]
    torch.optim.SGD(student.parameters(), lr=1.0).step()
    calls.clear()
    student(**batch)
    hook.remove()
    after = [w for _, w in calls]
    assert not torch.equal(after[0], before)  # the step moved the weights ...
    assert all(torch.equal(w, after[0]) for w in after)  # ... and every layer sees the same new weights


def test_groups_split_the_layers(teacher):
    student = build_student("medium", teacher, share_layers=True, num_hidden_groups=2, init_from_teacher=False)
    groups = student.albert.encoder.albert_layer_groups
    used = []
    hooks = [g.register_forward_hook(lambda m, i, o, n=n: used.append(n)) for n, g in enumerate(groups)]
    student(input_ids=torch.randint(5, V, (1, 5)))
    for h in hooks:
        h.remove()
    assert used == [0, 0, 0, 0, 1, 1, 1, 1]


def test_svd_initialisation_is_the_best_rank_e_approximation():
    torch.manual_seed(1)
    # an embedding matrix with a decaying spectrum, as trained ones have
    u, _ = torch.linalg.qr(torch.randn(V, 64))
    v, _ = torch.linalg.qr(torch.randn(64, 64))
    sigma = torch.logspace(1, -1, 64)
    weight = u @ torch.diag(sigma) @ v.T
    for rank in (8, 16, 32):
        words, mapping, _ = svd_factorize(weight, rank, 64)
        error = torch.linalg.norm(words @ mapping.T - weight)
        best = sigma[rank:].pow(2).sum().sqrt()  # Eckart-Young: the tail of the singular values
        assert error.item() == pytest.approx(best.item(), rel=1e-3)
        random_factors = torch.randn(V, rank) @ torch.randn(rank, 64) * 0.01
        assert error < torch.linalg.norm(random_factors - weight)


def test_factorized_student_reconstructs_the_teachers_embeddings(teacher):
    student = build_student("custom", teacher, num_layers=2, hidden_size=64, num_heads=2, embedding_size=16)
    words = student.albert.embeddings.word_embeddings.weight
    mapping = student.albert.encoder.embedding_hidden_mapping_in.weight  # (64, 16)
    w = teacher.get_input_embeddings().weight
    sigma = torch.linalg.svdvals(w)
    error = torch.linalg.norm(words @ mapping.T - w)
    assert error.item() == pytest.approx(sigma[16:].pow(2).sum().sqrt().item(), rel=1e-3)
    assert any("truncated SVD" in n for n in student.distillkit_init_notes)


def test_spread_layers_keeps_distilberts_choice():
    assert spread_layers(12, 6) == [0, 2, 4, 7, 9, 11]
    assert spread_layers(12, 4) == [0, 4, 7, 11]
    assert spread_layers(4, 4) == [0, 1, 2, 3]
    assert spread_layers(6, 1) == [0]


def test_teacher_k_copies_layers_embeddings_and_head(teacher):
    student = build_student("teacher:2", teacher)
    assert type(student) is type(teacher) and student.config.num_hidden_layers == 2
    t, s = teacher.state_dict(), student.state_dict()
    assert torch.equal(s["bert.encoder.layer.0.output.dense.weight"], t["bert.encoder.layer.0.output.dense.weight"])
    assert torch.equal(s["bert.encoder.layer.1.output.dense.weight"], t["bert.encoder.layer.3.output.dense.weight"])
    assert torch.equal(s["classifier.weight"], t["classifier.weight"])
    assert torch.equal(s["bert.embeddings.word_embeddings.weight"], t["bert.embeddings.word_embeddings.weight"])


def _batch(tokenizer, n=64, seed=21):
    from .conftest import rule_sentences

    texts, _ = rule_sentences(n, seed)
    return tokenizer(texts, padding=True, return_tensors="pt")


@pytest.mark.parametrize(
    "spec,kw",
    [
        ("teacher:1", {}),
        ("custom", {"num_layers": 2, "hidden_size": 32, "num_heads": 2, "intermediate_size": 64, "share_layers": True}),
    ],
)
def test_initialised_student_starts_closer_to_the_teacher(tokenizer, trained_teacher, spec, kw):
    batch = _batch(tokenizer)
    with torch.no_grad():
        target = trained_teacher(**batch).logits
        losses = {}
        for init in (True, False):
            torch.manual_seed(3)
            student = build_student(spec, trained_teacher, init_from_teacher=init, **kw).eval()
            losses[init] = soft_target_loss(student(**batch).logits, target, temperature=2.0).item()
    assert losses[True] < 0.5 * losses[False], losses


def test_saved_students_reload_in_a_fresh_process_with_plain_transformers(tmp_path, teacher):
    students = {
        "plain": build_student("tiny", teacher),
        "shared": build_student("mini", teacher, share_layers=True),
        "factorized": build_student("small", teacher, embedding_size=32),
        "cut": build_student("teacher:2", teacher),
    }
    ids = torch.randint(5, V, (2, 9))
    expected = {}
    for name, student in students.items():
        student.eval().save_pretrained(tmp_path / name)
        with torch.no_grad():
            expected[name] = student(input_ids=ids).logits
    code = (
        "import sys, json, torch; sys.modules['distillkit'] = None\n"
        "from transformers import AutoModelForSequenceClassification as A\n"
        f"ids = torch.tensor({ids.tolist()})\n"
        "out = {}\n"
        f"for name in {list(students)}:\n"
        f"    m = A.from_pretrained({str(tmp_path)!r} + '/' + name).eval()\n"
        "    with torch.no_grad(): out[name] = [type(m).__name__, m(input_ids=ids).logits.tolist()]\n"
        "print(json.dumps(out))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    reloaded = json.loads(result.stdout.strip().splitlines()[-1])
    for name, student in students.items():
        cls, logits = reloaded[name]
        assert cls == type(student).__name__
        torch.testing.assert_close(torch.tensor(logits), expected[name], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize(
    "spec,kw,message",
    [
        ("huge", {}, r"unknown student preset 'huge'; known: tiny, mini, small, medium, teacher:K"),
        ("tiny", {"embedding_size": 256}, r"embedding_size=256 must be between 1 and hidden_size=128"),
        ("custom", {"num_layers": 2, "hidden_size": 100, "num_heads": 3}, r"num_heads=3 does not divide"),
        ("custom", {"num_layers": 2}, r"custom student needs --num_layers and --hidden_size"),
        ("teacher:9", {}, r"teacher:9 asks for more layers than the teacher has \(4\)"),
        ("teacher:2", {"share_layers": True}, r"teacher:K keeps the teacher's architecture"),
        ("tiny", {"num_hidden_groups": 2}, r"only meaningful with share_layers"),
        ("mini", {"share_layers": True, "num_hidden_groups": 5}, r"num_hidden_groups=5 must be between 1 and"),
    ],
)
def test_bad_student_specs_fail_with_the_fix(teacher, spec, kw, message):
    with pytest.raises(ValueError, match=message):
        build_student(spec, teacher, **kw)


def test_a_teacher_that_cannot_be_cut_is_refused():
    config = AlbertConfig(
        vocab_size=50,
        embedding_size=16,
        hidden_size=32,
        num_hidden_layers=4,
        num_attention_heads=2,
        intermediate_size=64,
        num_labels=2,
    )
    with pytest.raises(ValueError, match="cannot be cut into teacher:K.*Use a preset student"):
        build_student("teacher:2", AlbertForSequenceClassification(config))
