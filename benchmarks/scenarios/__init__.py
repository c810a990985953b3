"""The scenarios of `benchmarks.run`, one module each; each is a mixin of `benchmarks.plumbing.BenchBase`."""
