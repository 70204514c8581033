"""``meta`` and ``finetune``: a new user personalised from a handful of interactions.

Both start from the multi-task network (:mod:`metarec.models.neural.multitask`) trained on
the warm users, and both adapt a per-user offset ``delta`` of the user vector at request
time, in a few gradient steps on the user's history (the support set: its items are
positives, ``negatives`` random items per item are negatives, and the loss is the
"interacted" likelihood of the retrieval score plus the heads of tasks that every
interaction implies, such as ``rated``):

- ``finetune`` — plain transfer learning: ``delta`` starts at zero and takes ``inner_steps``
  SGD steps of rate ``inner_lr``.
- ``meta`` — users as tasks (MAML, Finn et al. ICML 2017; MeLU, Lee et al. KDD 2019): the
  network is further meta-trained on episodes built from training users (a support of 1 to
  ``max_support`` of their pairs, in time order, and a query of up to ``query_size`` later
  pairs plus negatives). The inner loop adapts ``delta`` from a learned initialisation with
  learned per-dimension rates (Meta-SGD, Li et al. 2017); the outer loop trains everything
  on the query loss after adaptation, through the inner steps (second order) or not
  (``first_order``). The inner loop is ``torch.func.vmap`` over users of
  ``torch.func.grad`` of one user's support loss, so a batch adapts in one vectorised call.

In meta-training the users' ids are hidden (they are cold at test time) and their history is
the support set, exactly as a new user's request looks.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import zlib
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from metarec.data.dataset import Dataset
from metarec.data.queries import Queries
from metarec.data.tasks import interaction_tasks
from metarec.models.neural.multitask import MultiTaskConfig, MultiTaskScorer

log = logging.getLogger(__name__)


@dataclass
class MetaConfig(MultiTaskConfig):
    """Attributes (besides :class:`MultiTaskConfig`'s, which train the starting network):
    inner_steps, inner_lr: adaptation steps and (initial) rate.
    max_adapt: at most this many history items (a seeded random choice) adapt a user.
    meta_epochs, meta_batch: meta-training epochs and users per episode batch (``meta`` only).
    max_support, query_size: support sizes 1..max_support (log-uniform); query pairs per episode.
    meta_lr: outer learning rate.
    rate_lr: outer learning rate of the (log) inner rates; Meta-SGD's rates must be able to
        move by orders of magnitude within a few hundred episodes, which ``meta_lr`` is far
        too small for.
    first_order: skip the second-order terms (faster, usually a little worse).
    meta_sgd: learn per-dimension inner rates (else the fixed ``inner_lr``).
    metaemb: on by default here: new items start from MetaEmb's generated embedding.
    adapt_heads: adapt a per-user bias of each task head too (a user's rating bias, how
        readily they like), besides the user vector: MeLU's "decision layers", smallest form.
    prior_count: ``meta`` only: the support's value terms (rating, ``liked``) are a sum over
        its ``n`` rated items divided by ``n + k``, a pseudo-count ``k`` that starts here and
        is learned with the rates. A step then moves a user's rating bias by ``n / (n + k)``
        of the evidence, the shrinkage of a Bayesian user bias: one rating moves it little,
        fifty move it nearly all the way, whatever rate the step has. ``finetune`` takes
        the plain mean (``k = 0``).
    """

    weight_decay: float = 0.0  # (the meta models were tuned and measured without it)
    new_user_net: bool = False  # a user with no history has nothing to adapt to; one network
    inner_steps: int = 3
    inner_lr: float = 0.1
    max_adapt: int = 50
    meta_epochs: int = 10
    meta_batch: int = 32
    max_support: int = 50
    query_size: int = 20
    meta_lr: float = 1e-3
    rate_lr: float = 0.05
    first_order: bool = False
    meta_sgd: bool = True
    adapt_heads: bool = True
    prior_count: float = 3.0
    metaemb: bool = True


def _adapter(net, dim: int, config: MetaConfig):
    """The adapted parameters of a user are ``delta = [vector offset (dim), head biases (T)]``
    (head biases only with ``adapt_heads``)."""
    import torch
    from torch import nn

    width = dim + (len(net.tasks) if config.adapt_heads else 0)

    class Adapter(nn.Module):
        """The learned initialisation and inner rates of ``delta``, around the network."""

        def __init__(self) -> None:
            super().__init__()
            self.net = net
            self.dim = dim
            self.delta0 = nn.Parameter(torch.zeros(width))
            self.log_lr = nn.Parameter(torch.full((width,), float(np.log(config.inner_lr))), requires_grad=config.meta_sgd)
            self.log_count = nn.Parameter(torch.tensor(float(np.log(max(config.prior_count, 1e-6)))))

        def split(self, delta):
            """``(vector offset, head biases or None)`` of ``delta (..., width)``."""
            return delta[..., : self.dim], (delta[..., self.dim :] if width > self.dim else None)

    return Adapter()


class FinetuneScorer(MultiTaskScorer):
    """The multi-task network, fine-tuned on each user's history at request time."""

    name = "finetune"
    Config = MetaConfig
    meta = False

    def _trained(self, data: Dataset, labels: dict[str, np.ndarray]) -> None:
        """The pretrained network, then meta-training (``meta``), then MetaEmb (if on)."""
        net = self.nets_[0]
        self.implied_ = interaction_tasks(net.tasks, data.event_types)
        self.adapter_ = _adapter(net, self.config.dim, self.config)
        if self.meta:
            self._meta_train(data)
        self.adapter_.eval()
        super()._trained(data, labels)

    # ---------------------------------------------------------------- adaptation
    def adapt(self, u, sup_v, sup_b, sup_y, sup_w, sup_r, create_graph: bool = False):
        """Adapted user vectors ``(B, dim)`` and head biases ``(B, T)`` (None without
        ``adapt_heads``) from ``u (B, dim)`` and a support of ``S`` pairs per user: item vectors ``sup_v (B, S, dim)``, retrieval biases ``sup_b (B, S)``,
        labels ``sup_y (B, S)`` (interacted or not), weights ``sup_w (B, S)`` (0 = padding)
        and values ``sup_r (B, S)`` (a rating, NaN where unknown), which train the regression
        head and value-threshold tasks (``liked``) where given."""
        import torch
        from torch.func import grad, vmap

        net, ad = self.nets_[0], self.adapter_
        heads = list(self.implied_)
        graded = [t for t in net.tasks if t.kind == "regression" or t.min_value is not None]

        def bce(logp, y):
            logp = logp.clamp(max=-1e-6)
            return -(y * logp + (1 - y) * torch.log(-torch.expm1(logp)))

        def support_loss(delta, u1, v1, b1, y1, w1, r1):  # one user: (d,), (S, d), (S,) x 4
            d, off = ad.split(delta)
            uu = (u1 + d).expand(v1.shape[0], -1)
            off = None if off is None else off.expand(v1.shape[0], -1)
            logit = (uu * v1).sum(-1) + b1
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logit, y1, reduction="none")
            out = net.heads(uu, v1, only=heads + [t.name for t in graded], offset=off) if heads or graded else {}
            for name in heads:
                loss = loss + bce(out[name], y1)
            # Interaction terms are a mean over the support's pairs, value terms a mean over
            # its rated pairs (so a rating's pull does not shrink with the negatives drawn).
            rated = torch.isfinite(r1) & (w1 > 0)
            r0 = torch.where(rated, r1, torch.zeros_like(r1))
            graded_loss = torch.zeros_like(loss)
            for t in graded:
                if t.kind == "regression":
                    term = (out[t.name] - r0) ** 2
                else:
                    term = bce(out[t.name], (r0 >= t.min_value).float())
                graded_loss = graded_loss + torch.where(rated, term, torch.zeros_like(term))
            return (loss * w1).sum() / w1.sum().clamp(min=1.0) + graded_loss.sum() / (rated.sum() + count).clamp(min=1)

        count = ad.log_count.exp() if self.meta else 0.0
        if u.shape[0] == 1 and not create_graph:
            # One user (a request): the same step without vmap's batching layer, which costs
            # more than the arithmetic at this size.
            def step(delta, *args):
                return grad(support_loss)(delta[0], *(a[0] for a in args))[None]
        else:
            step = vmap(grad(support_loss), in_dims=(0, 0, 0, 0, 0, 0, 0), randomness="same")
        delta = ad.delta0.expand(u.shape[0], -1)
        if not self.meta:
            delta = torch.zeros_like(delta)
        lr = ad.log_lr.exp()
        for _ in range(self.config.inner_steps):
            g = step(delta, u, sup_v, sup_b, sup_y, sup_w, sup_r)
            if not create_graph:
                g = g.detach()
            delta = delta - lr * g
        d, off = ad.split(delta)
        return u + d, off

    def _support(self, history: sp.csr_matrix, rng: np.random.Generator | None, values: sp.csr_matrix | None = None):
        """Support arrays for each history row: its items (a seeded ``max_adapt`` of them at most) as positives
        with their ``values`` (NaN if none given) and ``negatives`` random trained items each
        as negatives, padded: ``(items, labels, weights, values)``, each ``(B, S)``. Without
        ``rng`` (at request time) each row's draws are seeded by its own items, so a user's
        recommendations do not depend on who else is in the batch."""
        c = self.config
        rows = []
        width = 0
        for r in range(history.shape[0]):
            items = history.indices[history.indptr[r] : history.indptr[r + 1]]
            if rng is None:
                row_rng = np.random.default_rng((c.seed, zlib.crc32(np.sort(items).astype(np.int64).tobytes())))
            else:
                row_rng = rng
            if len(items) > c.max_adapt:
                items = np.sort(row_rng.choice(items, c.max_adapt, replace=False))
            neg = self._trained_items[row_rng.integers(0, len(self._trained_items), len(items) * c.negatives)]
            neg = neg[~np.isin(neg, items)]
            rows.append((items, neg))
            width = max(width, len(items) + len(neg))
        b = len(rows)
        idx = np.zeros((b, max(width, 1)), dtype=np.int64)
        y = np.zeros((b, max(width, 1)), dtype=np.float32)
        w = np.zeros((b, max(width, 1)), dtype=np.float32)
        val = np.full((b, max(width, 1)), np.nan, dtype=np.float32)
        for r, (items, neg) in enumerate(rows):
            k = len(items) + len(neg)
            idx[r, :k] = np.concatenate([items, neg])
            y[r, : len(items)] = 1.0
            w[r, :k] = 1.0
            if values is not None:
                val[r, : len(items)] = np.asarray(values[r, items].todense()).ravel()
        return idx, y, w, val

    def _adapted_users(self, queries: Queries, create_graph: bool = False):
        import torch

        from metarec.models.neural.network import History

        net, ad = self.nets_[0], self.adapter_
        u = net.users(torch.from_numpy(queries.users), History.build(queries.history))
        idx, y, w, val = self._support(queries.history, None, queries.values)
        if not w.any():  # nothing to adapt on: the learned initialisation (meta) or nothing
            d, off = ad.split(ad.delta0.detach().expand(len(u), -1) if self.meta else torch.zeros(len(u), len(ad.delta0)))
            return u + d, off
        v, b = net.items(torch.from_numpy(idx.reshape(-1)))
        shape = idx.shape
        with torch.enable_grad():
            u, off = self.adapt(u, v.reshape(*shape, -1), b.reshape(shape), torch.from_numpy(y), torch.from_numpy(w),
                                torch.from_numpy(val), create_graph)  # fmt: skip
        return u.detach(), None if off is None else off.detach()

    def _user_vectors(self, net, queries: Queries):
        """Ranking (the inherited two-stage path) uses each user's adapted vector (a head
        bias shifts all of a user's items alike, so ranking needs only the vector)."""
        net.eval()
        return self._adapted_users(queries)[0]

    def predict_tasks(self, queries: Queries, rows: np.ndarray, items: np.ndarray) -> dict[str, np.ndarray]:
        """Task predictions with each user adapted to their history first."""
        import torch

        net = self.nets_[0]
        net.eval()
        u, off = self._adapted_users(queries)
        rows = np.asarray(rows, dtype=np.int64)
        items = np.asarray(items, dtype=np.int64)
        out: dict[str, list] = {t.name: [] for t in net.tasks}
        with torch.no_grad():
            for s in range(0, len(rows), 65536):
                r = torch.from_numpy(rows[s : s + 65536])
                for name, val in self._outputs(net, u[r], items[s : s + 65536], None if off is None else off[r]).items():
                    out[name].append(val)
        return {k: np.concatenate(v) for k, v in out.items()}

    # ------------------------------------------------------------- meta-training
    def _meta_train(self, data: Dataset) -> None:
        import torch

        from metarec.training import TrainConfig, train, worker_batch_size

        c = self.config
        net = self.nets_[0]
        inter = data.interactions
        pairs = (
            pd.DataFrame({"user": inter["user"], "item": inter["item"], "t": inter["timestamp"], "seq": np.arange(len(inter))})
            .sort_values(["user", "t", "seq"], kind="stable").drop_duplicates(["user", "item"])
        )  # fmt: skip
        labels = self._labels(data)
        lookup = pd.Series(np.arange(len(labels["keys"])), index=labels["keys"])
        by_user = {u: g["item"].to_numpy(np.int64) for u, g in pairs.groupby("user")}
        users = np.array([u for u, items in by_user.items() if len(items) >= 6])
        rng_val = np.random.default_rng(c.seed + 2)
        val_users = rng_val.choice(users, size=min(len(users) // 10, 100), replace=False)
        train_users = np.setdiff1d(users, val_users)
        n_tasks = len(net.tasks)
        reg = next((j for j, t in enumerate(self.tasks_) if t.kind == "regression"), None)

        def episode_draws(batch_users: np.ndarray, n: int, r: np.random.Generator):
            """The random part of :func:`episode`: per user, the order of its query items and
            its negatives' draws; whether the support comes with its ratings."""
            per_user = []
            for u in batch_users:
                rest = len(by_user[u]) - n
                n_neg = min(rest, c.query_size) * c.negatives
                per_user.append((r.permutation(rest), r.integers(0, len(self._trained_items), n_neg)))
            return per_user, reg is not None and r.random() < 0.5  # requests come with ratings or without

        def episode(batch_users: np.ndarray, n: int, drawn):
            per_user, with_values = drawn
            sup_rows, qry_u, qry_i, qry_y, qry_pos = [], [], [], [], []
            for k, u in enumerate(batch_users):
                items = by_user[u]
                sup_rows.append(items[:n])
                q = items[n:]
                perm, neg_draw = per_user[k]
                q = q[perm[: c.query_size]]
                neg = self._trained_items[neg_draw]
                neg = neg[~np.isin(neg, items)]
                y = np.vstack([labels["values"][lookup[u * self.n_items_ + q].to_numpy()],
                               self._negative_labels(net.tasks, len(neg))])  # fmt: skip
                qry_u.append(np.full(len(q) + len(neg), k))
                qry_i.append(np.concatenate([q, neg]))
                qry_y.append(y)
                qry_pos.append(np.arange(len(q) + len(neg)) < len(q))
            hist = Queries.from_histories(np.full(len(batch_users), -1), sup_rows, self.n_items_).history
            values = None
            if with_values:
                ru = np.repeat(np.arange(len(sup_rows)), [len(x) for x in sup_rows])
                ri = np.concatenate(sup_rows)
                rv = labels["values"][lookup[batch_users[ru] * self.n_items_ + ri].to_numpy(), reg]
                values = sp.csr_matrix((rv, (ru, ri)), shape=hist.shape)
            return (hist, values, np.concatenate(qry_u), np.concatenate(qry_i), np.vstack(qry_y).reshape(-1, n_tasks),
                    np.concatenate(qry_pos).astype(np.float32))  # fmt: skip

        scorer = self

        class Episodes(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.adapter = scorer.adapter_

            def param_groups(self, lr: float) -> list[dict]:
                rates = [self.adapter.log_lr, self.adapter.log_count]
                rest = [p for p in self.parameters() if all(p is not q for q in rates)]
                return [{"params": rest, "lr": lr}, {"params": rates, "lr": c.rate_lr, "weight_decay": 0.0}]

            def loss(self, batch):
                from metarec.models.neural.network import History

                hist, qu, qi, qy = batch["support"], batch["qu"], batch["qi"], batch["qy"]
                u = net.users(torch.full((hist.shape[0],), -1), History.build(hist))
                idx, y, w, val = scorer._support(hist, batch["rng"], batch["support_values"])
                v, b = net.items(torch.from_numpy(idx.reshape(-1)))
                adapted, off = scorer.adapt(u, v.reshape(*idx.shape, -1), b.reshape(idx.shape), torch.from_numpy(y),
                                            torch.from_numpy(w), torch.from_numpy(val), create_graph=not c.first_order)  # fmt: skip
                qv, qb = net.items(qi)
                losses, retrieval = net.losses(adapted[qu], qv, qb, qy, batch["any"], None if off is None else off[qu])
                total = retrieval + sum(losses.values())
                return {"loss": total, **{f"loss[{k}]": v.detach() for k, v in losses.items()}}

        def build(batch_users: np.ndarray, n: int, drawn, seed: int) -> dict:
            hist, values, qu, qi, qy, is_pos = episode(batch_users, n, drawn)
            return {"support": hist, "support_values": values, "qu": qu, "qi": qi, "qy": qy, "any": is_pos,
                    "rng": np.random.default_rng(seed)}  # fmt: skip

        def batches(r: np.random.Generator):
            order = r.permutation(train_users)
            size = worker_batch_size(c.meta_batch)
            for s in range(0, len(order), size):
                # Log-uniform: as many episodes of 1-2 items as of 20-50, and long supports at
                # about the cost of uniform 1-20 episodes.
                n = int(np.floor(np.exp(r.uniform(0.0, np.log(c.max_support + 1)))))
                batch_users = np.array([u for u in order[s : s + size] if len(by_user[u]) >= n + 5])
                if len(batch_users) == 0:
                    continue
                # Every draw here, so that all workers follow one sequence; each builds its own.
                drawn = episode_draws(batch_users, n, r)
                yield functools.partial(build, batch_users, n, drawn, int(r.integers(1 << 31)))

        val_sets = []
        for n in (1, 5, 10):
            vu = np.array([u for u in val_users if len(by_user[u]) >= n + 5])
            if len(vu):
                hist = Queries.from_histories(vu, [by_user[u][:n] for u in vu], self.n_items_).history
                rel = Queries.from_histories(vu, [by_user[u][n:] for u in vu], self.n_items_).history
                val_sets.append((Queries(np.full(len(vu), -1), hist), rel))

        def validate(_episodes) -> float:
            """Mean NDCG@10 over held-out training users at support 1, 5 and 10."""
            from metarec.evaluation.metrics import ranking_metrics
            from metarec.ranking import top_k

            out = []
            for q, rel in val_sets:
                # Judged as trained: episodes' users (-1) have no attributes.
                with contextlib.ExitStack() as stack:
                    for n_ in self._all_nets():
                        stack.enter_context(n_.anonymous_without_attributes())
                    s = self._score(q)
                s[q.history.nonzero()] = np.nan
                top = top_k(s, 10)
                hits = np.take_along_axis(rel.toarray() > 0, top, axis=1)
                out.append(float(ranking_metrics(hits, rel.getnnz(axis=1), (10,))["NDCG@10"].mean()))
            return float(np.mean(out))

        # No dropout inside the inner loop (one random mask would serve a whole vmap): the
        # pretrained network's dropout has done its work; the episode users' ids are hidden.
        for m in net.modules():
            if isinstance(m, torch.nn.Dropout):
                m.p = 0.0
        cfg = TrainConfig(epochs=c.meta_epochs, lr=c.meta_lr, patience=c.patience, device="cpu", seed=c.seed)
        self.meta_training_ = train(Episodes(), batches, validate if val_sets else None, cfg)
        log.info("meta: best epoch %d, validation NDCG@10 %.4f", self.meta_training_.best_epoch, self.meta_training_.best_score)
        log.info("meta: inner rates %s, pseudo-count %.2f", np.round(self.adapter_.log_lr.detach().exp().numpy()[self.config.dim:], 3),
                 float(self.adapter_.log_count.detach().exp()))  # fmt: skip

    # ------------------------------------------------------------------ saving
    def get_state(self) -> dict[str, np.ndarray]:
        state = super().get_state()
        state["adapter.delta0"] = self.adapter_.delta0.detach().numpy()
        state["adapter.log_lr"] = self.adapter_.log_lr.detach().numpy()
        state["adapter.log_count"] = self.adapter_.log_count.detach().numpy().reshape(1)
        state["implied_json"] = np.frombuffer(",".join(self.implied_).encode() or b" ", dtype=np.uint8).copy()
        return state

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        import torch

        super().set_state(state)
        self.adapter_ = _adapter(self.nets_[0], self.config.dim, self.config)
        with torch.no_grad():
            self.adapter_.delta0.copy_(torch.from_numpy(np.array(state["adapter.delta0"])))
            self.adapter_.log_lr.copy_(torch.from_numpy(np.array(state["adapter.log_lr"])))
            # A model saved before the pseudo-count took the plain mean (k = 0).
            self.adapter_.log_count.fill_(float(np.asarray(state.get("adapter.log_count", [-np.inf])).reshape(-1)[0]))
        text = bytes(np.asarray(state["implied_json"], dtype=np.uint8)).decode().strip()
        self.implied_ = [t for t in text.split(",") if t]
        self._trained_items = np.flatnonzero(self.known_items_)


class MetaScorer(FinetuneScorer):
    """The multi-task network meta-trained to adapt to a new user in a few steps."""

    name = "meta"
    meta = True
