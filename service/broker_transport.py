"""kombu's Redis transports, with a channel that can still reach the broker after its Connection
let go of it, so a broker restart cannot kill the worker or turn an accepted notification's
answer into a 500 (docs/decisions.md, "The worker and its broker").

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

A channel that was closed under its producer (kombu's close detaches it from its transport:
`channel.connection = None`) raises AttributeError on the next publish, which kombu's retry does
not catch: seen in the API as a 500 after a notification had been committed, while Redis
restarted. These channels raise Redis's ConnectionError instead, which kombu's `ensure` answers by
reconnecting and publishing again, and which the command context treats as a broker that is down.

Used by the worker's Celery app and the API's publisher through Celery's `broker_transport`
setting (`broker_for`).
"""
from __future__ import annotations

from typing import Any

from kombu.transport import redis as kombu_redis
from kombu.transport import sqlalchemy as kombu_sqla
from redis.exceptions import ConnectionError as RedisConnectionError

__all__ = ["Channel", "EmbeddedTransport", "SentinelChannel", "SentinelTransport", "Transport", "broker_for"]


class _KeepsItsConnection:
    """Mixed into a kombu Redis channel (before it in the bases)."""

    # The channel's client for single commands (a publish, an ack), with the pool it was built on.
    _kept_client: tuple[Any, Any] | None = None

    def __init__(self, connection: Any, *args: Any, **kwargs: Any) -> None:
        # `connection` is the transport; its `client` the kombu Connection the channel belongs to.
        self._opened_by = connection.client
        super().__init__(connection, *args, **kwargs)  # type: ignore[call-arg]

    def _create_client(self, asynchronous: bool = False) -> Any:
        """kombu builds a new redis.Redis for every command it sends outside its event loop (every
        publish): a client holds nothing but its pool, yet building one copies some 170 response
        callbacks, a quarter of a publish's CPU. This one is kept until the channel's pool changes
        (a reconnection builds a new pool). The event loop's client (`asynchronous`) is kombu's."""
        if asynchronous:
            return super()._create_client(asynchronous=True)  # type: ignore[misc]
        pool = self.pool  # type: ignore[attr-defined]
        kept = self._kept_client
        if kept is None or kept[0] is not pool:
            kept = self._kept_client = (pool, super()._create_client())  # type: ignore[misc]
        return kept[1]

    def _get_pool(self, asynchronous: bool = False) -> Any:
        transport = self.connection  # type: ignore[attr-defined]
        if transport is None:  # closed: kombu reconnects on a connection error, not on AttributeError
            raise RedisConnectionError("the broker channel is closed")
        if transport.client is not None or self._opened_by is None:
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


class EmbeddedTransport(kombu_sqla.Transport):
    """kombu's SQLAlchemy transport (the embedded SQLite broker), each wait for messages at most
    half a second. Celery's loop for a transport without an event loop waits 2 s per cycle and,
    once asked to stop, runs one more cycle before it stops: up to 4 s before a stop begins,
    most of the 5 s `dev.py` allows. Shorter waits only mean more cycles of that loop."""

    polling_interval = 0.25
    max_drain_s = 0.5

    def drain_events(self, connection: Any, timeout: float | None = None) -> Any:
        if timeout is not None:  # None: block until a message comes, as asked
            timeout = min(timeout, self.max_drain_s)
        return super().drain_events(connection, timeout=timeout)


_REDIS = {"redis": "Transport", "rediss": "Transport", "sentinel": "SentinelTransport"}
_EMBEDDED_PREFIX = "sqla+"


def broker_for(broker_url: str) -> tuple[str, str | None]:
    """(the URL for Celery's `broker_url`, its `broker_transport` or None for kombu's own) of a
    Celery app (the worker's, the API's publisher), for the brokers whose transport this replaces."""
    scheme = broker_url.split(";", 1)[0].split("://", 1)[0].strip().lower()
    if scheme in _REDIS:
        return broker_url, f"{__name__}:{_REDIS[scheme]}"
    if broker_url.startswith(_EMBEDDED_PREFIX):
        # kombu reads "sqla+" as the transport's name, which would win over `broker_transport`.
        return broker_url[len(_EMBEDDED_PREFIX):], f"{__name__}:EmbeddedTransport"
    return broker_url, None
