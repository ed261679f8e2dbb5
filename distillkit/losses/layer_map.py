"""Which student layer imitates which teacher layer.

Layers are numbered as in `output_hidden_states`: 0 is the embedding output, 1..L the outputs of the L transformer
layers. Attention maps exist for layers 1..L only (`outputs.attentions[i - 1]` belongs to layer i).
"""

from __future__ import annotations

from collections.abc import Sequence

LayerMap = list[tuple[int, int]]

LAYER_MAP_HELP = (
    "'uniform' (student layer i imitates teacher layer ceil(i * T / S), for any depths), 'last' (last layer only), "
    "or explicit student:teacher pairs such as '1:3,2:6,3:9,4:12' (0 is the embedding output)"
)


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


def build_layer_map(spec: str | Sequence, student_layers: int, teacher_layers: int) -> LayerMap:
    """Resolve a layer-map spec (`'uniform'`, `'last'`, `'1:3,2:6'` or a list of pairs) for the given depths.

    Raises ValueError when a pair is out of range (student 0..S, teacher 0..T), naming the pair and the ranges.
    """
    _check_depths(student_layers, teacher_layers)
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
