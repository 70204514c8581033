"""Matrix factorisation from the ``implicit`` package: iALS (Hu, Koren & Volinsky 2008) and
BPR (Rendle et al. 2009).

Known users use their learned factors. A new user is folded in from the history given at
query time: iALS by its own least-squares user step (the solve ``implicit`` does in
``recalculate_user``, reimplemented so a model loaded from disk needs no implicit object); BPR, which has no
closed-form user step, by maximising a listwise (softmax) likelihood of the history
against BPR's fixed item factors (:func:`softmax_fold_in`).

iALS weights each pair's confidence by its event value as EASE does (``values="sqrt"``:
the square root of a rating, :func:`~metarec.models.baselines.ease.value_weighted`), scaled
so that the mean pair has confidence ``alpha``; implicit data (every value 1) is unchanged.
A new user is folded in with the same confidences: each history item's value from the query
(``Queries.values``) where it has one, else the mean pair's.

Where items have text, iALS's item factors are drawn towards a ridge regression of the item
factors on the items' text vectors instead of towards zero (``content``): the sweeps are then
this module's (:func:`conjugate_gradient_step`, the conjugate-gradient steps ``implicit``
takes, for all rows at once), since ``implicit`` has no such prior. An item without pairs,
in the training catalogue or added later (``add_items``), then takes the factors its text
predicts (:func:`new_item_map`), so iALS ranks new items too.

Default hyper-parameters were chosen on development splits of MovieLens-100K (holdouts of
the ``holdout`` protocol's training data: iALS's ``l2``, ``alpha`` and ``values``) and, for
BPR, on ``holdout`` with seed 0; the bars are measured with seed 42, so the test split of
record was never used for tuning.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from metarec.data.dataset import Dataset
from metarec.encoders.base import normalize_rows
from metarec.encoders.content import ContentConfig, content_config_of, optional_item_content
from metarec.errors import ConfigError
from metarec.models.base import Queries, Scorer
from metarec.models.baselines.ease import value_weight, value_weighted, with_tags

log = logging.getLogger(__name__)


def least_squares_fold_in(
    item_factors: np.ndarray, history: sp.csr_matrix, confidence: float, l2: float
) -> np.ndarray:
    """iALS's user step for fixed item factors (the same solve as ``implicit``'s).

    Solves ``min_u sum_i c_i (p_i - u.v_i)^2 + l2 |u|^2`` with ``p_i = 1``,
    ``c_i = confidence * h_i`` on history items (``h_i``: the history's entry, 1 in a binary
    history) and ``p_i = 0``, ``c_i = 1`` elsewhere.

    Args:
        item_factors: ``(I, F)``.
        history: ``(n, I)`` CSR, binary or with each item's relative confidence weight.

    Returns:
        ``(n, F)`` user factors.
    """
    v = item_factors.astype(np.float64)
    gram = v.T @ v + l2 * np.eye(v.shape[1])  # (F, F)
    out = np.zeros((history.shape[0], v.shape[1]))
    for row in range(history.shape[0]):  # one F x F solve per user
        span = slice(history.indptr[row], history.indptr[row + 1])
        idx = history.indices[span]
        if len(idx) == 0:
            continue
        vh = v[idx]  # (h, F)
        c = confidence * history.data[span].astype(np.float64)[:, None]  # (h, 1)
        out[row] = np.linalg.solve(gram + vh.T @ ((c - 1.0) * vh), (c * vh).sum(axis=0))
    return out.astype(np.float32)


#: Nonzeros of one block of rows in :func:`conjugate_gradient_step` (``(nnz, F)`` floats at once).
CG_BLOCK_NNZ = 1 << 20


def conjugate_gradient_step(
    confidence: sp.csr_matrix, fixed: np.ndarray, solved: np.ndarray, l2: float,
    prior: np.ndarray | None = None, steps: int = 3,
) -> None:  # fmt: skip
    """One half-sweep of iALS: the rows of ``solved`` (updated in place) for fixed ``fixed``,
    by ``steps`` conjugate-gradient steps from their current values, as ``implicit`` does
    (Takács et al. 2011), for all rows at once.

    Row ``r`` solves ``min_x sum_i c_ri (p_ri - x.y_i)^2 + l2 |x - m_r|^2`` with ``c_ri`` the
    entry of ``confidence`` and ``p_ri = 1`` on its nonzeros, ``c = 1`` and ``p = 0`` elsewhere;
    ``m_r`` is row ``r`` of ``prior`` (zero without one: ``implicit``'s objective).

    Args:
        confidence: ``(R, N)`` CSR of observed confidences.
        fixed: ``(N, F)``; solved: ``(R, F)``; prior: ``(R, F)`` or ``None``.
    """
    y = fixed.astype(np.float64)
    gram = y.T @ y + l2 * np.eye(y.shape[1])
    for lo, hi in _row_blocks(confidence.indptr, CG_BLOCK_NNZ):
        block = confidence[lo:hi]
        rows = np.repeat(np.arange(block.shape[0]), np.diff(block.indptr))
        cols, c = block.indices, block.data.astype(np.float64)
        yc = y[cols]  # (nnz, F)

        def times(v: np.ndarray) -> np.ndarray:  # A_r v_r for every row of the block
            d = np.einsum("nf,nf->n", v[rows], yc) * (c - 1.0)
            return v @ gram + sp.csr_matrix((d, block.indices, block.indptr), shape=block.shape) @ y

        x = solved[lo:hi].astype(np.float64)
        b = block @ y
        if prior is not None:
            b += l2 * prior[lo:hi]
        r = b - times(x)
        p = r.copy()
        old = np.einsum("nf,nf->n", r, r)
        for _ in range(steps):
            live = old > 1e-20
            if not live.any():
                break
            ap = times(p)
            pap = np.einsum("nf,nf->n", p, ap)
            a = np.where(live & (pap > 0), old / np.where(pap > 0, pap, 1.0), 0.0)[:, None]
            x += a * p
            r -= a * ap
            new = np.einsum("nf,nf->n", r, r)
            p = r + np.where(live, new / np.where(live, old, 1.0), 0.0)[:, None] * p
            old = new
        solved[lo:hi] = x


def _row_blocks(indptr: np.ndarray, nnz: int) -> list[tuple[int, int]]:
    """``(start, stop)`` row ranges of about ``nnz`` nonzeros each (at least one row)."""
    out, start, n = [], 0, len(indptr) - 1
    while start < n:
        stop = int(np.searchsorted(indptr, indptr[start] + nnz, side="right")) - 1
        stop = min(max(stop, start + 1), n)
        out.append((start, stop))
        start = stop
    return out


class TextPrior:
    """The ridge regression of item factors on the items' text vectors (with a constant), the
    prior mean of iALS's item factors: ``prior(V) = X (X'X + r I)^-1 X' V`` for ``X`` the
    vectors of the items that have text (zero rows, so a zero prior, for the others) and ``r``
    = ``ridge`` times the mean of ``X'X``'s diagonal over the text columns. Only the small
    ``(d + 1) x (d + 1)`` inverse is kept beside the vectors, so a catalogue of a million items
    costs its ``(I, d)`` float32 vectors and one ``(I, F)`` prior, not ``(I, d)`` float64 copies."""

    def __init__(self, vectors: np.ndarray, has: np.ndarray, ridge: float) -> None:
        self.x = np.where(has[:, None], vectors, 0.0).astype(np.float32)
        self.has = has.astype(np.float64)
        d = self.x.shape[1]
        xtx = np.empty((d + 1, d + 1))
        xtx[:d, :d] = self.x.T.astype(np.float64) @ self.x
        xtx[:d, d] = xtx[d, :d] = self.has @ self.x
        xtx[d, d] = self.has.sum()
        reg = ridge * float(np.mean(np.diag(xtx)[:d]))
        self.inverse = np.linalg.inv(xtx + reg * np.eye(d + 1))

    def weights(self, factors: np.ndarray) -> np.ndarray:
        """The regression's ``(d + 1, F)`` coefficients, the constant's last: an item with text
        vector ``x`` has prior ``x @ w[:-1] + w[-1]``."""
        xtv = np.vstack([self.x.T @ factors, self.has @ factors])  # (d + 1, F)
        return self.inverse @ xtv

    def __call__(self, factors: np.ndarray) -> np.ndarray:
        w = self.weights(factors)
        return self.x @ w[:-1] + np.outer(self.has, w[-1])


def new_item_map(vectors: np.ndarray, has: np.ndarray, factors: np.ndarray, ridge: float, content: float) -> np.ndarray:
    """``(d + 1, F)``: the factors of an item without pairs, ``[x, 1] @ map`` for its text
    vector ``x``: the prior mean of training, ``content`` times the ridge regression
    (:class:`TextPrior`) of the trained items' ``factors`` on their ``vectors`` (``has``: which
    have text). An item nobody has been shown yet has no evidence against it, so it is not
    shrunk as an item whose every user passed it by is (its item step with no pair would
    shrink it by ``l2 (U'U + l2 I)^-1``: on MovieLens-100K ``cold-item`` that ranks the new
    items with Recall@20 0.30 against the prior mean's 0.35)."""
    return (content * TextPrior(vectors, has, ridge).weights(factors)).astype(np.float32)


def softmax_fold_in(
    item_factors: np.ndarray, item_bias: np.ndarray, history: sp.csr_matrix, l2: float
) -> np.ndarray:
    """User vectors that rank the history first, for fixed item factors.

    Maximises ``sum_{i in H} log softmax(U V^T + b)_i - l2 |u|^2`` per user with L-BFGS
    (all users of the batch at once; the objective is separable). This is the listwise
    counterpart of BPR's pairwise objective; unlike a least-squares fit it does not
    depend on the scale of the item factors, which BPR leaves free.

    Args:
        item_factors: ``(I, F)``; item_bias: ``(I,)``; history: ``(n, I)`` binary CSR.

    Returns:
        ``(n, F)`` user factors (zeros for an empty history).
    """
    from scipy.optimize import minimize

    v = item_factors.astype(np.float64)
    b = item_bias.astype(np.float64)
    h = sp.csr_matrix(history, dtype=np.float64)
    n, f = h.shape[0], v.shape[1]
    counts = np.asarray(h.sum(axis=1))  # (n, 1)
    hv = h @ v  # (n, F)
    hb = np.asarray(h @ b).reshape(-1, 1)  # (n, 1)

    def objective(x: np.ndarray) -> tuple[float, np.ndarray]:
        u = x.reshape(n, f)
        s = u @ v.T + b  # (n, I)
        m = s.max(axis=1, keepdims=True)
        e = np.exp(s - m)
        z = e.sum(axis=1, keepdims=True)
        lse = m + np.log(z)
        loss = -(np.sum(hv * u) + hb.sum() - np.sum(counts * lse)) + l2 * np.sum(u * u)
        grad = -(hv - counts * ((e / z) @ v)) + 2 * l2 * u
        return float(loss), grad.ravel()

    res = minimize(objective, np.zeros(n * f), jac=True, method="L-BFGS-B", options={"maxiter": 100})
    return res.x.reshape(n, f).astype(np.float32)


class _FactorScorer(Scorer):
    """Shared scoring for factor models: user factors (learned or folded in) x item factors."""

    def _fold_in(self, history: sp.csr_matrix, values: sp.csr_matrix | None) -> np.ndarray:
        """User factors for new users from their ``history`` (and its event ``values``, when
        the query carries them)."""
        raise NotImplementedError

    def _score(self, queries: Queries) -> np.ndarray:
        users = queries.users
        known = (users >= 0) & (users < len(self.known_users_))
        known[known] = self.known_users_[users[known]]
        if queries.refresh is not None:  # events since training: folded in from the history
            known &= ~queries.refresh
        uf = np.zeros((len(users), self.item_factors_.shape[1]), dtype=np.float32)
        uf[known] = self.user_factors_[users[known]]
        if (~known).any():
            rows = np.flatnonzero(~known)
            uf[~known] = self._fold_in(queries.history[rows], None if queries.values is None else queries.values[rows])
        s = uf @ self.item_factors_.T  # (n, I)
        s[:, ~self._scorable_items()] = np.nan
        return s

    def _scorable_items(self) -> np.ndarray:
        """Items with factors worth ranking: those trained on."""
        return self.known_items_

    def get_state(self) -> dict[str, np.ndarray]:
        return {**super().get_state(), "user_factors": self.user_factors_,
                "item_factors": self.item_factors_}  # fmt: skip

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        super().set_state(state)
        self.user_factors_ = state["user_factors"]
        self.item_factors_ = state["item_factors"]


COLLAPSED = 1e-3
"""iALS's mean prediction for its training pairs (target 1) below which its factors have
collapsed (0.63 on MovieLens-100K with the defaults; 7e-9 on Taobao's slice)."""


@dataclass
class IALSConfig(ContentConfig):
    """Attributes (besides :class:`~metarec.encoders.ContentConfig`'s, used when items have text):
    factors: latent dimensions.
    l2: regularisation.
    alpha: confidence of an observed pair of mean weight (an unobserved one has 1).
    values: how event values weight a pair's confidence: ``sqrt`` (default), ``log1p`` or
        ``none`` (binary), as EASE's ``values``; weights are divided by their mean.
        ``l2 = 40``, ``alpha = 4.4`` and ``sqrt`` were chosen together on two development
        splits of MovieLens-100K (see the README): the best ``alpha`` grows with ``l2``.
    tags: item columns (comma-separated names) whose values join the matrix as pseudo-users,
        one per distinct value, who have "interacted" with every item holding it (collective
        factorisation: items sharing a genre or category are drawn together); a value that is
        a comma-separated list (MovieLens's genres) counts each entry. ``auto`` (default): the
        data's ``tag_fields`` (the MovieLens readers declare ``genres``; other data has none);
        ``""``: none.
    tag_weight: the weight of a pseudo-user's pair, against a mean real pair's 1; chosen on
        two development splits of MovieLens-100K (see the README).
    content: where items have text, each item's factors are drawn towards ``content`` times a
        ridge regression of the item factors on the items' text vectors (refit every sweep),
        instead of towards zero: items that read alike start alike, and an item with few
        pairs borrows from those that read like it. 0: ``implicit``'s objective and solver.
        With content the sweeps are this module's (:func:`conjugate_gradient_step`, the same
        conjugate-gradient steps), since ``implicit`` has no prior. Chosen on four
        development splits of MovieLens-100K (see the README).
    content_ridge: that regression's penalty, relative to the mean squared text vector
        entry summed over items (the mean diagonal of ``X'X``); positive while ``content`` is on.
    iterations: ALS sweeps.
    seed: random initialisation.
    """

    factors: int = 64
    l2: float = 40.0
    alpha: float = 4.4
    values: str = "sqrt"
    tags: str = "auto"
    tag_weight: float = 1.0
    content: float = 1.0
    content_ridge: float = 1.0
    iterations: int = 15
    seed: int = 42


class IALSScorer(_FactorScorer):
    """Implicit ALS (``implicit.als``)."""

    name = "ials"
    Config = IALSConfig
    saved_before = {"values": "none", "tags": "", "content": 0.0}  # binary pairs, no pseudo-users, no text

    def __init__(self, config: IALSConfig | None = None, **params) -> None:
        super().__init__(config, **params)
        c = self.config
        if c.content > 0 and not c.content_ridge > 0:  # X'X is singular with fewer items than dimensions
            raise ConfigError(f"ials: content_ridge must be positive while content is on, not {c.content_ridge!r}")

    def _fit(self, data: Dataset, matrix: sp.csr_matrix) -> None:
        from implicit.cpu.als import AlternatingLeastSquares

        c = self.config
        weighted = value_weighted(data, matrix, c.values)
        self.value_scale_ = float(weighted.data.mean()) if weighted.nnz else 1.0  # 1 when binary
        weighted = weighted.multiply(1.0 / self.value_scale_).tocsr()  # the mean pair weighs 1
        weighted = with_tags(data, weighted, c.tags, c.tag_weight, self.name)
        vectors = optional_item_content(data, c, self.name, "content")
        #: Items with text (scorable without a pair), and the map from a text vector to the
        #: factors of an item without pairs (:func:`new_item_map`); None without text.
        self.text_items_ = np.zeros(data.n_items, dtype=bool)
        self.new_item_map_: np.ndarray | None = None
        if vectors is not None:
            users, items = self._fit_with_content(weighted, *vectors)
            trained, (x, has) = self.known_items_, vectors
            if has[trained].any():  # (else nothing maps text to factors)
                self.new_item_map_ = new_item_map(x[trained], has[trained], items[trained], c.content_ridge, c.content)
                self.text_items_ = has.copy()
                untrained = ~trained & has  # held no pair (a genre's pseudo-user's aside): the text's factors
                items[untrained] = self._text_factors(x[untrained])
        else:
            # implicit wants single-threaded BLAS while it runs its own threads.
            with threadpool_limits(1, "blas"):
                model = AlternatingLeastSquares(
                    factors=c.factors, regularization=c.l2, alpha=c.alpha, iterations=c.iterations,
                    random_state=c.seed, num_threads=0,
                )  # fmt: skip
                model.fit(weighted.astype(np.float32), show_progress=False)
            users, items = model.user_factors, model.item_factors
        self.user_factors_ = np.asarray(users[: matrix.shape[0]], dtype=np.float32)  # no pseudo-users
        self.item_factors_ = np.asarray(items, dtype=np.float32)
        self._warn_if_collapsed(matrix)

    def _fit_with_content(self, weighted: sp.csr_matrix, vectors: np.ndarray, has: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """iALS sweeps (:func:`conjugate_gradient_step`) with the item factors' prior the
        ridge regression of the factors on content (refit before each item step)."""
        c = self.config
        confidence = (weighted * c.alpha).tocsr().astype(np.float64)
        by_item = confidence.T.tocsr()
        rng = np.random.default_rng(c.seed)
        users = rng.random((confidence.shape[0], c.factors)) * 0.01  # implicit's initialisation
        items = rng.random((confidence.shape[1], c.factors)) * 0.01
        text = TextPrior(vectors, has, c.content_ridge)
        for _ in range(c.iterations):
            conjugate_gradient_step(confidence, items, users, c.l2)
            conjugate_gradient_step(by_item, users, items, c.l2, c.content * text(items))
        return users, items

    # ------------------------------------------------------------ new items
    @property
    def can_add_items(self) -> bool:
        """Whether it was trained with item text (``content``): a new item's factors are then
        those its text predicts (:meth:`add_items`)."""
        return getattr(self, "new_item_map_", None) is not None

    def content_config(self) -> ContentConfig:
        """The encoder settings its item text was read with (new items need the same)."""
        return content_config_of(self.config)

    def _scorable_items(self) -> np.ndarray:
        """Items trained on, and with text those never trained on (factors from their text)."""
        return self.known_items_ | self.text_items_

    def _text_factors(self, vectors: np.ndarray) -> np.ndarray:
        if self.new_item_map_ is None:
            raise ConfigError("ials was trained without item text (content=0, or data without text): "
                              "it cannot score an item from its text")  # fmt: skip
        x = normalize_rows(np.atleast_2d(vectors))  # as the encoders give them
        return (x @ self.new_item_map_[:-1] + self.new_item_map_[-1]).astype(np.float32)

    def add_items(self, vectors: np.ndarray, texts: list[str] | None = None) -> np.ndarray:
        """Append new items with the factors their text vectors predict (:func:`new_item_map`),
        as an item of the catalogue without a pair gets in training; scorable at once.
        Returns their indices."""
        factors = self._text_factors(vectors)
        start, n = self.n_items_, len(factors)
        self.item_factors_ = np.vstack([self.item_factors_, factors])
        self.known_items_ = np.concatenate([self.known_items_, np.zeros(n, dtype=bool)])
        self.text_items_ = np.concatenate([self.text_items_, np.ones(n, dtype=bool)])
        self.n_items_ = start + n
        return np.arange(start, self.n_items_)

    def update_items(self, indices: np.ndarray, vectors: np.ndarray, texts: list[str] | None = None) -> None:
        """New text for existing items: an item never trained on takes the factors of its new
        text at once; an item trained on keeps its learned factors (its pairs, which the model
        does not keep, weigh in them with the text) until the model is trained again."""
        indices = np.asarray(indices, dtype=np.int64)
        factors = self._text_factors(vectors)
        fresh = ~self.known_items_[indices]
        self.item_factors_ = self.item_factors_.copy()
        self.item_factors_[indices[fresh]] = factors[fresh]
        self.text_items_ = self.text_items_.copy()
        self.text_items_[indices] = True

    def _warn_if_collapsed(self, matrix: sp.csr_matrix) -> None:
        """Say so when ``l2`` has shrunk the factors to zero. On data where most users and items
        have one pair (Taobao's two-hour slice: median 1), the default ``l2`` (chosen on
        MovieLens) makes zero the least-squares optimum: every score is then ~0 and the model
        silently ranks by the popularity tie-break, and its similar items are noise."""
        if not matrix.nnz:
            return
        m = matrix.tocoo()
        every = slice(None, None, max(1, m.nnz // 100_000))  # an even sample: the gathered rows stay small
        fit = float(np.einsum("nf,nf->n", self.user_factors_[m.row[every]], self.item_factors_[m.col[every]]).mean())
        if fit < COLLAPSED:
            per_user = float(np.median(matrix.getnnz(axis=1)))
            log.warning("ials: its factors shrank to zero: it predicts %.2g on average for its training pairs "
                        "(target 1) with l2=%g on data with a median of %g pairs per user, so it ranks by "
                        "popularity alone; try a smaller l2 (--param ials.l2=...)", fit, self.config.l2, per_user)

    def _fold_in(self, history: sp.csr_matrix, values: sp.csr_matrix | None) -> np.ndarray:
        c = self.config
        history = sp.csr_matrix(history, dtype=np.float64)
        history.data[:] = 1.0  # each item a mean pair, unless its value is known
        scale = self.value_scale_
        if values is not None and scale is not None and history.nnz:
            rows = np.repeat(np.arange(history.shape[0]), np.diff(history.indptr))
            v = np.asarray(sp.csr_matrix(values)[rows, history.indices]).ravel()
            ok = np.isfinite(v) & (v > 0)
            history.data[ok] = value_weight(v[ok], c.values) / scale
        return least_squares_fold_in(self.item_factors_, history, c.alpha, c.l2)

    def get_state(self) -> dict[str, np.ndarray]:
        state = {**super().get_state(), "text_items": self.text_items_}
        if self.value_scale_ is not None:  # an older model, loaded, is saved as it was
            state["value_scale"] = np.asarray([self.value_scale_], dtype=np.float64)
        if self.new_item_map_ is not None:
            state["new_item_map"] = self.new_item_map_
        return state

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        super().set_state(state)
        # A model saved before iALS weighted its pairs has no scale: its fold-in stays binary.
        self.value_scale_ = float(state["value_scale"][0]) if "value_scale" in state else None
        # Saved before iALS scored items from their text: it scores the items it trained on.
        self.text_items_ = state["text_items"].astype(bool) if "text_items" in state else np.zeros(self.n_items_, dtype=bool)
        self.new_item_map_ = state.get("new_item_map")


@dataclass
class BPRConfig:
    """Attributes:
    factors: latent dimensions (implicit adds one item-bias column).
    learning_rate, l2, iterations: SGD settings.
    popularity_correction: added to each item's bias, times the log of its training users.
        ``implicit`` draws a negative as the item of a random training pair, so in proportion
        to the item's popularity, and BPR then learns scores relative to popularity (log-odds
        against the sampling distribution, as in the logQ correction of sampled softmax, Yi
        et al. 2019). 1 (default) adds the log of that sampling distribution back: on
        MovieLens-100K ``holdout`` seed 0 (the tuning split) NDCG@10 0.3744 -> 0.4242 at the
        old settings, and with ``l2 = 0.03`` and 400 iterations (chosen with it) 0.4709; 0
        keeps ``implicit``'s raw scores.
    fold_in_l2: regularisation of the fold-in of new users (see :func:`softmax_fold_in`).
    threads: SGD threads; with more than one, hogwild updates make runs differ slightly.
    seed: random initialisation and sampling.
    """

    factors: int = 64
    learning_rate: float = 0.005
    l2: float = 0.03
    iterations: int = 400
    popularity_correction: float = 1.0
    fold_in_l2: float = 30.0
    threads: int = 1
    seed: int = 42


class BPRScorer(_FactorScorer):
    """Bayesian personalised ranking (``implicit.bpr``)."""

    name = "bpr"
    Config = BPRConfig
    saved_before = {"popularity_correction": 0.0}  # implicit's raw scores

    def _fit(self, data: Dataset, matrix: sp.csr_matrix) -> None:
        from implicit.cpu.bpr import BayesianPersonalizedRanking

        c = self.config
        with threadpool_limits(1, "blas"):
            model = BayesianPersonalizedRanking(
                factors=c.factors, learning_rate=c.learning_rate, regularization=c.l2,
                iterations=c.iterations, random_state=c.seed, num_threads=c.threads,
            )  # fmt: skip
            model.fit(matrix, show_progress=False)
        self.user_factors_ = np.asarray(model.user_factors, dtype=np.float32)
        self.item_factors_ = np.asarray(model.item_factors, dtype=np.float32)
        # The bias column (each user's entry is 1) takes the log sampling distribution back.
        self.item_factors_[:, -1] += c.popularity_correction * np.log(np.maximum(matrix.getnnz(axis=0), 1))

    def _fold_in(self, history: sp.csr_matrix, values: sp.csr_matrix | None) -> np.ndarray:
        # implicit's BPR keeps the item bias in the last factor column, the user's being 1.
        v = self.item_factors_
        u = softmax_fold_in(v[:, :-1], v[:, -1], history, self.config.fold_in_l2)
        return np.hstack([u, np.ones((len(u), 1), dtype=np.float32)])
