"""Model names as the CLI and the evaluation harness know them."""

from __future__ import annotations

from typing import Any

from metarec.errors import ConfigError
from metarec.models.base import Scorer
from metarec.models.baselines import BPRScorer, EASEScorer, IALSScorer, ItemKNNScorer, PopScorer
from metarec.models.content import ContentKNNScorer, HybridScorer, TwoTowerScorer
from metarec.models.ensemble import EnsembleScorer
from metarec.models.neural import FinetuneScorer, MetaScorer, MultiTaskScorer, SingleTaskScorer

MODELS: dict[str, type[Scorer]] = {
    cls.name: cls
    for cls in (
        PopScorer, ItemKNNScorer, EASEScorer, IALSScorer, BPRScorer, ContentKNNScorer, HybridScorer, TwoTowerScorer,
        SingleTaskScorer, MultiTaskScorer, FinetuneScorer, MetaScorer, EnsembleScorer,
    )
}


def make_scorer(name: str, **params: Any) -> Scorer:
    """A fresh, untrained scorer registered as ``name``."""
    try:
        cls = MODELS[name]
    except KeyError:
        raise ConfigError(f"unknown model {name!r}; choose from: {', '.join(MODELS)}") from None
    return cls(**params)


def parse_params(spec: list[str] | None) -> dict[str, Any]:
    """``["l2=300", "k=50"]`` -> ``{"l2": 300.0, "k": 50}`` (ints, floats, bools, strings)."""
    out: dict[str, Any] = {}
    for item in spec or []:
        if "=" not in item:
            raise ConfigError(f"parameter {item!r}: expected name=value")
        k, v = item.split("=", 1)
        val: Any = v
        for cast in (int, float):
            try:
                val = cast(v)
                break
            except ValueError:
                pass
        if v.lower() in ("true", "false"):
            val = v.lower() == "true"
        out[k.strip()] = val
    return out
