"""Three nodes on one PostgreSQL, each a host of its own: placement, a camera moving, a node dying, every event once.

The scenario and what it measures are in ``bench/multinode.py``; these tests
read its result, one promise each.
"""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.multinode, pytest.mark.slow]

MOVE_WITHIN_S = 5.0
FULL_RATE = 0.8
"""A surviving node keeps at least this share of cameras x fps (a loaded 2-core machine skips a few frames)."""


def test_the_database_answers_only_on_its_veth_address(scenario):
    assert all(scenario.database_from_root.values()), \
        f"PostgreSQL answered from the root namespace: {scenario.database_from_root}"


def test_each_node_serves_exactly_its_cameras(scenario):
    assert scenario.served == scenario.assigned


def test_each_node_has_its_own_shared_memory(scenario):
    assert scenario.rings["root"] == set(), "a ring is in the machine's /dev/shm"
    assert {host: rings for host, rings in scenario.rings.items() if host != "root"} == scenario.assigned


def test_each_node_has_its_own_socket_directory(scenario):
    assert scenario.sockets["root"] == set(), "a model socket is in the machine's socket directory"
    for host, names in scenario.sockets.items():
        if host != "root":
            assert any(name.endswith(".sock") for name in names), (host, scenario.sockets)


def test_a_moved_camera_is_served_by_its_new_node_within_seconds(scenario):
    move = scenario.move
    assert 0 < move.first_new_s < MOVE_WITHIN_S, move
    assert move.last_old_s < MOVE_WITHIN_S, move
    assert not move.still_on_source, move


def test_killing_a_node_leaves_the_others_at_full_rate(scenario):
    for node, expected in scenario.expected_rates_after.items():
        assert scenario.rates_before[node] >= FULL_RATE * expected, (node, scenario.rates_before)
        assert scenario.rates_after[node] >= FULL_RATE * expected, (node, scenario.rates_after)
    assert scenario.killed_events_after == 0


def test_every_event_lands_exactly_once(scenario):
    assert scenario.survivors_in_database == scenario.survivors_written > 0
    for node, counts in scenario.sink_counts.items():
        assert counts["offered"] == counts["written"], (node, counts)
        assert counts["duplicates"] == counts["dropped"] == counts["rejected"] == 0, (node, counts)
