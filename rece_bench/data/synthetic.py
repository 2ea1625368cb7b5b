"""The embedded default dataset: users walking a sparse item graph, with Zipf-like popularity.

Why this shape: a sequential model must be able to beat a popularity ranking by a wide margin, and the full-ranking
protocol excludes items a user has already seen, so a walk should rarely come back to an item. Items sit on a ring
(a random order); each item has a few successors a short way ahead on the ring, with fixed preferences, and a user
follows a successor with probability ``follow_prob`` or else jumps to an item drawn by Zipf popularity. The walk
moves forward along the ring, so revisits are rare, and what comes next is predictable from what came last.

Sizes can be set to a paper dataset's users, items and interactions for memory benchmarks with no download.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

N_SUCCESSORS = 4
SUCCESSOR_PROBS = np.array([0.5, 0.25, 0.15, 0.10])
MAX_STEP_AHEAD = 16  # successors sit 1..16 places ahead on the ring
ZIPF_EXPONENT = 1.0
MIN_SEQUENCE = 3  # the temporal split needs three evaluation interactions
MEAN_GAP_S = 86_400.0  # one day between a user's interactions, on average
TIME_SPAN_S = 3 * 365 * 86_400  # users start within three years


def generate_synthetic(
    users: int, items: int, interactions: int, seed: int = 0, follow_prob: float = 0.85
) -> pd.DataFrame:
    """Interactions (``user``, ``item``, ``timestamp``; int64) of ``users`` walks, deterministic per seed."""
    _check_sizes(users, items, interactions, follow_prob)
    rng = np.random.default_rng(seed)
    popularity = _zipf_popularity(items, rng)
    ring_order, successors = _item_graph(items, rng)
    lengths = _sequence_lengths(users, interactions, rng)
    items_flat, jumped = _walk(lengths, popularity, ring_order, successors, follow_prob, rng)
    _cover_catalogue(items_flat, jumped, items, rng)
    user_flat = np.repeat(np.arange(users, dtype=np.int64), lengths)
    timestamps = _timestamps(lengths, rng)
    return pd.DataFrame({"user": user_flat, "item": items_flat, "timestamp": timestamps})


def _check_sizes(users: int, items: int, interactions: int, follow_prob: float) -> None:
    from rece_bench.errors import UserError

    if users < 1:
        raise UserError(f"users must be >= 1, got {users}: pass a positive --users")
    if items < N_SUCCESSORS + 1:
        raise UserError(f"items must be >= {N_SUCCESSORS + 1}, got {items}: pass a larger --items")
    if interactions < MIN_SEQUENCE * users:
        raise UserError(
            f"interactions must be >= {MIN_SEQUENCE} x users = {MIN_SEQUENCE * users}, got {interactions}: "
            "pass a larger --interactions or fewer --users"
        )
    if not 0.0 <= follow_prob <= 1.0:
        raise UserError(f"follow_prob must be in [0, 1], got {follow_prob}")


def _zipf_popularity(items: int, rng: np.random.Generator) -> np.ndarray:
    """(C,) probabilities: Zipf over a random ranking of the items."""
    weights = 1.0 / np.arange(1, items + 1, dtype=np.float64) ** ZIPF_EXPONENT
    popularity = np.empty(items)
    popularity[rng.permutation(items)] = weights / weights.sum()
    return popularity


def _item_graph(items: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A ring order of the items and (C, N_SUCCESSORS) successors of each item, a few places ahead on the ring."""
    ring_order = rng.permutation(items)  # ring position -> item
    ring_position = np.empty(items, dtype=np.int64)
    ring_position[ring_order] = np.arange(items)
    # Distinct steps ahead per item: the first N_SUCCESSORS of a random permutation of 1..MAX_STEP_AHEAD.
    max_ahead = min(MAX_STEP_AHEAD, items - 1)
    steps = np.argsort(rng.random((items, max_ahead)), axis=1)[:, :N_SUCCESSORS] + 1  # (C, S)
    successors = ring_order[(ring_position[:, None] + steps) % items]  # (C, S) item ids
    return ring_order, successors


def _sequence_lengths(users: int, interactions: int, rng: np.random.Generator) -> np.ndarray:
    """(U,) lengths >= MIN_SEQUENCE, long-tailed, summing to exactly ``interactions``."""
    raw = rng.lognormal(mean=0.0, sigma=0.8, size=users)
    spare = interactions - MIN_SEQUENCE * users
    lengths = MIN_SEQUENCE + np.floor(raw / raw.sum() * spare).astype(np.int64)
    shortfall = interactions - int(lengths.sum())  # floor() loses less than one per user: 0 <= shortfall < U
    lengths[rng.choice(users, size=shortfall, replace=False)] += 1
    return lengths


def _walk(
    lengths: np.ndarray,
    popularity: np.ndarray,
    ring_order: np.ndarray,
    successors: np.ndarray,
    follow_prob: float,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Flat item ids of every user's walk, users one after another, and which rows were random jumps.

    Vectorised over users per step; each walk starts at a uniform point of the ring, so the walks spread over the
    whole catalogue.
    """
    users = len(lengths)
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    out = np.empty(int(lengths.sum()), dtype=np.int64)
    jumped = np.zeros(len(out), dtype=bool)
    current = ring_order[rng.integers(0, len(ring_order), size=users)]
    for step in range(int(lengths.max())):
        active = np.flatnonzero(lengths > step)  # users whose walk is still going
        rows = offsets[active] + step
        if step > 0:
            current[active], jumped[rows] = _next_items(current[active], popularity, successors, follow_prob, rng)
        out[rows] = current[active]
    return out, jumped


def _next_items(
    current: np.ndarray,
    popularity: np.ndarray,
    successors: np.ndarray,
    follow_prob: float,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    choice = rng.choice(N_SUCCESSORS, size=len(current), p=SUCCESSOR_PROBS)
    followed = successors[current, choice]  # (A,)
    jumped = rng.choice(len(popularity), size=len(current), p=popularity)
    jump = rng.random(len(current)) >= follow_prob
    return np.where(jump, jumped, followed), jump


def _cover_catalogue(items_flat: np.ndarray, jumped: np.ndarray, items: int, rng: np.random.Generator) -> None:
    """Give every item at least one interaction, so that the catalogue has exactly ``items`` items.

    Items no walk reached replace random jumps (which carry no sequential signal anyway), in place. Where there
    are fewer jumps than missing items (tiny data with little noise), the catalogue stays smaller.
    """
    for _ in range(8):  # an overwritten jump may have held an item's only row: a few passes settle it
        missing = np.setdiff1d(np.arange(items), items_flat)
        counts = np.bincount(items_flat, minlength=items)
        slots = np.flatnonzero(jumped & (counts[items_flat] > 1))
        take = min(len(missing), len(slots))
        if take == 0:
            return
        chosen = rng.choice(slots, size=take, replace=False)
        items_flat[chosen] = missing[:take]
        jumped[chosen] = False


def _timestamps(lengths: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Increasing times within each user; users start at random points of the span."""
    starts = rng.integers(0, TIME_SPAN_S, size=len(lengths))
    gaps = rng.exponential(MEAN_GAP_S, size=int(lengths.sum())) + 1.0
    user_of_row = np.repeat(np.arange(len(lengths)), lengths)
    cumulative = np.cumsum(gaps)
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    first_cum = cumulative[offsets] - gaps[offsets]  # cumulative gap before each user's first row
    return (starts[user_of_row] + cumulative - first_cum[user_of_row]).astype(np.int64)
