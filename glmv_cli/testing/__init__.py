"""Fixtures for tests and benchmarks: tiny GLM-4V models and packs built in memory.

Nothing under ``glmv_cli/stages`` imports this package. It ships with glmv so that the benchmarks
in ``benchmarks/`` and users' own tests can build the same tiny models the suite uses.
"""
