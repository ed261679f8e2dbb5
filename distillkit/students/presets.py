"""Student shapes: the presets (the widths of the BERT miniatures, Turc et al. 2019) and explicit shapes."""

from __future__ import annotations

from dataclasses import dataclass

# name -> (layers, width); heads = width / 64, intermediate = 4 x width
PRESETS: dict[str, tuple[int, int]] = {
    "tiny": (2, 128),
    "mini": (4, 256),
    "small": (4, 512),
    "medium": (8, 512),
}
KNOWN_SPECS = (
    f"{', '.join(PRESETS)}, teacher:K, custom (with --num_layers/--hidden_size), pruned (the teacher cut to "
    "--num_layers/--num_heads/--hidden_size/--intermediate_size), or a local directory / hub name"
)


@dataclass(frozen=True)
class StudentShape:
    num_layers: int
    hidden_size: int
    num_heads: int
    intermediate_size: int
    embedding_size: int | None = None  # None: no factorization (embeddings are hidden_size wide)
    share_layers: bool = False
    num_hidden_groups: int = 1  # with share_layers: layers are split into this many groups of shared weights

    @property
    def is_albert(self) -> bool:
        """Sharing or factorization need ALBERT's modelling code; a plain student is a BERT."""
        return self.share_layers or self.embedding_size is not None

    def validate(self) -> StudentShape:
        for name in ("num_layers", "hidden_size", "num_heads", "intermediate_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"student {name} must be >= 1 (got {getattr(self, name)}).")
        if self.hidden_size % self.num_heads:
            raise ValueError(
                f"num_heads={self.num_heads} does not divide hidden_size={self.hidden_size}; pick heads such that "
                f"hidden_size / num_heads is a whole number (e.g. {max(1, self.hidden_size // 64)})."
            )
        if self.embedding_size is not None and not 1 <= self.embedding_size <= self.hidden_size:
            raise ValueError(
                f"embedding_size={self.embedding_size} must be between 1 and hidden_size={self.hidden_size}: "
                "factorized embeddings are narrower than the hidden states (ALBERT uses 128 for width 768+)."
            )
        if self.share_layers and not 1 <= self.num_hidden_groups <= self.num_layers:
            raise ValueError(
                f"num_hidden_groups={self.num_hidden_groups} must be between 1 and num_layers={self.num_layers}."
            )
        if not self.share_layers and self.num_hidden_groups != 1:
            raise ValueError("num_hidden_groups is only meaningful with share_layers; add --share_layers.")
        return self


def resolve_shape(
    spec: str,
    *,
    num_layers: int | None = None,
    hidden_size: int | None = None,
    num_heads: int | None = None,
    intermediate_size: int | None = None,
    embedding_size: int | None = None,
    share_layers: bool = False,
    num_hidden_groups: int = 1,
) -> StudentShape:
    """A preset name (explicit values override its fields) or 'custom' (num_layers and hidden_size required)."""
    if spec in PRESETS:
        layers, width = PRESETS[spec]
    elif spec == "custom":
        if num_layers is None or hidden_size is None:
            raise ValueError(
                "a custom student needs --num_layers and --hidden_size (heads and FFN width default to "
                "hidden_size / 64 and 4 x hidden_size)."
            )
        layers, width = num_layers, hidden_size
    else:
        raise ValueError(f"unknown student preset {spec!r}; known: {KNOWN_SPECS}.")
    layers = num_layers or layers
    width = hidden_size or width
    return StudentShape(
        num_layers=layers,
        hidden_size=width,
        num_heads=num_heads or max(1, width // 64),
        intermediate_size=intermediate_size or 4 * width,
        embedding_size=embedding_size,
        share_layers=share_layers,
        num_hidden_groups=num_hidden_groups,
    ).validate()
