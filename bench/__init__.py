"""Benchmarks: each measures Gravix against a reference doing the same job in the same run."""
