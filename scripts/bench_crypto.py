"""Ed25519 sign/verify cost with PyNaCl (libsodium) and with `cryptography` (OpenSSL), on this machine.

The figures chose chain/crypto.py's library (docs/performance.md). Run:

    python scripts/bench_crypto.py [--n 20000] [--json-out FILE]

Needs both libraries: `pip install -e '.[bench]'`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable

MESSAGE = os.urandom(200)  # about the size of a canonical tx body


def per_second(fn: Callable[[], object], n: int) -> tuple[float, float]:
    """Best of 3 runs of n calls: (µs per call, calls per second)."""
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, time.perf_counter() - t0)
    return best / n * 1e6, n / best


def bench_pynacl(n: int) -> dict[str, float]:
    import nacl.signing

    sk = nacl.signing.SigningKey(os.urandom(32))
    vk = sk.verify_key
    sig = sk.sign(MESSAGE).signature
    sign_us, sign_s = per_second(lambda: sk.sign(MESSAGE), n)
    # verify from the raw public key each time, as the node does for an unseen signer
    raw = vk.encode()
    verify_us, verify_s = per_second(lambda: nacl.signing.VerifyKey(raw).verify(MESSAGE, sig), n)
    return {"sign_us": sign_us, "sign_per_s": sign_s, "verify_us": verify_us, "verify_per_s": verify_s}


def bench_cryptography(n: int) -> dict[str, float]:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    sk = Ed25519PrivateKey.generate()
    raw = sk.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    sig = sk.sign(MESSAGE)
    sign_us, sign_s = per_second(lambda: sk.sign(MESSAGE), n)
    verify_us, verify_s = per_second(lambda: Ed25519PublicKey.from_public_bytes(raw).verify(sig, MESSAGE), n)
    return {"sign_us": sign_us, "sign_per_s": sign_s, "verify_us": verify_us, "verify_per_s": verify_s}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=20_000, help="calls per timed run (best of 3)")
    parser.add_argument("--json-out", help="also write the figures as JSON here")
    a = parser.parse_args()
    results = {}
    for name, fn in (("pynacl", bench_pynacl), ("cryptography", bench_cryptography)):
        try:
            results[name] = fn(a.n)
        except ImportError as e:
            print(f"{name}: not installed ({e}); pip install -e '.[bench]'", file=sys.stderr)
            return 2
    print(f"{'library':<14}{'verify µs':>11}{'verify/s':>11}{'sign µs':>10}{'sign/s':>10}")
    for name, r in results.items():
        print(f"{name:<14}{r['verify_us']:>11.1f}{r['verify_per_s']:>11,.0f}{r['sign_us']:>10.1f}{r['sign_per_s']:>10,.0f}")
    if a.json_out:
        with open(a.json_out, "w") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
