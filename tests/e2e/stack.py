"""Moved to `harness.stack` (shared with the benchmarks); kept so older imports still work."""
from harness.stack import *  # noqa: F401,F403
from harness.stack import BIN, ROOT, Proc, Stack, new_workdir, remove_workdir, wait_for  # noqa: F401
