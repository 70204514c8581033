"""Hybrid: collaborative knowledge mapped onto content, fused with content similarity.

Five signals score item ``i`` for a user with history ``H`` (the history given at query
time, so new users need no retraining):

1. **collaborative**: EASE (Steck 2019) trained on the warm items, ``h @ B``. An item with no
   training interaction has no column of ``B``; it gets the content-weighted mean of its
   ``k`` nearest warm items' scores, i.e. it is mapped into the collaborative space by its
   content neighbours (the kNN attribute-to-feature mapping of Gantner et al., "Learning
   Attribute-to-Feature Mappings for Cold-Start Recommendations", ICDM 2010). Such an
   item in the history stands, in the same way, for its neighbours (their weights as a
   history row), so a user who took a new item gets the items its neighbours lead to;
2. **semantic**: cosine between the item's and the history's pretrained sentence embeddings;
3. **bilinear**: ``p W c_i`` with ``p`` the history's mean embedding and ``W`` a closed-form
   ridge map between user and item content fit on the interactions;
4. **lexical**: TF-IDF similarity between the item's and the history's text (brands, model
   numbers and names that sentence embeddings blur), as an item-kNN sum over each item's
   200 nearest TF-IDF neighbours;
5. **popularity**: log training popularity; for a new item, a ridge regression of it on
   content.

Each signal is standardised per user (on the statistics of the warm items) and they are
combined with weights learned by the project's training loop (softmax over held-out items)
on a validation split carved from the training data: one weight vector for items with
training interactions, one for items without, fit on held-out pairs and held-out items
respectively, and a third for items with training interactions when the history is an item
without any (a new item, clicked first), fit on validation users given one of their held-out
items as their whole history and asked for their held-out pairs. A history part new and part
warm takes the first and third in proportion. A fourth and a fifth row weigh the items with
training interactions for a user the model was not trained on: the fourth up to
``new_user_support`` items, the fifth up to ``new_user_long_support`` (and in proportion
beyond). Each is fit by coordinate ascent on the NDCG@10 of users held out of one more EASE
fit, given their first items by time. The components are then refit on all training data.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from metarec.data.dataset import Dataset
from metarec.data.queries import Queries
from metarec.encoders.content import ContentConfig
from metarec.encoders.lexical import top_k_similarity, top_k_similarity_rows
from metarec.errors import ConfigError
from metarec.models.base import new_users
from metarec.models.baselines.ease import ease_weights, value_weighted
from metarec.models.content.base import ContentScorer, carve_validation, content_neighbours, replace_rows
from metarec.ranking import top_k

log = logging.getLogger(__name__)

SIGNALS = ("collaborative", "semantic", "bilinear", "lexical", "popularity")

#: The rows of ``HybridScorer.weights_``: items with training pairs, items without, items
#: with training pairs for a history of items without (mixed with the others by their share),
#: and items with training pairs for a user the model was not trained on: their first
#: ``new_user_support`` items, and their next ones up to ``new_user_long_support``.
WEIGHT_ROWS = ("warm", "cold", "warm-after-new", "new-user", "new-user-long")

#: Fewer validation users than this with a held-out item and held-out pairs: the third row is
#: the first (too few to fit five weights on).
MIN_NEW_HISTORY_USERS = 10

#: Users x items of one block when the weights' fits compute the signals (``(5, users, items)``
#: floats at once would be 2.4 GB for 4,000 held-out histories over 30k items).
SIGNAL_BLOCK_CELLS = 1 << 24


@dataclass
class HybridConfig(ContentConfig):
    """Attributes (besides :class:`~metarec.encoders.ContentConfig`'s):
    l2: EASE's penalty for the collaborative signal.
    values: how event values weight EASE's pairs (as :class:`~metarec.models.baselines.ease.EASEConfig`'s
        ``values``); the other signals read the pairs unweighted. ``none`` by default: ``sqrt``
        did not help on a development split of MovieLens-100K (see the README).
    max_items: EASE's limit on items with interactions (a dense items x items inverse).
    neighbours, neighbour_temperature: a new item's collaborative scores are the
        softmax(cosine / temperature)-weighted mean over its ``neighbours`` nearest warm items.
    lexical: use the TF-IDF signal (needs item text).
    lexical_neighbours: TF-IDF neighbours kept per item (the lexical signal is an item-kNN sum).
    popularity_l2: ridge penalty of the content -> popularity regression.
    bilinear_l2: (user-side, item-side) ridge penalties of the bilinear content map.
    validation_share: share of items (and users) held out to learn the signal weights.
    new_user_share: share of the users with 6 or more pairs held out of one more EASE fit to
        learn the ``new-user`` weights (0: that row is the warm row).
    new_user_support: those users' first 1 to this many items by time are their history (the
        rest the targets) for the ``new-user`` row.
    new_user_long_support: the ``new-user-long`` row is fit the same way on histories of
        ``new_user_support + 1`` to this many items, and weighs a new user with that many;
        a new user with more leans on it by ``long_support / items``. At most
        ``new_user_support``: no such row, and a new user with more items than the support
        leans on the ``new-user`` row by ``support / items`` (models saved before it).
    rank_share: share of the users with 5 or more pairs (at most 2,000) whose pairs are
        sampled (20%) and held out of one more EASE fit to choose the warm row's
        collaborative scale by their NDCG@10 (0: no scale, the softmax fit as it is).
    collab_scales: the scales tried (the softmax fit leans on popularity more than ranking
        wants: see the README).
    epochs, lr: fitting the weights (full batch, the shared training loop).
    seed: the validation split.
    """

    l2: float = 500.0
    values: str = "none"
    max_items: int = 30_000
    neighbours: int = 50
    neighbour_temperature: float = 0.05
    lexical: bool = True
    lexical_neighbours: int = 200
    popularity_l2: float = 1.0
    bilinear_l2: tuple[float, float] = (0.1, 10.0)
    validation_share: float = 0.1
    new_user_share: float = 0.3
    new_user_support: int = 5
    new_user_long_support: int = 20
    rank_share: float = 0.5
    collab_scales: tuple[float, ...] = (1.0, 1.5, 2.0, 3.0, 5.0)
    epochs: int = 300
    lr: float = 0.05
    seed: int = 42


class _Components:
    """Everything fit on one interaction matrix: EASE, neighbours, popularity."""

    def __init__(self, vectors: np.ndarray, matrix: sp.csr_matrix, weighted: sp.csr_matrix, config: HybridConfig) -> None:
        """``matrix``: the binary pairs; ``weighted``: the same pairs as EASE weighs them."""
        counts = np.asarray(matrix.getnnz(axis=0))
        self.seen = counts > 0
        self.seen_idx = np.flatnonzero(self.seen)
        n = len(self.seen_idx)
        if n > config.max_items:
            raise ConfigError(
                f"hybrid: {n} items with interactions exceed max_items={config.max_items} "
                "(EASE inverts a dense items x items matrix); filter with --min-core"
            )
        x = matrix[:, self.seen_idx]
        self.ease = ease_weights(weighted[:, self.seen_idx], config.l2)  # (W, W)
        nb = content_neighbours(vectors, self.seen, config.neighbours, config.neighbour_temperature)
        self.neighbours = nb[:, self.seen_idx].tocsr()  # (I, W)
        # Popularity: observed for warm items, predicted from content for the others.
        y = np.log1p(counts[self.seen_idx]).astype(np.float64)
        v = vectors[self.seen_idx].astype(np.float64)
        w = np.linalg.solve(v.T @ v + config.popularity_l2 * np.eye(v.shape[1]), v.T @ (y - y.mean()))
        self.popularity_map = np.append(w, y.mean()).astype(np.float32)  # weights, intercept
        self.popularity = (vectors @ w + y.mean()).astype(np.float32)
        self.popularity[self.seen_idx] = y
        # Bilinear map from a user's mean content to item content, closed-form ridge:
        # W = (P^T P + a I)^-1 P^T X E (E^T E + b I)^-1.
        users = np.flatnonzero(x.getnnz(axis=1) > 0)
        xu = x[users]
        prof = np.asarray(sp.diags(1.0 / xu.getnnz(axis=1)) @ xu @ v)  # (U, C)
        d = v.shape[1]
        a, b2 = config.bilinear_l2
        left = np.linalg.solve(prof.T @ prof + a * np.eye(d), prof.T @ np.asarray(xu @ v))
        self.bilinear = (left @ np.linalg.inv(v.T @ v + b2 * np.eye(d))).astype(np.float32)


def _binary(matrix: sp.csr_matrix) -> sp.csr_matrix:
    """The pairs of a (weighted) user x item matrix, each 1."""
    out = matrix.copy()
    out.data = np.ones_like(out.data)
    return out


def _standardise(x: np.ndarray, warm_weights: np.ndarray) -> np.ndarray:
    """``x`` scaled per row by its mean and std over the warm columns.

    ``warm_weights`` is ``1 / n_warm`` on warm columns and 0 elsewhere (two matrix-vector
    products instead of copying the warm columns out).
    """
    mu = (x @ warm_weights)[:, None]
    var = ((x * x) @ warm_weights)[:, None] - mu * mu
    sd = np.sqrt(np.maximum(var, 0.0))
    return (x - mu) / np.where(sd > 1e-6, sd, 1.0)


class HybridScorer(ContentScorer):
    """EASE mapped onto content (kNN), fused with semantic, lexical and popularity signals."""

    name = "hybrid"
    Config = HybridConfig
    # Before: one new-user row, leaned on by support / items; the warm row as the softmax fit it.
    saved_before = {"new_user_long_support": 0, "rank_share": 0.0}

    def __init__(self, config: HybridConfig | None = None, **params) -> None:
        super().__init__(config, **params)
        c = self.config
        for name in ("validation_share", "new_user_share", "rank_share"):  # (at least 0: every model's settings)
            if getattr(c, name) > 1:
                raise ConfigError(f"hybrid: {name} must be a share, at most 1, not {getattr(c, name)!r}")
        if not all(isinstance(f, (int, float)) and not isinstance(f, bool) and f > 0 for f in c.collab_scales):
            raise ConfigError(f"hybrid: collab_scales must be above 0, not {c.collab_scales!r}")

    # -------------------------------------------------------------- signals
    def _signals(self, history: sp.csr_matrix, comp: _Components) -> np.ndarray:
        """``(5, n, I)`` signals for the users of ``history``, standardised per user (what the
        signal weights are fit on; :meth:`_score` gives their weighted sum).

        Standardising makes each signal's per-user scale irrelevant, so raw dot products
        stand in for cosines (the profile's norm is a per-user constant).
        """
        h = history.astype(np.float32)
        profile = np.asarray(h @ self.item_vectors_, dtype=np.float32)  # (n, C)
        content = {1: profile @ self.item_vectors_.T, 2: (profile @ comp.bilinear) @ self.item_vectors_.T}
        out = np.empty((len(SIGNALS), h.shape[0], self.n_items_), dtype=np.float32)
        for k, x in self._other_signals(h, comp):
            out[k] = x
        ww = self._warm_weights(comp)
        for k, x in content.items():
            out[k] = _standardise(x, ww)
        return out

    def _candidate_signals(self, history: sp.csr_matrix, comp: _Components, cand: np.ndarray) -> np.ndarray:
        """:meth:`_signals` on the items ``cand`` only, ``(5, n, len(cand))``, computed for a
        block of users at a time (:data:`SIGNAL_BLOCK_CELLS`): what the weights are fit on."""
        step = max(1, SIGNAL_BLOCK_CELLS // max(self.n_items_, 1))
        out = np.empty((len(SIGNALS), history.shape[0], len(cand)), dtype=np.float32)
        for a in range(0, history.shape[0], step):
            out[:, a : a + step] = self._signals(history[a : a + step], comp)[:, :, cand]
        return out

    def _other_signals(self, h: sp.csr_matrix, comp: _Components) -> Iterator[tuple[int, np.ndarray]]:
        """``(k, signal k standardised)`` for the signals that are not linear in the item
        vectors: collaborative, lexical, popularity."""
        n = h.shape[0]
        cold, neighbours = self._cold_neighbours(comp)
        warm_history = h[:, comp.seen_idx]
        if len(cold) and not comp.seen[h.indices].all():
            # Items without training pairs in the history (one PUT a moment ago and clicked)
            # stand for their warm content neighbours, as a cold candidate borrows their
            # scores. Before, they added nothing to this signal, and a user whose history was
            # a new item got popular items rather than items like it.
            warm_history = warm_history + h[:, cold] @ neighbours
        own = np.asarray(warm_history @ comp.ease)  # (n, W)
        collab = np.empty((n, self.n_items_), dtype=np.float32)
        collab[:, comp.seen_idx] = own
        if len(cold):  # borrowed from their content neighbours (before: for every item, then overwritten)
            collab[:, cold] = np.asarray(neighbours @ own.T).T
        ww = self._warm_weights(comp)
        yield 0, _standardise(collab, ww)
        yield 3, _standardise(self._lexical_scores(h), ww)
        yield 4, _standardise(comp.popularity[None, :].astype(np.float32), ww)

    def _content_score(self, h: sp.csr_matrix, comp: _Components, user_w: np.ndarray | None = None) -> np.ndarray:
        """The weighted sum of the standardised semantic and bilinear signals, ``(n, I)``, in
        one pass over the item vectors.

        Both are linear in an item's vector ``v_i`` (``p.v_i`` and ``(p W).v_i``), so their
        per-user mean and variance over the warm items follow from the warm vectors' mean and
        second moment (``C x C``), and the weighted sum of the two standardised signals is
        ``v_i . a - b`` for one vector ``a`` per user and item kind. Reading the item
        vectors (15 MB for 10k items at 384 dimensions) was half of a served request.
        ``user_w``: per-user weights for items with training pairs (:meth:`_user_weights`).
        """
        mean, second, vectors_t, cold, cold_t = self._warm_moments(comp)
        p = np.asarray(h @ self.item_vectors_, dtype=np.float64)  # (n, C)
        scaled = []
        for a in (p, p @ comp.bilinear):
            mu = a @ mean
            var = np.einsum("nc,nc->n", a @ second, a) - mu * mu
            sd = np.sqrt(np.maximum(var, 0.0))
            sd = np.where(sd > 1e-6, sd, 1.0)
            scaled.append((a / sd[:, None], mu / sd))
        (ps, ms), (qs, mq) = scaled
        w = self.weights_
        out = np.empty((h.shape[0], self.n_items_), dtype=np.float32)
        for kind, vectors, cols in ((0, vectors_t, slice(None)), (1, cold_t, cold)):
            if kind == 1 and not len(cold):
                continue
            wk = user_w if kind == 0 and user_w is not None else w[kind : kind + 1]  # (n or 1, 5)
            a = (wk[:, 1:2] * ps + wk[:, 2:3] * qs).astype(np.float32)
            b = (wk[:, 1] * ms + wk[:, 2] * mq).astype(np.float32)
            out[:, cols] = a @ vectors - b[:, None]  # warm weights for every item first, then the cold ones
        return out

    def _warm_moments(self, comp: _Components) -> tuple[np.ndarray, ...]:
        """The warm item vectors' mean ``(C,)`` and second moment ``(C, C)`` (float64), the
        item vectors as ``(C, I)`` rows (BLAS reads them twice as fast as ``(I, C)`` for one
        user), the cold items and their ``(C, cold)`` vectors; kept until the vectors or the
        warm items change."""
        cached = getattr(comp, "moments", None)
        if cached is None or cached[0] is not self.item_vectors_ or cached[1] is not comp.seen:
            v = self.item_vectors_
            warm = v[comp.seen].astype(np.float64)
            cold = np.flatnonzero(~comp.seen)
            n = max(len(warm), 1)
            cached = (v, comp.seen, warm.sum(0) / n, (warm.T @ warm) / n, np.ascontiguousarray(v.T), cold,
                      np.ascontiguousarray(v[cold].T))  # fmt: skip
            comp.moments = cached
        return cached[2:]

    def _user_weights(self, h: sp.csr_matrix, comp: _Components, users: np.ndarray | None = None) -> np.ndarray | None:
        """Per-user weights ``(n, 5)`` for items with training pairs. A user the model was not
        trained on (``users``: -1, or an index it has no pairs of) takes the ``new-user`` row up
        to ``new_user_support`` items and the ``new-user-long`` row up to
        ``new_user_long_support``, and beyond that leans on the latter by ``long_support /
        items``, the rest from the warm row; a known user starts from the warm row. Either is
        then moved towards the ``warm-after-new`` row by the share of the history that has no
        training pairs (items posted since). ``None`` when every user takes the warm row."""
        w = self.weights_  # five rows: a model saved before the later rows has them padded (set_state)
        if not h.nnz or all(np.array_equal(r, w[0]) for r in w[2:]):
            return None
        c = self.config
        n = h.shape[0]
        lengths = np.diff(h.indptr)
        new = ~comp.seen[h.indices]
        share = np.bincount(np.repeat(np.arange(n), lengths), weights=new, minlength=n) / np.maximum(lengths, 1)
        lean = np.zeros(n)
        row = np.full(n, 3)
        if users is not None:
            fresh = new_users(users, self.known_users_) & (lengths > 0)
            short, long = c.new_user_support, max(c.new_user_long_support, c.new_user_support)
            if long > short:
                row[fresh & (lengths > short)] = 4
            lean[fresh] = np.minimum(1.0, long / lengths[fresh])
        if not (share.any() or lean.any()):
            return None
        base = w[0][None, :] + lean[:, None] * (w[row] - w[0][None, :])
        return (base + share[:, None] * (w[2][None, :] - base)).astype(np.float32)

    @staticmethod
    def _warm_weights(comp: _Components) -> np.ndarray:
        """``1 / n_warm`` on warm items, 0 elsewhere (:func:`_standardise`'s weights)."""
        return comp.seen.astype(np.float32) / max(int(comp.seen.sum()), 1)

    @staticmethod
    def _cold_neighbours(comp: _Components) -> tuple[np.ndarray, sp.csr_matrix]:
        """The items without training interactions and their rows of ``comp.neighbours``,
        kept until the neighbours are replaced (items added or re-encoded)."""
        cached = getattr(comp, "cold_rows", None)
        if cached is None or cached[0] is not comp.neighbours:
            cold = np.flatnonzero(~comp.seen)
            cached = (comp.neighbours, cold, comp.neighbours[cold].tocsr())
            comp.cold_rows = cached
        return cached[1], cached[2]

    def _lexical_scores(self, h: sp.csr_matrix) -> np.ndarray:
        """History-profile . item TF-IDF for every item: an item-kNN sum over the items the
        model was fit with, exact dot products for items added since."""
        n = h.shape[0]
        if self.lexical_encoder_ is None:
            return np.zeros((n, self.n_items_), np.float32)
        sim = self.lexical_similarity_
        m = sim.shape[0]
        lex = self.item_lexical_
        out = np.zeros((n, self.n_items_), np.float32)
        out[:, :m] = (h[:, :m] @ sim).toarray()
        if self.n_items_ > m:  # items added online: exact, they are few
            out[:, m:] = ((h @ lex) @ lex[m:].T).toarray()
            if h[:, m:].nnz:
                out[:, :m] += (h[:, m:] @ lex[m:] @ lex[:m].T).toarray()
        changed = getattr(self, "lexical_changed_", None)
        if changed is not None and len(changed):  # texts changed online: their columns exact
            out[:, changed] = ((h @ lex) @ lex[changed].T).toarray()
        return out

    # ------------------------------------------------------------- training
    def _fit_content(self, data: Dataset, matrix: sp.csr_matrix) -> None:
        c = self.config
        weighted = value_weighted(data, matrix, c.values)  # EASE's pairs; the rest reads them as 1
        self.fit_lexical(data, self.config.lexical)
        if self.lexical_encoder_ is not None:
            self.lexical_similarity_ = top_k_similarity(self.item_lexical_, self.config.lexical_neighbours)
        rng = np.random.default_rng(c.seed)
        train_w, val_warm, val_cold = carve_validation(weighted, c.validation_share, rng)
        self.weights_ = np.ones((2, len(SIGNALS)), dtype=np.float32)  # warm and cold, fit on the validation split
        third = None
        if val_warm.nnz or val_cold.nnz:
            train_m = _binary(train_w)
            comp = _Components(self.item_vectors_, train_m, train_w, c)
            self.weights_, third = self._fit_weights(comp, train_m, _binary(val_warm), _binary(val_cold), rng)
        new_user, long = self._fit_new_user_weights(data, weighted, rng)  # from the warm row as fit so far
        warm = self.weights_[0] * np.array([self._collab_scale(weighted), 1, 1, 1, 1], np.float32)
        # A row there were too few users to fit is the warm row (the long one: the new-user row).
        rows = [warm, self.weights_[1], third, new_user, long if long is not None else new_user]
        self.weights_ = np.stack([warm if r is None else r for r in rows]).astype(np.float32)
        self.components_ = _Components(self.item_vectors_, matrix, weighted, c)
        log.info("hybrid weights %s: %s", SIGNALS,
                 ", ".join(f"{r} {w.round(3)}" for r, w in zip(WEIGHT_ROWS, self.weights_)))  # fmt: skip

    def _fit_weights(
        self, comp: _Components, train_m: sp.csr_matrix, val_warm: sp.csr_matrix, val_cold: sp.csr_matrix,
        rng: np.random.Generator,
    ) -> tuple[np.ndarray, np.ndarray | None]:  # fmt: skip
        """Softmax regression of held-out items on the signals: the first two rows of
        :data:`WEIGHT_ROWS`, ``(2, 5)``, and the third, ``(5,)`` (``None``: too few users)."""
        parts = []
        for kind, val, cand in (
            (0, val_warm, comp.seen_idx),
            (1, val_cold, np.flatnonzero(val_cold.getnnz(axis=0) > 0)),
        ):
            users = np.flatnonzero(val[:, cand].getnnz(axis=1) > 0)
            if len(users) == 0 or len(cand) < 2:
                continue
            cand = self._candidates(cand, val[users], rng)
            hist = train_m[users]
            parts.append((kind, self._part(hist, val[users], cand, comp)))
        weights = self._softmax_weights(parts, 2)
        # Third row, fit on its own after the first two (which it leaves as they were): a
        # validation user with a held-out item and held-out pairs gets one of those items,
        # drawn at random, as their whole history (a new item, clicked first); their
        # held-out pairs are the targets. Their training pairs are in EASE's matrix but are
        # never targets.
        users = np.flatnonzero((val_warm[:, comp.seen_idx].getnnz(axis=1) > 0) & (val_cold.getnnz(axis=1) > 0))
        if len(users) < MIN_NEW_HISTORY_USERS:
            log.info("hybrid: %d validation users with a new item and held-out pairs; the new-item "
                     "history takes the warm weights", len(users))  # fmt: skip
            return weights, None
        starts, counts = val_cold.indptr[users], np.diff(val_cold.indptr)[users]
        first = val_cold.indices[starts + (rng.random(len(users)) * counts).astype(np.int64)]
        hist = sp.csr_matrix((np.ones(len(users), np.float32), (np.arange(len(users)), first)), shape=(len(users), train_m.shape[1]))
        cand = self._candidates(comp.seen_idx, val_warm[users], rng)
        third = self._softmax_weights([(0, self._part(hist, val_warm[users], cand, comp))], 1)
        return weights, third[0]

    def _collab_scale(self, weighted: sp.csr_matrix) -> float:
        """The warm row's collaborative scale: of ``collab_scales``, the one whose row ranks
        best (NDCG@10) the pairs held out of one more EASE fit: 20% of the pairs of
        ``rank_share`` of the users with 5 or more (at most 2,000), no item held out. The
        softmax likelihood the warm row is fit by rewards popularity's broad mass over all
        items more than a top-10 list does (see the README's figures). 1 where there are too
        few users, or ``rank_share`` is 0."""
        c = self.config
        scales = [float(f) for f in c.collab_scales] or [1.0]
        if c.rank_share == 0 or len(scales) < 2:
            return 1.0
        rng = np.random.default_rng((c.seed, 2))  # draws of its own: the other fits' are as they were
        train, val, _ = carve_validation(weighted, c.rank_share, rng, item_share=0.0, max_users=2000)
        val, hist = _binary(val), _binary(train)
        comp = _Components(self.item_vectors_, hist, train, c)
        users = np.flatnonzero(val[:, comp.seen_idx].getnnz(axis=1) > 0)
        if len(users) < MIN_NEW_HISTORY_USERS:
            return 1.0
        cand = self._candidates(comp.seen_idx, val[users], rng)
        cand = cand[comp.seen[cand]]
        ndcg = self._ndcg_of_weights(hist[users], val[users], comp, cand)
        warm = self.weights_[0].astype(np.float64)
        values = [ndcg(warm * np.array([f, 1, 1, 1, 1])) for f in scales]
        best = scales[int(np.argmax(values))]
        log.info("hybrid warm row's collaborative scale %s: NDCG@10 %s on %d users' held-out pairs", best,
                 ", ".join(f"{f}: {v:.4f}" for f, v in zip(scales, values)), len(users))  # fmt: skip
        return best

    def _fit_new_user_weights(
        self, data: Dataset, weighted: sp.csr_matrix, rng: np.random.Generator
    ) -> list[np.ndarray | None]:
        """The ``new-user`` and ``new-user-long`` rows, ``(5,)`` each: each by coordinate ascent
        on :meth:`_new_user_ndcg` of its histories, from the warm row, taking only steps that
        gain. The softmax likelihood the other rows are fit by stayed below popularity for
        MovieLens's new users; ranking quality is what is asked of these rows. ``None`` for a
        row with too few users to fit it on."""
        warm = self.weights_[0].astype(np.float64)
        bands = self._new_user_ndcg(data, weighted, rng)
        rows: list[np.ndarray | None] = [None, None]
        for k, ndcg in enumerate(bands or []):
            if ndcg is None:
                continue
            w = warm.copy()
            best = start = ndcg(w)
            for _ in range(4):  # multiplicative steps on one weight at a time
                for j in range(len(SIGNALS)):
                    for f in (0.0, 0.5, 0.8, 1.25, 2.0, 4.0, -0.5):
                        step = w.copy()
                        step[j] = w[j] * f if w[j] != 0 else 0.5 * f
                        v = ndcg(step)
                        if v > best + 1e-4:
                            best, w = v, step
            rows[k] = w.astype(np.float32)
            log.info("hybrid %s weights: NDCG@10 %.4f on held-out users (from %.4f)", WEIGHT_ROWS[3 + k], best, start)
        return rows

    def _new_user_ndcg(
        self, data: Dataset, weighted: sp.csr_matrix, rng: np.random.Generator
    ) -> list[Callable[[np.ndarray], float] | None] | None:
        """NDCG@10 of signal weights for new users, one function per new-user row:
        ``new_user_share`` of the users with 6 or more pairs (at most 1,000) are held out of
        one more EASE fit, and each, given their first items by time as their history (1 to
        ``new_user_support`` of them; then, for those with enough pairs, ``new_user_support + 1``
        to ``new_user_long_support``), ranks the rest, as the ``cold-user`` protocol asks of a
        new user. ``None`` with fewer than :data:`MIN_NEW_HISTORY_USERS` of them; a band with
        fewer such users (or none asked for) is ``None`` in the list."""
        from metarec.data.splits import ordered_pairs  # (splits imports the data model only)

        c = self.config
        eligible = np.flatnonzero(weighted.getnnz(axis=1) >= 6)
        k = min(int(round(len(eligible) * c.new_user_share)), 1000)
        if k < MIN_NEW_HISTORY_USERS or c.new_user_support < 1:
            return None
        held = np.sort(rng.choice(eligible, k, replace=False))
        out = np.zeros(weighted.shape[0], dtype=bool)
        out[held] = True
        rest = sp.csr_matrix(sp.diags((~out).astype(np.float64)) @ weighted)
        rest.eliminate_zeros()
        comp = _Components(self.item_vectors_, _binary(rest), rest, c)
        pairs = ordered_pairs(data)
        pairs = pairs[out[pairs["user"].to_numpy()]].reset_index(drop=True)
        users, counts = np.unique(pairs["user"].to_numpy(), return_counts=True)
        # Each user's items in time order, one block per user: a query (user, support) takes the
        # first ``support`` of its block as the history and the rest as the targets.
        order = np.lexsort((pairs.groupby("user", sort=True).cumcount().to_numpy(), pairs["user"].to_numpy()))
        items, start = pairs["item"].to_numpy()[order], np.cumsum(counts) - counts

        def queries(who: np.ndarray, support: np.ndarray) -> tuple[sp.csr_matrix, sp.csr_matrix]:
            n = counts[who]
            q = np.repeat(np.arange(len(who)), n)
            at = np.arange(int(n.sum())) - np.repeat(np.cumsum(n) - n, n)  # position in the user's block
            it = items[np.repeat(start[who], n) + at]
            first = at < np.repeat(support, n)
            shape = (len(who), weighted.shape[1])
            hist = sp.csr_matrix((np.ones(int(first.sum()), np.float32), (q[first], it[first])), shape=shape)
            return hist, sp.csr_matrix((np.ones(int((~first).sum())), (q[~first], it[~first])), shape=shape)

        cand = None
        bands = []
        for lo, hi in ((1, c.new_user_support), (c.new_user_support + 1, c.new_user_long_support)):
            if hi < lo:
                bands.append(None)
                continue
            if lo == 1:  # one query per user, its support drawn from 1..hi (leaving 5 items to find)
                who = np.arange(len(users))
                support = 1 + (rng.random(len(users)) * np.minimum(hi, counts - 5)).astype(np.int64)
            else:  # every user with enough items, at each of four supports from lo to hi: a
                # smoother objective for the longer histories, since each user has several
                steps = np.unique(np.linspace(lo, hi, 4).round().astype(np.int64))
                groups = [np.flatnonzero(counts - 5 >= n) for n in steps]
                who, support = np.concatenate(groups), np.repeat(steps, [len(g) for g in groups])
            if len(who) < MIN_NEW_HISTORY_USERS:
                bands.append(None)
                continue
            hist, rel = queries(who, support)
            if cand is None:
                cand = self._candidates(comp.seen_idx, rel, rng)
                cand = cand[comp.seen[cand]]  # items only the held-out users had take the cold row: not ranked here
            bands.append(self._ndcg_of_weights(hist, rel, comp, cand))
        return bands

    def _ndcg_of_weights(
        self, hist: sp.csr_matrix, rel: sp.csr_matrix, comp: _Components, cand: np.ndarray
    ) -> Callable[[np.ndarray], float]:
        """NDCG@10 of signal weights for the histories ``hist`` against their held-out items
        ``rel``, ranking the candidates ``cand`` (seen items excluded; held-out items outside
        the candidates count as missed)."""
        from metarec.evaluation.metrics import ranking_metrics  # (evaluation imports the registry)

        sig = self._candidate_signals(hist, comp, cand)  # (5, U, C)
        seen = hist[:, cand].toarray() > 0
        relevant = rel[:, cand].toarray() > 0
        n_rel = np.asarray(rel.getnnz(axis=1))

        def ndcg(w: np.ndarray) -> float:
            s = np.einsum("kuc,k->uc", sig, w)
            s[seen] = -np.inf
            hits = np.take_along_axis(relevant, top_k(s, 10), axis=1)
            return float(ranking_metrics(hits, n_rel, (10,))["NDCG@10"].mean())

        return ndcg

    @staticmethod
    def _candidates(cand: np.ndarray, val: sp.csr_matrix, rng: np.random.Generator) -> np.ndarray:
        """``cand``, or in big catalogues the held-out items with a sample of 5,000 others."""
        if len(cand) > 5000:
            cand = np.union1d(val.indices, rng.choice(cand, 5000, replace=False))
        return cand

    def _part(self, hist: sp.csr_matrix, val: sp.csr_matrix, cand: np.ndarray, comp: _Components):
        """One softmax regression's tensors: the signals ``(5, U, C)`` of histories ``hist``
        on candidates ``cand``, the held-out targets ``(U, C)`` and the mask of seen items."""
        import torch

        sig = self._candidate_signals(hist, comp, cand)
        target = val[:, cand].toarray().astype(np.float32)
        mask = hist[:, cand].toarray() > 0  # seen items are never recommended
        return torch.from_numpy(sig), torch.from_numpy(target), torch.from_numpy(mask)

    def _softmax_weights(self, parts: list, rows: int) -> np.ndarray:
        """``(rows, 5)`` weights maximising the held-out items' softmax likelihood; each of
        ``parts`` is ``(row, (signals, targets, seen mask))``. Ones where there is nothing to fit."""
        import torch

        from metarec.training import TrainConfig, train

        class Weights(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.w = torch.nn.Parameter(torch.ones(rows, len(SIGNALS)))

            def loss(self, batch):
                total = 0.0
                for kind, (sig, target, mask) in parts:
                    logits = torch.einsum("kuc,k->uc", sig, self.w[kind]).masked_fill(mask, -1e9)
                    logp = torch.log_softmax(logits, dim=1)
                    total = total + (-(target * logp).sum(1) / target.sum(1).clamp(min=1)).mean()
                return {"loss": total / max(len(parts), 1)}

        model = Weights()
        if parts:
            c = self.config
            train(model, lambda r: [{}], None, TrainConfig(epochs=c.epochs, lr=c.lr, seed=c.seed))
        return model.w.detach().numpy().astype(np.float32)

    # -------------------------------------------------------------- scoring
    def _score(self, queries: Queries) -> np.ndarray:
        comp = self.components_
        h = queries.history.astype(np.float32)
        user_w = self._user_weights(h, comp, queries.users)
        s = self._content_score(h, comp, user_w)
        w = self.weights_
        warm = w[:1] if user_w is None else user_w  # (1 or n, 5)
        for k, x in self._other_signals(h, comp):
            s += np.where(comp.seen[None, :], warm[:, k : k + 1], w[1, k]).astype(np.float32) * x
        s[:, ~(self.has_content_ | comp.seen)] = np.nan
        return s

    def _added_items(self, n: int, texts: list[str] | None = None) -> None:
        comp = self.components_
        new = self.item_vectors_[-n:]
        c = self.config
        seen_all = np.concatenate([comp.seen, np.zeros(n, dtype=bool)])
        rows = np.arange(self.n_items_ - n, self.n_items_)
        nb = content_neighbours(self.item_vectors_, seen_all, c.neighbours, c.neighbour_temperature, rows=rows)
        comp.neighbours = sp.vstack([comp.neighbours, nb[:, comp.seen_idx]]).tocsr()
        # The popularity of a new item is predicted from its content, like any cold item's.
        pred = new @ comp.popularity_map[:-1] + comp.popularity_map[-1]
        comp.popularity = np.concatenate([comp.popularity, pred.astype(np.float32)])
        comp.seen = seen_all

    def _updated_items(self, indices: np.ndarray, texts: list[str] | None = None) -> None:
        comp = self.components_
        comp.projection = None
        c = self.config
        cold = indices[~comp.seen[indices]]
        if len(cold):  # a new text gives new neighbours and a new popularity guess
            nb = content_neighbours(self.item_vectors_, comp.seen, c.neighbours, c.neighbour_temperature, rows=cold)
            comp.neighbours = replace_rows(comp.neighbours, cold, nb[:, comp.seen_idx])
            comp.popularity = comp.popularity.copy()
            comp.popularity[cold] = self.item_vectors_[cold] @ comp.popularity_map[:-1] + comp.popularity_map[-1]
        if self.lexical_encoder_ is not None and texts is not None:
            m = self.lexical_similarity_.shape[0]
            fit_time = indices[indices < m]
            if len(fit_time):  # rows: the item's new neighbours; columns: scored exactly
                fresh = top_k_similarity_rows(self.item_lexical_, fit_time, c.lexical_neighbours, m)
                self.lexical_similarity_ = replace_rows(self.lexical_similarity_, fit_time, fresh)
                self.lexical_changed_ = np.union1d(getattr(self, "lexical_changed_", np.array([], dtype=np.int64)), fit_time)

    # --------------------------------------------------------------- saving
    def get_state(self) -> dict[str, np.ndarray]:
        comp = self.components_
        state = {
            **super().get_state(),
            "weights": self.weights_,
            "ease": comp.ease,
            "bilinear": comp.bilinear,
            "seen_idx": comp.seen_idx,
            "popularity": comp.popularity,
            "popularity_map": comp.popularity_map,
            "nbr_data": comp.neighbours.data,
            "nbr_indices": comp.neighbours.indices,
            "nbr_indptr": comp.neighbours.indptr,
        }
        if self.lexical_encoder_ is not None:
            sim = self.lexical_similarity_
            state.update(lexsim_data=sim.data, lexsim_indices=sim.indices, lexsim_indptr=sim.indptr)
        return state

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        super().set_state(state)
        self.weights_ = state["weights"]
        while len(self.weights_) < len(WEIGHT_ROWS):  # saved before the later rows: the warm row in their place,
            pad = self.weights_[3:4] if len(self.weights_) == 4 else self.weights_[:1]  # the long row: the new-user one
            self.weights_ = np.concatenate([self.weights_, pad])
        comp = _Components.__new__(_Components)
        comp.ease = state["ease"]
        comp.bilinear = state["bilinear"]
        comp.seen_idx = state["seen_idx"].astype(np.int64)
        comp.seen = np.zeros(self.n_items_, dtype=bool)
        comp.seen[comp.seen_idx] = True
        comp.popularity = state["popularity"]
        comp.popularity_map = state["popularity_map"]
        comp.neighbours = sp.csr_matrix(
            (state["nbr_data"], state["nbr_indices"], state["nbr_indptr"]), shape=(self.n_items_, len(comp.seen_idx))
        )
        self.components_ = comp
        if "lexsim_data" in state:
            m = len(state["lexsim_indptr"]) - 1
            self.lexical_similarity_ = sp.csr_matrix(
                (state["lexsim_data"], state["lexsim_indices"], state["lexsim_indptr"]), shape=(m, m)
            )
