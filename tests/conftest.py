"""Shared fixtures: a small synthetic world, and the real data sets when $METAREC_DATA has them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from metarec.data.synthetic import WorldConfig, make_world


@pytest.fixture(scope="session")
def world():
    """A small synthetic world (300 users, 150 items), the same in every run."""
    return make_world(WorldConfig(n_users=300, n_items=150, views_per_user=20, seed=3))


def shared_dataset(name: str) -> Path:
    """Path to ``$METAREC_DATA/<name>``, or skip with the reason."""
    root = os.environ.get("METAREC_DATA")
    if not root:
        pytest.skip("METAREC_DATA is not set; the real data sets are not available here")
    path = Path(root) / name
    if not path.exists():
        pytest.skip(f"{path} does not exist")
    return path


@pytest.fixture(autouse=True)
def _embedding_cache(tmp_path_factory, monkeypatch):
    """Tests never write to the user's embedding cache."""
    monkeypatch.setenv("METAREC_CACHE", str(tmp_path_factory.getbasetemp() / "embedding-cache"))
