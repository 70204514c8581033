"""Model directories: new items added to a loaded model are recommendable at once."""

import numpy as np
import pytest

from metarec.errors import ConfigError
from metarec.models import make_scorer
from metarec.models.io import load_model, save_model
from metarec.testing import checkerboard


def test_a_loaded_hybrid_takes_new_items_from_text(tmp_path):
    data, _ = checkerboard()
    save_model(make_scorer("hybrid", encoder="hashing-64").fit(data), data, tmp_path / "m")
    model = load_model(tmp_path / "m")
    (idx,) = model.add_items(["brand-new"], ["blue tent model 777"])
    assert idx == data.n_items and model.item_ids[-1] == "brand-new"
    ranked = [i for i, _ in model.recommend(None, history=["i12", "i15"], n=len(model.item_ids))]
    # A block-1 user (blue tents) sees the new blue tent above every red kettle.
    assert ranked.index("brand-new") < min(ranked.index(f"i{j}") for j in range(10))
    with pytest.raises(ConfigError, match="already in the catalogue"):
        model.add_items(["brand-new"], ["again"])


def test_collaborative_models_refuse_items_without_interactions(tmp_path):
    data, _ = checkerboard()
    save_model(make_scorer("ease").fit(data), data, tmp_path / "e")
    with pytest.raises(ConfigError, match="cannot score an item from its content"):
        load_model(tmp_path / "e").add_items(["x"], ["text"])
    assert np.isfinite([s for _, s in load_model(tmp_path / "e").recommend("u0", n=3)]).all()
