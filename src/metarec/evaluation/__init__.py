"""Metrics, protocols, the evaluation harness and reports."""

from metarec.evaluation.harness import Results, evaluate

__all__ = ["Results", "evaluate"]
