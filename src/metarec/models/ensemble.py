"""Model averaging: an ensemble of scorers that ranks better than its best member.

Each member scores the candidates; the scores are normalised per user (``zscore``: mean 0,
standard deviation 1 over the items the user has not seen; ``rank``: the item's percentile
among them), so members on different scales can be averaged; the ensemble's score is the
weighted sum. An item a member cannot score (NaN: an item it never saw, such as one added
online from its text, which only content members can score) takes the mean normalised score
of the members that can, so those members decide, on the others' scale; an item no member can
score stays NaN. New items are added to the members that read item text (``add_items``);
an item without training pairs is ranked with weights of its own (``new_items``, below).

The weights are fit on a validation split carved from the training data
(:func:`metarec.data.splits.validation`, never the test): members are trained on what is left,
score the validation users, and coordinate ascent over non-negative weights that sum to one
maximises the validation metric (``NDCG@10`` by default) directly, starting from the best
single member and from equal weights, so the fitted ensemble is at least as good as its best
member *on validation*. With ``segments``, one weight vector is fit per history-length
segment (0, 1, 2-5, 6-20, >20 interactions, :data:`ONE_CLICK_SEGMENTS`; with ``one_click``
off, :data:`~metarec.data.splits.HISTORY_SEGMENTS`' 0, 1-5, 6-20, >20) that has ``min_segment_users`` validation users, so users with a handful of interactions lean
on the members that serve them best; the others use the weights fit on all validation users.
With ``new_apart`` (default), new users (never trained on: a cold start, whose history is
given at query time) get weights of their own per segment, fit on the validation split's new
users: a member that adapts to a new user's clicks (``meta``) and one that was trained on the
user's history (``ials``) are not equally good at the same history length. A new-user segment
with too few validation users takes its history segment's weights.
With ``new_items`` (default 0.2), items without a training pair (new items: held out of
training, or added online from their text) get weights of their own too, fit on ``folds``
more validation splits that each hold that share of the items out of training entirely
(:func:`metarec.data.splits.cold_item`): the members that can score an item from its text
rank the held-out items for the users who have pairs on them (members that cannot score
them get weight 0). Without it, a new item is ranked with its user's segment's weights,
learnt on known items, each member that cannot score it standing in at the mean of those
that can.
Then the members are trained again on all the training data (``refit``), except a member
already trained on that data with the same settings (seed included) and offered to the
ensemble (:meth:`EnsembleScorer.offer`): that model is the member, trained once.
:func:`metarec.evaluation.evaluate` offers the models it evaluated before the ensemble.

A member written ``name*k`` is a seed ensemble: ``k`` copies trained with seeds ``seed``,
``seed + 1``, ..., whose normalised scores are averaged before weighting. Member parameters
are given as ``member.param`` (``ials.factors=128``; on the command line
``--param ensemble.ials.factors=128``).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from metarec.data.dataset import Dataset
from metarec.data.queries import Queries
from metarec.data.splits import HISTORY_SEGMENTS, cold_item, history_segment, segment_names, validation
from metarec.errors import ConfigError
from metarec.models.base import Scorer, new_users
from metarec.ranking import top_k

log = logging.getLogger(__name__)

NORMALISATIONS = ("zscore", "rank", "rrf")

#: Reciprocal rank fusion's constant (Cormack et al. 2009): an item at rank ``r`` (1: the
#: member's top unseen item) scores ``1 / (RRF_K + r)``.
RRF_K = 60
#: History segments with ``one_click``: the issue's 0, 1-5, 6-20, >20 with one click apart.
ONE_CLICK_SEGMENTS: tuple[tuple[int, int | None], ...] = ((0, 0), (1, 1), (2, 5), (6, 20), (21, None))

#: Validation users are sampled down so that member scores fit in about this many cells.
MAX_VALIDATION_CELLS = 100_000_000


@dataclass
class EnsembleConfig:
    """Attributes:
    members: comma-separated model names; ``name*k`` is a seed ensemble of ``k`` copies.
    normalise: ``zscore``, ``rank`` (percentiles) or ``rrf`` (reciprocal rank fusion, ``1 / (60 +
        rank)``), per user, over the items the user has not seen.
    segments: fit one weight vector per history-length segment (else one for everyone).
    metric: the validation metric maximised, ``NDCG@k``, ``Recall@k``, ``HitRate@k``, ...
    validation_users, new_users, holdout_share: the validation split
        (:func:`metarec.data.splits.validation`). Holding out little (10% of each user's pairs)
        keeps the members trained for validation close to the members finally used: a
        model that gains more from data than another (iALS over EASE, on MovieLens) is
        otherwise under-weighted.
    folds: validation splits (seeds ``seed``, ``seed + 1``, ...), members trained on each;
        the weights maximise the metric over all their users (less noise, more training).
    min_segment_users: validation users a segment needs for weights of its own.
    new_apart: new users (not trained on) get weights of their own per segment.
    one_click: a history of one interaction is a segment of its own (0, 1, 2-5, 6-20, >20),
        so a new user's first click can lean on other members than their fifth (on
        MovieLens-100K ``cold-user``, popularity is level with ``meta`` at one click and far
        behind at five); ``False``: the segments 0, 1-5, 6-20, >20 (models saved before it).
    significance: a mixture replaces the best single member (of its segment, or overall) only
        if its cross-fitted validation gain exceeds this many standard errors of the per-user
        paired differences (:func:`choose_weights`; 0: keep any in-sample gain).
    known_significance: the same for weights fit on known users alone (the users the members
        were trained on), and for the weights of new items (``new_items``); ``significance``
        holds wherever a new user is among the rows.
    new_items: the share of the items with pairs held out of training in one more validation
        split, on which the weights for items without training pairs are fit (the members
        that can score such items rank the held-out ones); 0: those items take their user's
        weights, each member that cannot score them at the mean of those that can (models
        saved before it).
    refit: train the members again on all the data once the weights are fit.
    params: member parameters, ``{"ials": {"factors": 128}}``; once made, every setting of
        each member (seeds aside), so that a saved config names how its members were trained.
    seed: the validation split; member ``j`` of a seed ensemble gets ``seed + j``.
    """

    members: str = "ease,itemknn,ials,hybrid"
    normalise: str = "zscore"
    segments: bool = True
    metric: str = "NDCG@10"
    validation_users: float = 1.0
    new_users: float = 0.1
    holdout_share: float = 0.1
    folds: int = 3
    min_segment_users: int = 30
    new_apart: bool = True
    one_click: bool = True
    significance: float = 1.0
    known_significance: float = 0.0
    new_items: float = 0.2
    refit: bool = True
    params: dict[str, dict[str, Any]] = field(default_factory=dict)
    seed: int = 42


def metric_cutoff(metric: str) -> int:
    """The cutoff of a ranking metric named ``NAME@K`` (``NDCG@10`` -> 10); a ConfigError else.

    >>> metric_cutoff("Recall@20")
    20
    """
    from metarec.evaluation.metrics import RANKING_METRICS  # (evaluation imports the registry)

    name, _, cut = metric.partition("@")
    if not cut.isdigit() or int(cut) < 1 or name not in RANKING_METRICS:
        raise ConfigError(f"ensemble: metric {metric!r} is not NAME@K, e.g. NDCG@10 or Recall@20")
    return int(cut)


def parse_members(spec: str | list[str]) -> list[tuple[str, int]]:
    """``"ease,ials*3"`` -> ``[("ease", 1), ("ials", 3)]``.

    >>> parse_members("ease, ials*3")
    [('ease', 1), ('ials', 3)]
    """
    from metarec.models.registry import MODELS

    parts = spec.split(",") if isinstance(spec, str) else list(spec)
    out = []
    for part in (p.strip() for p in parts):
        if not part:
            continue
        name, star, copies = part.partition("*")
        name = name.strip()
        if name not in MODELS or name == "ensemble":
            raise ConfigError(f"ensemble member {name!r}: choose from {', '.join(m for m in MODELS if m != 'ensemble')}")
        try:
            k = int(copies) if star else 1
        except ValueError:
            raise ConfigError(f"ensemble member {part!r}: expected name*copies, e.g. ials*3") from None
        if k < 1:
            raise ConfigError(f"ensemble member {part!r}: copies must be at least 1")
        out.append((name, k))
    if not out:
        raise ConfigError("ensemble: no members")
    names = [n for n, _ in out]
    if len(set(names)) != len(names):
        raise ConfigError(f"ensemble: a member is listed twice in {spec!r}; use name*k for a seed ensemble")
    return out


def normalise(scores: np.ndarray, history: sp.csr_matrix, how: str = "zscore") -> np.ndarray:
    """Per-row normalised scores; statistics over the finite scores of items not in ``history``.

    Items not scorable (NaN) stay NaN; history items are normalised like the rest.

    >>> s = np.array([[1.0, 2.0, 3.0, np.nan]], dtype=np.float32)
    >>> normalise(s, sp.csr_matrix((1, 4)), "rank").tolist()
    [[0.0, 0.5, 1.0, nan]]
    >>> (1 / normalise(s, sp.csr_matrix((1, 4)), "rrf")).round().tolist()  # RRF_K + rank
    [[63.0, 62.0, 61.0, nan]]
    """
    s = np.asarray(scores, dtype=np.float32)
    finite = np.isfinite(s)
    valid = finite.copy()
    rows, cols = history.nonzero()
    valid[rows, cols] = False
    count = valid.sum(axis=1)
    if how == "zscore":
        x = np.where(valid, s, 0.0).astype(np.float64)
        mu = x.sum(axis=1) / np.maximum(count, 1)
        var = (x * x).sum(axis=1) / np.maximum(count, 1) - mu * mu
        sd = np.sqrt(np.maximum(var, 0.0))
        z = ((s - mu[:, None]) / np.where(sd > 1e-9, sd, 1.0)[:, None]).astype(np.float32)
    elif how in ("rank", "rrf"):
        # pos: how many valid items score below the item (0 .. count - 1 for a valid item).
        x = np.where(valid, s, -np.inf)
        ranks = np.empty_like(s)
        order = np.argsort(x, axis=1, kind="stable")
        np.put_along_axis(ranks, order, np.arange(s.shape[1], dtype=np.float32)[None, :], axis=1)
        pos = ranks - (s.shape[1] - count)[:, None]  # the first rank a valid item holds is 0
        # History items: the place they would have among the valid items.
        if len(rows):
            vs = np.where(valid, s, np.inf)
            vs.sort(axis=1)
            by_user = np.argsort(rows, kind="stable")
            rows, cols = rows[by_user], cols[by_user]
            starts = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]])
            for a, b in zip(starts, np.r_[starts[1:], len(rows)]):  # a user at a time
                r, c = rows[a], cols[a:b]
                c = c[finite[r, c]]
                pos[r, c] = np.searchsorted(vs[r, : count[r]], s[r, c])
        if how == "rank":
            z = (pos / np.maximum(count - 1, 1)[:, None]).astype(np.float32)
        else:
            top = np.maximum(count[:, None] - pos, 1)  # 1: the top valid item
            z = (1.0 / (RRF_K + top)).astype(np.float32)
    else:
        raise ConfigError(f"ensemble: normalise must be one of {NORMALISATIONS}, not {how!r}")
    z[~finite] = np.nan
    return z.astype(np.float32)


def coordinate_ascent(
    objective: Callable[[np.ndarray], float], starts: list[np.ndarray], steps: tuple[float, ...] = (0.4, 0.2, 0.1, 0.05),
    max_rounds: int = 20,
) -> tuple[np.ndarray, float]:  # fmt: skip
    """Maximise ``objective(w)`` over non-negative ``w`` summing to one: from the best of
    ``starts``, move one coordinate at a time by each step size while that improves it.

    >>> f = lambda w: -((w - np.array([0.2, 0.8])) ** 2).sum()
    >>> w, v = coordinate_ascent(f, [np.array([1.0, 0.0]), np.array([0.5, 0.5])])
    >>> np.round(w, 2).tolist()
    [0.2, 0.8]
    """
    values = [objective(w) for w in starts]
    best_w, best = starts[int(np.argmax(values))].copy(), max(values)
    for step in steps:
        for _ in range(max_rounds):
            improved = False
            for k in range(len(best_w)):
                for d in (step, -step):
                    w = best_w.copy()
                    w[k] = max(w[k] + d, 0.0)
                    if w.sum() <= 0 or np.allclose(w / w.sum(), best_w):
                        continue
                    w /= w.sum()
                    v = objective(w)
                    if v > best + 1e-7:
                        best_w, best, improved = w, v, True
            if not improved:
                break
    return best_w, best


def choose_weights(
    per_user: Callable[[np.ndarray, np.ndarray], np.ndarray], rows: np.ndarray, starts: list[np.ndarray],
    significance: float, rng: np.random.Generator,
) -> np.ndarray:  # fmt: skip
    """Weights for validation users ``rows``: the mixture coordinate ascent finds from ``starts``
    (``per_user(w, rows)``: each user's metric under weights ``w``), or the best single member
    unless the mixture's gain is significant.

    The gain is *cross-fitted*: the users are split in two halves; on each, the mixture found
    on the other half (from the single members and equal weights) is compared, user by user,
    with the single member best on the other half. The mixture wins if the mean of those
    held-out differences exceeds ``significance`` standard errors (``0``: any in-sample gain).
    Judged on the users it was fit on, a search over many weight vectors finds gains that are
    noise, more so on a few hundred users.
    """
    k = len(starts[0])
    eye = [np.eye(k)[j] for j in range(k)]
    w, _ = coordinate_ascent(lambda w: float(per_user(w, rows).mean()), starts)
    singles = np.stack([per_user(e, rows) for e in eye])  # (K, n)
    best = int(np.argmax(singles.mean(axis=1)))
    if significance <= 0:
        return w if per_user(w, rows).mean() > singles[best].mean() else eye[best]
    if len(rows) < 4:
        return eye[best]
    pos = rng.permutation(len(rows))
    halves = (pos[: len(pos) // 2], pos[len(pos) // 2 :])
    diffs = []
    for fit_on, judge in (halves, halves[::-1]):
        w_half, _ = coordinate_ascent(lambda w: float(per_user(w, rows[fit_on]).mean()), [*eye, np.full(k, 1.0 / k)])
        best_half = int(np.argmax(singles[:, fit_on].mean(axis=1)))
        diffs.append(per_user(w_half, rows[judge]) - singles[best_half, judge])
    d = np.concatenate(diffs)
    se = d.std(ddof=1) / np.sqrt(len(d))
    return w if d.mean() > significance * se else eye[best]


def ranker(rel: np.ndarray, metric: str) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """``ranked(s, rows)``: each of validation users ``rows``' ``metric`` when items are ranked
    by scores ``s`` (``(len(rows), I)``; ``-inf``: never ranked), ``rel`` ``(n, I)`` marking
    every user's relevant items.

    >>> ranked = ranker(np.array([[False, True, False]]), "HitRate@1")
    >>> ranked(np.array([[0.0, 2.0, 1.0]]), np.array([0])).tolist()
    [1.0]
    """
    from metarec.evaluation.metrics import ranking_metrics  # (evaluation imports the registry)

    cutoff = metric_cutoff(metric)
    n_rel = rel.sum(axis=1)

    def ranked(s: np.ndarray, rows: np.ndarray) -> np.ndarray:
        hits = np.take_along_axis(rel[rows], top_k(s, cutoff), axis=1)
        return ranking_metrics(hits, n_rel[rows], (cutoff,))[metric]

    return ranked


def impute_members(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(K, n, I)`` members' normalised scores with NaN (cannot score) replaced by the mean of
    the members that can score that item for that user (0 where none can), and ``(n, I)``:
    whether any can. A weighted sum then ranks an item only some members know (one added
    online, from its text) by those members alone, on the scale of the others.

    >>> z = np.array([[[1.0, np.nan, np.nan]], [[3.0, 2.0, np.nan]]])
    >>> filled, ok = impute_members(z)
    >>> filled[:, 0].tolist(), ok.tolist()
    ([[1.0, 2.0, 0.0], [3.0, 2.0, 0.0]], [[True, True, False]])
    """
    finite = np.isfinite(z)
    count = finite.sum(axis=0)
    mean = np.where(finite, z, 0.0).sum(axis=0) / np.maximum(count, 1)
    return np.where(finite, z, mean[None]).astype(np.float32), count > 0


class _Member:
    """One member: a model, or a seed ensemble of copies of it."""

    def __init__(self, name: str, copies: int, params: dict[str, Any], seed: int) -> None:
        from metarec.models.registry import make_scorer

        self.name = name if copies == 1 else f"{name}*{copies}"
        self.scorers = []
        for j in range(copies):
            s = make_scorer(name, **params)
            if "seed" in {f.name for f in dataclasses.fields(s.config)}:
                s.config = dataclasses.replace(s.config, seed=seed + j)
            self.scorers.append(s)

    def fit(self, data: Dataset) -> None:
        for s in self.scorers:
            s.fit(data)

    def adopt(self, offer: tuple[Scorer, Dataset] | None, data: Dataset) -> bool:
        """Take ``offer``'s scorer in place of training (:meth:`fit`) on ``data``, where it
        was trained on that same data with this member's settings, seed included; whether it
        was taken. A seed ensemble (``name*k``) trains its copies itself."""
        if offer is None or len(self.scorers) != 1:
            return False
        scorer, trained_on = offer
        mine = self.scorers[0]
        if trained_on is not data or type(scorer) is not type(mine) or scorer.config != mine.config:
            return False
        self.scorers = [scorer]
        return True

    @property
    def can_add_items(self) -> bool:
        return self.scorers[0].can_add_items

    def score(self, queries: Queries, how: str) -> np.ndarray:
        """Normalised scores, NaN where the model cannot score (mean over the copies). Items
        added to the ensemble's catalogue since a member that cannot add items was fit are
        NaN for it (and left out of the histories it sees)."""
        out = None
        n = queries.history.shape[1]
        for s in self.scorers:
            m = s.n_items_
            if m < n:  # items added since it was fit: it sees the rest, and scores them NaN
                q = Queries(queries.users, queries.history[:, :m], None if queries.values is None else queries.values[:, :m],
                            queries.refresh)  # fmt: skip
                raw = np.hstack([s.score(q), np.full((len(queries), n - m), np.nan, dtype=np.float32)])
            else:
                raw = s.score(queries)
            z = normalise(raw, queries.history, how)
            out = z if out is None else out + z
        return out / len(self.scorers)


class EnsembleScorer(Scorer):
    """Weighted average of per-user normalised member scores; weights fit on validation."""

    name = "ensemble"
    Config = EnsembleConfig
    # Before ``known_significance``, ``significance`` held for known users too.
    saved_before = {"known_significance": lambda saved: saved.get("significance", EnsembleConfig.significance),
                    "one_click": False, "new_items": 0.0}  # fmt: skip

    def __init__(self, config: EnsembleConfig | None = None, **params: Any) -> None:
        # ``ials.factors=128`` is a member's parameter.
        nested = {k: v for k, v in params.items() if "." in k}
        params = {k: v for k, v in params.items() if "." not in k}
        super().__init__(config, **params)
        if nested:
            merged = {m: dict(p) for m, p in self.config.params.items()}
            for key, value in nested.items():
                member, _, name = key.partition(".")
                merged.setdefault(member, {})[name] = value
            self.config = dataclasses.replace(self.config, params=merged)
        self.spec_ = parse_members(self.config.members)
        unknown = set(self.config.params) - {n for n, _ in self.spec_}
        if unknown:
            raise ConfigError(f"ensemble: parameters for {', '.join(sorted(unknown))}, which is not a member")
        c = self.config
        if c.normalise not in NORMALISATIONS:
            raise ConfigError(f"ensemble: normalise must be one of {NORMALISATIONS}, not {c.normalise!r}")
        metric_cutoff(c.metric)  # a bad value is an error now, not after the members' training
        for name, ok, rule in (
            ("folds", c.folds >= 1, "at least 1"),
            ("validation_users", 0 < c.validation_users <= 1, "in (0, 1]"),
            ("new_users", 0 <= c.new_users < 1, "in [0, 1)"),
            ("holdout_share", 0 < c.holdout_share < 1, "in (0, 1)"),
            ("new_items", 0 <= c.new_items < 1, "in [0, 1)"),
            ("min_segment_users", c.min_segment_users >= 1, "at least 1"),
        ):  # (and, as for every model, no setting below 0: checked_config)
            if not ok:
                raise ConfigError(f"ensemble: {name} must be {rule}, not {getattr(c, name)!r}")
        # The members' own settings, checked as they are made (nothing is trained), and kept
        # whole: a saved ensemble's config then names every setting its members were trained
        # with, so loading or retraining it after a default has changed trains them as before.
        resolved = {}
        for (name, _), m in zip(self.spec_, self._members()):
            settings = dataclasses.asdict(m.scorers[0].config)
            settings.pop("seed", None)  # a member's seed follows the ensemble's
            resolved[name] = settings
        self.config = dataclasses.replace(self.config, params=resolved)
        self.segments_ = ((ONE_CLICK_SEGMENTS if self.config.one_click else HISTORY_SEGMENTS) if self.config.segments
                          else ((0, None),))  # fmt: skip
        names = segment_names(self.segments_) if self.config.segments else ["all"]
        #: Weight rows: one per history segment, then (``new_apart``) one per segment for new users.
        self.group_names_ = names + ([f"new {n}" for n in names] if self.config.new_apart else [])
        self._offered: dict[str, tuple[Scorer, Dataset]] = {}  # :meth:`offer`
        self.reused_: list[str] = []  # members taken from an offer at the last fit

    def _groups(self, lengths: np.ndarray, new: np.ndarray) -> np.ndarray:
        """The weight row of each query, from its history length and whether its user is new."""
        g = history_segment(lengths, self.segments_)
        return g + len(self.segments_) * np.asarray(new, dtype=bool) if self.config.new_apart else g


    def _members(self) -> list[_Member]:
        c = self.config
        return [_Member(n, k, c.params.get(n, {}), c.seed) for n, k in self.spec_]

    def _member_scores(self, members: list[_Member], queries: Queries) -> tuple[np.ndarray, np.ndarray]:
        """Members' normalised scores ``(K, n, I)``, an item a member cannot score at the mean
        of the members that can, and ``(n, I)``: whether any member can score it."""
        return impute_members(self._raw_scores(members, queries))

    def _raw_scores(self, members: list[_Member], queries: Queries) -> np.ndarray:
        """Members' normalised scores ``(K, n, I)``, NaN where a member cannot score."""
        return np.stack([m.score(queries, self.config.normalise) for m in members])

    # ------------------------------------------------------------- training
    def _fit(self, data: Dataset, matrix: sp.csr_matrix) -> None:
        c = self.config
        k = len(self.spec_)
        self.weights_ = np.full((len(self.group_names_), k), 1.0 / k, dtype=np.float32)
        self.validation_ = {}
        self.segment_users_ = np.zeros(len(self.group_names_), dtype=np.int64)
        self.item_weights_: np.ndarray | None = None  # for items without training pairs
        self.item_validation_: dict[str, float] = {}
        self.item_users_ = 0
        members = None
        if k > 1 and c.new_items > 0:
            self._fit_item_weights(data)
        if k > 1:
            folds = []  # (members' normalised scores, queries, relevant, new users, items with pairs) per split
            for f in range(c.folds):
                split = validation(data, c.seed + f, c.validation_users, c.new_users, c.holdout_share,
                                   segments=self.segments_)  # fmt: skip
                if not split.query_sets:
                    continue
                members = self._members()
                for m in members:
                    m.fit(split.train)
                trained = split.train.matrix()
                known, items = trained.getnnz(axis=1) > 0, trained.getnnz(axis=0) > 0
                folds.append(self._validation_scores(members, split.query_sets, data.n_items, c.seed + f, known, items))
            if folds:
                self._fit_weights(folds)
            else:
                log.warning("ensemble: no validation users (users with more than 3 pairs, a validation_users share of "
                            "them); the members get equal weights")
        offered, self._offered = self._offered, {}
        self.reused_ = []
        if members is None or c.refit or not self.validation_:
            members = self._members()
            for m in members:
                if m.adopt(offered.get(m.name), data):
                    self.reused_.append(m.name)
                else:
                    m.fit(data)
        if self.reused_:
            log.info("ensemble: %s trained once, beside the ensemble (offered); not trained again", ", ".join(self.reused_))
        self.members_ = members
        for name, w in zip(self.group_names_, self.weights_):
            log.info("ensemble weights, history %s: %s", name, dict(zip(self.member_names, w.round(3).tolist())))

    def offer(self, name: str, scorer: Scorer, data: Dataset) -> None:
        """``scorer``, model ``name`` already fit on ``data``: when the ensemble is next fit on
        that same ``data`` and ``name`` is a member with the same settings (seed included), that
        scorer becomes the final member instead of the same model trained again (the module
        docstring). It is handed over, not copied (a copy would double the memory a large
        model takes): the caller scores with it no more. Offers are dropped once the
        ensemble is fit."""
        self._offered[name] = (scorer, data)

    @property
    def member_names(self) -> list[str]:
        return [n if k == 1 else f"{n}*{k}" for n, k in self.spec_]

    def _validation_scores(
        self, members: list[_Member], query_sets: list, n_items: int, seed: int, known: np.ndarray,
        items: np.ndarray,
    ) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray], Queries, sp.csr_matrix, np.ndarray, np.ndarray]:  # fmt: skip
        """Members' normalised scores and what is scorable (:meth:`_member_scores`), and what
        each member can score itself ``(K, n, I)``, for the validation queries with a relevant
        item (sampled down to :data:`MAX_VALIDATION_CELLS`), the queries, their relevant items,
        whether each query's user is new to the members (``known``: the users the members
        were trained on) and ``items``, the items the members were trained on pairs of."""
        queries = Queries(
            np.concatenate([qs.queries.users for qs in query_sets]),
            sp.vstack([qs.queries.history for qs in query_sets]).tocsr(),
        )
        relevant = sp.vstack([qs.relevant for qs in query_sets]).tocsr()
        keep = np.flatnonzero(relevant.getnnz(axis=1) > 0)
        cap = max(MAX_VALIDATION_CELLS // (n_items * len(members) * self.config.folds), 100)
        if len(keep) > cap:
            keep = np.sort(np.random.default_rng(seed).choice(keep, cap, replace=False))
        queries, relevant = queries[keep], relevant[keep]
        raw = self._raw_scores(members, queries)
        return (*impute_members(raw), np.isfinite(raw)), queries, relevant, new_users(queries.users, known), items

    def _fit_item_weights(self, data: Dataset) -> None:
        """The weights for items without training pairs. On ``folds`` splits that each hold
        ``new_items`` of the items out of training (:func:`~metarec.data.splits.cold_item`,
        seeds ``seed``, ``seed + 1``, ...), the members rank the held-out items for the users
        with pairs on them; the weights maximise the validation metric over all the folds'
        users (:func:`choose_weights`, at ``known_significance``: the users are known, the
        items new). A member that cannot score new items gets weight 0 and is not trained for
        this: one whose class scores only items it saw pairs of (``Scorer.pairs_only``: EASE,
        ItemKNN, popularity), and one that scores none of the first fold's held-out items."""
        c = self.config
        k = len(self.spec_)
        from metarec.models.registry import MODELS

        can = np.array([not MODELS[name].pairs_only for name, _ in self.spec_])  # a class's flag: nothing built
        if not can.any():
            log.info("ensemble: no member scores items without training pairs")
            return
        zs, oks, rels = [], [], []
        for f in range(c.folds):
            split = cold_item(data, c.seed + f, c.new_items)
            qs = split.query_sets[0]
            cand = np.asarray(qs.candidates)
            keep = np.arange(len(qs.queries))  # cold_item asks only users with pairs on held-out items
            if len(cand) < 2 or not len(keep):
                log.info("ensemble: too few items to hold out for new items' weights; they take their user's weights")
                return
            members = [m for m, ok in zip(self._members(), can) if ok]
            for m in members:
                m.fit(split.train)
            cap = max(MAX_VALIDATION_CELLS // (data.n_items * len(members) * c.folds), 100)
            if len(keep) > cap:
                keep = np.sort(np.random.default_rng(c.seed + f).choice(keep, cap, replace=False))
            raw = self._raw_scores(members, qs.queries[keep])[:, :, cand]  # normalised over every unseen item
            if f == 0:
                scores = np.isfinite(raw).any(axis=(1, 2))
                if not scores.any():
                    log.info("ensemble: no member scores items without training pairs")
                    return
                raw = raw[scores]
                can[can] = scores
            z, ok = impute_members(raw)
            zs.append(z)
            oks.append(ok)
            rels.append(qs.relevant[keep][:, cand].toarray() > 0)
        # Every fold holds out as many items: the folds' users stack, each ranking their own fold's.
        z, scorable, rel = np.concatenate(zs, axis=1), np.concatenate(oks), np.concatenate(rels)
        ranked = ranker(rel, c.metric)

        def per_user(w: np.ndarray, rows: np.ndarray) -> np.ndarray:
            s = np.tensordot(w, z[:, rows], axes=1)
            s[~scorable[rows]] = -np.inf
            return ranked(s, rows)

        everyone = np.arange(len(rel))
        n = int(can.sum())
        eye = [np.eye(n)[j] for j in range(n)]
        w = choose_weights(per_user, everyone, [*eye, np.full(n, 1.0 / n)], c.known_significance,
                           np.random.default_rng((c.seed, len(rel)))) if n > 1 else np.ones(1)  # fmt: skip
        self.item_weights_ = np.zeros(k, dtype=np.float32)
        self.item_weights_[can] = w
        self.item_users_ = len(rel)
        names = [m for m, ok in zip(self.member_names, can) if ok]
        self.item_validation_ = {m: float(per_user(e, everyone).mean()) for m, e in zip(names, eye)}
        self.item_validation_["ensemble"] = float(per_user(w, everyone).mean())
        log.info("ensemble weights, new items (%d validation users): %s; validation %s %s", len(rel),
                 dict(zip(self.member_names, self.item_weights_.round(3).tolist())), c.metric,
                 self.item_validation_)  # fmt: skip

    def _fit_weights(
        self,
        folds: list[tuple[tuple[np.ndarray, np.ndarray, np.ndarray], Queries, sp.csr_matrix, np.ndarray, np.ndarray]],
    ) -> None:
        """Coordinate ascent on the validation metric over all folds' users, then per segment.
        An item without training pairs in a fold is scored as serving scores it: with the
        weights for new items where they were fit (:meth:`_fit_item_weights`), whatever the
        weights being fit here."""
        c = self.config
        z = np.concatenate([f[0][0] for f in folds], axis=1)  # (K, n, I)
        history = sp.vstack([f[1].history for f in folds]).tocsr()
        # Never ranked: what the user has seen, and what no member can score.
        seen = (history.toarray() > 0) | ~np.concatenate([f[0][1] for f in folds])
        rel = sp.vstack([f[2] for f in folds]).toarray() > 0
        metric = c.metric
        ranked = ranker(rel, metric)
        new_item = None  # (n, I): items without training pairs in the row's fold
        if self.item_weights_ is not None:
            new_item = np.concatenate([np.broadcast_to(~f[4], (len(f[3]), len(f[4]))) for f in folds])
            if new_item.any():
                item_scores = np.tensordot(self.item_weights_, z, axes=1)
            else:
                new_item = None

        def blended(s: np.ndarray, rows: np.ndarray) -> np.ndarray:
            """Scores ``s`` of users ``rows`` as ranked: new items by their own weights, what
            is never ranked at ``-inf``."""
            if new_item is not None:
                s = np.where(new_item[rows], item_scores[rows], s)
            s[seen[rows]] = -np.inf
            return s

        def per_user(w: np.ndarray, rows: np.ndarray) -> np.ndarray:
            return ranked(blended(np.tensordot(w, z[:, rows], axes=1), rows), rows)

        is_new = np.concatenate([f[3] for f in folds])  # the user is new to the members
        k = z.shape[0]
        eye = [np.eye(k)[j] for j in range(k)]

        def fit(rows: np.ndarray, starts: list[np.ndarray]) -> np.ndarray:
            sig = c.significance if is_new[rows].any() else c.known_significance
            return choose_weights(per_user, rows, starts, sig, np.random.default_rng((c.seed, len(rows))))

        everyone = np.arange(z.shape[1])
        # Each member on its own: the items it cannot score are not ranked (the weights see
        # them at the other members' mean, as serving does).
        own = np.concatenate([f[0][2] for f in folds], axis=1)  # (K, n, I)
        self.validation_ = {
            m: float(ranked(np.where(seen | ~own[j], -np.inf, z[j]), everyone).mean())
            for j, m in enumerate(self.member_names)
        }
        w_all = fit(everyone, [*eye, np.full(k, 1.0 / k)])
        lengths = history.getnnz(axis=1)
        seg = history_segment(lengths, self.segments_)
        group = self._groups(lengths, is_new)
        n_seg = len(self.segments_)
        for s in range(n_seg):
            # A segment's weights: fit on its users (known and new); with ``new_apart``, known
            # and new users each get their own fit from there when there are enough of them.
            rows = np.flatnonzero(seg == s)
            pooled = fit(rows, [*eye, w_all]) if len(rows) >= c.min_segment_users and n_seg > 1 else w_all
            for g in range(s, len(self.group_names_), n_seg):
                rows_g = np.flatnonzero(group == g) if c.new_apart else rows
                self.segment_users_[g] = len(rows_g)
                self.weights_[g] = pooled
                if c.new_apart and len(rows_g) >= c.min_segment_users and len(rows_g) < len(rows):
                    self.weights_[g] = fit(rows_g, [*eye, pooled])
        # The validation metric of the ensemble as fit (each user with their segment's weights).
        s_all = blended(np.einsum("kni,nk->ni", z, self.weights_[group]), everyone)
        self.validation_["ensemble"] = float(ranked(s_all, everyone).mean())
        log.info("ensemble validation %s: %s", metric, self.validation_)

    # -------------------------------------------------------------- scoring
    def _score(self, queries: Queries) -> np.ndarray:
        z, scorable = self._member_scores(self.members_, queries)  # (K, n, I), (n, I)
        w = self.weights_[self._groups(queries.history.getnnz(axis=1), new_users(queries.users, self.known_users_))]
        out = np.einsum("kni,nk->ni", z, w)
        if self.item_weights_ is not None:  # items without training pairs: their own weights
            new = np.flatnonzero(~self.known_items_)
            if len(new):
                out[:, new] = np.tensordot(self.item_weights_, z[:, :, new], axes=1)
        out[~scorable] = np.nan
        return out

    # ------------------------------------------------------------ new items
    @property
    def can_add_items(self) -> bool:
        """Whether a member reads item text (see :meth:`add_items`); False before fitting."""
        return any(m.can_add_items for m in getattr(self, "members_", ()))

    def _content_scorers(self) -> list[Any]:
        """The members that take new items from their text, all with one encoder (new items are
        encoded once). The content models (``hybrid``, ``content-knn``, ...) set it and must
        agree; a collaborative member that also reads text (``ials``) joins them where it reads
        with the same encoder, and is otherwise left out of new items (NaN for it, as for EASE)."""
        from metarec.models.content import ContentScorer

        scorers = [s for m in self.members_ if m.can_add_items for s in m.scorers]
        if not scorers:
            raise ConfigError(f"ensemble of {', '.join(self.member_names)}: no member scores items from their text")

        def key(s: Any) -> tuple[str, str | None]:
            return s.content_config().encoder, s.content_config().vectors

        leaders = [s for s in scorers if isinstance(s, ContentScorer)] or scorers
        encoders = {(s.name, *key(s)) for s in leaders}
        if len({e[1:] for e in encoders}) > 1:
            raise ConfigError(f"ensemble: members encode item text differently ({sorted(encoders)}); new items need one "
                              "encoder: give them the same (--param NAME.encoder=...)")  # fmt: skip
        left_out = sorted({s.name for s in scorers if key(s) != key(leaders[0])})
        if left_out and not getattr(self, "_said_left_out", False):  # once, not at every new item
            self._said_left_out = True
            log.warning("ensemble: %s read item text with another encoder than %s, so new items are scored without "
                        "them (--param %s.encoder=%s to include them)", ", ".join(left_out), leaders[0].name,
                        left_out[0], key(leaders[0])[0])  # fmt: skip
        return [s for s in scorers if key(s) == key(leaders[0])]

    def content_config(self) -> Any:
        """The content members' encoder settings (they must agree)."""
        return self._content_scorers()[0].content_config()

    def add_items(self, vectors: np.ndarray, texts: list[str] | None = None) -> np.ndarray:
        """Append new items to every member that reads text; the other members cannot score
        them (see the module docstring). Returns their indices."""
        start = self.n_items_
        for s in self._content_scorers():
            if s.n_items_ != start:
                raise ConfigError(f"ensemble: member {s.name} has {s.n_items_} items, the ensemble {start}")
            s.add_items(vectors, texts)
        n = len(np.atleast_2d(vectors))
        self.known_items_ = np.concatenate([self.known_items_, np.zeros(n, dtype=bool)])
        self.n_items_ = start + n
        return np.arange(start, self.n_items_)

    def add_users(self, attributes: pd.DataFrame) -> np.ndarray:
        """Append new users to every member (those that read attributes code them)."""
        for m in self.members_:
            for s in m.scorers:
                s.add_users(attributes)
        return super().add_users(attributes)

    def update_users(self, indices: np.ndarray, attributes: pd.DataFrame) -> None:
        for m in self.members_:
            for s in m.scorers:
                s.update_users(indices, attributes)

    def update_items(self, indices: np.ndarray, vectors: np.ndarray, texts: list[str] | None = None) -> None:
        """New content for existing items, in every member that reads text."""
        for s in self._content_scorers():
            s.update_items(indices, vectors, texts)

    def describe(self) -> dict[str, Any]:
        """Members, the weights per segment, validation users per segment and the validation
        metric of each member and of the ensemble (shown by the evaluation report)."""
        new_items = self.item_weights_ is not None
        return {
            "members": self.member_names,
            "segments": list(self.group_names_) + (["new items"] if new_items else []),
            "weights": self.weights_.round(4).tolist() + ([self.item_weights_.round(4).tolist()] if new_items else []),
            "segment_users": self.segment_users_.tolist() + ([int(self.item_users_)] if new_items else []),
            "metric": self.config.metric,
            "validation": self.validation_,
            # each member that scores new items, and the ensemble, ranking held-out items
            "validation_new_items": self.item_validation_,
            "reused": list(self.reused_),  # members offered, not trained again
        }

    # --------------------------------------------------------------- saving
    def get_state(self) -> dict[str, np.ndarray]:
        state = {
            **super().get_state(),
            "weights": self.weights_,
            "segment_users": self.segment_users_,
            # validation metric of each member, then of the ensemble (NaN: not fit)
            "validation": np.array(
                [self.validation_.get(n, np.nan) for n in [*self.member_names, "ensemble"]], dtype=np.float64
            ),
            # the weights for items without training pairs (NaN: not fit), their validation users
            # and metric (as "validation")
            "item_weights": (self.item_weights_ if self.item_weights_ is not None
                             else np.full(len(self.member_names), np.nan, dtype=np.float32)),  # fmt: skip
            "item_users": np.array([self.item_users_], dtype=np.int64),
            "item_validation": np.array(
                [self.item_validation_.get(n, np.nan) for n in [*self.member_names, "ensemble"]], dtype=np.float64
            ),
        }
        for j, m in enumerate(self.members_):
            for c, s in enumerate(m.scorers):
                for key, value in s.get_state().items():
                    state[f"member{j}.{c}.{key}"] = value
        return state

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        super().set_state(state)
        self.weights_ = state["weights"]
        self.segment_users_ = state["segment_users"]
        if len(self.weights_) < len(self.group_names_):  # saved before new users had weights of their own
            self.weights_ = np.concatenate([self.weights_, self.weights_])
            self.segment_users_ = np.concatenate([self.segment_users_, np.zeros_like(self.segment_users_)])
        names = [*self.member_names, "ensemble"]
        self.validation_ = {n: float(v) for n, v in zip(names, state["validation"]) if np.isfinite(v)}
        w = state.get("item_weights")  # absent: saved before new items had weights of their own
        self.item_weights_ = w.astype(np.float32) if w is not None and np.isfinite(w).all() else None
        self.item_users_ = int(state["item_users"][0]) if "item_users" in state else 0
        v = state.get("item_validation", np.array([]))
        self.item_validation_ = {n: float(x) for n, x in zip(names, v) if np.isfinite(x)}
        self.members_ = self._members()
        for j, m in enumerate(self.members_):
            for c, s in enumerate(m.scorers):
                prefix = f"member{j}.{c}."
                s.set_state({k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)})
