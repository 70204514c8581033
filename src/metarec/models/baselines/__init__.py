"""The peers every new model must beat, in the same harness: pop, itemknn, ease, ials, bpr."""

from metarec.models.baselines.ease import EASEScorer
from metarec.models.baselines.implicit_mf import BPRScorer, IALSScorer
from metarec.models.baselines.itemknn import ItemKNNScorer
from metarec.models.baselines.pop import PopScorer

__all__ = ["BPRScorer", "EASEScorer", "IALSScorer", "ItemKNNScorer", "PopScorer"]
