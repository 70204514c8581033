"""Neural models on one shared network: multi-task (and its single-task baseline), and
meta-learning for new users (and its fine-tuning baseline)."""

from metarec.models.neural.meta import FinetuneScorer, MetaScorer
from metarec.models.neural.multitask import MultiTaskScorer, SingleTaskScorer

__all__ = ["FinetuneScorer", "MetaScorer", "MultiTaskScorer", "SingleTaskScorer"]
