"""Runs the real ucmha stack as separate processes, for end-to-end tests and benchmarks.

- `harness.stack`: gunicorn API, Celery worker and beat, a Redis of its own, the simulator.
- `harness.simulator`: the upstream simulator as a process, with its `/_sim` controls.
- `harness.webhooks`: signing and building node notifications the way a UCM does.
- `harness.patroni`: PostgreSQL under Patroni (etcd, two members) on free ports.
- `harness.sentinel`: Redis under Sentinel (a master, a replica, three sentinels) on free ports.

Shared by `tests/` and `benchmarks/` so neither imports the other. Production code (`service/`,
`workers/`) never imports it.
"""
