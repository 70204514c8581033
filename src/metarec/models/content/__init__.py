"""Scorers that read item content: content-kNN and the hybrid content-to-collaborative model."""

from metarec.models.content.base import ContentScorer
from metarec.models.content.content_knn import ContentKNNScorer
from metarec.models.content.hybrid import HybridScorer
from metarec.models.content.two_tower import TwoTowerScorer

__all__ = ["ContentKNNScorer", "ContentScorer", "HybridScorer", "TwoTowerScorer"]
