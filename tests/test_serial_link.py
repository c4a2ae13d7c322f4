"""drivers.serial_link: what the link does with the port when the line goes away."""
from __future__ import annotations

import socket
import struct

import pytest

from drivers.serial_link import LinkDown, SerialLink


def test_a_socket_port_reset_by_the_far_end_is_closed_not_left_to_the_garbage_collector():
    # pyserial's socket backend skips socket.close() when shutdown() fails, which it does on a
    # connection the far end has reset: every unplug of a socket:// reader leaked one fd.
    with socket.create_server(("127.0.0.1", 0)) as server:
        link = SerialLink(f"socket://127.0.0.1:{server.getsockname()[1]}")
        link.open()
        sock = link._port._socket
        conn, _ = server.accept()
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.close()  # linger 0: the far end answers with RST
        with pytest.raises(LinkDown, match="I/O error"):
            for _ in range(100):  # the reset reaches the port within a read or two
                link.read(16, 0.05)
        assert not link.is_open
        assert sock.fileno() == -1


def test_closing_a_link_that_never_opened_is_harmless():
    link = SerialLink("/nonexistent/ttyX")
    link.close()
    assert not link.is_open
