import pytest
import torch

from distillkit.losses import HiddenProjection, attention_loss, build_layer_map, hidden_state_loss


@pytest.mark.parametrize(
    "student,teacher,expected",
    [
        (4, 12, [(1, 3), (2, 6), (3, 9), (4, 12)]),
        (4, 6, [(1, 2), (2, 3), (3, 5), (4, 6)]),
        (3, 12, [(1, 4), (2, 8), (3, 12)]),
        (3, 5, [(1, 2), (2, 4), (3, 5)]),
        (4, 4, [(1, 1), (2, 2), (3, 3), (4, 4)]),
    ],
)
def test_uniform_layer_maps(student, teacher, expected):
    layer_map = build_layer_map("uniform", student, teacher)
    assert layer_map == expected
    teachers = [t for _, t in layer_map]
    assert teachers == sorted(set(teachers)) and teachers[-1] == teacher  # increasing, last meets last


def test_last_and_explicit_layer_maps():
    assert build_layer_map("last", 4, 12) == [(4, 12)]
    assert build_layer_map("0:0,1:4,2:12", 2, 12) == [(0, 0), (1, 4), (2, 12)]
    assert build_layer_map([[1, 6], [2, 12]], 2, 12) == [(1, 6), (2, 12)]
    assert build_layer_map(["1:6", "2:12"], 2, 12) == [(1, 6), (2, 12)]


@pytest.mark.parametrize("spec", ["3:12", "1:13", "-1:2", [(1, 99)]])
def test_out_of_range_pairs_are_refused(spec):
    with pytest.raises(ValueError, match="out of range.*student has layers 0..2 and the teacher 0..12"):
        build_layer_map(spec, 2, 12)


@pytest.mark.parametrize("spec", ["every-other", "1-3", ""])
def test_malformed_layer_maps_are_refused(spec):
    with pytest.raises(ValueError, match="layer_map"):
        build_layer_map(spec, 2, 12)


@pytest.mark.parametrize("kind", ["mse", "cosine"])
def test_hidden_loss_zero_for_equal_states_and_positive_otherwise(kind):
    h = torch.randn(2, 5, 8)
    assert hidden_state_loss(h, h.clone(), kind=kind).item() == pytest.approx(0.0, abs=1e-6)
    assert hidden_state_loss(h, torch.randn(2, 5, 8), kind=kind).item() > 0.1


def test_hidden_mse_value_and_mask():
    s, t = torch.zeros(1, 3, 2), torch.tensor([[[1.0, 1.0], [2.0, 2.0], [100.0, 100.0]]])
    mask = torch.tensor([[1, 1, 0]])
    # mean over dims per token: 1 and 4; the padded token (100) is left out
    assert hidden_state_loss(s, t, mask, "mse").item() == pytest.approx(2.5)
    assert hidden_state_loss(s, t, None, "mse").item() == pytest.approx((1 + 4 + 10000) / 3)


def test_cosine_is_scale_free():
    h = torch.randn(2, 4, 6)
    assert hidden_state_loss(h * 7.0, h, kind="cosine").item() == pytest.approx(0.0, abs=1e-6)


def _attn(batch, heads, seq, mask=None, seed=0):
    g = torch.Generator().manual_seed(seed)
    scores = torch.randn(batch, heads, seq, seq, generator=g)
    if mask is not None:
        scores = scores.masked_fill(mask[:, None, None, :] == 0, float("-inf"))
    return scores.softmax(-1)


@pytest.mark.parametrize("kind", ["kl", "mse"])
def test_attention_loss_zero_for_equal_maps(kind):
    a = _attn(2, 2, 5)
    assert attention_loss(a, a.clone(), kind=kind).item() == pytest.approx(0.0, abs=1e-6)
    assert attention_loss(a, _attn(2, 2, 5, seed=1), kind=kind).item() > 0.0


@pytest.mark.parametrize("kind", ["kl", "mse"])
def test_attention_loss_ignores_padding(kind):
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 0]])
    s, t = _attn(2, 2, 5, mask, seed=0), _attn(2, 2, 5, mask, seed=1)
    before = attention_loss(s, t, mask, kind)
    assert torch.isfinite(before)
    # rewrite the padded query rows with garbage: nothing changes
    s2, t2 = s.clone(), t.clone()
    pad_rows = mask == 0
    s2.permute(0, 2, 1, 3)[pad_rows] = torch.rand(int(pad_rows.sum()), 2, 5)
    t2.permute(0, 2, 1, 3)[pad_rows] = torch.rand(int(pad_rows.sum()), 2, 5)
    assert attention_loss(s2, t2, mask, kind).item() == pytest.approx(before.item(), rel=1e-6)


def test_attention_kl_matches_the_formula():
    s, t = _attn(1, 1, 3, seed=2), _attn(1, 1, 3, seed=3)
    expected = (t * (t.log() - s.log())).sum(-1).mean()
    assert attention_loss(s, t, kind="kl").item() == pytest.approx(expected.item(), rel=1e-5)


def test_attention_with_different_head_counts_compares_head_means():
    s, t = _attn(2, 2, 4, seed=4), _attn(2, 12, 4, seed=5)
    expected = attention_loss(s.mean(1, keepdim=True), t.mean(1, keepdim=True), kind="mse")
    assert attention_loss(s, t, kind="mse").item() == pytest.approx(expected.item(), rel=1e-6)


def test_projection_maps_widths_and_is_identity_when_equal():
    h = torch.randn(2, 3, 16)
    proj = HiddenProjection(16, 48, num_layers=2)
    assert proj(1, h).shape == (2, 3, 48)
    assert sum(p.numel() for p in proj.parameters()) == 2 * (16 * 48 + 48)
    same = HiddenProjection(16, 16, num_layers=3)
    assert torch.equal(same(0, h), h) and not list(same.parameters())
    with pytest.raises(ValueError, match="project the student"):
        hidden_state_loss(h, torch.randn(2, 3, 48))


def test_the_layer_normed_hidden_loss_does_not_see_the_teachers_scale():
    torch.manual_seed(0)
    student, teacher = torch.randn(2, 5, 8), torch.randn(2, 5, 8)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    base = hidden_state_loss(student, teacher, mask, kind="ln_mse")
    torch.testing.assert_close(hidden_state_loss(student, 100 * teacher, mask, kind="ln_mse"), base)
    assert hidden_state_loss(student, 100 * teacher, mask, kind="mse") > 1000 * hidden_state_loss(
        student, teacher, mask
    )
    assert hidden_state_loss(teacher * 3 + 1, teacher, mask, kind="ln_mse") < 1e-6  # same up to scale and shift
    padded = student.clone()
    padded[0, 3:] = 1e6  # padding counts for nothing
    torch.testing.assert_close(hidden_state_loss(padded, teacher, mask, kind="ln_mse"), base)
