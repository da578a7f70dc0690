"""Benchmarks (entry-point level: they may read the clock); ``routing_bench`` times the router."""
