"""A rotated signing secret: the new one, shown once, and the old one still counting for the overlap."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from service.security import SecretBox, new_webhook_secret

from .context import CommandContext


@dataclass(frozen=True)
class RotatedSecret:
    secret: str  # the new secret, answered once and never stored in the clear
    sealed: str  # its encrypted form, the one stored
    previous_valid_until: datetime  # the old secret keeps counting until then


def rotated_secret(ctx: CommandContext) -> RotatedSecret:
    secret = new_webhook_secret()
    return RotatedSecret(secret, SecretBox(ctx.settings.encryption_key).seal(secret),
                         ctx.now() + timedelta(seconds=ctx.settings.secret_rotation_overlap_s))
