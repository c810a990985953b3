"""What the webhook intake needs to check a node's signature, cached per process.

A fleet reports every minute; looking the device up (with its plan) and decrypting its secret on
every notification costs a query and a Fernet decryption each time. `WebhookKeys` keeps, per MAC,
the device's id, organization and decrypted secret(s) for a short time.

Semantics (per process; gunicorn workers each have their own cache, nothing is shared):

- Bounded: at most `size` devices, least recently used evicted first. Only devices that exist
  are cached; an unknown MAC is looked up every time, so a device registered in another process
  is usable at once.
- Short-lived: an entry is used for at most `ttl_s` seconds after it was loaded.
- A cached entry vouches for the device's current secret only. A signature it does not verify
  is checked again against a fresh load (see `service.api.webhooks.signing_device`), so:
- Rotation: the process that rotates a secret drops its entry at once (`invalidate`); every
  other process accepts the new secret immediately (its cached entry refuses it, the fresh load
  has it), and judges the previous secret and the end of its overlap from the database, never
  from the cache (a second rotation elsewhere ends the first overlap at once).
- Delete: the deleting process drops its entry at once. Another process may still recognise the
  deleted device's signature for up to `ttl_s`; the notification then reaches the command, which
  finds no device in its own transaction and stores nothing (409 `device_not_paired`, as for any
  device outside a pair: a device can only be deleted once it is in no pair).

The decrypted secrets live only in process memory, never in a repr or a log line.
"""
from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Callable

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from service.models import Device
from service.security import SecretBox


@dataclass(frozen=True)
class WebhookKey:
    """A device as the intake sees it: who it is and the secrets its signatures may use."""

    id: int
    org_id: int
    mac: str
    secret: str = field(repr=False)
    previous_secret: str | None = field(repr=False, default=None)
    previous_valid_until: datetime | None = None
    loaded_at: float = 0.0  # monotonic clock of the load

    def current_only(self) -> "WebhookKey":
        """The same key without its previous secret (what a cached entry may vouch for)."""
        return replace(self, previous_secret=None, previous_valid_until=None)

    def secrets(self, now: datetime) -> list[str]:
        """The current secret, and the previous one while its rotation overlap lasts."""
        out = [self.secret]
        if self.previous_secret and self.previous_valid_until and self.previous_valid_until > now:
            out.append(self.previous_secret)
        return out


# Built once: on a cache miss (a process's first notification from a node, or a fleet larger than
# the cache) the ORM's handling of a statement built per call cost more CPU than the query itself.
_devices = Device.__table__
_KEY_COLUMNS = select(_devices.c.id, _devices.c.org_id, _devices.c.mac, _devices.c.webhook_secret_enc,
                      _devices.c.previous_webhook_secret_enc, _devices.c.previous_secret_valid_until,
                      ).where(_devices.c.mac == bindparam("mac"))


def load_key(session: Session, box: SecretBox, mac: str, loaded_at: float = 0.0) -> WebhookKey | None:
    """One statement: only the columns the signature check needs (not the device's plan)."""
    row = session.connection().execute(_KEY_COLUMNS, {"mac": mac}).first()
    if row is None:
        return None
    return WebhookKey(id=row.id, org_id=row.org_id, mac=row.mac, secret=box.open(row.webhook_secret_enc),
                      previous_secret=box.open(row.previous_webhook_secret_enc)
                      if row.previous_webhook_secret_enc else None,
                      previous_valid_until=row.previous_secret_valid_until, loaded_at=loaded_at)


class WebhookKeys:
    """The per-process cache; thread-safe (gthread workers share it)."""

    def __init__(self, box: SecretBox, *, size: int = 10_000, ttl_s: float = 300.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._box = box
        self._size = size
        self._ttl_s = ttl_s
        self._clock = clock
        self._entries: OrderedDict[str, WebhookKey] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, session: Session, mac: str) -> tuple[WebhookKey | None, bool]:
        """The key for `mac` and whether it came from the cache (False: loaded just now)."""
        if self._size > 0 and self._ttl_s > 0:
            now = self._clock()
            with self._lock:
                key = self._entries.get(mac)
                if key is not None and now - key.loaded_at < self._ttl_s:
                    self._entries.move_to_end(mac)
                    self.hits += 1
                    return key, True
        return self.reload(session, mac), False

    def reload(self, session: Session, mac: str) -> WebhookKey | None:
        """Load from the database, replacing whatever is cached for `mac`."""
        key = load_key(session, self._box, mac, self._clock())
        with self._lock:
            self.misses += 1
            if key is None or self._size <= 0 or self._ttl_s <= 0:
                self._entries.pop(mac, None)
                return key
            self._entries[mac] = key
            self._entries.move_to_end(mac)
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)
        return key

    def invalidate(self, mac: str) -> None:
        with self._lock:
            self._entries.pop(mac, None)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
