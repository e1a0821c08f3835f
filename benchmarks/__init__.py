"""Benchmarks: what hardening costs, measured on live containers (`bash scripts/benchmark`)."""
