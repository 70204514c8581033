"""The shared network of metarec's neural models: user and item encoders, a shared bottom or
a mixture of experts, and one head per task.

- **Users**: id embedding + attribute embeddings + the pooled history (mean of the history
  items' "source" embeddings and their projected content vectors).
- **Items**: id embedding + content vector (projected) + categorical and numeric attributes.
- **ID dropout** (DropoutNet, Volkovs et al. 2017): in training an id is replaced by the
  "unknown" embedding with probability ``id_dropout``; ids never trained on always are, so
  new users and items are scored from attributes, history and content.
- **Bottom**: the pair ``[u, v, u * v]`` goes through one shared MLP (``shared-bottom``,
  Caruana 1997), ``experts`` MLPs mixed by one softmax gate per task (``mmoe``, Ma et al.
  KDD 2018), or those plus one expert of each task's own (``ple``: one customized gate
  control level of PLE, Tang et al. RecSys 2020).
- **Heads**: one small MLP per task: a logit for binary tasks, a value (offset by the
  training mean) for regression tasks. A funnel ``parent>child`` makes the child's
  probability ``P(parent) * P(child | parent)`` (ESMM, Ma et al. SIGIR 2018).
- **Retrieval score** ``<u, v> + b_i``: trained on "any interaction", it preselects
  candidates when a catalogue is too large to run every pair through the heads.

The user representation and the heads are separate calls (:meth:`TaskNet.users`,
:meth:`TaskNet.heads`), so meta-learning can adapt a user's vector or head weights alone.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn
from torch.nn import functional as F

from metarec.data.tasks import Task
from metarec.models.neural.features import Attributes
from metarec.nn import MLP


@dataclass
class History:
    """Histories of a batch: distinct history rows as an embedding bag (``items``, ``offsets``,
    ``lengths``), which row each example uses (``rows``), and an item to leave out per example
    (``drop``, with ``drop_w`` 1.0 where it is in that history: a training pair's own item)."""

    items: torch.Tensor
    offsets: torch.Tensor
    lengths: torch.Tensor
    rows: torch.Tensor
    drop: torch.Tensor
    drop_w: torch.Tensor

    @classmethod
    def build(cls, matrix: sp.csr_matrix, rows: np.ndarray | None = None, drop: np.ndarray | None = None) -> History:
        """From a binary CSR of distinct histories; ``rows`` maps examples to them, ``drop``
        names each example's target item (``-1``: none)."""
        m = sp.csr_matrix(matrix)
        n = m.shape[0] if rows is None else len(rows)
        rows = np.arange(n) if rows is None else np.asarray(rows, dtype=np.int64)
        drop = np.full(n, -1, dtype=np.int64) if drop is None else np.asarray(drop, dtype=np.int64)
        inside = np.zeros(n, dtype=np.float32)
        k = np.flatnonzero(drop >= 0)
        if len(k):
            inside[k] = np.asarray(m[rows[k], drop[k]]).ravel() != 0
        return cls(
            torch.from_numpy(m.indices.astype(np.int64)),
            torch.from_numpy(m.indptr[:-1].astype(np.int64)),
            torch.from_numpy(np.diff(m.indptr).astype(np.float32)),
            torch.from_numpy(rows),
            torch.from_numpy(drop),
            torch.from_numpy(inside),
        )

    def to(self, device) -> History:
        return History(*(getattr(self, f.name).to(device) for f in fields(self)))


def _log_sigmoid_pair(logp: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(log p, log(1 - p))`` from ``log p``, numerically safe."""
    logp = logp.clamp(max=-1e-6)
    return logp, torch.log(-torch.expm1(logp))


ARCHITECTURES = ("mmoe", "ple", "shared-bottom")


class AttributeEmbedding(nn.Module):
    """Sum of one embedding per categorical column and a linear map of the numeric ones."""

    def __init__(self, attrs: Attributes, dim: int) -> None:
        super().__init__()
        self.cats = nn.ModuleList(nn.Embedding(size, dim) for size in attrs.sizes)
        for e in self.cats:
            nn.init.normal_(e.weight, std=0.05)
        self.num = nn.Linear(attrs.numbers.shape[1], dim) if attrs.numbers.shape[1] else None
        self.register_buffer("codes", torch.from_numpy(attrs.codes))
        self.register_buffer("numbers", torch.from_numpy(attrs.numbers))

    def forward(self, idx: torch.Tensor) -> torch.Tensor | None:
        out = None
        codes = self.codes[idx]
        for j, emb in enumerate(self.cats):
            out = emb(codes[:, j]) if out is None else out + emb(codes[:, j])
        if self.num is not None:
            x = self.num(self.numbers[idx])
            out = x if out is None else out + x
        return out


def _stacked(towers: Sequence[nn.Module], training: bool):
    """``x (n, T, d) -> (n, T, out)``: tower ``t`` (an :class:`MLP` with one hidden layer)
    applied to ``x[:, t]``, all towers in one batched matmul per layer."""
    first = [m.net[0] for m in towers]
    last = [m.net[3] for m in towers]
    p = towers[0].net[2].p

    def run(x: torch.Tensor) -> torch.Tensor:
        h = torch.einsum("ntd,tod->nto", x, torch.stack([m.weight for m in first])) + torch.stack([m.bias for m in first])
        h = F.dropout(F.gelu(h), p, training)
        return torch.einsum("ntd,tod->nto", h, torch.stack([m.weight for m in last])) + torch.stack([m.bias for m in last])

    return run


class TaskNet(nn.Module):
    """Encoders, bottom and heads for ``tasks`` (see the module docstring).

    Args:
        known_users, known_items: bool tensors; ids outside them use the unknown embedding.
        content: ``(n_items, c)`` item content vectors (``c`` may be 0).
        rating_mean: offset of regression heads.
    """

    def __init__(
        self,
        tasks: Sequence[Task],
        user_attrs: Attributes,
        item_attrs: Attributes,
        content: torch.Tensor,
        known_users: torch.Tensor,
        known_items: torch.Tensor,
        dim: int = 32,
        hidden: int = 64,
        architecture: str = "mmoe",
        experts: int = 4,
        dropout: float = 0.1,
        id_dropout: float = 0.1,
        funnel: dict[str, str] | None = None,
        rating_mean: float = 0.0,
        generator: bool = False,
    ) -> None:
        super().__init__()
        if architecture not in ARCHITECTURES:
            raise ValueError(f"architecture {architecture!r}: choose from {', '.join(ARCHITECTURES)}")
        self.tasks = list(tasks)
        self.architecture = architecture
        self.id_dropout = id_dropout
        self.funnel = dict(funnel or {})
        n_users, n_items = len(known_users), len(known_items)
        self.register_buffer("known_users", known_users.bool())
        self.register_buffer("known_items", known_items.bool())
        self.register_buffer("content", content.float())
        self.user_id = nn.Embedding(n_users + 1, dim)  # the last row: unknown
        self.item_id = nn.Embedding(n_items + 1, dim)
        self.source_id = nn.Embedding(n_items + 1, dim)  # an item as part of a history
        for e in (self.user_id, self.item_id, self.source_id):
            nn.init.normal_(e.weight, std=0.05)
        self.item_bias = nn.Embedding(n_items + 1, 1)
        nn.init.zeros_(self.item_bias.weight)
        self.user_attrs = AttributeEmbedding(user_attrs, dim)
        self.item_attrs = AttributeEmbedding(item_attrs, dim)
        c = content.shape[1]
        self.item_content = nn.Linear(c, dim) if c else None
        self.history_content = nn.Linear(c, dim) if c else None
        width = 3 * dim
        if architecture in ("mmoe", "ple"):
            self.experts = nn.ModuleList(MLP(width, [hidden], hidden, dropout) for _ in range(experts))
            own = 1 if architecture == "ple" else 0  # CGC: one task-specific expert per task
            self.task_experts = nn.ModuleDict(
                {t.name: MLP(width, [hidden], hidden, dropout) for t in self.tasks} if own else {}
            )
            self.gates = nn.ModuleDict({t.name: nn.Linear(width, experts + own) for t in self.tasks})
        else:
            self.bottom = MLP(width, [hidden], hidden, dropout)
        self.head = nn.ModuleDict({t.name: MLP(hidden, [hidden // 2], 1, dropout) for t in self.tasks})
        self.rating_mean = float(rating_mean)
        # MetaEmb (Pan et al. SIGIR 2019): id embeddings of never-trained items generated from
        # content and attributes; used once trained (``generator_on``), see ``metaemb.py``.
        self.generator = MLP(c + dim, [hidden], dim) if generator else None
        self.register_buffer("generator_on", torch.zeros((), dtype=torch.bool))
        # Never-trained items whose id-embedding row holds their own embedding: generated
        # (:meth:`fill_generated`), then warmed up on their first events (MetaEmb's warm-up,
        # :meth:`MultiTaskScorer.warm_up`). Others fall back to the unknown embedding.
        self.register_buffer("own", torch.zeros(n_items, dtype=torch.bool))

    def extend_items(self, n: int, content, item_attrs: Attributes) -> None:
        """Room for ``n`` new items (no trained id: scored from content and attributes)."""
        n_old = len(self.known_items)
        dev = self.content.device
        self.known_items = torch.cat([self.known_items, torch.zeros(n, dtype=torch.bool, device=dev)])
        self.own = torch.cat([self.own, torch.zeros(n, dtype=torch.bool, device=dev)])
        self.content = torch.cat([self.content, torch.as_tensor(content, dtype=torch.float32, device=dev)])
        for name in ("item_id", "source_id", "item_bias"):
            w = getattr(self, name).weight.data
            grown = torch.cat([w[:n_old], torch.zeros(n, w.shape[1], device=dev), w[n_old:]])  # unknown stays last
            setattr(self, name, nn.Embedding.from_pretrained(grown, freeze=False))
        self.item_attrs.codes = torch.from_numpy(item_attrs.codes).to(dev)
        self.item_attrs.numbers = torch.from_numpy(item_attrs.numbers).to(dev)
        self.fill_generated(torch.arange(n_old, n_old + n, device=dev))

    def set_user_attributes(self, user_attrs: Attributes) -> None:
        """The users' attribute rows, grown (new users) or recoded (changed attributes)."""
        dev = self.content.device
        self.user_attrs.codes = torch.from_numpy(user_attrs.codes).to(dev)
        self.user_attrs.numbers = torch.from_numpy(user_attrs.numbers).to(dev)

    @torch.no_grad()
    def fill_generated(self, idx: torch.Tensor | None = None) -> None:
        """Write the generator's embedding into the id rows of never-trained items (all, or
        those of ``idx``), once the generator is trained; scoring then reads a row, not the MLP."""
        if self.generator is None or not bool(self.generator_on):
            return
        idx = torch.arange(len(self.known_items), device=self.content.device) if idx is None else idx
        idx = idx[~self.known_items[idx]]
        if len(idx):
            self.item_id.weight[idx] = self.generate(idx)
            self.own[idx] = True

    # ------------------------------------------------------------------ encoders
    def _ids(self, idx: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
        unknown = len(known)
        safe = idx.clamp(min=0, max=unknown - 1)
        keep = (idx >= 0) & (idx < unknown) & known[safe]
        if self.training and self.id_dropout > 0:
            keep = keep & (torch.rand(idx.shape, device=idx.device) >= self.id_dropout)
        return torch.where(keep, safe, torch.full_like(safe, unknown))

    def generate(self, idx: torch.Tensor) -> torch.Tensor:
        """MetaEmb's generated id embeddings ``(k, dim)`` of items ``idx``, from their content
        vector and (frozen) attribute embedding."""
        a = self.item_attrs(idx)
        a = torch.zeros(len(idx), self.item_id.embedding_dim, device=idx.device) if a is None else a.detach()
        return self.generator(torch.cat([self.content[idx], a], dim=1))

    def items(self, idx: torch.Tensor, id_emb: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(v (k, dim), retrieval bias (k,))`` for item indices ``idx``; ``id_emb`` replaces
        their id embeddings. A never-trained item uses its own row if it has one (``own``:
        generated, then warmed up), else the unknown embedding."""
        ids = self._ids(idx, self.known_items)
        if id_emb is not None:
            v = id_emb
        else:
            v = self.item_id(ids)
            safe = idx.clamp(0, len(self.known_items) - 1)
            own = torch.nonzero(self.own[safe] & ~self.known_items[safe]).squeeze(1)
            if len(own):
                v = v.index_copy(0, own, self.item_id(safe[own]))
        a = self.item_attrs(idx)
        if a is not None:
            v = v + a
        if self.item_content is not None:
            v = v + self.item_content(self.content[idx])
        return v, self.item_bias(ids).squeeze(-1)

    def all_items(self) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`items` of the whole catalogue, detached, cached while no parameter or buffer
        changes (:meth:`_cached`): a request pays for the catalogue's item vectors once per
        model change, not once per call."""
        return self._cached("_all_items", lambda: self.items(torch.arange(len(self.known_items), device=self.content.device)))

    def anonymous_attributes(self) -> torch.Tensor | None:
        """The attribute part of a user who gives none (index -1) when scoring: the mean of
        the trained users' attribute embeddings, the attributes of a typical user. (A zero
        vector, the alternative, is no user the network was trained on: the multi-task
        network ranked such users, once they had a history, far below the cold-start list.)
        In training, -1 keeps no attributes (meta-learning's episodes)."""
        if not len(self.user_attrs.cats) and self.user_attrs.num is None:
            return None

        def mean() -> torch.Tensor:
            n = min(len(self.known_users), len(self.user_attrs.codes))
            rows = torch.nonzero(self.known_users[:n]).squeeze(1)
            return self.user_attrs(rows).mean(0) if len(rows) else torch.zeros(self.user_id.embedding_dim, device=rows.device)

        return self._cached("_anonymous_attributes", mean)

    @contextmanager
    def anonymous_without_attributes(self) -> Iterator[None]:
        """Within: a user at index -1 has no attribute part when scoring either, as in
        training (meta-learning validates its episodes so)."""
        object.__setattr__(self, "_no_anonymous_attributes", True)
        try:
            yield
        finally:
            object.__setattr__(self, "_no_anonymous_attributes", False)

    def _cached(self, name: str, compute):
        """``compute()`` (no gradient), cached under ``name`` while no parameter or buffer
        changes: an in-place update (an optimiser step, a warm-up, a load) bumps a tensor's
        version, a replaced one (new items or users) is another tensor, a moved one (another
        device) has another data pointer; the cache holds the tensors it was computed from,
        so a freed one's id cannot be mistaken for them."""
        state = [*self.parameters(), *self.buffers()]
        versions = [(t._version, t.data_ptr()) for t in state]
        cached = getattr(self, name, None)
        if (
            cached is None
            or cached[0] != self.training
            or len(cached[1]) != len(state)
            or any(a is not b for a, b in zip(cached[1], state, strict=True))
            or cached[2] != versions
        ):
            with torch.no_grad():
                out = compute()
            cached = (self.training, state, versions, out)
            object.__setattr__(self, name, cached)
        return cached[3]

    def users(self, idx: torch.Tensor, history: History) -> torch.Tensor:
        """``u (n, dim)`` for user indices ``idx`` (-1: unknown, and without attributes:
        :meth:`anonymous_attributes`) and their :class:`History`.

        The history part is the mean over the history's items of their "source" embedding
        (trained items only) and of their projected content vector, with each row's target
        item left out when it is in that row's history.
        """
        u = self.user_id(self._ids(idx, self.known_users))
        a = self.user_attrs(idx.clamp(min=0))
        if a is not None:
            given = idx >= 0
            # The mean is looked up (a walk over the parameters' versions) only when needed.
            anonymous = not (self.training or getattr(self, "_no_anonymous_attributes", False) or bool(given.all()))
            none = self.anonymous_attributes().expand_as(a) if anonymous else torch.zeros_like(a)
            u = u + torch.where(given[:, None], a, none)
        h = history
        n_items = len(self.known_items)
        known = self.known_items.float()
        drop = h.drop.clamp(min=0)
        w = h.drop_w[:, None]
        count = (h.lengths[h.rows] - h.drop_w).clamp(min=1.0)[:, None]
        total = F.embedding_bag(h.items, self.source_id.weight[:n_items], h.offsets, mode="sum",
                                per_sample_weights=known[h.items])  # fmt: skip
        src = self.source_id.weight[drop] * known[drop][:, None]
        u = u + (total[h.rows] - w * src) / count
        if self.history_content is not None:
            pooled = F.embedding_bag(h.items, self.content, h.offsets, mode="sum")
            u = u + self.history_content((pooled[h.rows] - w * self.content[drop]) / count)
        return u

    # --------------------------------------------------------------------- heads
    def heads(self, u: torch.Tensor, v: torch.Tensor, only: Sequence[str] | None = None,
              offset: torch.Tensor | None = None) -> dict[str, torch.Tensor]:  # fmt: skip
        """Per task, pairwise outputs for rows ``u (n, dim)`` and ``v (n, dim)``: binary tasks
        give log-probabilities ``log P``, regression tasks predicted values. ``only``: compute
        just these tasks (and their funnel parents). ``offset (n, T)``: added to each task's
        raw output (a logit or a value), in the order of ``tasks``: the per-user decision
        biases that meta-learning adapts."""
        x = torch.cat([u, v, u * v], dim=1)
        needed = set(only) if only is not None else {t.name for t in self.tasks}
        for name in list(needed):
            while name in self.funnel:
                name = self.funnel[name]
                needed.add(name)
        tasks = [t for t in self.tasks if t.name in needed]
        if not tasks:
            return {}
        if self.architecture in ("mmoe", "ple"):
            bottom = self._mixture(x, tasks)  # (n, T', h)
        else:
            bottom = self.bottom(x)[:, None, :].expand(-1, len(tasks), -1)
        towers = _stacked([self.head[t.name] for t in tasks], self.training)
        raw_all = towers(bottom).squeeze(-1)  # (n, T')
        raw = {t.name: raw_all[:, j] for j, t in enumerate(tasks)}
        if offset is not None:
            col = {t.name: j for j, t in enumerate(self.tasks)}
            raw = {name: r + offset[:, col[name]] for name, r in raw.items()}
        out: dict[str, torch.Tensor] = {}

        def resolve(task: Task) -> torch.Tensor:
            if task.name in out:
                return out[task.name]
            if task.kind == "regression":
                out[task.name] = raw[task.name] + self.rating_mean
            else:
                logp = F.logsigmoid(raw[task.name])
                parent = self.funnel.get(task.name)
                if parent is not None:
                    logp = logp + resolve(next(t for t in self.tasks if t.name == parent))
                out[task.name] = logp
            return out[task.name]

        for t in tasks:
            resolve(t)
        return out

    def _mixture(self, x: torch.Tensor, tasks: list[Task]) -> torch.Tensor:
        """MMoE/PLE bottoms ``(n, T', hidden)`` of ``tasks``: each task's softmax gate over the
        shared experts (and, for PLE, its own). Every expert and gate reads ``x``, so their
        first layers run as one matmul and the experts' second layers as one batched matmul:
        the same parameters and function as one module call each, in a few larger kernels,
        which is what a request's small batches are bound by."""
        ple = self.architecture == "ple"
        mods = list(self.experts) + ([self.task_experts[t.name] for t in tasks] if ple else [])
        gates = [self.gates[t.name] for t in tasks]
        n_shared, width = len(self.experts), mods[0].net[0].out_features
        z = F.linear(x, torch.cat([m.net[0].weight for m in mods] + [g.weight for g in gates]),
                     torch.cat([m.net[0].bias for m in mods] + [g.bias for g in gates]))  # fmt: skip
        h = z[:, : len(mods) * width].reshape(len(x), len(mods), width)
        h = F.dropout(F.gelu(h), mods[0].net[2].p, self.training)
        last = [m.net[3] for m in mods]
        e = torch.einsum("neh,eoh->neo", h, torch.stack([m.weight for m in last])) + torch.stack([m.bias for m in last])
        logits = z[:, len(mods) * width :].reshape(len(x), len(tasks), -1)  # (n, T', shared + own)
        w = F.softmax(logits, dim=2)
        out = torch.einsum("nts,nso->nto", w[:, :, :n_shared], e[:, :n_shared])
        if ple:
            out = out + w[:, :, n_shared:] * e[:, n_shared:]
        return out

    def shared_layer(self) -> list[nn.Parameter]:
        """The weights of the last layer every task shares (the shared experts' output layers,
        or the shared bottom's): where GradNorm measures each task's gradient."""
        if self.architecture in ("mmoe", "ple"):
            return [m.net[-1].weight for m in self.experts]
        return [self.bottom.net[-1].weight]

    def retrieval(self, u: torch.Tensor, v: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """All-pairs retrieval logits ``(B, k)``."""
        return u @ v.T + bias[None, :]

    def losses(self, u: torch.Tensor, v: torch.Tensor, bias: torch.Tensor, labels: torch.Tensor, any_label: torch.Tensor,
               offset: torch.Tensor | None = None):  # fmt: skip
        """Per-task losses for pairs with ``labels (n, T)`` (NaN = no label), and the retrieval
        loss; ``offset`` as in :meth:`heads`."""
        out = self.heads(u, v, offset=offset)
        losses = {}
        for j, t in enumerate(self.tasks):
            y = labels[:, j]
            ok = torch.isfinite(y)
            if not ok.any():
                losses[t.name] = torch.zeros((), device=u.device)
                continue
            if t.kind == "regression":
                losses[t.name] = F.mse_loss(out[t.name][ok], y[ok])
            else:
                logp, log1mp = _log_sigmoid_pair(out[t.name][ok])
                losses[t.name] = -(y[ok] * logp + (1 - y[ok]) * log1mp).mean()
        r = (u * v).sum(1) + bias
        return losses, F.binary_cross_entropy_with_logits(r, any_label)
