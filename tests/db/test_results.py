"""Membership ids: time-ordered, and never the same twice, even for results written in the same millisecond."""

from __future__ import annotations

import uuid

import numpy as np

from cluster_workers.db.results import time_ordered_ids


def test_batches_in_the_same_millisecond_never_collide():
    """One commit writes one batch per model, often in the same millisecond (the bug CI caught: 12 random bits)."""
    batches = [time_ordered_ids(50, 1764100000.123) for _ in range(2000)]
    ids = np.vstack(batches)
    assert len({row.tobytes() for row in ids}) == ids.shape[0]


def test_ids_are_version_7_and_increase_within_a_batch():
    ids = [uuid.UUID(bytes=row.tobytes()) for row in time_ordered_ids(1000, 1764100000.5)]
    assert all(u.version == 7 and u.variant == uuid.RFC_4122 for u in ids)
    assert ids == sorted(ids) and len(set(ids)) == 1000
    assert all(u.bytes[:6] == int(1764100000.5 * 1000).to_bytes(6, "big") for u in ids)
