"""Simulated UCM nodes that sign and post real notifications to ucmha (see fleet.py, and
`python -m simulator.fleet --help`)."""
