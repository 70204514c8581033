"""A synthetic world with known structure, for the demo and the tests (no downloads).

Users have latent tastes, partly explained by demographics (age band, gender, region) so
that attributes help a cold start; items have a category, a brand, a price, a long-tail
popularity and a generated text (title + description) whose words carry the item's latent
traits, so that content models have something real to learn. Users browse by a softmax over
taste x item + popularity; every view may go down the funnel view -> cart -> purchase ->
rating with probabilities that grow with affinity. Users sign up and items are released
over time, so a time split sees new users and new items.

Everything is vectorised (the event sampler is an inverse-CDF draw over all users at once)
and seeded: the same config gives the same world.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from metarec.data.dataset import Dataset, build_dataset
from metarec.errors import ConfigError

CATEGORIES = (
    ("audio", ["headphones", "speaker", "earbuds", "amplifier", "soundbar"]),
    ("kitchen", ["kettle", "blender", "skillet", "knife set", "coffee grinder"]),
    ("outdoor", ["tent", "backpack", "lantern", "hiking poles", "sleeping bag"]),
    ("fitness", ["yoga mat", "dumbbells", "jump rope", "kettlebell", "resistance bands"]),
    ("books", ["novel", "cookbook", "field guide", "biography", "atlas"]),
    ("toys", ["puzzle", "building blocks", "plush bear", "kite", "board game"]),
    ("garden", ["hose", "pruning shears", "planter", "seed kit", "watering can"]),
    ("office", ["desk lamp", "notebook", "fountain pen", "monitor stand", "stapler"]),
    ("beauty", ["serum", "hair dryer", "face mask", "perfume", "nail kit"]),
    ("gaming", ["controller", "headset", "mouse", "keyboard", "capture card"]),
    ("pets", ["dog bed", "cat tree", "leash", "aquarium", "bird feeder"]),
    ("lab", ["microscope", "pipette set", "beaker kit", "scale", "multimeter"]),
)
#: One pair of word lists per latent dimension: words for a high and for a low value.
TRAIT_WORDS = (
    (["premium", "luxurious", "handcrafted"], ["budget", "basic", "no-frills"]),
    (["compact", "portable", "lightweight"], ["large", "heavy-duty", "family-size"]),
    (["vintage", "classic", "retro"], ["modern", "sleek", "smart"]),
    (["colorful", "playful", "bright"], ["matte black", "minimalist", "neutral"]),
    (["professional", "precision", "calibrated"], ["beginner", "easy", "starter"]),
    (["eco-friendly", "recycled", "organic"], ["durable", "rugged", "weatherproof"]),
    (["quiet", "gentle", "soft"], ["powerful", "turbo", "high-output"]),
    (["wireless", "rechargeable", "bluetooth"], ["manual", "corded", "analog"]),
)
AGE_BANDS = ("18-24", "25-34", "35-44", "45-54", "55+")
REGIONS = ("north", "south", "east", "west", "central")
EVENTS = ("view", "cart", "purchase", "rating")


@dataclass
class WorldConfig:
    """Size and shape of a synthetic world.

    Attributes:
        n_users, n_items: population sizes.
        dim: latent dimensions (at most ``len(TRAIT_WORDS)``).
        n_brands: brands, each with a hidden quality.
        views_per_user: mean views per user (log-normal, so some users are heavy).
        days: length of the log; users sign up and items are released along it.
        late_fraction: share of users and items that arrive after day 0.
        popularity_skew: spread of the item popularity bias (long tail).
        dirty_rows: share of extra malformed rows (duplicates, bad timestamps) that
            cleaning has to catch; 0 for a clean log.
        seed: everything is drawn from this seed.
    """

    n_users: int = 1500
    n_items: int = 800
    dim: int = 8
    n_brands: int = 40
    views_per_user: float = 30.0
    days: int = 90
    late_fraction: float = 0.3
    popularity_skew: float = 1.0
    dirty_rows: float = 0.002
    seed: int = 0


@dataclass
class World:
    """The generated frames and the hidden truth behind them."""

    events: pd.DataFrame
    items: pd.DataFrame
    users: pd.DataFrame
    item_latent: np.ndarray
    user_taste: np.ndarray


def _softmax_rows(x: np.ndarray) -> np.ndarray:
    x = x - x.max(axis=1, keepdims=True)
    e = np.exp(x)
    return e / e.sum(axis=1, keepdims=True)


def generate_world(config: WorldConfig | None = None) -> World:
    """Draw a world: users, items and their event log (raw frames, string ids)."""
    c = config or WorldConfig()
    rng = np.random.default_rng(c.seed)
    d = min(c.dim, len(TRAIT_WORDS))
    day = 86400.0
    t0 = 1_700_000_000.0

    # Items: category centres + noise; brands with quality; long-tail popularity.
    n_cat = len(CATEGORIES)
    centres = rng.normal(0, 1, (n_cat, d))
    cat_p = 1 / np.arange(1, n_cat + 1) ** 0.6
    cat = rng.choice(n_cat, size=c.n_items, p=cat_p / cat_p.sum())
    item_latent = centres[cat] + 0.7 * rng.normal(0, 1, (c.n_items, d))  # (I, d)
    brand = rng.integers(0, c.n_brands, c.n_items)
    brand_quality = rng.normal(0, 0.5, c.n_brands)
    popularity = c.popularity_skew * rng.standard_normal(c.n_items) * 1.2
    price = np.round(np.exp(rng.normal(3.0 + 0.3 * item_latent[:, 0], 0.5)), 2)
    late_item = rng.random(c.n_items) < c.late_fraction
    release = np.where(late_item, rng.uniform(0.1, 0.9, c.n_items) * c.days * day, 0.0)

    # Text: the category noun and words for the item's strongest latent traits.
    nouns = np.array([CATEGORIES[k][1][rng.integers(0, 5)] for k in cat], dtype=object)
    top = np.argsort(-np.abs(item_latent), axis=1)[:, :3]
    words = []
    for i in range(c.n_items):  # text assembly only; the log itself is vectorised
        w = []
        for j in top[i]:
            hi, lo = TRAIT_WORDS[j]
            pool = hi if item_latent[i, j] > 0 else lo
            w.append(pool[rng.integers(0, len(pool))])
        words.append(w)
    brands = np.array([f"Brand{b:02d}" for b in brand], dtype=object)
    titles = [f"{brands[i]} {words[i][0]} {nouns[i]}" for i in range(c.n_items)]
    descriptions = [
        f"A {words[i][1]}, {words[i][2]} {nouns[i]} for {CATEGORIES[cat[i]][0]} lovers."
        for i in range(c.n_items)
    ]
    item_ids = np.array([f"i{i:05d}" for i in range(c.n_items)], dtype=object)
    items = pd.DataFrame(
        {
            "item": item_ids,
            "title": titles,
            "description": descriptions,
            "category": [CATEGORIES[k][0] for k in cat],
            "brand": brands,
            "price": price,
            "released": t0 + release,
        }
    )

    # Users: demographics shift the taste, the rest is personal.
    age = rng.integers(0, len(AGE_BANDS), c.n_users)
    gender = rng.integers(0, 2, c.n_users)
    region = rng.integers(0, len(REGIONS), c.n_users)
    age_vec = rng.normal(0, 0.8, (len(AGE_BANDS), d))
    gender_vec = rng.normal(0, 0.8, (2, d))
    taste = age_vec[age] + gender_vec[gender] + 0.8 * rng.normal(0, 1, (c.n_users, d))  # (U, d)
    late_user = rng.random(c.n_users) < c.late_fraction
    signup = np.where(late_user, rng.uniform(0.1, 0.9, c.n_users) * c.days * day, 0.0)
    user_ids = np.array([f"u{u:05d}" for u in range(c.n_users)], dtype=object)
    users = pd.DataFrame(
        {
            "user": user_ids,
            "age_band": np.array(AGE_BANDS)[age],
            "gender": np.array(["F", "M"])[gender],
            "region": np.array(REGIONS)[region],
        }
    )

    # Views: inverse-CDF draws from each user's softmax, all users at once.
    affinity = (taste @ item_latent.T) / np.sqrt(d)  # (U, I)
    probs = _softmax_rows(affinity + popularity[None, :])
    n_views = np.maximum(1, rng.lognormal(np.log(c.views_per_user) - 0.5, 1.0, c.n_users).astype(int))
    ev_user = np.repeat(np.arange(c.n_users), n_views)
    cdf = np.cumsum(probs, axis=1)
    cdf[:, -1] = 1.0
    flat = (cdf + np.arange(c.n_users)[:, None]).ravel()
    ev_item = np.searchsorted(flat, ev_user + rng.random(len(ev_user))) - ev_user * c.n_items
    ev_item = np.clip(ev_item, 0, c.n_items - 1)
    start = np.maximum(signup[ev_user], release[ev_item])
    ev_time = start + rng.random(len(ev_user)) * (c.days * day - start)

    # Funnel: cart, purchase and rating grow with affinity (and brand quality).
    a = affinity[ev_user, ev_item]
    q = brand_quality[brand[ev_item]]
    cart = rng.random(len(a)) < 1 / (1 + np.exp(-(1.5 * a - 2.0)))
    buy = cart & (rng.random(len(a)) < 1 / (1 + np.exp(-(a + q - 0.3))))
    rate = buy & (rng.random(len(a)) < 0.6)
    stars = np.clip(np.round(3.2 + 1.0 * a + q + rng.normal(0, 0.6, len(a))), 1, 5)
    gap = rng.exponential(600.0, len(a))
    frames = [pd.DataFrame({"u": ev_user, "i": ev_item, "event": "view", "value": 1.0, "t": ev_time})]
    for name, mask, dt, val in (
        ("cart", cart, gap, 1.0),
        ("purchase", buy, 2 * gap, 1.0),
        ("rating", rate, 2 * gap + 3 * day * rng.random(len(a)), stars),
    ):
        v = val[mask] if isinstance(val, np.ndarray) else val
        frames.append(
            pd.DataFrame({"u": ev_user[mask], "i": ev_item[mask], "event": name, "value": v, "t": ev_time[mask] + dt[mask]})
        )
    log = pd.concat(frames, ignore_index=True).sort_values("t", kind="stable").reset_index(drop=True)
    events = pd.DataFrame(
        {
            "user": user_ids[log["u"]],
            "item": item_ids[log["i"]],
            "event": log["event"].to_numpy(),
            "value": log["value"].to_numpy(),
            "timestamp": np.round(log["t"].to_numpy() + t0).astype(np.int64).astype(str),
        }
    )
    if c.dirty_rows > 0:
        n_dirty = max(1, int(len(events) * c.dirty_rows))
        dup = events.sample(n=n_dirty, random_state=c.seed)
        bad = events.sample(n=max(1, n_dirty // 4), random_state=c.seed + 1).assign(timestamp="not-a-time")
        events = pd.concat([events, dup, bad], ignore_index=True)
    return World(events=events, items=items, users=users, item_latent=item_latent, user_taste=taste)


def make_world(config: WorldConfig | None = None) -> Dataset:
    """A cleaned :class:`Dataset` of a synthetic world (same cleaning path as the readers)."""
    w = generate_world(config)
    raw = w.events.assign(_row=np.arange(2, len(w.events) + 2))
    return build_dataset(
        raw, source="synthetic:events.csv", items=w.items.set_index("item"),
        users=w.users.set_index("user"), name="synthetic", text_fields=("title", "description"),
        value_range=(1, 5),
    )  # fmt: skip


def write_world(path: str | os.PathLike, config: WorldConfig | None = None) -> Path:
    """Write ``events.csv``, ``items.csv`` and ``users.csv`` (read back by ``--format synthetic``)
    into the directory ``path``. An earlier world's files there are replaced; any other file of
    those names is not (a ConfigError: before, ``metarec data synth --out`` overwrote a user's
    own ``events.csv``)."""
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out}: a file is there, and a synthetic world is a directory; give another output path")
    w = generate_world(config)
    frames = {"events.csv": w.events, "items.csv": w.items, "users.csv": w.users}
    for name, frame in frames.items():
        file = out / name
        if file.exists():
            with open(file, encoding="utf-8", errors="replace") as f:
                header = f.readline().rstrip("\r\n")
            if header != ",".join(frame.columns):
                raise ConfigError(f"{file}: not a synthetic world's {name} (its header is {header[:80]!r}), "
                                  "so it will not be overwritten; give another output directory")  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    for name, frame in frames.items():
        frame.to_csv(out / name, index=False)
    return out
