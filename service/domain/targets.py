"""The upstream services a pair's Active is pointed at: one outbox row per pair and target."""

SYNC_TARGETS: tuple[str, ...] = ("remote_connect", "cloud_im")
