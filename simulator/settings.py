"""Simulator settings, read from the same environment variables as the real client's
upstream settings so one `.env` drives both sides."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Mapping


@dataclass(frozen=True)
class SimSettings:
    username: str = "ucmha"
    password: str = "ucmha-dev-password"
    client_id: str = "ucmha"
    client_secret: str = "ucmha-dev-client-secret"
    token_ttl_s: float = 3600.0
    refresh_token_ttl_s: float = 30 * 24 * 3600.0
    max_clock_skew_s: float = 300.0
    # Default sleep of a `timeout` fault: longer than any sane client read timeout.
    timeout_fault_sleep_s: float = 30.0
    # Lets benchmarks replay the same `probability` faults; None = unseeded.
    random_seed: int | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "SimSettings":
        env = os.environ if environ is None else environ
        seed = env.get("UCMHA_SIM_SEED")
        return cls(
            username=env.get("UCMHA_UPSTREAM_USERNAME", cls.username),
            password=env.get("UCMHA_UPSTREAM_PASSWORD", cls.password),
            client_id=env.get("UCMHA_UPSTREAM_CLIENT_ID", cls.client_id),
            client_secret=env.get("UCMHA_UPSTREAM_CLIENT_SECRET", cls.client_secret),
            token_ttl_s=float(env.get("UCMHA_SIM_TOKEN_TTL_S", cls.token_ttl_s)),
            refresh_token_ttl_s=float(
                env.get("UCMHA_SIM_REFRESH_TOKEN_TTL_S", cls.refresh_token_ttl_s)
            ),
            max_clock_skew_s=float(env.get("UCMHA_SIM_MAX_CLOCK_SKEW_S", cls.max_clock_skew_s)),
            timeout_fault_sleep_s=float(
                env.get("UCMHA_SIM_TIMEOUT_SLEEP_S", cls.timeout_fault_sleep_s)
            ),
            random_seed=int(seed) if seed else None,
        )
