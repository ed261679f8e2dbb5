"""Which student layer imitates which teacher layer.

Layers are numbered as in `output_hidden_states`: 0 is the embedding output, 1..L the outputs of the L transformer
layers. Attention maps exist for layers 1..L only (`outputs.attentions[i - 1]` belongs to layer i).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

LayerMap = list[tuple[int, int]]

LAYER_MAP_HELP = (
    "'auto' ('pruned' for a student cut from the teacher, else 'uniform'), 'pruned' (each layer of a student cut "
    "from the teacher imitates the teacher layer it was cut from), 'uniform' (student layer i imitates teacher layer "
    "ceil(i * T / S), for any depths), 'last' (last layer only), or explicit student:teacher pairs such as "
    "'1:3,2:6,3:9,4:12' (0 is the embedding output)"
)


@dataclass
class CutMap:
    """What a student cut from the teacher kept of it: where each of its layers, heads and channels came from.

    layers: the teacher layer (1..T, `output_hidden_states` numbering) each student layer 1..S was cut from.
    heads: per student layer, the teacher head (0-based, in that teacher layer) each student head was cut from.
    hidden: the teacher channel (0-based) each student channel was cut from.
    """

    layers: list[int]
    heads: list[list[int]]
    hidden: list[int]

    def then(self, inner: CutMap) -> CutMap:
        """The cut of a student cut from a student (`inner`, against this one) traced back to the teacher: what a
        schedule of several cuts kept of the teacher."""
        return CutMap(
            layers=[self.layers[i - 1] for i in inner.layers],
            heads=[[self.heads[i - 1][h] for h in hs] for i, hs in zip(inner.layers, inner.heads)],
            hidden=[self.hidden[c] for c in inner.hidden],
        )

    def head_map(self, layer_map: LayerMap) -> list[list[int] | None] | None:
        """Per pair of `layer_map`: the teacher heads that the student layer's heads came from, where the pair is
        (student layer, its source layer); None for other pairs (their heads are not paired one to one)."""
        heads = [self.heads[s - 1] if s > 0 and self.layers[s - 1] == t else None for s, t in layer_map]
        return heads if any(h is not None for h in heads) else None


def uniform_layer_map(student_layers: int, teacher_layers: int) -> LayerMap:
    """Student layer i (1..S) -> teacher layer ceil(i * T / S).

    Spreads the student's layers evenly over the teacher's depth with no divisibility requirement; the last student
    layer always meets the last teacher layer (12 -> 4 gives 3, 6, 9, 12; 5 -> 3 gives 2, 4, 5).
    """
    _check_depths(student_layers, teacher_layers)
    return [(i, -(-i * teacher_layers // student_layers)) for i in range(1, student_layers + 1)]


def _check_depths(student_layers: int, teacher_layers: int) -> None:
    if student_layers < 1 or teacher_layers < 1:
        raise ValueError(
            f"layer maps need at least one layer on each side (student {student_layers}, teacher {teacher_layers})."
        )


def _parse_pairs(spec: str | Sequence) -> LayerMap:
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    pairs = []
    for item in items:
        if isinstance(item, str):
            parts = item.strip().split(":")
            if len(parts) != 2 or not all(p.strip().lstrip("-").isdigit() for p in parts):
                raise ValueError(
                    f"layer_map entry {item!r} is not a 'student:teacher' pair; expected {LAYER_MAP_HELP}."
                )
            pairs.append((int(parts[0]), int(parts[1])))
        elif isinstance(item, Sequence) and len(item) == 2:
            pairs.append((int(item[0]), int(item[1])))
        else:
            raise ValueError(f"layer_map entry {item!r} is not a (student, teacher) pair; expected {LAYER_MAP_HELP}.")
    if not pairs:
        raise ValueError(f"layer_map is empty; expected {LAYER_MAP_HELP}.")
    return pairs


def build_layer_map(
    spec: str | Sequence, student_layers: int, teacher_layers: int, cut: CutMap | None = None
) -> LayerMap:
    """Resolve a layer-map spec (`'auto'`, `'pruned'`, `'uniform'`, `'last'`, `'1:3,2:6'` or a list of pairs) for
    the given depths; `cut`: what a student cut from the teacher kept (`'pruned'` pairs each of its layers with its
    source, and `'auto'` means `'pruned'` when there is a cut, else `'uniform'`).

    Raises ValueError when a pair is out of range (student 0..S, teacher 0..T), naming the pair and the ranges.
    """
    _check_depths(student_layers, teacher_layers)
    if isinstance(spec, str) and spec.strip() == "auto":
        spec = "pruned" if cut is not None else "uniform"
    if isinstance(spec, str) and spec.strip() == "pruned":
        if cut is None:
            raise ValueError(
                "layer_map 'pruned' pairs each layer of a student cut from the teacher (--student pruned) with the "
                "layer it was cut from, and this student was not cut from it. Use layer_map 'uniform' or explicit "
                "pairs."
            )
        if len(cut.layers) != student_layers or not all(1 <= t <= teacher_layers for t in cut.layers):
            raise ValueError(
                f"layer_map 'pruned': the cut's source layers {cut.layers} do not fit a {student_layers}-layer "
                f"student of a {teacher_layers}-layer teacher (was the student cut from another teacher?). Use "
                "layer_map 'uniform' or explicit pairs."
            )
        return [(i + 1, t) for i, t in enumerate(cut.layers)]
    if isinstance(spec, str) and spec.strip() == "uniform":
        return uniform_layer_map(student_layers, teacher_layers)
    if isinstance(spec, str) and spec.strip() == "last":
        return [(student_layers, teacher_layers)]
    pairs = _parse_pairs(spec)
    for s, t in pairs:
        if not (0 <= s <= student_layers and 0 <= t <= teacher_layers):
            raise ValueError(
                f"layer_map pair {s}:{t} is out of range: the student has layers 0..{student_layers} and the teacher "
                f"0..{teacher_layers} (0 = embedding output). Fix the pair or use layer_map='uniform'."
            )
    return pairs
