"""``multitask`` and ``singletask``: one network that learns every task at once, and the same
network trained once per task, so that a comparison is one command.

Training examples are the training data's distinct (user, item) pairs, labelled for every
task (:mod:`metarec.data.tasks`: 1/0 for binary tasks, the value for regression tasks, no
label where a pair has no rating), plus ``negatives`` items per pair drawn at random from
the items seen in training, afresh each epoch (0 for binary tasks, no label for regression). A pair's own
item is removed from the user's history when it is the target, as it would be at test time.
A ``validation`` share of the pairs (with fixed sampled negatives) is held out for
early stopping on the mean task score (AUC for binary tasks, ``1 - RMSE / std`` for
regression): a seeded random share, or with ``validation_order=time`` the latest pairs (by
their first event), so that the epoch kept is the one that predicts later behaviour best
(users whose every pair is that late are validated as new users, as after a temporal split),
or with ``validation_order=users`` all pairs of a seeded share of the users, who are then
validated as new users (no id, no history), so that the epoch kept is the one that serves
people who arrive after training best. With either, histories in training and validation
hold the training pairs only (what is validated comes later); the fitted model serves with
all of them. With ``new_user_net`` (default) a second network is trained the ``users`` way
and serves the users the first one knows nothing about (no trained id, no history), so that
known users are served by the epoch that predicts them best and new users by the epoch that
predicts new users best.
Training runs in :func:`metarec.training.train`, the project's one loop.

Task losses are combined with fixed weights, learned uncertainty weights (Kendall, Gal &
Cipolla, CVPR 2018: ``exp(-s_t) L_t + s_t / 2`` for binary tasks, half of the first term for
regression) or GradNorm (Chen et al., ICML 2018; see :class:`_Objective`); the weights are
logged per epoch in ``training_.history`` (``w[task]``).

Ranking uses a business score, ``sum_t w_t * P_t`` (``rank_by``; by default the probability
of an interaction, which is what ranking protocols count). Catalogues
of more than ``full_rank`` candidates are first cut to ``rerank`` items per user by the
network's retrieval score ``<u, v>``.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from metarec.data.dataset import Dataset, grown, pair_matrix
from metarec.data.queries import Queries
from metarec.data.tasks import Task, any_positive, interaction_tasks, resolve_tasks, task_labels
from metarec.encoders.content import ContentConfig, item_content
from metarec.errors import ConfigError, DataError
from metarec.models.content.base import ContentScorer
from metarec.models.neural.features import Attributes, item_attributes, user_attributes

log = logging.getLogger(__name__)

#: Ways to combine task losses (:class:`_Objective`).
WEIGHTINGS = ("uncertainty", "fixed", "gradnorm")


@dataclass
class MultiTaskConfig(ContentConfig):
    """Attributes (besides :class:`~metarec.encoders.ContentConfig`'s, used when items have text):
    tasks: a task spec (:func:`metarec.data.tasks.parse_tasks`); default: from the event types.
    architecture: ``mmoe``, ``ple`` (MMoE plus one expert per task) or ``shared-bottom``.
    dim, hidden, experts, dropout: sizes of the network.
    id_dropout: probability of replacing a user or item id by the unknown embedding in training.
    funnel: ``parent>child`` pairs, e.g. ``pv>buy``: P(child) = P(parent) P(child | parent) (ESMM).
    weighting: ``uncertainty`` (learned), ``gradnorm`` (learned; asymmetry ``gradnorm_alpha``)
        or ``fixed`` (``task_weights``).
    task_weights: fixed weights, e.g. ``buy=2,pv=0.5`` (default 1 each).
    rank_by: the business score, e.g. ``pv=1,cart=3,buy=10``; default: the probability of an
        interaction (the tasks every event implies, such as ``rated``; else 1 per binary task).
    monitor: the tasks whose validation scores pick the best epoch, e.g. ``buy`` (default: all).
    negatives: random items (among those seen in training) per training pair, resampled every epoch.
    content: use the items' content vectors when the data has item text.
    epochs, batch_size, lr, weight_decay, patience, validation: training (the shared loop).
        ``weight_decay`` (AdamW's, 0.05) was chosen on a development split of ml-100k's
        training data (it steadies the rating head, see the README).
    validation_order: ``random`` (a seeded random share of the pairs is held out), ``time``
        (the latest share, by each pair's first event, random where there are no timestamps;
        users with no earlier pair are validated as new users) or ``users`` (a share of the
        users, validated as new users; their ids stay untrained).
    new_user_net: also train a second network (twice the training time) with
        ``validation_order=users`` that serves users with no trained id and no history; the
        first network serves everyone else. Nothing changes where ``validation_order`` is
        ``users`` already (the one network is that network) or ``validation`` holds out no
        user (nothing to stop it on).
    average, ema_decay: weight averaging in the shared loop, ``none``, ``ema`` or ``swa``
        (:class:`metarec.training.TrainConfig`).
    full_rank, rerank: catalogues above ``full_rank`` items are cut to ``rerank`` per user.
    metaemb: train a MetaEmb generator of new items' id embeddings (:mod:`.metaemb`) with
        ``metaemb_k`` pairs per phase, warm-up step ``metaemb_lr``, cold-phase weight
        ``metaemb_alpha``, ``metaemb_batch`` items per batch, at most ``metaemb_epochs``.
    device, seed: where it trains, and the seed of everything random.
    """

    tasks: str | None = None
    architecture: str = "ple"
    dim: int = 32
    hidden: int = 64
    experts: int = 4
    dropout: float = 0.1
    id_dropout: float = 0.1
    funnel: str = ""
    weighting: str = "uncertainty"
    gradnorm_alpha: float = 1.5
    task_weights: str = ""
    rank_by: str = ""
    monitor: str = ""
    negatives: int = 4
    content: bool = True
    epochs: int = 20
    batch_size: int = 2048
    lr: float = 3e-3
    weight_decay: float = 0.05
    patience: int = 2
    validation: float = 0.1
    validation_order: str = "random"
    new_user_net: bool = True
    average: str = "none"
    ema_decay: float = 0.99
    full_rank: int = 5000
    rerank: int = 100
    metaemb: bool = False
    metaemb_k: int = 5
    metaemb_lr: float = 0.1
    metaemb_alpha: float = 0.1
    metaemb_batch: int = 64
    metaemb_epochs: int = 10
    seed: int = 42


def _weights(spec: str, names: list[str], what: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        name, _, value = part.partition("=")
        if name.strip() not in names:
            raise ConfigError(f"{what}: unknown task {name.strip()!r} (tasks: {', '.join(names)})")
        try:
            out[name.strip()] = float(value)
        except ValueError:
            raise ConfigError(f"{what}: {part!r} is not task=number") from None
    return out


def _funnel(spec: str, tasks: list[Task]) -> dict[str, str]:
    kinds = {t.name: t.kind for t in tasks}
    out: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        parent, sep, child = (s.strip() for s in part.partition(">"))
        if not sep or kinds.get(parent) != "binary" or kinds.get(child) != "binary":
            raise ConfigError(f"funnel {part!r}: expected parent>child, two binary tasks of {', '.join(kinds)}")
        out[child] = parent
    for child in out:  # no cycles
        seen, t = {child}, out[child]
        while t in out:
            if t in seen:
                raise ConfigError(f"funnel {spec!r} has a cycle")
            seen.add(t)
            t = out[t]
    return out


def user_histories(matrix: sp.csr_matrix, users: np.ndarray) -> tuple[sp.csr_matrix, np.ndarray]:
    """The distinct users' history rows (empty for ``-1``) and each entry's row among them."""
    distinct, rows = np.unique(np.asarray(users), return_inverse=True)
    hist = matrix[np.maximum(distinct, 0)]
    if (distinct < 0).any():
        hist = sp.csr_matrix(sp.diags((distinct >= 0).astype(np.float32)) @ hist)
    return sp.csr_matrix(hist), rows


class _Objective:
    """Wraps a :class:`TaskNet` with its task weighting: ``loss(batch)`` for the training loop.

    ``uncertainty``: Kendall et al.'s learned ``exp(-s_t)``. ``fixed``: given weights.
    ``gradnorm`` (Chen et al., ICML 2018): weights ``w_t`` (summing to the number of tasks,
    as ``T * softmax``) move so that each task's weighted gradient norm on the last shared
    layer, ``G_t = w_t |grad L_t|``, approaches ``mean(G) * r_t ** alpha``, where ``r_t`` is the
    task's loss relative to its first batch's, over the mean of those: a task that trains
    more slowly gets more weight. The network descends ``sum_t w_t L_t`` (weights held), the
    weights descend ``sum_t |G_t - target_t|`` (targets held)."""

    def __new__(cls, net, weighting: str, fixed: dict[str, float], alpha: float = 1.5):
        import torch
        from torch import nn

        class Objective(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.net = net
                self.weighting = weighting
                self.alpha = alpha
                self.fixed = torch.tensor([fixed.get(t.name, 1.0) for t in net.tasks])
                learned = weighting in ("uncertainty", "gradnorm")
                self.log_var = nn.Parameter(torch.zeros(len(net.tasks)), requires_grad=learned)
                self.register_buffer("initial", torch.full((len(net.tasks),), float("nan")))

            def _gradnorm(self, losses: list) -> tuple:
                """``(weights, GradNorm's loss)`` for the task losses of one batch."""
                w = len(losses) * torch.softmax(self.log_var, dim=0)
                shared = self.net.shared_layer()
                norms = []
                for loss in losses:
                    sq = loss.new_zeros(())  # on the loss's device: the norms are stacked
                    if loss.requires_grad:  # (no label for the task in this batch: no gradient)
                        grads = torch.autograd.grad(loss, shared, retain_graph=True, allow_unused=True)
                        sq = sum(((g * g).sum() for g in grads if g is not None), sq)
                    norms.append(torch.sqrt(sq))
                current = torch.stack([loss.detach() for loss in losses])
                if not torch.isfinite(self.initial).all() and self.training:
                    self.initial.copy_(torch.where(current > 0, current, torch.ones_like(current)))
                ratio = current / self.initial
                r = ratio / ratio.mean().clamp(min=1e-12)
                g = w * torch.stack(norms).detach()
                target = (g.mean() * r**self.alpha).detach()
                return w, (g - target).abs().sum()

            def loss(self, batch):
                n = self.net
                u = n.users(batch["users"], batch["history"])
                v, bias = n.items(batch["items"])
                losses, retrieval = n.losses(u, v, bias, batch["labels"], batch["any"])
                total = retrieval
                out = {}
                if self.weighting == "gradnorm":
                    w, gn = self._gradnorm([losses[t.name] for t in n.tasks])
                    total = total + gn
                for j, t in enumerate(n.tasks):
                    if self.weighting == "uncertainty":
                        s = self.log_var[j]
                        scale = 0.5 if t.kind == "regression" else 1.0
                        total = total + scale * torch.exp(-s) * losses[t.name] + 0.5 * s
                        out[f"w[{t.name}]"] = torch.exp(-s).detach()
                    elif self.weighting == "gradnorm":
                        total = total + w[j].detach() * losses[t.name]
                        out[f"w[{t.name}]"] = w[j].detach()
                    else:
                        total = total + self.fixed[j] * losses[t.name]
                    out[f"loss[{t.name}]"] = losses[t.name].detach()
                out["loss"] = total
                out["loss[retrieval]"] = retrieval.detach()
                return out

        return Objective()


class MultiTaskScorer(ContentScorer):
    """One network, shared weights, a head per task (see the module docstring)."""

    distributed = True
    name = "multitask"
    Config = MultiTaskConfig
    #: One network for all tasks; :class:`SingleTaskScorer` trains one per task.
    per_task = False

    # ---------------------------------------------------------------- training
    def _fit(self, data: Dataset, matrix: sp.csr_matrix) -> None:
        cfg = self.content_config()
        if self.config.content and (cfg.vectors or cfg.template or data.text_fields):
            self.item_vectors_, self.has_content_ = item_content(data, cfg)
        else:
            self.item_vectors_ = np.zeros((self.n_items_, 0), dtype=np.float32)
            self.has_content_ = np.zeros(self.n_items_, dtype=bool)
        self.tasks_ = resolve_tasks(data, self.config.tasks)
        self.event_types_ = list(data.event_types)
        self._check_config()
        self.user_attrs_ = user_attributes(data)
        self.item_attrs_ = item_attributes(data)
        served = self.history_ = matrix.astype(np.float32)
        labels = self._labels(data)
        self._trained_items = np.flatnonzero(self.known_items_)
        val, held = self._validation_pairs(labels)
        if self.config.validation_order in ("time", "users"):
            # What is validated comes after training (later pairs, or new users): histories
            # in training and validation hold the training pairs only, as they will at test.
            self.history_ = pair_matrix(labels["user"][~val], labels["item"][~val], *matrix.shape)
        self.rating_mean_ = float(np.nanmean(labels["values"][:, [t.kind == "regression" for t in self.tasks_]])) \
            if any(t.kind == "regression" for t in self.tasks_) else 0.0  # fmt: skip
        self.groups_ = [[t] for t in self.tasks_] if self.per_task else [list(self.tasks_)]
        self.nets_, self.training_ = [], []
        for group in self.groups_:
            net, result = self._train_group(group, labels, val, held)
            self.nets_.append(net)
            self.training_.append(result)
        self.new_user_nets_, self.new_user_training_ = [], []
        if self.config.new_user_net and self.config.validation_order != "users":
            val, held = self._validation_pairs(labels, "users")
            if len(held):
                self.history_ = pair_matrix(labels["user"][~val], labels["item"][~val], *matrix.shape)
                for group in self.groups_:
                    net, result = self._train_group(group, labels, val, held)
                    self.new_user_nets_.append(net)
                    self.new_user_training_.append(result)
        self.history_ = served
        self._trained(data, labels)

    def _trained(self, data: Dataset, labels: dict[str, np.ndarray]) -> None:
        """After the networks are trained (models that train further hook in here): MetaEmb
        generators, last, on the final networks."""
        if self.config.metaemb:
            from metarec.models.neural.metaemb import train_generator

            groups = self.groups_ * (len(self._all_nets()) // len(self.groups_))
            self.metaemb_ = [train_generator(self, net, labels, [self.tasks_.index(t) for t in group])
                             for net, group in zip(self._all_nets(), groups, strict=True)]  # fmt: skip

    def _check_config(self) -> None:
        c = self.config
        names = [t.name for t in self.tasks_]
        from metarec.models.neural.network import ARCHITECTURES

        if c.architecture not in ARCHITECTURES:
            raise ConfigError(f"{self.name}: architecture {c.architecture!r}; choose from {', '.join(ARCHITECTURES)}")
        if c.weighting not in WEIGHTINGS:
            raise ConfigError(f"{self.name}: weighting {c.weighting!r}; choose from {', '.join(WEIGHTINGS)}")
        if c.validation_order not in ("random", "time", "users"):
            raise ConfigError(f"{self.name}: validation_order {c.validation_order!r}; choose from random, time, users")
        self.funnel_ = _funnel(c.funnel, self.tasks_) if not self.per_task else {}
        self.task_weights_ = _weights(c.task_weights, names, "task_weights")
        rank = _weights(c.rank_by, names, "rank_by")
        if rank:
            self.rank_by_ = rank
        elif not hasattr(self, "rank_by_"):
            # Default: the probability of an interaction, which is what ranking protocols count:
            # the tasks every event implies (``rated``), else every binary task.
            implied = interaction_tasks(self.tasks_, self.event_types_)
            self.rank_by_ = {n: 1.0 for n in implied} or {t.name: 1.0 for t in self.tasks_ if t.kind == "binary"}

    def _labels(self, data: Dataset) -> dict[str, np.ndarray]:
        """Distinct training pairs and their label per task (NaN: none)."""
        pairs = data.pairs()
        key = pairs["user"].to_numpy(np.int64) * self.n_items_ + pairs["item"].to_numpy(np.int64)
        values = np.full((len(pairs), len(self.tasks_)), np.nan, dtype=np.float32)
        for j, t in enumerate(self.tasks_):
            lab = task_labels(data.interactions, t)
            k = lab["user"].to_numpy(np.int64) * self.n_items_ + lab["item"].to_numpy(np.int64)
            pos = np.searchsorted(key, k)  # pairs() is sorted by (user, item)
            if t.kind == "binary":
                values[:, j] = 0.0
            values[pos, j] = lab["label"].to_numpy(np.float32)
        return {"user": pairs["user"].to_numpy(np.int64), "item": pairs["item"].to_numpy(np.int64),
                "values": values, "keys": key,
                # Clock times order pairs across users; sequence positions (``order``) do not.
                "time": pairs["timestamp"].to_numpy(np.float64) if data.timestamp_kind == "unix" else None}  # fmt: skip

    def _validation_pairs(self, labels: dict[str, np.ndarray], order: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Which training pairs are held out for early stopping (``validation``, and
        ``order``, by default ``validation_order``), and the users validated as new ones
        (every pair held out)."""
        c = self.config
        order = order or c.validation_order
        n = len(labels["user"])
        t = labels["time"]
        none = np.zeros(0, dtype=np.int64)
        if order == "users":
            users = np.unique(labels["user"])
            rng = np.random.default_rng(c.seed)
            held = np.sort(rng.choice(users, int(round(len(users) * c.validation)), replace=False))
            return np.isin(labels["user"], held), held
        if order == "time" and t is not None and np.isfinite(t).all() and np.ptp(t) > 0:
            # The latest share; ties broken at random so that a burst of equal times splits evenly.
            latest = np.lexsort((np.random.default_rng(c.seed).random(n), t))
            val = np.zeros(n, dtype=bool)
            val[latest[n - int(round(n * c.validation)) :]] = True
            # Users who arrive after the cut are new ones, as after a temporal split.
            return val, np.setdiff1d(np.unique(labels["user"][val]), labels["user"][~val])
        return np.random.default_rng(c.seed).random(n) < c.validation, none

    def _negatives(self, users: np.ndarray, keys: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """``negatives`` random items per user in ``users`` that the user has no pair with,
        drawn uniformly from the items seen in training: drawn from the whole catalogue, they
        would mostly be items without a trained id, and the model would learn that a missing
        id means "no" (ids are dropped on both sides instead, see ``id_dropout``)."""
        u = np.repeat(users, self.config.negatives)
        i = self._trained_items[rng.integers(0, len(self._trained_items), len(u))]
        ok = ~np.isin(u * self.n_items_ + i, keys)
        return u[ok], i[ok]

    def _net(self, tasks: list[Task], new_users: np.ndarray | None = None):
        """A network for ``tasks``; ``new_users`` (validation users seen as new) get no trained id."""
        import torch

        from metarec.models.neural.network import TaskNet

        c = self.config
        known_users = self.known_users_.copy()
        if new_users is not None:
            known_users[new_users] = False
        return TaskNet(
            tasks, self.user_attrs_, self.item_attrs_, torch.from_numpy(np.ascontiguousarray(self.item_vectors_)),
            torch.from_numpy(known_users), torch.from_numpy(self.known_items_), dim=c.dim, hidden=c.hidden,
            architecture=c.architecture, experts=c.experts, dropout=c.dropout, id_dropout=c.id_dropout,
            funnel={k: v for k, v in self.funnel_.items() if k in {t.name for t in tasks}},
            rating_mean=self.rating_mean_, generator=c.metaemb,
        )  # fmt: skip

    def _batch(self, users: np.ndarray, items: np.ndarray, labels: np.ndarray, targets: np.ndarray,
               tasks: list[Task]) -> dict:  # fmt: skip
        """A training batch of the network for ``tasks``: observed pairs (``targets``: the item,
        else -1) have their item left out of the user's history; ``any``, the retrieval label,
        is 1 where one of the network's tasks is positive (:func:`any_positive`: every observed
        pair for a network of all tasks; only the bought ones for a single-task ``buy``)."""
        from metarec.models.neural.network import History

        hist, rows = user_histories(self.history_, users)
        return {"users": users, "items": items, "labels": labels, "any": any_positive(labels, tasks),
                "history": History.build(hist, rows, targets)}  # fmt: skip

    def _train_group(self, group: list[Task], labels: dict, val: np.ndarray, held: np.ndarray):
        """Train one network for ``group`` (all tasks, or one); the same seed for every group,
        so a single-task network does not depend on which other tasks exist."""
        import torch

        from metarec.training import TrainConfig, train, worker_batch_size

        c = self.config
        rng = np.random.default_rng(c.seed + 1)
        cols = [self.tasks_.index(t) for t in group]
        users, items, values, keys = labels["user"], labels["item"], labels["values"][:, cols], labels["keys"]
        tr = np.flatnonzero(~val)
        # Validation: held-out pairs and fixed negatives.
        vu, vi = self._negatives(users[val], keys, rng)
        v_users = np.concatenate([users[val], vu])
        v_items = np.concatenate([items[val], vi])
        v_labels = np.vstack([values[val], self._negative_labels(group, len(vu))])
        v_targets = np.concatenate([items[val], np.full(len(vu), -1)])
        n_pos = int(val.sum())

        def batches(r: np.random.Generator):
            nu, ni = self._negatives(users[tr], keys, r)
            bu = np.concatenate([users[tr], nu])
            bi = np.concatenate([items[tr], ni])
            bl = np.vstack([values[tr], self._negative_labels(group, len(nu))])
            is_pos = np.arange(len(bu)) < len(tr)
            order = r.permutation(len(bu))
            size = worker_batch_size(c.batch_size)
            for s in range(0, len(order), size):
                o = order[s : s + size]
                # Built by the worker that takes it (the draws are all above).
                yield functools.partial(self._batch, bu[o], bi[o], bl[o], np.where(is_pos[o], bi[o], -1), group)

        monitored = [m.strip() for m in c.monitor.split(",") if m.strip()]

        def validate(obj) -> float:
            from metarec.evaluation.metrics import auc, rmse

            pred = self._predict_net(obj.net, v_users, v_items, v_targets)
            scores = []
            for j, t in enumerate(group):
                if monitored and t.name not in monitored and len(group) > 1:
                    continue
                y = v_labels[:, j]
                ok = np.isfinite(y)
                if t.kind == "binary":
                    a = auc(y[ok], pred[t.name][ok])
                    if np.isfinite(a):
                        scores.append(a)
                elif ok.any():
                    scores.append(1.0 - rmse(y[ok], pred[t.name][ok]) / max(float(np.std(y[ok])), 1e-6))
            return float(np.mean(scores)) if scores else 0.0

        torch.manual_seed(c.seed)
        net = self._net(group, held)
        objective = _Objective(net, c.weighting if len(group) > 1 else "fixed", self.task_weights_, c.gradnorm_alpha)
        config = TrainConfig(epochs=c.epochs, lr=c.lr, weight_decay=c.weight_decay, patience=c.patience,
                             device=c.device, seed=c.seed, average=c.average, ema_decay=c.ema_decay)  # fmt: skip
        result = train(objective, batches, validate if n_pos else None, config)
        log.info("%s %s: best epoch %d, validation %.4f (%d held-out pairs)", self.name,
                 "+".join(t.name for t in group), result.best_epoch, result.best_score, n_pos)  # fmt: skip
        net.to("cpu").eval()
        return net, result

    @staticmethod
    def _negative_labels(group: list[Task], n: int) -> np.ndarray:
        row = np.array([0.0 if t.kind == "binary" else np.nan for t in group], dtype=np.float32)
        return np.tile(row, (n, 1)).reshape(n, len(group))

    # --------------------------------------------------------------- predicting
    def _predict_net(self, net, users: np.ndarray, items: np.ndarray, drop: np.ndarray | None,
                     history: tuple[sp.csr_matrix, np.ndarray] | None = None, chunk: int = 65536) -> dict[str, np.ndarray]:  # fmt: skip
        """Predictions of one network for pairs ``(users[k], items[k])``; ``history`` is
        ``(distinct history rows, row per pair)`` (default: the training histories), and
        ``drop[k]`` an item to leave out of pair ``k``'s history."""
        import torch

        from metarec.models.neural.network import History

        device = net.content.device
        out: dict[str, list[np.ndarray]] = {t.name: [] for t in net.tasks}
        hist, hrows = history if history is not None else user_histories(self.history_, users)
        was_training = net.training
        net.eval()
        with torch.no_grad():
            for s in range(0, len(users), chunk):
                sl = slice(s, s + chunk)
                h = History.build(hist, hrows[sl], None if drop is None else drop[sl]).to(device)
                u = net.users(torch.from_numpy(users[sl]).to(device), h)
                for name, val in self._outputs(net, u, items[sl]).items():
                    out[name].append(val)
        net.train(was_training)
        return {k: np.concatenate(v) if v else np.zeros(0, np.float32) for k, v in out.items()}

    @staticmethod
    def _outputs(net, u, items: np.ndarray, offset=None) -> dict[str, np.ndarray]:
        """Per task, the network's prediction for rows ``u`` and ``items``: a probability for
        binary tasks, a value for regression (``offset``: per-row head biases, see
        :meth:`TaskNet.heads`)."""
        import torch

        v, _ = net.items(torch.from_numpy(np.asarray(items, dtype=np.int64)).to(u.device))
        kinds = {t.name: t.kind for t in net.tasks}
        out = net.heads(u, v, offset=offset)
        return {name: (val.exp() if kinds[name] == "binary" else val).cpu().numpy() for name, val in out.items()}

    def predict_tasks(self, queries: Queries, rows: np.ndarray, items: np.ndarray) -> dict[str, np.ndarray]:
        """Per task, the prediction for pairs ``(queries[rows[k]], items[k])``: a probability
        for binary tasks, a value for regression. The item is left out of the user's history."""
        rows = np.asarray(rows, dtype=np.int64)
        items = np.asarray(items, dtype=np.int64)
        out = {t.name: np.zeros(len(rows), dtype=np.float32) for t in self.tasks_}
        new = self._new_rows(queries)[rows]
        for nets, part in ((self.nets_, ~new), (self.new_user_nets_, new)):
            if part.any():
                r, i = rows[part], items[part]
                for net in nets:
                    for name, val in self._predict_net(net, queries.users[r], i, i, history=(queries.history, r)).items():
                        out[name][part] = val
        return out

    def _new_rows(self, queries: Queries) -> np.ndarray:
        """Which queries the new-user networks serve (``new_user_net``): users with no
        trained id and no history."""
        if not self.new_user_nets_:
            return np.zeros(len(queries), dtype=bool)
        u = queries.users
        known = (u >= 0) & self.known_users_[np.clip(u, 0, len(self.known_users_) - 1)]
        return ~known & (np.diff(queries.history.indptr) == 0)

    def _all_nets(self) -> list:
        """Every network the model serves with (the new-user ones too)."""
        return [*self.nets_, *self.new_user_nets_]

    @property
    def tasks(self) -> list[Task]:
        return list(self.tasks_)

    # ------------------------------------------------------------------ ranking
    def _user_vectors(self, net, queries: Queries):
        """The user vectors ``(B, dim)`` one network ranks with (overridden by models that
        adapt them to the history first)."""
        import torch

        from metarec.models.neural.network import History

        return net.users(torch.from_numpy(queries.users), History.build(queries.history))

    def _score(self, queries: Queries) -> np.ndarray:
        new = self._new_rows(queries)
        if not new.any():
            return self._score_with(self.nets_, queries)
        scores = np.zeros((len(queries), self.n_items_), dtype=np.float32)
        if not new.all():
            scores[~new] = self._score_with(self.nets_, queries[~new])
        scores[new] = self._score_with(self.new_user_nets_, queries[new])
        return scores

    def _score_with(self, nets: list, queries: Queries) -> np.ndarray:
        """The business score of ``nets`` (one per task group) for every item."""
        import torch

        n_users, n_items = len(queries), self.n_items_
        scores = np.zeros((n_users, n_items), dtype=np.float32)
        cut = n_items > self.config.full_rank
        with torch.no_grad():
            vectors = [self._user_vectors(net, queries).detach() for net in nets]
            cand = None
            if cut:
                # Retrieval: the first network's <u, v> + b picks `rerank` items per user.
                v, b = nets[0].all_items()
                r = nets[0].retrieval(vectors[0], v, b)
                cand = torch.topk(r, min(self.config.rerank, n_items), dim=1).indices  # (B, k)
                scores[:] = (torch.sigmoid(r) - 10.0).numpy()  # below every reranked item
            for net, u in zip(nets, vectors, strict=True):
                v, _ = net.all_items()
                kinds = {t.name: t.kind for t in net.tasks}
                wanted = [n for n in kinds if self.rank_by_.get(n, 0.0)]
                if not wanted:
                    continue
                step = max(1, 131072 // (cand.shape[1] if cut else n_items))
                for s in range(0, n_users, step):
                    ub = u[s : s + step]
                    if cut:
                        ci = cand[s : s + step]
                        uu = ub[:, None, :].expand(-1, ci.shape[1], -1).reshape(-1, u.shape[1])
                        vv = v[ci.reshape(-1)]
                    else:
                        uu = ub[:, None, :].expand(-1, n_items, -1).reshape(-1, u.shape[1])
                        vv = v.repeat(len(ub), 1)
                    business = torch.zeros(len(uu))
                    for name, val in net.heads(uu, vv, only=wanted).items():
                        if name in wanted:
                            business += self.rank_by_[name] * (val.exp() if kinds[name] == "binary" else val)
                    part = business.reshape(len(ub), -1).numpy()
                    if cut:
                        rows = np.arange(s, s + len(ub))[:, None]
                        cols = ci.numpy()
                        base = scores[rows, cols]
                        # the first network replaces the retrieval score, the others add to it
                        scores[rows, cols] = np.where(base < -5.0, 0.0, base) + part
                    else:
                        scores[s : s + len(ub)] += part
        return scores

    # ------------------------------------------------------------ new items
    @property
    def can_warm_up(self) -> bool:
        """Whether :meth:`warm_up` does anything: MetaEmb generators are trained."""
        return bool(self.config.metaemb) and all(bool(net.generator_on) for net in self._all_nets())

    def warm_up(self, item: int, queries: Queries) -> bool:
        """MetaEmb's warm-up for a never-trained ``item``: its id embedding becomes the
        generated one after one gradient step (rate ``metaemb_lr``) on the loss of the users
        who interacted with it (``queries``: each user's index, or -1, and history without the
        item) against ``negatives`` random training users each. Always from the generated
        embedding, on all the item's users so far, so the result does not depend on the order
        or batching of events. Returns whether it applied (a trained item keeps its own)."""
        import torch

        from metarec.models.neural.metaemb import pair_loss
        from metarec.models.neural.network import History

        if not self.can_warm_up or self.known_items_[item] or len(queries) == 0:
            return False
        c = self.config
        rng = np.random.default_rng((c.seed, item))
        known = np.flatnonzero(self.known_users_)
        neg = known[rng.integers(0, len(known), len(queries) * c.negatives)]
        implied = set(interaction_tasks(self.tasks_, self.event_types_))
        for net in self._all_nets():
            net.eval()
            pos_row = [1.0 if t.name in implied else np.nan for t in net.tasks]
            labels = np.vstack([np.tile(pos_row, (len(queries), 1)), self._negative_labels(net.tasks, len(neg))])
            idx = torch.tensor([item])
            with torch.no_grad():
                u = torch.cat([self._user_vectors(net, queries).detach(),
                               net.users(torch.from_numpy(neg), History.build(*user_histories(self.history_, neg)))])  # fmt: skip
            with torch.enable_grad():
                phi = net.generate(idx).detach().requires_grad_(True)
                any_label = torch.from_numpy((np.arange(len(u)) < len(queries)).astype(np.float32))
                loss = pair_loss(net, idx.expand(len(u)), phi.expand(len(u), -1), u,
                                 torch.from_numpy(labels.astype(np.float32)), any_label)  # fmt: skip
                (g,) = torch.autograd.grad(loss, phi)
            with torch.no_grad():
                net.item_id.weight[item] = (phi - c.metaemb_lr * g)[0]
                net.own[item] = True
        return True

    def _added_items(self, n: int, texts: list[str] | None = None) -> None:
        self.item_attrs_ = self.item_attrs_.extend(n)
        self.history_ = sp.csr_matrix(
            (self.history_.data, self.history_.indices, self.history_.indptr), shape=(self.history_.shape[0], self.n_items_)
        )
        for net in self._all_nets():
            net.extend_items(n, self.item_vectors_[-n:], self.item_attrs_)

    def _added_users(self, attributes: pd.DataFrame) -> None:
        self.user_attrs_ = self.user_attrs_.append(*self.user_attrs_.encode(attributes))
        self.history_ = grown(self.history_, rows=len(attributes))
        for net in self._all_nets():
            net.set_user_attributes(self.user_attrs_)

    def _updated_users(self, indices: np.ndarray, attributes: pd.DataFrame) -> None:
        codes, numbers = self.user_attrs_.encode(attributes)
        self.user_attrs_.codes[indices] = codes
        self.user_attrs_.numbers[indices] = numbers
        for net in self._all_nets():
            net.set_user_attributes(self.user_attrs_)

    def _updated_items(self, indices: np.ndarray, texts: list[str] | None = None) -> None:
        import torch

        for net in self._all_nets():
            if net.content.shape[1]:
                net.content[torch.from_numpy(indices)] = torch.from_numpy(self.item_vectors_[indices])
                net.fill_generated(torch.from_numpy(np.asarray(indices, dtype=np.int64)))  # new text, new start

    # ------------------------------------------------------------------ saving
    def get_state(self) -> dict[str, np.ndarray]:
        state = {**super().get_state(), **self.user_attrs_.state("user_attrs"), **self.item_attrs_.state("item_attrs")}
        meta = {
            "tasks": [dataclasses.asdict(t) for t in self.tasks_],
            "groups": [[t.name for t in g] for g in self.groups_],
            "rating_mean": self.rating_mean_,
            "rank_by": self.rank_by_,
            "event_types": self.event_types_,
        }
        state["meta_json"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8).copy()
        h = self.history_
        state.update(hist_data=h.data, hist_indices=h.indices, hist_indptr=h.indptr)
        for prefix, nets in (("net", self.nets_), ("newnet", self.new_user_nets_)):
            for g, net in enumerate(nets):
                for k, v in net.state_dict().items():
                    if k not in ("content", "user_attrs.codes", "user_attrs.numbers", "item_attrs.codes", "item_attrs.numbers"):
                        state[f"{prefix}{g}.{k}"] = v.detach().cpu().numpy()
        return state

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        import torch

        super().set_state(state)
        meta = json.loads(bytes(np.asarray(state["meta_json"], dtype=np.uint8)).decode())
        self.tasks_ = [Task(t["name"], t["kind"], tuple(t["events"]), t["min_value"]) for t in meta["tasks"]]
        by_name = {t.name: t for t in self.tasks_}
        self.groups_ = [[by_name[n] for n in g] for g in meta["groups"]]
        self.rating_mean_ = meta["rating_mean"]
        self.rank_by_ = meta["rank_by"]
        self.event_types_ = meta.get("event_types", [])
        self._check_config()
        self.user_attrs_ = Attributes.from_state(state, "user_attrs")
        self.item_attrs_ = Attributes.from_state(state, "item_attrs")
        self.history_ = sp.csr_matrix(
            (state["hist_data"], state["hist_indices"], state["hist_indptr"]), shape=(len(self.known_users_), self.n_items_)
        )
        self._trained_items = np.flatnonzero(self.known_items_)
        self.nets_, self.new_user_nets_ = [], []
        for name, nets in (("net", self.nets_), ("newnet", self.new_user_nets_)):
            for g, group in enumerate(self.groups_):
                prefix = f"{name}{g}."
                weights = {k[len(prefix) :]: torch.from_numpy(np.array(v)) for k, v in state.items() if k.startswith(prefix)}
                if not weights:
                    if name == "newnet":  # a model saved without new-user networks
                        continue
                    raise DataError(f"{self.name}: the saved state has no weights for network {g} ({prefix}*)")
                net = self._net(group)
                net.load_state_dict(weights, strict=False)  # known_users too: the new-user one's
                net.eval()
                nets.append(net)


class SingleTaskScorer(MultiTaskScorer):
    """The multi-task network with one head, trained separately for each task: the baseline
    that shows what sharing weights across tasks buys."""

    name = "singletask"
    per_task = True
