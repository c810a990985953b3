"""Closing a client connection without sending an HTTP response (the `drop` fault).

WSGI has no portable way to do this, but both servers the simulator runs under put the client
socket in the environ: werkzeug's dev server as `werkzeug.socket`, gunicorn (sync and gthread)
as `gunicorn.socket`. Shutting it down makes the client see the connection end with no status
line; the server's own later write then fails with EPIPE, which both servers ignore quietly.
Exiting the process or raising would take down other requests or produce a 500 instead.
"""

from __future__ import annotations

import socket
from typing import Any, Mapping

_SOCKET_KEYS = ("werkzeug.socket", "gunicorn.socket")


def drop_connection(environ: Mapping[str, Any]) -> bool:
    """Shut the request's socket down; False when the server does not expose it."""
    for key in _SOCKET_KEYS:
        sock = environ.get(key)
        if isinstance(sock, socket.socket):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # the client is already gone, which is the outcome we wanted
            return True
    return False
