"""Ed25519 keys, key files and domain-separated signatures (docs/protocol.md, "Keys" and "Signing domains").

The only module that imports a crypto library. PyNaCl (libsodium) verifies in about half the
time of `cryptography` on this machine (docs/performance.md), and verification is the
consortium's hottest loop, so it is the one used.

Every signature is made over `domain + message`, and each purpose has its own domain, so a
signature made for one purpose can never be replayed as another.
"""

from __future__ import annotations

import enum
import json
import os
import stat
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import nacl.exceptions
import nacl.signing

from chain.encoding import is_hex
from chain.errors import ChainError


class Domain(bytes, enum.Enum):
    TX = b"titlechain/tx/v1\n"
    # v2: the signed commit names its view (docs/protocol.md, "Commit certificates"); a v1
    # signature can never pass for a v2 one, so an old vote cannot be mixed into a new certificate
    COMMIT = b"titlechain/commit/v2\n"
    CONSENSUS = b"titlechain/consensus/v1\n"
    HANDSHAKE = b"titlechain/handshake/v1\n"
    # an institution's request to join a consortium's genesis (chain/ceremony.py), signed by its
    # account key and by its validator node key; nothing else is ever signed under this domain
    MEMBERSHIP = b"titlechain/membership/v1\n"


class KeyFileError(ChainError, ValueError):
    """A key or key file is malformed or unreadable."""




@dataclass(frozen=True)
class KeyPair:
    seed: bytes = field(repr=False)
    public: str  # the account: lowercase hex of the 32-byte public key

    @classmethod
    def from_seed(cls, seed: bytes) -> KeyPair:
        if len(seed) != 32:
            raise KeyFileError("an Ed25519 seed is 32 bytes")
        sk = nacl.signing.SigningKey(seed)
        return cls(seed=seed, public=sk.verify_key.encode().hex())

    @classmethod
    def generate(cls) -> KeyPair:
        return cls.from_seed(os.urandom(32))

    def sign(self, domain: Domain, message: bytes) -> str:
        return _signing_key(self.seed).sign(domain.value + message).signature.hex()


@lru_cache(maxsize=4096)
def _signing_key(seed: bytes) -> nacl.signing.SigningKey:
    return nacl.signing.SigningKey(seed)


@lru_cache(maxsize=65536)
def _verify_key(public: str) -> nacl.signing.VerifyKey | None:
    try:
        return nacl.signing.VerifyKey(bytes.fromhex(public))
    except (ValueError, nacl.exceptions.CryptoError):
        return None


def verify(public: str, domain: Domain, message: bytes, sig: str) -> bool:
    """True iff sig (128 hex) is public's (64 hex) signature over domain + message."""
    if not (is_hex(public, 32) and is_hex(sig, 64)):
        return False
    vk = _verify_key(public)
    if vk is None:
        return False
    try:
        vk.verify(domain.value + message, bytes.fromhex(sig))
    except nacl.exceptions.BadSignatureError:
        return False
    return True


def is_account(s: object) -> bool:
    """An account is the lowercase hex of a 32-byte Ed25519 public key."""
    return is_hex(s, 32)


def write_key_file(path: str | Path, key: KeyPair, *, overwrite: bool = False) -> None:
    """Write a key file (docs/protocol.md, "Keys") with mode 0600; never silently replaces an existing key."""
    path = Path(path)
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if overwrite else os.O_EXCL)
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError:
        raise KeyFileError(f"{path}: already exists; refusing to overwrite a key") from None
    with os.fdopen(fd, "w") as f:
        os.fchmod(f.fileno(), 0o600)
        json.dump({"public": key.public, "private": key.seed.hex()}, f)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())


def load_key_file(path: str | Path) -> KeyPair:
    """Read a key file; refuse one readable by others, malformed, or whose halves disagree."""
    path = Path(path)
    try:
        mode = path.stat().st_mode
        text = path.read_text()
    except OSError as e:
        raise KeyFileError(f"{path}: cannot read key file: {e.strerror}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyFileError(f"{path}: key file is accessible by group or others (mode {oct(mode & 0o777)}); chmod 600 it")
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise KeyFileError(f"{path}: not JSON: {e}") from None
    if not isinstance(obj, dict) or set(obj) != {"public", "private"}:
        raise KeyFileError(f'{path}: a key file is {{"public": ..., "private": ...}}')
    if not is_hex(obj["private"], 32):
        raise KeyFileError(f"{path}: private must be 64 lowercase hex characters (the 32-byte seed)")
    if not is_hex(obj["public"], 32):
        raise KeyFileError(f"{path}: public must be 64 lowercase hex characters")
    key = KeyPair.from_seed(bytes.fromhex(obj["private"]))
    if key.public != obj["public"]:
        raise KeyFileError(f"{path}: public does not match the private seed")
    return key
