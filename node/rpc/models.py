"""Pydantic models of every RPC request and response (docs/rpc.md).

They serve two purposes: the OpenAPI document is generated from them (`node/rpc/routes.py`), and the
tests check every answer of the server against the model its route declares for that status.
Requests are parsed by `chain.tx.parse_tx` (so that each refusal keeps its documented error code) and by
the route handlers; the models describe the same shapes for clients.

Answer models allow extra fields: a node may add information (and clients must ignore what they
do not know), but never drop or retype a field docs/rpc.md promises.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from chain.block import Header
from chain.tx import OP_PATTERN
from contracts.args import ASSET_ID_PATTERN as _ASSET_ID_RE

HEX64 = r"^[0-9a-f]{64}$"
HEX128 = r"^[0-9a-f]{128}$"
# Exactly what the contracts accept, so the RPC can neither refuse a real asset nor drift from them.
ASSET_ID_PATTERN = _ASSET_ID_RE.pattern
MAX_BATCH_TXS = 10_000


class _Answer(BaseModel):
    model_config = ConfigDict(extra="allow")


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


# -- errors ------------------------------------------------------------------------------------


class ErrorDetail(_Request):
    code: str = Field(
        description="machine-readable: malformed, too_large, duplicate, mempool_full, quota_exceeded, rate_limited, "
        "not_permitted, bad_signature, wrong_chain, expired, expires_too_far, unknown_op, invalid_args, not_found, "
        "unauthorized, forbidden, read_only, not_ready, too_many_streams, timeout, method_not_allowed, internal"
    )
    message: str = Field(description="for humans; may change between versions")


class ErrorResponse(_Request):
    error: ErrorDetail


# -- transactions ------------------------------------------------------------------------------


class TxBody(_Request):
    chain_id: str = Field(min_length=1, max_length=64)
    signer: str = Field(pattern=HEX64, description="the signer's account (hex Ed25519 public key)")
    op: str = Field(pattern=OP_PATTERN.pattern, examples=["asset.transfer"])
    args: dict[str, Any]
    nonce: str = Field(min_length=1, max_length=128, description="unique per signer; 16 random bytes in hex is fine")
    expires: int = Field(ge=0, description="the last height at which the tx may be included")


class TxModel(_Request):
    """sig = Ed25519(signer, "titlechain/tx/v1\\n" + canonical(body)); tx_id = hex(H(canonical(body))).

    docs/protocol.md, "Transactions"."""

    body: TxBody
    sig: str = Field(pattern=HEX128)


class BatchRequest(_Request):
    txs: list[TxModel] = Field(max_length=MAX_BATCH_TXS)


class ReceiptError(_Answer):
    code: str
    message: str


class Receipt(_Answer):
    tx_id: str = Field(pattern=HEX64)
    height: int = Field(ge=1)
    index: int = Field(ge=0)
    status: Literal["ok", "rejected"]
    error: ReceiptError | None
    events: list[Any]


class TxAccepted(_Answer):
    tx_id: str = Field(pattern=HEX64)
    status: Literal["pending"]


class TxCommitted(_Answer):
    tx_id: str = Field(pattern=HEX64)
    status: Literal["committed"]
    receipt: Receipt


class BatchResponse(_Answer):
    results: list[TxAccepted | ErrorResponse] = Field(description="one per submitted tx, in order")


class TxInfo(_Answer):
    tx_id: str = Field(pattern=HEX64)
    status: Literal["pending", "committed"]
    height: int | None = Field(description="null while pending")
    receipt: Receipt | None = Field(description="null while pending")
    tx: TxModel


# -- assets and accounts -----------------------------------------------------------------------


class AssetState(_Answer):
    asset_id: str
    class_: str = Field(alias="class")
    issuer: str
    owner: str
    status: Literal["active", "pledged", "frozen", "redeemed"]
    doc_hash: str
    meta: dict[str, str]
    pledgee: str | None
    registered_at: int
    updated_at: int
    version: int


class HistoryEntry(_Answer):
    height: int
    tx_id: str = Field(pattern=HEX64)
    op: str
    signer: str
    status: Literal["ok", "rejected"]


class AssetHistory(_Answer):
    asset_id: str
    entries: list[HistoryEntry] = Field(
        description="a page of the committed txs naming the asset, rejected ones included, oldest first"
    )
    next: str | None = Field(description="the cursor of the following page (`?cursor=`), null on the last")


class OwnershipProof(_Answer):
    """The asset's state (or, for an id no asset holds, null), its key's path to a header's
    state_root, the header, its certificate and the validator-set changes linking it to the genesis
    (docs/protocol.md, "Ownership and absence proofs"). Verify offline with
    `titlechain audit verify-proof`; nothing in it need be trusted."""

    version: int = Field(description="the proof format's version (3)")
    claim: Literal["ownership", "absence"] = Field(description="absence: no asset holds asset_id as of header.height")
    chain_id: str
    genesis_hash: str = Field(pattern=HEX64)
    asset_id: str = Field(pattern=ASSET_ID_PATTERN)
    asset: AssetState | None = Field(description="the asset's state; null exactly when the claim is absence")
    state_proof: dict[str, Any] = Field(
        description='{"levels": [[hex32 | "", ... 15 a level], ...], "leaf": null | {"key_hash", "value_hash"}}'
    )
    header: dict[str, Any] = Field(description="the certified header whose state_root the path leads to")
    certificate: dict[str, Any] = Field(description="that header's commit certificate")
    validator_changes: list[dict[str, Any]] = Field(description="certified validator-set changes below header.height")


class EvidenceRecord(_Answer):
    """Two conflicting consensus messages signed by one validator for one kind, view and height, with
    the certified links from the genesis to that height's validator set (docs/rpc.md). Verify
    offline with `titlechain audit verify-evidence`."""

    version: int
    type: Literal["equivocation"]
    chain_id: str
    genesis_hash: str = Field(pattern=HEX64)
    validator: str = Field(pattern=HEX64, description="the validator's public key")
    kind: Literal["pre_prepare", "prepare", "commit"]
    view: int
    height: int
    first: dict[str, Any] = Field(description="a signed consensus message {body, sender, sig}; the smaller body digest")
    second: dict[str, Any] = Field(description="the conflicting signed message")
    validator_changes: list[dict[str, Any]] = Field(description="certified validator-set changes below the height")
    anchor: dict[str, Any] | None = Field(
        description="{header, certificate} of block height-1, or null when not needed"
    )


class EvidenceList(_Answer):
    total: int = Field(description="records this node holds (matching `validator`, if given)")
    offset: int
    evidence: list[EvidenceRecord] = Field(description="in (validator, kind, view, height) order from `offset`")


class AccountInfo(_Answer):
    account: str = Field(pattern=HEX64)
    roles: list[dict[str, Any]] = Field(description='grants, e.g. {"role": "issuer", "classes": [...]}')
    assets: list[str] = Field(description="a page of the ids of the assets the account owns, in id order")
    next: str | None = Field(description="the cursor of the following page (`?cursor=`), null on the last")
    standing_since: int | None = Field(
        description="the height from which the account has standing and so may submit txs (0: the genesis); "
        "null: the ledger does not know it, and every node refuses its txs with 403 not_permitted"
    )


# -- blocks ------------------------------------------------------------------------------------


# The header is chain.block.Header itself, the dataclass every node hashes: pydantic reads its
# fields (and docstring) for the schema and validates an answer's header into one, so the RPC's
# description of a header cannot drift from the header.
class CommitSignature(_Answer):
    validator: str
    sig: str


class CertificateModel(_Answer):
    """Commits of a quorum of the height's validators, all cast in `view` (docs/protocol.md)."""

    height: int
    view: int = Field(ge=0, description="the one view all signatures were cast in; above header.view for a re-proposal")
    block_hash: str
    signatures: list[CommitSignature]


class BlockInfo(_Answer):
    header: Header
    block_hash: str = Field(pattern=HEX64)
    tx_ids: list[str]
    certificate: CertificateModel


class BlockList(_Answer):
    blocks: list[BlockInfo] = Field(description="consecutive heights from `from`; empty beyond the head")
    next: int | None = Field(None, description="the `from` of the following page, null if this one reaches the head")


class BlockEvent(_Answer):
    """The data of one SSE `block` event."""

    height: int
    block_hash: str
    header: Header
    tx_ids: list[str]
    receipts: list[Receipt]


# -- node --------------------------------------------------------------------------------------


class PeerInfo(_Answer):
    node_id: str
    connected: bool


class ValidatorInfo(_Answer):
    node_id: str
    public: str
    address: str


class NodeStatus(_Answer):
    node_id: str
    role: Literal["validator", "observer"] = Field(
        "validator", description="an observer follows the chain by certificates, never votes, and refuses writes"
    )
    chain_id: str
    height: int
    view: int
    primary: str = Field(description="node_id of the current view's primary")
    validators: list[ValidatorInfo]
    peers: list[PeerInfo]
    mempool: int = Field(description="transactions waiting in the mempool")
    ready: bool
    not_ready: str | None = Field(
        None, description="why the node is not ready (null when it is): starting, short of a quorum of peers, catching up"
    )
    version: str | None = Field(None, description="the titlechain version the node runs")


class GenesisDoc(_Answer):
    chain_id: str
    time: int
    validators: list[ValidatorInfo]
    members: list[str]
    roles: dict[str, list[dict[str, Any]]]


class OpenApiDoc(_Answer):
    openapi: str
    info: dict[str, Any]
    paths: dict[str, Any]


class Health(_Answer):
    """GET /health: the process is alive and serving HTTP (liveness, not readiness)."""

    status: str = Field(description='always "alive"')
    version: str = Field(description="the titlechain version the node runs")


class Readiness(_Answer):
    """GET /ready when ready (503 not_ready, with the reason as its message, when not)."""

    ready: bool


class RpcToken(BaseModel):
    """A bearer token for the RPC and what it may do."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    token: str = Field(min_length=16, description="the secret; at least 16 characters")
    scopes: tuple[Literal["submit", "read"], ...] = Field(min_length=1)
    name: str = ""
