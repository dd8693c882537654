"""Standing: which signers the ledger knows, and so which may have txs admitted at all.

An account has standing once it holds a role, owns an asset or holds one in pledge, and keeps it
for ever after: a revoked issuer, a previous owner and a released pledgee can still submit (their
own later txs are judged by the contract rules and may be rejected, but they get a committed
answer). Every other key is an outsider: its txs never enter a mempool or a block, so a stranger
with a fresh key cannot make the validators write anything.

Standing is state of its own, `standing/<account>` -> the height at which the account first
gained it (0 for the genesis grants), so it is in the state root and every node, the audit
included, decides it from the same authenticated data. Because it is never lost, a tx admitted
against an older state is still admissible against any later one: the mempool can check once.

Block validity: every tx of a block must come from a signer with standing in the block's PARENT
state (the committed state the block is built on). So an account that gains standing inside a
block (an asset registered to it) may submit from the next block on, not later in the same
block; consensus (node/runtime/ledger.py), re-execution and the audit (contracts/apply.py) all call
`check_standing` on the parent state, the one rule.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from chain.encoding import Value
from chain.tx import Tx, TxError
from contracts.state import ASSET_PREFIX, ROLE_PREFIX, StateView, standing_key

NOT_PERMITTED = "not_permitted"


def has_standing(view: StateView, account: str) -> bool:
    return view.get(standing_key(account)) is not None


def gained(view: StateView, writes: Mapping[str, Value | None], height: int) -> dict[str, Value]:
    """The standing/ writes that a tx's writes imply: accounts newly holding a role, owning an
    asset or holding one in pledge. Derived from the writes themselves rather than per op, so no
    op (now or future) can hand out a role or an asset without the standing that goes with it."""
    out: dict[str, Value] = {}
    for account in _parties(writes):
        key = standing_key(account)
        if key not in out and view.get(key) is None:
            out[key] = height
    return out


def _parties(writes: Mapping[str, Value | None]) -> Iterable[str]:
    for key in sorted(writes):  # sorted: the same writes always yield the same order
        value = writes[key]
        if value is None:
            continue  # a deletion (a revoked last role) takes no standing away
        if key.startswith(ROLE_PREFIX) and value:
            yield key[len(ROLE_PREFIX) :]
        elif key.startswith(ASSET_PREFIX) and isinstance(value, dict):
            yield value["owner"]
            if value.get("pledgee") is not None:
                yield value["pledgee"]


def check_standing(view: StateView, txs: Sequence[Tx]) -> None:
    """Raise TxError("not_permitted") for the first tx whose signer has no standing in view."""
    known: set[str] = set()
    for index, tx in enumerate(txs):
        if tx.signer in known:
            continue
        if not has_standing(view, tx.signer):
            raise TxError(NOT_PERMITTED, f"tx {index} ({tx.tx_id[:16]}…): {not_permitted_message(tx.signer)}")
        known.add(tx.signer)


def not_permitted_message(account: str) -> str:
    return (
        f"signer {account[:16]}… has no standing on this ledger (it holds no role and has never owned "
        "or held in pledge an asset); only known parties may submit transactions"
    )
