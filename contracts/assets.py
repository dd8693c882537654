"""The asset contract: one handler per op, each checking everything before it writes anything.

Order of checks in every handler, so that a tx failing several rules always gets the same code:
the asset exists (asset_not_found), the signer may act (not_owner / not_pledgee /
not_authorized), the asset is not redeemed (asset_redeemed), it is not locked (asset_locked),
then the op's own argument rules (invalid_args).

Decisions the protocol leaves open (docs/contracts.md):
- transfer / force_transfer to the current owner, and pledge to the owner, are invalid_args: a
  move that moves nothing is almost surely a client mistake, and would only bump the version.
- pledge needs an `active` asset: a pledged asset cannot be pledged again (asset_locked), which
  is the very fraud warehouse receipts suffer from.
- release while frozen is asset_locked: a freeze stops every dealing, the pledgee's included.
- freeze of a frozen asset is asset_locked; unfreeze of an asset that is not frozen is
  invalid_args. A pledged asset can be frozen; unfreeze returns it to pledged (its pledgee is
  kept throughout), otherwise to active.
- amend needs the signer to be the asset's issuer AND still an issuer of its class (a revoked
  issuer amends nothing); it is refused while frozen (asset_locked) or redeemed, allowed while
  pledged (the event records the old hash for the pledgee and for history).
- redeem is refused while pledged or frozen (asset_locked); the asset stays, its id taken
  forever, and its document hash is freed for a new registration.
"""

from __future__ import annotations

from typing import TypedDict, Unpack

from chain.tx import Tx
from contracts.result import Effects, Rejection
from contracts.roles import can_issue, holds
from contracts.state import AssetState, AssetStatus, StateView, asset_key, doc_key, read_asset, read_roles


class AssetChanges(TypedDict, total=False):
    """What an op may change in an asset; `_save` bumps version and updated_at itself."""

    owner: str
    status: AssetStatus
    pledgee: str | None
    doc_hash: str


def _existing(view: StateView, asset_id: str) -> AssetState:
    asset = read_asset(view, asset_id)
    if asset is None:
        raise Rejection("asset_not_found", f"no asset {asset_id!r}")
    return asset.copy()


def _require_owner(asset: AssetState, tx: Tx) -> None:
    if tx.signer != asset["owner"]:
        raise Rejection("not_owner", f"only the owner of {asset['asset_id']!r} may do this")


def _require_regulator(view: StateView, tx: Tx) -> None:
    if not holds(read_roles(view, tx.signer), "regulator"):
        raise Rejection("not_authorized", "only a regulator may do this")


def _require_not_redeemed(asset: AssetState) -> None:
    if asset["status"] == "redeemed":
        raise Rejection("asset_redeemed", f"{asset['asset_id']!r} is redeemed; it never changes again")


def _require_unlocked(asset: AssetState) -> None:
    if asset["status"] in ("pledged", "frozen"):
        raise Rejection("asset_locked", f"{asset['asset_id']!r} is {asset['status']}")


def _save(asset: AssetState, height: int, **changes: Unpack[AssetChanges]) -> AssetState:
    """The asset with changes, its version bumped and updated_at set: every change does both."""
    return {**asset, **changes, "version": asset["version"] + 1, "updated_at": height}


def _moved(asset: AssetState, new_owner: str, height: int) -> AssetState:
    if new_owner == asset["owner"]:
        raise Rejection("invalid_args", "args.to is already the owner")
    return _save(asset, height, owner=new_owner)


def process_register(view: StateView, tx: Tx, height: int) -> Effects:
    a = tx.args
    if not can_issue(read_roles(view, tx.signer), a["class"]):
        raise Rejection("not_authorized", f"signer is not an issuer of class {a['class']!r}")
    if read_asset(view, a["asset_id"]) is not None:
        raise Rejection("asset_exists", f"asset id {a['asset_id']!r} is taken (ids are never reused)")
    holder = view.get(doc_key(a["doc_hash"]))
    if holder is not None:
        raise Rejection("duplicate_document", f"doc_hash already belongs to live asset {holder!r}")
    asset = {
        "asset_id": a["asset_id"],
        "class": a["class"],
        "issuer": tx.signer,
        "owner": a["owner"],
        "status": "active",
        "doc_hash": a["doc_hash"],
        "meta": dict(a["meta"]),
        "pledgee": None,
        "registered_at": height,
        "updated_at": height,
        "version": 1,
    }
    event = {
        "type": "asset.registered",
        "asset_id": a["asset_id"],
        "class": a["class"],
        "issuer": tx.signer,
        "owner": a["owner"],
        "doc_hash": a["doc_hash"],
    }
    return Effects({asset_key(a["asset_id"]): asset, doc_key(a["doc_hash"]): a["asset_id"]}, (event,))


def process_transfer(view: StateView, tx: Tx, height: int) -> Effects:
    asset = _existing(view, tx.args["asset_id"])
    _require_owner(asset, tx)
    _require_not_redeemed(asset)
    _require_unlocked(asset)
    new = _moved(asset, tx.args["to"], height)
    event = {"type": "asset.transferred", "asset_id": asset["asset_id"], "from": asset["owner"], "to": new["owner"]}
    return Effects({asset_key(asset["asset_id"]): new}, (event,))


def process_pledge(view: StateView, tx: Tx, height: int) -> Effects:
    asset = _existing(view, tx.args["asset_id"])
    _require_owner(asset, tx)
    _require_not_redeemed(asset)
    _require_unlocked(asset)
    pledgee = tx.args["pledgee"]
    if pledgee == asset["owner"]:
        raise Rejection("invalid_args", "args.pledgee is the owner; an owner cannot hold a pledge on its own asset")
    new = _save(asset, height, status="pledged", pledgee=pledgee)
    event = {
        "type": "asset.pledged",
        "asset_id": asset["asset_id"],
        "owner": asset["owner"],
        "pledgee": pledgee,
        "terms_hash": tx.args["terms_hash"],
    }
    return Effects({asset_key(asset["asset_id"]): new}, (event,))


def process_release(view: StateView, tx: Tx, height: int) -> Effects:
    asset = _existing(view, tx.args["asset_id"])
    if asset["pledgee"] is None or tx.signer != asset["pledgee"]:
        raise Rejection("not_pledgee", f"only the pledgee of {asset['asset_id']!r} may release it")
    if asset["status"] == "frozen":
        raise Rejection("asset_locked", f"{asset['asset_id']!r} is frozen; the pledge stays until it is unfrozen")
    new = _save(asset, height, status="active", pledgee=None)
    event = {"type": "asset.released", "asset_id": asset["asset_id"], "pledgee": asset["pledgee"]}
    return Effects({asset_key(asset["asset_id"]): new}, (event,))


def process_freeze(view: StateView, tx: Tx, height: int) -> Effects:
    asset = _existing(view, tx.args["asset_id"])
    _require_regulator(view, tx)
    _require_not_redeemed(asset)
    if asset["status"] == "frozen":
        raise Rejection("asset_locked", f"{asset['asset_id']!r} is already frozen")
    new = _save(asset, height, status="frozen")
    event = {
        "type": "asset.frozen",
        "asset_id": asset["asset_id"],
        "previous_status": asset["status"],
        "reason": tx.args["reason"],
    }
    return Effects({asset_key(asset["asset_id"]): new}, (event,))


def process_unfreeze(view: StateView, tx: Tx, height: int) -> Effects:
    asset = _existing(view, tx.args["asset_id"])
    _require_regulator(view, tx)
    _require_not_redeemed(asset)
    if asset["status"] != "frozen":
        raise Rejection("invalid_args", f"{asset['asset_id']!r} is not frozen")
    status: AssetStatus = "pledged" if asset["pledgee"] is not None else "active"
    new = _save(asset, height, status=status)
    event = {"type": "asset.unfrozen", "asset_id": asset["asset_id"], "status": status, "reason": tx.args["reason"]}
    return Effects({asset_key(asset["asset_id"]): new}, (event,))


def process_force_transfer(view: StateView, tx: Tx, height: int) -> Effects:
    asset = _existing(view, tx.args["asset_id"])
    _require_regulator(view, tx)
    _require_not_redeemed(asset)
    new = _moved(asset, tx.args["to"], height)  # status and pledgee untouched: a forced move lifts no lock
    event = {
        "type": "asset.force_transferred",
        "asset_id": asset["asset_id"],
        "from": asset["owner"],
        "to": new["owner"],
        "order_hash": tx.args["order_hash"],
        "status": asset["status"],
    }
    return Effects({asset_key(asset["asset_id"]): new}, (event,))


def process_amend(view: StateView, tx: Tx, height: int) -> Effects:
    asset = _existing(view, tx.args["asset_id"])
    if tx.signer != asset["issuer"]:
        raise Rejection("not_authorized", f"only the issuer of {asset['asset_id']!r} may amend it")
    if not can_issue(read_roles(view, tx.signer), asset["class"]):
        raise Rejection("not_authorized", f"signer is no longer an issuer of class {asset['class']!r}")
    _require_not_redeemed(asset)
    if asset["status"] == "frozen":
        raise Rejection("asset_locked", f"{asset['asset_id']!r} is frozen")
    new_hash = tx.args["doc_hash"]
    if new_hash == asset["doc_hash"]:
        raise Rejection("invalid_args", "args.doc_hash is the asset's current document hash")
    holder = view.get(doc_key(new_hash))
    if holder is not None:
        raise Rejection("duplicate_document", f"doc_hash already belongs to live asset {holder!r}")
    new = _save(asset, height, doc_hash=new_hash)
    event = {
        "type": "asset.amended",
        "asset_id": asset["asset_id"],
        "old_doc_hash": asset["doc_hash"],
        "new_doc_hash": new_hash,
        "reason": tx.args["reason"],
    }
    writes = {asset_key(asset["asset_id"]): new, doc_key(asset["doc_hash"]): None, doc_key(new_hash): asset["asset_id"]}
    return Effects(writes, (event,))


def process_redeem(view: StateView, tx: Tx, height: int) -> Effects:
    asset = _existing(view, tx.args["asset_id"])
    _require_owner(asset, tx)
    _require_not_redeemed(asset)
    _require_unlocked(asset)
    new = _save(asset, height, status="redeemed")
    event = {"type": "asset.redeemed", "asset_id": asset["asset_id"], "owner": asset["owner"], "doc_hash": asset["doc_hash"]}
    return Effects({asset_key(asset["asset_id"]): new, doc_key(asset["doc_hash"]): None}, (event,))
