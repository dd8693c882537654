"""The consensus core: the sans-I/O PBFT replica (events in, actions out; no asyncio, clock,
randomness or I/O), its signed messages, and the offline-checkable evidence of equivocation.
Imports chain/ and this package only; tests/unit/test_layers.py enforces it.
"""
