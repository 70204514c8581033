"""Small reusable torch blocks, one concept per file."""

from metarec.nn.mlp import MLP

__all__ = ["MLP"]
