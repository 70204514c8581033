"""Scorers behind one contract (:class:`Scorer`), their registry and their on-disk form."""

from metarec.models.base import Queries, Scorer
from metarec.models.registry import MODELS, make_scorer

__all__ = ["MODELS", "Queries", "Scorer", "make_scorer"]
