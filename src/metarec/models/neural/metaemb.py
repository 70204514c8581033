"""MetaEmb (Pan et al., SIGIR 2019): meta-learned initial id embeddings for new items.

A new item has no trained id embedding. The network's ``generator`` (an MLP of the item's
content vector and attribute embedding) proposes one, trained on warm items that play new
ones, with the network frozen, on two phases per item:

- *cold start*: the item's loss on a first mini-batch ``a`` of its pairs (``K`` positives
  and their negatives: random users without a pair with it) with the generated embedding
  ``phi``;
- *warm up*: one gradient step on ``phi`` from that loss, ``phi' = phi - eta * grad``, then
  the loss on a second mini-batch ``b`` with ``phi'``.

The generator minimises ``alpha * loss_a + (1 - alpha) * loss_b``: an embedding that is
good at once and good after its first events. It runs in the project's training loop, with
early stopping on the cold-start loss of held-out items.
"""

from __future__ import annotations

import functools
import logging

import numpy as np

from metarec.data.tasks import any_positive

log = logging.getLogger(__name__)


def pair_loss(net, items, id_emb, u, labels, any_label):
    """The loss MetaEmb descends for pairs ``(u[k], items[k])`` with the items' id embeddings
    ``id_emb``: the mean task losses (``labels``, NaN = none) plus the retrieval loss
    (``any_label``). Training (both phases) and the service's warm-up use it alike."""
    v, bias = net.items(items, id_emb=id_emb)
    losses, retrieval = net.losses(u, v, bias, labels, any_label)
    return retrieval + sum(losses.values())


def train_generator(scorer, net, labels: dict[str, np.ndarray], cols: list[int]):
    """Train ``net.generator`` (``net`` frozen) on the warm items of ``labels`` (the scorer's
    training pairs; ``cols``: the label columns of ``net``'s tasks); switches it on and
    returns the :class:`~metarec.training.TrainResult`."""
    import torch

    from metarec.models.neural.multitask import user_histories
    from metarec.models.neural.network import History
    from metarec.training import TrainConfig, train, worker_batch_size

    c = scorer.config
    k, n_neg = c.metaemb_k, c.negatives
    users, items, values = labels["user"], labels["item"], labels["values"][:, cols]
    keys = labels["keys"]
    order = np.argsort(items, kind="stable")
    starts = np.searchsorted(items[order], np.arange(scorer.n_items_ + 1))
    counts = np.diff(starts)
    eligible = np.flatnonzero((counts >= 2 * k) & scorer.known_items_)
    if len(eligible) < 10:
        log.warning("%s: MetaEmb skipped: %d items with %d pairs", scorer.name, len(eligible), 2 * k)
        return None
    rng = np.random.default_rng(c.seed + 3)
    val_items = rng.choice(eligible, size=max(1, len(eligible) // 10), replace=False)
    train_items = np.setdiff1d(eligible, val_items)
    known_users = np.flatnonzero(scorer.known_users_)
    neg_labels = scorer._negative_labels(net.tasks, 1)[0]

    def draws(batch_items: np.ndarray, r: np.random.Generator) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """The random part of :func:`pairs`, per item: the order of its pairs and the users
        drawn as negatives for ``a`` and ``b`` (drawn apart from the building, so that every
        data-parallel worker follows one sequence and builds only its own batches)."""
        out = []
        for i in batch_items:
            perm = r.permutation(int(counts[i]))
            out.append((perm, r.integers(0, len(known_users), k * n_neg), r.integers(0, len(known_users), k * n_neg)))
        return out

    def build(batch_items: np.ndarray, drawn: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> dict:
        return {"items": batch_items, **pairs(batch_items, drawn)}

    def pairs(batch_items: np.ndarray, drawn: list[tuple[np.ndarray, np.ndarray, np.ndarray]]):
        """Mini-batches ``a`` and ``b`` for each item, as ``(slot in batch, user, labels, target item or -1)``."""
        out = {"a": [], "b": []}
        for s, i in enumerate(batch_items):
            mine = order[starts[i] : starts[i + 1]]
            perm, neg_a, neg_b = drawn[s]
            pick = mine[perm[: 2 * k]]
            for name, part, neg in (("a", pick[:k], neg_a), ("b", pick[k:], neg_b)):
                nu = known_users[neg]
                key = nu * scorer.n_items_ + i
                at = np.minimum(np.searchsorted(keys, key), len(keys) - 1)
                nu = nu[keys[at] != key]  # (keys are sorted: a binary search, not np.isin's sort per call)
                out[name].append((np.full(len(part) + len(nu), s), np.concatenate([users[part], nu]),
                                  np.vstack([values[part], np.tile(neg_labels, (len(nu), 1))]),
                                  np.r_[np.full(len(part), i), np.full(len(nu), -1)]))  # fmt: skip
        return {name: tuple(np.concatenate([p[j] for p in parts]) for j in range(4)) for name, parts in out.items()}

    def batches(r: np.random.Generator):
        perm = r.permutation(train_items)
        size = worker_batch_size(c.metaemb_batch)
        for s in range(0, len(perm), size):
            b = perm[s : s + size]
            yield functools.partial(build, b, draws(b, r))

    def item_loss(phi, slot, batch_items, u, lab):
        """Sum over the batch's items of each item's mean loss (tasks + retrieval)."""
        any_label = torch.from_numpy(any_positive(lab, net.tasks))  # the label the network was trained on
        items_t, rows = torch.from_numpy(batch_items[slot]), torch.from_numpy(slot)
        loss = pair_loss(net, items_t, phi[rows], u, torch.from_numpy(lab), any_label)
        return loss * len(batch_items)

    def user_vectors(user, target):
        """The (frozen) users' vectors, each pair's item left out of its user's history."""
        hist, rows = user_histories(scorer.history_, user)
        with torch.no_grad():
            return net.users(torch.from_numpy(user), History.build(hist, rows, target))

    class Objective(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.generator = net.generator

        def loss(self, batch):
            # (the training loop hands numpy arrays over as tensors)
            b = batch["items"].numpy()
            phi = net.generate(torch.from_numpy(b))
            slot, user, lab, target = (x.numpy() for x in batch["a"])
            loss_a = item_loss(phi, slot, b, user_vectors(user, target), lab)
            (g,) = torch.autograd.grad(loss_a, phi, create_graph=True)
            slot, user, lab, target = (x.numpy() for x in batch["b"])
            loss_b = item_loss(phi - c.metaemb_lr * g, slot, b, user_vectors(user, target), lab)
            a = c.metaemb_alpha
            return {"loss": (a * loss_a + (1 - a) * loss_b) / len(b), "loss[cold]": loss_a.detach() / len(b),
                    "loss[warm]": loss_b.detach() / len(b)}  # fmt: skip

    val = pairs(val_items, draws(val_items, np.random.default_rng(c.seed + 4)))

    def validate(_obj) -> float:
        slot, user, lab, target = val["a"]
        phi = net.generate(torch.from_numpy(val_items))
        return -float(item_loss(phi, slot, val_items, user_vectors(user, target), lab)) / len(val_items)

    frozen = [p for p in net.parameters() if p.requires_grad]
    gen = set(map(id, net.generator.parameters()))
    for p in frozen:
        p.requires_grad_(id(p) in gen)
    net.eval()
    try:
        cfg = TrainConfig(epochs=c.metaemb_epochs, lr=c.lr, patience=c.patience, device="cpu", seed=c.seed)
        result = train(Objective(), batches, validate, cfg)
    finally:
        for p in frozen:
            p.requires_grad_(True)
        net.eval()
    net.generator_on.fill_(True)
    net.fill_generated()
    log.info("%s: MetaEmb best epoch %d, held-out cold-start loss %.4f", scorer.name, result.best_epoch, -result.best_score)
    return result
