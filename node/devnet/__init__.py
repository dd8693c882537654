"""Local consortia for demos, tests and benchmarks: `init` provisioning, `localnet`, `demo` and
the consortium benchmark.
"""
