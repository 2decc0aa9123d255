"""Benchmarks that are run by hand (not part of the test suite)."""
