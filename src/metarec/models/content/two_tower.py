"""Two-tower: a neural model whose item tower reads content, trained with ID dropout.

Three channels score item ``i`` for a history ``H`` (given at query time, so users never
seen in training are scored the same way as known ones; there are no user ids):

- content: ``cos(p + g(p), c_i + f(c_i))`` times a learned scale, with ``c_i`` the item's
  pretrained content vector, ``p`` the history's mean and ``f``, ``g`` residual MLPs whose
  last layer starts at zero, so the untrained model scores like content-kNN;
- collaborative (FISM-style): the mean of the history's "source" ID embeddings against the
  item's "target" ID embedding, plus an ID bias. An item without a trained ID embedding (and,
  in training, one whose ID was dropped with probability ``id_dropout``, as in DropoutNet,
  Volkovs, Yu & Poutanen, NeurIPS 2017) borrows the content-weighted mean of its nearest
  trained items' embeddings, so a new item is scored from its text alone;
- lexical: a learned weight times the TF-IDF cosine between the history and the item.

Training shows the model a random share of each user's items and asks for the rest, with a
softmax over the items seen in training (the multinomial likelihood of Mult-DAE, Liang et
al., WWW 2018), in the project's one training loop.

Early stopping uses a validation split carved from the training data that mirrors both
uses: held-out pairs of known items (warm) and held-out items never trained on (cold).
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from metarec.data.dataset import Dataset, grown
from metarec.data.queries import Queries
from metarec.encoders.content import ContentConfig
from metarec.models.content.base import (
    ContentScorer,
    carve_validation,
    content_neighbours,
    replace_rows,
    row_normalise,
)

log = logging.getLogger(__name__)


@dataclass
class TwoTowerConfig(ContentConfig):
    """Attributes (besides :class:`~metarec.encoders.ContentConfig`'s):
    hidden: width of the towers' hidden layer.
    id_dim: size of the collaborative (ID) embeddings.
    id_dropout: probability of dropping an item's ID embedding in a training batch.
    dropout: dropout inside the towers.
    input_fraction: share of a training user's items shown to the model; it learns to
        predict the rest (a multinomial likelihood over the seen items, as in Mult-DAE).
    epochs, batch_size, lr, weight_decay, patience: training (the shared loop).
    average, ema_decay: weight averaging in the shared loop, ``none``, ``ema`` or ``swa``.
    max_candidates: softmax over all seen items up to this many, else a uniform sample.
    validation_users: share of items held out as cold, and of users with 20% of their items
        held out as warm, for early stopping.
    lexical: add a learned weight times the TF-IDF cosine between the user's history and
        the item (exact tokens such as brands and model numbers, which sentence
        embeddings blur); needs item text.
    neighbours, neighbour_temperature: an item without a trained ID embedding borrows the
        softmax(cosine / temperature)-weighted mean of its nearest trained items' embeddings.
    seed: initialisation, batches and the validation split.
    """

    hidden: int = 256
    id_dim: int = 64
    id_dropout: float = 0.5
    dropout: float = 0.1
    input_fraction: float = 0.5
    epochs: int = 200
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 1e-4
    patience: int = 10
    average: str = "none"
    ema_decay: float = 0.99
    max_candidates: int = 20_000
    validation_users: float = 0.1
    lexical: bool = True
    neighbours: int = 50
    neighbour_temperature: float = 0.05
    seed: int = 42


def _torch_sparse(m: sp.csr_matrix):
    import torch

    coo = m.tocoo()
    idx = torch.from_numpy(np.vstack([coo.row, coo.col]).astype(np.int64))
    values = torch.from_numpy(coo.data.astype(np.float32))
    return torch.sparse_coo_tensor(idx, values, m.shape, check_invariants=False).coalesce()


def _build_net(n_items: int, content_dim: int, config: TwoTowerConfig):
    import torch
    from torch import nn

    from metarec.nn import MLP

    class TwoTowerNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            c = config
            d = content_dim
            # Content channel: residual towers that start as the identity, so the untrained
            # model scores like content-kNN and training learns what to add.
            self.item_tower = MLP(d, [c.hidden], d, c.dropout, zero_last=True)
            self.user_tower = MLP(d, [c.hidden], d, c.dropout, zero_last=True)
            self.item_content_bias = nn.Linear(d, 1)
            nn.init.zeros_(self.item_content_bias.weight)
            nn.init.zeros_(self.item_content_bias.bias)
            # Collaborative channel (FISM-style): a user is the mean of their items' "source"
            # embeddings, an item is scored by its "target" embedding.
            self.source_id = nn.Embedding(n_items, c.id_dim)
            self.item_id = nn.Embedding(n_items, c.id_dim)
            nn.init.normal_(self.source_id.weight, std=0.01)
            nn.init.normal_(self.item_id.weight, std=0.01)
            self.item_id_bias = nn.Embedding(n_items, 1)
            nn.init.zeros_(self.item_id_bias.weight)
            self.log_scale = nn.Parameter(torch.tensor(float(np.log(10.0))))
            self.lexical_weight = nn.Parameter(torch.tensor(5.0 if c.lexical else 0.0), requires_grad=c.lexical)
            self.register_buffer("content", torch.zeros(n_items, d))
            self.register_buffer("seen", torch.zeros(n_items))

        def items(self, idx, keep_ids, neighbours):  # idx (k,), keep_ids (k,), neighbours sparse (k, I)
            c = self.content[idx]
            # An item without (or with a dropped) ID embedding borrows one: the content-weighted
            # mean of its nearest trained items' embeddings.
            borrowed = torch.sparse.mm(neighbours, self.item_id.weight)  # (k, F)
            borrowed_bias = torch.sparse.mm(neighbours, self.item_id_bias.weight).squeeze(-1)  # (k,)
            own = keep_ids[:, None]
            ids = own * self.item_id(idx) + (1.0 - own) * borrowed
            bias = (
                self.item_content_bias(c).squeeze(-1)
                + keep_ids * self.item_id_bias(idx).squeeze(-1)
                + (1.0 - keep_ids) * borrowed_bias
            )
            return (c + self.item_tower(c), ids), bias

        def users(self, hist):  # hist: sparse (B, I), rows sum to 1 -> (B, C), (B, F)
            pooled = torch.sparse.mm(hist, self.content)  # (B, C)
            u = nn.functional.normalize(pooled + self.user_tower(pooled), dim=1)
            return u, torch.sparse.mm(hist, self.source_id.weight * self.seen[:, None])

        def logits(self, hist, vec, bias, lexical):  # lexical: (B, k) TF-IDF cosines -> (B, k)
            (u_content, u_ids), (v_content, v_ids) = self.users(hist), vec
            content = self.log_scale.exp() * (u_content @ v_content.T)
            return content + u_ids @ v_ids.T + bias + self.lexical_weight * lexical

        def loss(self, batch):
            cand = batch["candidates"]  # (K,) seen items
            keep = self.seen[cand] * (torch.rand(len(cand), device=cand.device) >= config.id_dropout).float()
            vec, bias = self.items(cand, keep, batch["neighbours"])
            logp = torch.log_softmax(self.logits(batch["hist"], vec, bias, batch["lexical"]), dim=1)  # (B, K)
            target = batch["target"]  # (B, K) multi-hot of the hidden items
            n = target.sum(dim=1)
            per_user = -(target * logp).sum(dim=1) / n.clamp(min=1)
            return {"loss": per_user[n > 0].mean()}

        def score(self, hist, lexical, neighbours):  # -> (B, I)
            idx = torch.arange(self.content.shape[0], device=self.content.device)
            vec, bias = self.items(idx, self.seen, neighbours)
            return self.logits(hist, vec, bias, lexical)

    return TwoTowerNet()


class TwoTowerScorer(ContentScorer):
    """Two-tower content + ID model with ID dropout; ranks warm and cold items alike."""

    distributed = True
    name = "two-tower"
    Config = TwoTowerConfig

    # ------------------------------------------------------------------ training
    def _fit_content(self, data: Dataset, matrix: sp.csr_matrix) -> None:
        import torch

        from metarec.training import TrainConfig, train, worker_batch_size

        c = self.config
        rng = np.random.default_rng(c.seed)
        self.fit_lexical(data, self.config.lexical)
        train_m, val_warm, val_cold = carve_validation(matrix, c.validation_users, rng)
        seen = np.asarray(train_m.getnnz(axis=0) > 0)
        seen_idx = np.flatnonzero(seen)
        torch.manual_seed(c.seed)  # the initial weights too
        self.net_ = _build_net(self.n_items_, self.item_vectors_.shape[1], c)
        self.net_.content.copy_(torch.from_numpy(self.item_vectors_))
        self.net_.seen.copy_(torch.from_numpy(seen.astype(np.float32)))
        self.neighbours_ = content_neighbours(self.item_vectors_, seen, c.neighbours, c.neighbour_temperature)
        users = np.flatnonzero(train_m.getnnz(axis=1) >= 2)
        full = len(seen_idx) <= c.max_candidates
        col_of = np.full(self.n_items_, -1, dtype=np.int64)

        row_nnz = np.diff(train_m.indptr)

        def build(batch_users: np.ndarray, show: np.ndarray, sampled: np.ndarray | None) -> dict:
            # Each history splits at random (``show``) into what the model sees and what it predicts.
            rows = train_m[batch_users].tocoo()
            shape = rows.shape
            hist = sp.csr_matrix((rows.data[show], (rows.row[show], rows.col[show])), shape=shape)
            tgt = sp.csr_matrix((rows.data[~show], (rows.row[~show], rows.col[~show])), shape=shape)
            cand = seen_idx if sampled is None else np.union1d(tgt.indices, sampled)
            col_of[cand] = np.arange(len(cand))
            t = tgt.tocoo()
            target = np.zeros((shape[0], len(cand)), dtype=np.float32)
            target[t.row, col_of[t.col]] = 1.0
            return {"hist": _torch_sparse(row_normalise(hist)), "candidates": cand.astype(np.int64),
                    "target": target, "lexical": self._lexical(hist, cand),
                    "neighbours": _torch_sparse(self.neighbours_[cand])}  # fmt: skip

        def batches(r: np.random.Generator):
            order = r.permutation(users)
            size = worker_batch_size(c.batch_size)
            for start in range(0, len(order), size):
                batch_users = order[start : start + size]
                # Every draw here, so that all workers follow one sequence; each builds its own.
                show = r.random(int(row_nnz[batch_users].sum())) < c.input_fraction
                sampled = None if full else r.choice(seen_idx, c.max_candidates, replace=False)
                yield functools.partial(build, batch_users, show, sampled)

        def recall_at_20(net, users: np.ndarray, rel: sp.csr_matrix, cand: np.ndarray) -> float:
            from metarec.evaluation.metrics import recall
            from metarec.ranking import top_k

            if len(users) == 0:
                return float("nan")
            hist = train_m[users]
            h = _torch_sparse(row_normalise(hist)).to(net.content.device)
            lexical = torch.from_numpy(self._lexical(hist)).to(net.content.device)
            s = net.score(h, lexical, _torch_sparse(self.neighbours_).to(h.device)).cpu().numpy()
            s[hist.nonzero()] = -np.inf
            r = rel[:, cand].toarray() > 0
            hits = np.take_along_axis(r, top_k(s[:, cand], 20), axis=1)
            return float(np.mean(recall(hits, r.sum(axis=1), 20)))

        warm_users = np.flatnonzero(val_warm.getnnz(axis=1) > 0)
        cold_users = np.flatnonzero(val_cold.getnnz(axis=1) > 0)
        cold_items = np.flatnonzero(val_cold.getnnz(axis=0) > 0)

        def validate(net) -> float:
            """Mean of warm Recall@20 (held-out pairs among seen items) and cold Recall@20
            (held-out items, never trained on, ranked among themselves)."""
            warm = recall_at_20(net, warm_users, val_warm[warm_users], seen_idx)
            cold = recall_at_20(net, cold_users, val_cold[cold_users], cold_items)
            return float(np.nanmean([warm, cold])) if not (np.isnan(warm) and np.isnan(cold)) else 0.0

        cfg = TrainConfig(epochs=c.epochs, lr=c.lr, weight_decay=c.weight_decay, patience=c.patience,
                          device=c.device, seed=c.seed, average=c.average, ema_decay=c.ema_decay)  # fmt: skip
        self.training_ = train(self.net_, batches, validate, cfg)
        self.net_.to("cpu")
        # Items seen only in the validation split keep borrowed embeddings: theirs are untrained.
        log.info("two-tower: best epoch %d, validation %.4f", self.training_.best_epoch, self.training_.best_score)

    def _lexical(self, history: sp.csr_matrix, items: np.ndarray | None = None) -> np.ndarray:
        from metarec.encoders.lexical import cosine_to_profiles

        return cosine_to_profiles(history.astype(np.float32), self.item_lexical_, items)

    # ------------------------------------------------------------------- scoring
    def _score(self, queries: Queries) -> np.ndarray:
        import torch

        with torch.no_grad():
            hist = _torch_sparse(row_normalise(queries.history.astype(np.float32)))
            lexical = torch.from_numpy(self._lexical(queries.history))
            s = self.net_.score(hist, lexical, _torch_sparse(self.neighbours_)).numpy()
        s[:, ~(self.has_content_ | self.known_items_)] = np.nan
        return s

    def _added_items(self, n: int, texts: list[str] | None = None) -> None:
        import torch

        c = self.config
        seen = self.net_.seen.numpy() > 0
        seen = np.concatenate([seen, np.zeros(n, dtype=bool)])
        rows = np.arange(self.n_items_ - n, self.n_items_)
        new_nbrs = content_neighbours(self.item_vectors_, seen, c.neighbours, c.neighbour_temperature, rows=rows)
        self.neighbours_ = sp.vstack([grown(self.neighbours_, columns=n), new_nbrs]).tocsr()

        net = self.net_
        new = torch.from_numpy(self.item_vectors_[-n:])
        net.content = torch.cat([net.content, new])
        net.seen = torch.cat([net.seen, torch.zeros(n)])
        for table in (net.item_id, net.source_id):
            table.weight = torch.nn.Parameter(torch.cat([table.weight.data, torch.zeros(n, table.weight.shape[1])]))
        net.item_id_bias.weight = torch.nn.Parameter(torch.cat([net.item_id_bias.weight.data, torch.zeros(n, 1)]))

    def _updated_items(self, indices: np.ndarray, texts: list[str] | None = None) -> None:
        import torch

        c = self.config
        seen = self.net_.seen.numpy() > 0
        self.net_.content[torch.from_numpy(indices)] = torch.from_numpy(self.item_vectors_[indices])
        cold = indices[~seen[indices]]
        if len(cold):
            nb = content_neighbours(self.item_vectors_, seen, c.neighbours, c.neighbour_temperature, rows=cold)
            self.neighbours_ = replace_rows(self.neighbours_, cold, nb)

    # ------------------------------------------------------------------ saving
    def get_state(self) -> dict[str, np.ndarray]:
        net = {f"net.{k}": v.detach().cpu().numpy() for k, v in self.net_.state_dict().items() if k != "content"}
        nb = self.neighbours_
        nbrs = {"nbr_data": nb.data, "nbr_indices": nb.indices, "nbr_indptr": nb.indptr}
        return {**super().get_state(), **net, **nbrs}

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        import torch

        super().set_state(state)
        n = self.n_items_
        self.neighbours_ = sp.csr_matrix((state["nbr_data"], state["nbr_indices"], state["nbr_indptr"]), shape=(n, n))
        self.net_ = _build_net(self.n_items_, self.item_vectors_.shape[1], self.config)
        weights = {k[4:]: torch.from_numpy(np.array(v)) for k, v in state.items() if k.startswith("net.")}
        weights["content"] = torch.from_numpy(np.array(self.item_vectors_))
        self.net_.load_state_dict(weights)
        self.net_.eval()
