"""Benchmarks (`make bench`): they print tables; they are never timed tests."""
