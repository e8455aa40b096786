"""launch/replica_routes.assign: which front-proxy slot routes to which router replica port."""

from __future__ import annotations

from lookalike.launch.replica_routes import assign


def test_new_ports_fill_the_first_free_slots() -> None:
    assert assign([None, None, None], [30001, 30000]) == [30001, 30000, None]


def test_a_port_keeps_its_slot_while_others_come_and_go() -> None:
    assert assign([30000, 30001, None], [30001, 30002]) == [30002, 30001, None]
    assert assign([None, 30001, None], [30001, 30000]) == [30000, 30001, None]


def test_no_ports_frees_every_slot() -> None:
    assert assign([30000, 30001], []) == [None, None]


def test_ports_beyond_the_slots_get_none_and_a_port_is_routed_once() -> None:
    assert assign([None, None], [30000, 30000, 30001, 30002]) == [30000, 30001]
