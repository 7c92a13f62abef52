"""Validated configuration of the MoE-LoRA experts and of the SigLIP style projector."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from .errors import StyleExpertError

ALIGNMENTS = ("official", "paper")
SCALE_RULES = ("official", "none")
# Precision of the style projector and router (see routing.router_logits): the release runs both in bf16.
ROUTING_PRECISIONS = ("fp32", "bf16")


@dataclass(frozen=True)
class MoEConfig:
    """Shape and routing rule of every MoE-LoRA layer in a checkpoint.

    alignment: how routing scores meet experts.
      * ``official``: what the released code computes. Experts are stacked
        [shared, e1, ..., ek] but the scores are padded on the right
        [s1, ..., sk, 0], so the shared expert gets s1, e_i gets s_(i+1) and
        the last selected expert gets 0. The released weights mean this.
      * ``paper``: the paper's description: shared expert weight 1, e_i gets s_i.
    scale_rule: ``official`` multiplies by ``16 // rank`` (the released code; a
      rank above 16 would give 0 and silently disable the layer, so we refuse
      it); ``none`` multiplies by 1.
    routing_precision: the precision the router (and style projector) ran in when
      the experts were trained; ``bf16`` for the release. Near-ties between router
      logits resolve differently in fp32 and bf16, and a different order is a
      different expert, so inference routes in the training precision.
    """

    num_experts: int = 16
    rank: int = 8
    top_k: int = 2
    cond_dim: int = 3072
    alignment: str = "official"
    scale_rule: str = "official"
    routing_precision: str = "fp32"

    def __post_init__(self) -> None:
        for name in ("num_experts", "rank", "top_k", "cond_dim"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise StyleExpertError(f"MoEConfig.{name} must be a positive integer, got {value!r}.")
        if self.top_k > self.num_experts:
            raise StyleExpertError(
                f"MoEConfig.top_k ({self.top_k}) cannot exceed num_experts ({self.num_experts})."
            )
        if self.alignment not in ALIGNMENTS:
            raise StyleExpertError(f"alignment must be one of {ALIGNMENTS}, got {self.alignment!r}.")
        if self.scale_rule not in SCALE_RULES:
            raise StyleExpertError(f"scale_rule must be one of {SCALE_RULES}, got {self.scale_rule!r}.")
        if self.routing_precision not in ROUTING_PRECISIONS:
            raise StyleExpertError(
                f"routing_precision must be one of {ROUTING_PRECISIONS}, got {self.routing_precision!r}.")
        if self.scale_rule == "official" and self.rank > 16:
            raise StyleExpertError(
                f"rank {self.rank} with the official scale rule (16 // rank) gives scale 0, which "
                "silently disables every expert. Use rank <= 16, or scale_rule='none'."
            )

    @property
    def scale(self) -> float:
        return float(16 // self.rank) if self.scale_rule == "official" else 1.0

    @property
    def folded_rank(self) -> int:
        """Rank of the static delta one style folds into: the shared expert + the routed experts that
        carry weight (the official alignment always weighs its last routed expert 0, so it is left out)."""
        routed = self.top_k - 1 if self.alignment == "official" else self.top_k
        return (routed + 1) * self.rank

    def replace(self, **changes: Any) -> "MoEConfig":
        return MoEConfig(**{**asdict(self), **changes})

    def with_overrides(self, alignment: str | None = None, top_k: int | None = None,
                       routing_precision: str | None = None) -> "MoEConfig":
        """This configuration with the user's routing overrides; None keeps the stored value."""
        changes = {k: v for k, v in (("alignment", alignment), ("top_k", top_k),
                                     ("routing_precision", routing_precision)) if v is not None}
        return self.replace(**changes)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "MoEConfig":
        return cls(**_known_fields(cls, data, "MoE config"))


@dataclass(frozen=True)
class ProjectorConfig:
    """The SigLIP multi-layer style projector (StyleExpert stage 1).

    layers are negative hidden-state indices; they mean the same layers in HF
    ``hidden_states`` (which includes the embeddings) and in ComfyUI's
    ``all_hidden_states`` (which does not). Their order is the output order.
    """

    layers: tuple[int, ...] = (-2, -11, -20)
    num_tokens: int = 729
    style_tokens: int = 8
    width: int = 1152
    out_dim: int = 128

    def __post_init__(self) -> None:
        object.__setattr__(self, "layers", tuple(int(i) for i in self.layers))
        if not self.layers or any(i >= 0 for i in self.layers):
            raise StyleExpertError(f"projector layers must be negative indices, got {self.layers}.")
        if len(set(self.layers)) != len(self.layers):
            raise StyleExpertError(f"projector layers must be distinct, got {self.layers}.")
        for name in ("num_tokens", "style_tokens", "width", "out_dim"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise StyleExpertError(f"ProjectorConfig.{name} must be a positive integer, got {value!r}.")

    @property
    def cond_dim(self) -> int:
        return len(self.layers) * self.style_tokens * self.out_dim

    @property
    def min_hidden_layers(self) -> int:
        """How many hidden states a vision tower must expose for these indices."""
        return max(-i for i in self.layers)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["layers"] = list(self.layers)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ProjectorConfig":
        return cls(**_known_fields(cls, data, "projector config"))


def _known_fields(cls: type, data: dict[str, Any], what: str) -> dict[str, Any]:
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise StyleExpertError(f"Unknown {what} field(s) {unknown}; expected a subset of {sorted(names)}.")
    return dict(data)
