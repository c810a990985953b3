"""The benchmark's CPU monitor: our processes' time, split by kind of process."""
from __future__ import annotations

import subprocess
import sys

from benchmarks.cpu import CpuMonitor, kind_of


def test_kind_of_names_each_process_of_the_stack():
    assert kind_of("/v/bin/python3 /v/bin/gunicorn --bind 127.0.0.1:1 --workers 2 service.wsgi:create_app()") == "api"
    assert kind_of("/v/bin/gunicorn --bind 127.0.0.1:2 benchmarks.floor_app:create_app()") == "floor_api"
    assert kind_of("/v/bin/gunicorn --bind 127.0.0.1:3 benchmarks.bare_app:create_app()") == "bare_api"
    assert kind_of("postgres: postgres ucmha_bench_1 127.0.0.1(5432) idle") == "postgres"
    assert kind_of("/usr/bin/redis-server 127.0.0.1:6390") == "redis"
    assert kind_of("/v/bin/python3 -m celery -A service.workers.app beat -l info") == "beat"
    assert kind_of("/v/bin/python3 -m celery -A service.workers.app worker -c 8") == "worker"
    assert kind_of("/v/bin/python3 -m simulator.app --port 9") == "simulator"
    assert kind_of("/bin/sleep 5") == "other"


def test_a_busy_child_is_counted_under_its_kind():
    monitor = CpuMonitor(interval_s=0.1).start()
    try:
        with monitor.span("busy"):
            # A child that burns CPU for 0.6 s: the samples taken while it runs (every 0.1 s) put
            # its ticks under "other" (the benchmark process's own go under "client").
            child = subprocess.Popen([sys.executable, "-c",
                                      "import time\nend = time.process_time() + 0.6\n"
                                      "while time.process_time() < end: pass"])
            child.wait(timeout=30)
    finally:
        monitor.stop()
    kinds = monitor.summary()["busy"]["ours_cpu_s"]
    assert kinds.get("other", 0) >= 0.3, kinds
