"""kombu's Redis transports, with a channel that can still reach the broker after its Connection
let go of it, so a broker restart cannot kill the worker (docs/decisions.md, "The worker and its
broker").

When the consumer loses the broker, Celery collects the broken Connection (which detaches the
transport: `transport.client = None`) and then closes it, which closes the default channel a
second time. If the first close stopped early (its pending BRPOP read raised), the second one
restores the channel's unacknowledged messages (a late-acknowledged task still running, or one
whose ack just failed) through a new connection pool, whose parameters kombu reads from
`transport.client`: AttributeError, which nothing catches, and the worker exits with
"Unrecoverable error". These channels keep the Connection they were opened with and lend it to
the transport while they build a pool, so that restore reaches the broker, or fails with a
connection error kombu ignores while closing (the messages then stay in Redis's unacked index,
redelivered after the visibility timeout; the sweeper re-sends owed work sooner).

Used by the worker's Celery app through Celery's `broker_transport` setting (`transport_for`).
"""
from __future__ import annotations

from typing import Any

from kombu.transport import redis as kombu_redis

__all__ = ["Channel", "SentinelChannel", "SentinelTransport", "Transport", "transport_for"]


class _KeepsItsConnection:
    """Mixed into a kombu Redis channel (before it in the bases)."""

    def __init__(self, connection: Any, *args: Any, **kwargs: Any) -> None:
        # `connection` is the transport; its `client` the kombu Connection the channel belongs to.
        self._opened_by = connection.client
        super().__init__(connection, *args, **kwargs)  # type: ignore[call-arg]

    def _get_pool(self, asynchronous: bool = False) -> Any:
        transport = self.connection  # type: ignore[attr-defined]
        if transport is None or transport.client is not None or self._opened_by is None:
            return super()._get_pool(asynchronous=asynchronous)  # type: ignore[misc]
        transport.client = self._opened_by  # detached by Connection.collect(): lend it back
        try:
            return super()._get_pool(asynchronous=asynchronous)  # type: ignore[misc]
        finally:
            transport.client = None


class Channel(_KeepsItsConnection, kombu_redis.Channel):
    pass


class SentinelChannel(_KeepsItsConnection, kombu_redis.SentinelChannel):
    pass


class Transport(kombu_redis.Transport):
    Channel = Channel


class SentinelTransport(kombu_redis.SentinelTransport):
    Channel = SentinelChannel


_BY_SCHEME = {
    "redis": f"{__name__}:Transport",
    "rediss": f"{__name__}:Transport",
    "sentinel": f"{__name__}:SentinelTransport",
}


def transport_for(broker_url: str) -> str | None:
    """The `broker_transport` for a broker URL whose kombu transport this module fixes, else None."""
    scheme = broker_url.split(";", 1)[0].split("://", 1)[0].strip().lower()
    return _BY_SCHEME.get(scheme)
