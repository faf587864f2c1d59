"""Telling a router port another program holds from a free one."""

from __future__ import annotations

import socket

from edge_core.drivers.zenoh import tcp_port_taken


def test_a_port_another_program_listens_on_is_taken_and_a_free_one_is_not() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        assert tcp_port_taken(port) is True
    assert tcp_port_taken(port) is False
