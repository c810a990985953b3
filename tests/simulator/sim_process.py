"""Moved to `harness.simulator` (shared with the benchmarks); kept so older imports still work."""
from harness.simulator import *  # noqa: F401,F403
from harness.simulator import (DEFAULT_CREDENTIALS, SERVERS, SimProcess, SimulatorStartError,  # noqa: F401
                               free_port, running_simulator, start_simulator)
