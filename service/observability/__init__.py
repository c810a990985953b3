"""Observability: structured JSON logs, Prometheus metrics and rate limiting.

- `context`   — the log context (request_id, pair_id, event_id, task_id, ...) kept in a contextvar.
- `logging`   — `configure_logging(settings)`: one JSON handler on the root logger, with the context
                 filter and the secret redaction filter. Used by the API and the Celery workers.
- `metrics`   — the metric objects (prometheus-client), the scrape-time database collector and the
                 scrape registry (multiprocess when `PROMETHEUS_MULTIPROC_DIR` is set).
- `web`       — the Flask side: request id, one access log line per request, HTTP/webhook/claim
                 metrics and the `/metrics` endpoint.
- `ratelimit` — Flask-Limiter on Redis (`settings.redis_url`, memory:// without it): the admin API per
                 token, node webhooks per MAC, native alerts per alert token.

Nothing here reads the environment except `metrics` (prometheus-client decides multiprocess mode from
`PROMETHEUS_MULTIPROC_DIR`, which has to be set before the first metric is created).
"""
