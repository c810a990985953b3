"""Benchmarks of the real stack; run `python -m benchmarks.run [--quick]` (see docs/benchmarks.md)."""
