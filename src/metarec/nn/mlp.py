"""A feed-forward tower: Linear -> activation -> dropout, repeated, then a linear output.

With ``zero_last`` the output layer starts at zero, so ``x + MLP(x)`` starts as the identity.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class MLP(nn.Module):
    """``in_dim -> hidden... -> out_dim``; no activation after the last layer.

    >>> MLP(8, [16], 4)(torch.zeros(2, 8)).shape
    torch.Size([2, 4])
    """

    def __init__(
        self, in_dim: int, hidden: Sequence[int], out_dim: int, dropout: float = 0.0, zero_last: bool = False
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        d = in_dim
        for h in hidden:
            layers += [nn.Linear(d, h), nn.GELU(), nn.Dropout(dropout)]
            d = h
        layers.append(nn.Linear(d, out_dim))
        if zero_last:  # starts as the zero function: a residual branch that begins switched off
            nn.init.zeros_(layers[-1].weight)
            nn.init.zeros_(layers[-1].bias)
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (..., in_dim) -> (..., out_dim)
        return self.net(x)
