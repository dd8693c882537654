"""What a state-synced node checks besides the state: the certified header at its base height S,
linked to the genesis through the validator-set changes, and the tx-id window below S.

The anchor: the header of S and its commit certificate, verified under the validator set of S,
which is reached from the genesis set by following each certified change (a header whose
next_validators_hash names a new set, its certificate under the set before, and the new set):
the same links an ownership proof carries (chain/audit.py). Headers and certificates only: no
tx is re-executed.

The window: a tx id commits at most once, and a block at height h only holds txs whose
`expires` lies in [h, h + EXPIRY_WINDOW] (chain/tx.py), so a tx committed at height h could be
offered again only at heights up to h + EXPIRY_WINDOW. Above S that is h >= S + 1 - EXPIRY_WINDOW: the synced node must know the tx ids of the
blocks [S + 1 - EXPIRY_WINDOW, S] to refuse a replayed one as its peers do. They come as block
summaries (header and tx ids), newest first; each header is bound by hash to the one above it
(S's is the anchor) and its tx ids by its tx_root, so a summary is checked with no certificate.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from chain.block import BlockError, Certificate, CertificateError, Header
from chain.encoding import is_hex
from chain.errors import ChainError
from chain.genesis import Genesis
from chain.limits import EXPIRY_WINDOW
from chain.merkle import tx_root
from chain.proofcheck import LinkError, certified_header, follow_validator_changes
from chain.validators import ValidatorSet, ValidatorSetError

MAX_WINDOW_SUMMARIES = 256  # block summaries per window chunk
WINDOW_TARGET_TX_IDS = 16_384  # a window chunk stops adding blocks past this many tx ids (~1 MiB)
MAX_CHANGES_PER_PAGE = 32  # validator-set changes per message


class SyncVerifyError(ChainError, ValueError):
    """An anchor or window chunk that does not verify; the message says why."""


def window_floor(base: int) -> int:
    """The lowest height whose tx ids a node starting at base must hold."""
    return max(1, base + 1 - EXPIRY_WINDOW)


@dataclass(frozen=True)
class ValidatorChange:
    header: Header
    certificate: Certificate
    validators: ValidatorSet

    def to_plain(self) -> dict[str, Any]:
        return {"header": self.header.to_plain(), "certificate": self.certificate.to_plain(),
                "validators": self.validators.to_plain()}


@dataclass(frozen=True)
class Anchor:
    """The verified base: header S, its certificate, the changes up to S, the set certifying S+1."""

    header: Header
    certificate: Certificate
    changes: tuple[ValidatorChange, ...]
    next_validators: ValidatorSet

    @property
    def height(self) -> int:
        return self.header.height


def verify_anchor(genesis: Genesis, changes: list[Any], header: Any, certificate: Any) -> Anchor:
    """Check header S's certificate under the set the changes (plain, ascending) reach from the
    genesis; a change at S itself (S made a new set) gives the set for S+1."""
    if type(changes) is not list:
        raise SyncVerifyError("validator changes: must be a list")
    try:
        h = Header.from_plain(header)
    except BlockError as e:
        raise SyncVerifyError(f"header: {e}") from None
    below = [c for c in changes if _change_height(c) < h.height]
    at = [c for c in changes if _change_height(c) >= h.height]
    try:
        vset, _ = follow_validator_changes(below, genesis)
        hdr = certified_header(header, certificate, vset, genesis, "")
        nxt, _ = follow_validator_changes(below + at, genesis) if at else (vset, 0)
    except LinkError as e:
        raise SyncVerifyError(str(e)) from None
    if len(at) > 1 or (at and at[0]["header"] != header):
        raise SyncVerifyError("validator changes: one lies above the header, or differs from it at its height")
    if nxt.hash != hdr.next_validators_hash:
        raise SyncVerifyError("validator changes: the header names a next set that no change gives")
    return Anchor(hdr, Certificate.from_plain(certificate), tuple(_parsed(c) for c in changes), nxt)


def _change_height(change: Any) -> int:
    try:
        height = change["header"]["height"]
    except (TypeError, KeyError):
        raise SyncVerifyError("validator changes: each is {header, certificate, validators}") from None
    if type(height) is not int:
        raise SyncVerifyError("validator changes: a header's height is not an integer")
    return height


def _parsed(change: dict[str, Any]) -> ValidatorChange:
    # follow_validator_changes has checked every field; this only builds the typed value
    try:
        return ValidatorChange(Header.from_plain(change["header"]), Certificate.from_plain(change["certificate"]),
                               ValidatorSet.from_plain(change["validators"]))
    except (BlockError, CertificateError, ValidatorSetError) as e:
        raise SyncVerifyError(f"validator changes: {e}") from None


@dataclass(frozen=True)
class WindowSummary:
    header: Header
    tx_ids: tuple[str, ...]

    def to_plain(self) -> dict[str, Any]:
        return {"header": self.header.to_plain(), "tx_ids": list(self.tx_ids)}


def parse_window(obj: Any) -> list[WindowSummary]:
    """A window chunk's summaries (plain, newest first); raises SyncVerifyError if malformed."""
    if type(obj) is not list or not 0 < len(obj) <= MAX_WINDOW_SUMMARIES:
        raise SyncVerifyError(f"window: a list of 1..{MAX_WINDOW_SUMMARIES} block summaries")
    out = []
    for i, s in enumerate(obj):
        if type(s) is not dict or set(s) != {"header", "tx_ids"} or type(s["tx_ids"]) is not list:
            raise SyncVerifyError(f"window[{i}]: a summary is {{header, tx_ids}}")
        if not all(is_hex(t, 32) for t in s["tx_ids"]):
            raise SyncVerifyError(f"window[{i}].tx_ids: a list of tx ids (64 lowercase hex characters each)")
        try:
            out.append(WindowSummary(Header.from_plain(s["header"]), tuple(s["tx_ids"])))
        except BlockError as e:
            raise SyncVerifyError(f"window[{i}].header: {e}") from None
    return out


def verify_window(summaries: list[WindowSummary], top_height: int, top_hash: str) -> str:
    """Check summaries (newest first) from top_height down, the first being the block top_hash;
    returns the hash the next chunk's first summary must have (the lowest one's prev_hash)."""
    expected_height, expected_hash = top_height, top_hash
    for i, s in enumerate(summaries):
        h = s.header
        if h.height != expected_height or h.block_hash != expected_hash:
            raise SyncVerifyError(f"window[{i}]: not block {expected_height} of the chain the anchor certifies")
        if tx_root(list(s.tx_ids)) != h.tx_root:
            raise SyncVerifyError(f"window[{i}]: its tx ids do not make its header's tx_root")
        expected_height, expected_hash = h.height - 1, h.prev_hash
    return expected_hash
