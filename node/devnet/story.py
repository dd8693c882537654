"""The demo's story (`titlechain demo`): its cast (seeds/demo.json), the local network it runs on,
and each step with the outcome it expects. node/devnet/demo.py runs it."""

from __future__ import annotations

import copy
import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from chain.crypto import KeyPair, load_key_file
from chain.encoding import H
from chain.genesis import Genesis
from chain.proofcheck import verify_ownership_proof
from chain.tx import Tx
from node.devnet.localnet import LocalnetError, down_and_wait, node_log_tails, up
from node.devnet.provision import Consortium
from node.errors import EXIT_FAILED, NodeError
from node.runtime.ledger import audit_data_dir
from node.sdk.client import Client, RpcError, sign

VALIDATORS = 4
EXPIRY = 200  # heights a demo tx stays valid: far more than the whole story needs
RECEIPT_TIMEOUT_S = 20.0  # a commit takes milliseconds; this only bounds a stuck consortium
AGREE_DEADLINE_S = 15.0  # for every node to reach a height the submitting node has committed
KEY_GROUPS = ("issuers", "regulators", "auditors", "parties")  # the keys that sign in the story

# the seed's assets the story follows
COPPER = "WR-NGB-2026-0001"
DEED = "DEED-CLR-7741-0093"
INVOICE = "RCV-MF-2026-1187"


class DemoError(NodeError, RuntimeError):
    """The demo cannot start here (a busy port, a used directory); nothing was started."""

    def __init__(self, message: str, code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.code = self.exit_code = code


class DemoFailed(NodeError, RuntimeError):
    """An outcome the story did not expect."""


class StepFailed(NodeError, RuntimeError):
    def __init__(self, number: int, title: str, why: str) -> None:
        super().__init__(f"step {number} ({title}) failed: {why}")


# ---------------------------------------------------------------------- the cast and the network


@dataclass(frozen=True)
class Cast:
    """Who is who: seed names, their keys, and display names for accounts."""

    cons: Consortium
    keys: dict[str, KeyPair]

    @classmethod
    def load(cls, cons: Consortium) -> Cast:
        # validator and member keys share node ids as names, so only the story's groups are read
        keys = {name: load_key_file(p) for group in KEY_GROUPS for name, p in cons.keys.get(group, {}).items()}
        return cls(cons, keys)

    def key(self, name: str) -> KeyPair:
        try:
            return self.keys[name]
        except KeyError:
            raise DemoFailed(f"the seed has no key named {name!r}; the story needs seeds/demo.json's cast") from None

    def account(self, name: str) -> str:
        return self.key(name).public

    def name_of(self, account: str | None) -> str:
        if account is None:
            return "-"
        return self.cons.names.get(account, account[:12] + "…")

    def display(self, name: str) -> str:
        return self.name_of(self.account(name))

    def asset(self, asset_id: str) -> dict[str, Any]:
        for a in self.cons.assets:
            if a["asset_id"] == asset_id:
                return a
        raise DemoFailed(f"the seed has no asset {asset_id!r}; the story needs seeds/demo.json's assets")


class Net:
    """The consortium's public RPC, one client per node."""

    def __init__(self, cons: Consortium, chain_id: str) -> None:
        self.nodes = cons.nodes
        self.clients = [Client(n.rpc, timeout=RECEIPT_TIMEOUT_S + 10) for n in cons.nodes]
        self.chain_id = chain_id

    def close(self) -> None:
        for c in self.clients:
            c.close()

    def signed(self, key: KeyPair, op: str, args: dict[str, Any], via: int = 0) -> Tx:
        return sign(key, self.chain_id, op, args, expires=self.clients[via].height() + EXPIRY)

    def submit(self, tx: Tx, via: int = 0) -> dict[str, Any]:
        """Submit and wait for the committed receipt."""
        answer = self.clients[via].submit(tx, wait=True, timeout=RECEIPT_TIMEOUT_S)
        receipt = answer["receipt"]
        if answer.get("status") != "committed" or receipt["tx_id"] != tx.tx_id:
            raise DemoFailed(f"node {self.nodes[via].node_id} answered a submission with {answer}")
        return receipt

    def heights(self) -> list[int]:
        return [c.height() for c in self.clients]

    def wait_all_at(self, height: int) -> None:
        """Until every node has committed `height`: a read from a node that lags would be stale."""
        deadline = time.monotonic() + AGREE_DEADLINE_S
        while (hs := self.heights()) and min(hs) < height:
            if time.monotonic() > deadline:
                raise DemoFailed(
                    f"nodes still at heights {hs} {AGREE_DEADLINE_S:.0f} s after height {height} committed"
                )
            time.sleep(0.05)


# ---------------------------------------------------------------------- output


def mark_receipt(out: Console, what: str, receipt: dict[str, Any]) -> None:
    if receipt["status"] == "ok":
        out.print(f"  [green]✓[/] {what}  [dim]block {receipt['height']}, tx {receipt['tx_id'][:10]}…[/]")
    else:
        err = receipt["error"] or {}
        out.print(
            f"  [yellow]✗[/] {what}: [bold]{err.get('code')}[/] — {err.get('message')}"
            f"  [dim]committed as rejected in block {receipt['height']}[/]"
        )


def expect(receipt: dict[str, Any], status: str, code: str | None = None) -> None:
    got = (receipt["status"], (receipt.get("error") or {}).get("code"))
    if got != (status, code):
        want = f"{status} {code}" if code else status
        raise DemoFailed(
            f"expected {want}, got {got[0]} {got[1] or ''} (tx {receipt['tx_id']}, block {receipt['height']})"
        )


def doc_hash(text: str) -> str:
    return H(text.encode()).hex()


# ---------------------------------------------------------------------- the story


class Story:
    """The steps, in order; each prints what happened and raises DemoFailed on a surprise."""

    def __init__(self, out: Console, root: Path, base_port: int) -> None:
        self.out = out
        self.root = root
        self.base_port = base_port
        self._cons: Consortium | None = None
        self._cast: Cast | None = None
        self._net: Net | None = None
        self._genesis: Genesis | None = None
        self.copper_owner = ""  # who won the double-spend; the proof must say the same
        self.stopped = False

    @property
    def cons(self) -> Consortium:
        assert self._cons is not None, "the consortium has not started"
        return self._cons

    @property
    def cast(self) -> Cast:
        assert self._cast is not None, "the consortium has not started"
        return self._cast

    @property
    def net(self) -> Net:
        assert self._net is not None, "the consortium has not started"
        return self._net

    @property
    def genesis(self) -> Genesis:
        assert self._genesis is not None, "the consortium has not started"
        return self._genesis

    def close(self) -> None:
        if self._net is not None:
            self._net.close()

    def tx(
        self, who: str, op: str, args: dict[str, Any], what: str, status: str = "ok", code: str | None = None
    ) -> dict[str, Any]:
        """Sign as `who`, submit through node 0, print the receipt, check it is as expected."""
        receipt = self.net.submit(self.net.signed(self.cast.key(who), op, args))
        mark_receipt(self.out, what, receipt)
        expect(receipt, status, code)
        return receipt

    def asset(self, asset_id: str, via: int = 0) -> dict[str, Any]:
        return self.net.clients[via].asset(asset_id)

    def expect_asset(self, asset_id: str, **want: Any) -> dict[str, Any]:
        a = self.asset(asset_id)
        wrong = {k: (a.get(k), v) for k, v in want.items() if a.get(k) != v}
        if wrong:
            raise DemoFailed(f"{asset_id}: (found, expected) {wrong}")
        status = a["status"] + (f" (pledgee {self.cast.name_of(a['pledgee'])})" if a.get("pledgee") else "")
        self.out.print(
            f"    {asset_id}: owner [bold]{self.cast.name_of(a['owner'])}[/], {status}, version {a['version']}"
        )
        return a

    # -- 1 -----------------------------------------------------------------------------------

    def start(self) -> None:
        self.out.print(f"  [dim]consortium directory {self.root}[/]")
        try:
            up(
                self.root,
                validators=VALIDATORS,
                base_port=self.base_port,
                say=lambda s: self.out.print(f"  [dim]{s}[/]"),
            )
        except LocalnetError as e:
            raise DemoFailed(f"{e}{node_log_tails(self.root)}") from None
        self._cons = Consortium.load(self.root)
        self._genesis = Genesis.load(self._cons.genesis)
        self._cast = Cast.load(self._cons)
        self._net = Net(self._cons, self._genesis.chain_id)
        t = Table(title=f"validators of {self.genesis.chain_id}: n = 4 tolerates f = 1 faulty or malicious node")
        for col in ("node", "institution", "RPC"):
            t.add_column(col)
        for n in self.cons.nodes:
            t.add_row(n.node_id, n.name, n.rpc)
        self.out.print(t)
        roles = Table(title="roles granted by the genesis (besides the four members)")
        roles.add_column("account holder")
        roles.add_column("role")
        for account, grants in self.genesis.roles.items():
            for g in grants:
                scope = f" of {', '.join(g['classes'])}" if g.get("classes") else ""
                roles.add_row(self.cast.name_of(account), g["role"] + scope)
        self.out.print(roles)

    # -- 2 -----------------------------------------------------------------------------------

    def register(self) -> None:
        self.out.print("  [dim]each issuer signs a registration carrying the SHA-256 of the paper document[/]")
        for a in self.cons.assets:
            args = {
                "asset_id": a["asset_id"],
                "class": a["class"],
                "owner": a["owner_account"],
                "doc_hash": a["doc_hash"],
                "meta": a["meta"],
            }
            who = self.cast.display(a["issuer"])
            self.tx(
                a["issuer"],
                "asset.register",
                args,
                f"{who} registers {a['asset_id']} for {self.cast.display(a['owner'])}",
            )
            facts = " · ".join(v for k, v in a["meta"].items() if k != "doc_uri")
            self.out.print(f"    [dim]{facts}; document {a['doc_hash'][:16]}…[/]")

    def duplicate(self) -> None:
        copper = self.cast.asset(COPPER)
        args = {
            "asset_id": "WR-NGB-2026-0107",
            "class": copper["class"],
            "owner": copper["owner_account"],
            "doc_hash": copper["doc_hash"],
            "meta": {"note": "re-issued receipt for lot CU-88213", "lot": "CU-88213"},
        }
        self.out.print("  [dim]the oldest warehouse fraud: two receipts for one lot of copper, pledged to two banks[/]")
        self.tx(
            copper["issuer"],
            "asset.register",
            args,
            "a second receipt WR-NGB-2026-0107 for the same copper document",
            "rejected",
            "duplicate_document",
        )
        if self._absent("WR-NGB-2026-0107"):
            self.out.print(
                "    WR-NGB-2026-0107 does not exist; the rejection is on the chain for every auditor to see"
            )

    def _absent(self, asset_id: str) -> bool:
        try:
            self.asset(asset_id)
        except RpcError as e:
            if e.status == 404:
                return True
            raise
        raise DemoFailed(f"{asset_id} exists although its registration was rejected")

    # -- 4-5 -----------------------------------------------------------------------------------

    def sale(self) -> None:
        c = self.cast
        self.tx(
            "haitong-metals",
            "asset.transfer",
            {"asset_id": COPPER, "to": c.account("riverside-foods")},
            f"{c.display('haitong-metals')} sells the copper receipt to {c.display('riverside-foods')}",
        )
        self.expect_asset(COPPER, owner=c.account("riverside-foods"), status="active")

    def pledge(self) -> None:
        c = self.cast
        bank = c.account("harbour-bank-lending")
        terms = doc_hash("Loan agreement HCB-SL-2026-311: EUR 180,000 against WR-NGB-2026-0001, 90 days")
        self.tx(
            "riverside-foods",
            "asset.pledge",
            {"asset_id": COPPER, "pledgee": bank, "terms_hash": terms},
            f"{c.display('riverside-foods')} pledges the receipt to {c.display('harbour-bank-lending')} for a loan",
        )
        self.expect_asset(COPPER, status="pledged", pledgee=bank)
        self.tx(
            "riverside-foods",
            "asset.transfer",
            {"asset_id": COPPER, "to": c.account("marlow-estates")},
            "Riverside Foods tries to sell the pledged receipt",
            "rejected",
            "asset_locked",
        )
        self.tx(
            "riverside-foods",
            "asset.release",
            {"asset_id": COPPER},
            "Riverside Foods tries to release the pledge itself",
            "rejected",
            "not_pledgee",
        )
        self.tx(
            "harbour-bank-lending",
            "asset.release",
            {"asset_id": COPPER},
            "the loan is repaid; the bank (the pledgee) releases the pledge",
        )
        self.expect_asset(COPPER, owner=c.account("riverside-foods"), status="active", pledgee=None)

    # -- 6 -------------------------------------------------------------------------------------

    def double_spend(self) -> None:
        c, net = self.cast, self.net
        buyers, vias = ("haitong-metals", "apex-components"), (0, 2)
        key = c.key("riverside-foods")
        txs = [
            net.signed(key, "asset.transfer", {"asset_id": COPPER, "to": c.account(b)}, via)
            for b, via in zip(buyers, vias, strict=True)
        ]
        self.out.print(
            f"  [dim]Riverside Foods signs two sales of the same receipt and submits them at the same instant, to "
            f"{net.nodes[vias[0]].name} and to {net.nodes[vias[1]].name}[/]"
        )
        receipts = _submit_together(net, txs, list(vias))
        order = sorted(range(2), key=lambda i: (receipts[i]["height"], receipts[i]["index"]))
        for i in order:
            mark_receipt(
                self.out, f"sale to {c.display(buyers[i])}, submitted to {net.nodes[vias[i]].node_id}", receipts[i]
            )
        first, second = receipts[order[0]], receipts[order[1]]
        expect(first, "ok")
        expect(second, "rejected", "not_owner")
        winner = c.account(buyers[order[0]])
        net.wait_all_at(second["height"])
        owners = {n.node_id: cl.asset(COPPER)["owner"] for n, cl in zip(net.nodes, net.clients, strict=True)}
        if set(owners.values()) != {winner}:
            raise DemoFailed(
                f"the nodes do not all name the winning buyer as owner: "
                f"{ {k: c.name_of(v) for k, v in owners.items()} }"
            )
        self.copper_owner = winner
        self.out.print(
            f"  consensus put them in one order; the second found a new owner. All {len(owners)} nodes say: "
            f"[bold]{c.name_of(winner)}[/] owns {COPPER}"
        )

    # -- 7 -------------------------------------------------------------------------------------

    def court(self) -> None:
        c = self.cast
        lin = c.account("lin-family")
        self.out.print(
            "  [dim]Orchard Developments was paid for flat 12B by the Lin family but will not complete; "
            "the Lin family goes to court[/]"
        )
        self.tx(
            "supervisor-enforcement",
            "asset.freeze",
            {"asset_id": DEED, "reason": "court order 2026/CV/0412: title dispute, Lin v Orchard Developments"},
            f"{c.display('supervisor-enforcement')} freezes the deed pending the court's decision",
        )
        self.tx(
            "orchard-developments",
            "asset.transfer",
            {"asset_id": DEED, "to": c.account("marlow-estates")},
            "Orchard Developments tries to sell the flat to Marlow Estates instead",
            "rejected",
            "asset_locked",
        )
        order = doc_hash("Judgment 2026/CV/0412: title to flat 12B, 41 Quayside Road, vests in the Lin family")
        self.tx(
            "supervisor-enforcement",
            "asset.force_transfer",
            {"asset_id": DEED, "to": lin, "order_hash": order},
            "the court orders the title to the Lin family; the regulator executes the order",
        )
        self.expect_asset(DEED, owner=lin, status="frozen")
        self.out.print("    [dim]a forced move never lifts a lock: the deed is still frozen[/]")
        self.tx(
            "supervisor-enforcement",
            "asset.unfreeze",
            {"asset_id": DEED, "reason": "judgment 2026/CV/0412 executed"},
            "the case is closed; the regulator unfreezes the deed",
        )
        self.expect_asset(DEED, owner=lin, status="active")

    # -- 8 -------------------------------------------------------------------------------------

    def receivable(self) -> None:
        c = self.cast
        self.tx(
            "apex-components",
            "asset.transfer",
            {"asset_id": INVOICE, "to": c.account("harbour-bank-lending")},
            "Apex Components factors its invoice: sells the receivable to Harbour Commercial Bank",
        )
        self.tx(
            "harbour-bank-lending",
            "asset.redeem",
            {"asset_id": INVOICE},
            "Harbour Shipyards pays the invoice; the bank redeems the receivable",
        )
        self.expect_asset(INVOICE, owner=c.account("harbour-bank-lending"), status="redeemed")
        self.tx(
            "harbour-bank-lending",
            "asset.transfer",
            {"asset_id": INVOICE, "to": c.account("apex-components")},
            "the paid invoice is sold again",
            "rejected",
            "asset_redeemed",
        )

    # -- 9 -------------------------------------------------------------------------------------

    def history(self) -> None:
        entries = self.net.clients[1].history(COPPER)["entries"]
        t = Table(
            title=f"{COPPER} as read from {self.net.nodes[1].node_id}: every committed tx naming it, rejected ones too"
        )
        for col in ("block", "op", "signer", "outcome"):
            t.add_column(col)
        for e in entries:
            outcome = (
                "[green]ok[/]"
                if e["status"] == "ok"
                else f"[yellow]rejected: {(e.get('error') or {}).get('code', '')}[/]"
            )
            t.add_row(str(e["height"]), e["op"], self.cast.name_of(e["signer"]), outcome)
        self.out.print(t)
        if sum(e["status"] != "ok" for e in entries) < 3:
            raise DemoFailed(f"the history of {COPPER} lacks the rejected txs: {entries}")

    # -- 10 ------------------------------------------------------------------------------------

    def proof(self) -> None:
        via = VALIDATORS - 1
        path = self.root / f"proof-{COPPER}.json"
        path.write_text(json.dumps(self.net.clients[via].proof(COPPER), indent=2) + "\n")
        self.out.print(
            f"  fetched from {self.net.nodes[via].name}'s node into {path.name}; now offline, with only genesis.json:"
        )
        genesis = Genesis.load(self.cons.genesis)  # read afresh: the proof is checked from the file alone
        proof = json.loads(path.read_text())
        result = verify_ownership_proof(proof, genesis)
        if not result.ok:
            raise DemoFailed(f"a fresh proof did not verify: {result.reason}")
        if result.owner != self.copper_owner:
            raise DemoFailed(
                f"the proof names {self.cast.name_of(result.owner)} as owner, not the double-spend's winner"
            )
        self.out.print(
            f"  [green]✓[/] {COPPER} is owned by [bold]{self.cast.name_of(result.owner)}[/] "
            f"as of block {result.height}: "
            f"state path, header, and {len(proof['certificate']['signatures'])} validator signatures check out"
        )
        forged = copy.deepcopy(proof)
        forged["asset"]["owner"] = self.cast.account("marlow-estates")
        self._refused("the same proof with the owner changed to Marlow Estates", forged, genesis)
        thin = copy.deepcopy(proof)
        thin["certificate"]["signatures"] = thin["certificate"]["signatures"][: genesis.validators.quorum - 1]
        self._refused("the proof with its certificate cut below a quorum of signatures", thin, genesis)
        self._absence(genesis)

    def _absence(self, genesis: Genesis) -> None:
        """What a lender asks before lending against a receipt number: was it ever issued?"""
        never = "WR-NGB-2026-0999"
        absent = self.net.clients[0].proof(never)
        result = verify_ownership_proof(absent, genesis)
        if not result.absent:
            raise DemoFailed(f"no proof of absence for {never}: {result.reason or 'the node claims it exists'}")
        self.out.print(
            f"  [green]✓[/] {never} was never issued: absent as of block {result.height}, "
            "proven the same way (its key's path ends where no asset is)"
        )
        self._refused(f"that proof of absence relabelled to {COPPER}", {**absent, "asset_id": COPPER}, genesis)

    def _refused(self, what: str, proof: dict[str, Any], genesis: Genesis) -> None:
        result = verify_ownership_proof(proof, genesis)
        if result.ok:
            raise DemoFailed(f"{what} verified")
        self.out.print(f"  [green]✓[/] {what} is refused: [dim]{result.reason}[/]")

    # -- 11 ------------------------------------------------------------------------------------

    def audit(self) -> None:
        net, cons = self.net, self.cons
        head = max(net.heights())
        net.wait_all_at(head)
        head_root = net.clients[0].block(head)["header"]["state_root"]
        auditor = self.cast.display("ledger-audit")
        self.out.print(
            f"  {auditor} replays every node's data dir from the genesis (a read-only copy; the nodes keep running): "
            "hash links, tx and receipt roots, every signature, every commit certificate, "
            "re-execution to the same state roots"
        )
        for n in cons.nodes:
            t0 = time.monotonic()
            report = audit_data_dir(n.data_dir, self.genesis)
            if not report.ok:
                raise DemoFailed(f"the audit of {n.node_id} failed at height {report.height}: {report.reason}")
            if report.blocks != head or report.state_root != head_root:
                raise DemoFailed(
                    f"{n.node_id}'s data ends at block {report.blocks} with state {report.state_root[:16]}…, "
                    f"not {head} {head_root[:16]}…"
                )
            self.out.print(
                f"  [green]✓[/] {n.name}: {report.blocks} blocks, {report.txs} txs, clean "
                f"[dim]({time.monotonic() - t0:.2f} s, state root {report.state_root[:16]}…)[/]"
            )
        self.out.print(f"  all {len(cons.nodes)} nodes hold the same chain and the same state")

    # -- 12 ------------------------------------------------------------------------------------

    def stop(self) -> None:
        self.close()
        try:
            down_and_wait(self.root, say=lambda s: self.out.print(f"  [dim]{s}[/]"))
        except LocalnetError as e:
            raise DemoFailed(str(e)) from None
        self.stopped = True
        self.out.print("  every validator process has exited")


def _submit_together(net: Net, txs: list[Tx], vias: list[int]) -> list[dict[str, Any]]:
    """Submit txs[i] to node vias[i], all released at the same instant; their receipts."""
    barrier = threading.Barrier(len(txs))
    receipts: list[dict[str, Any] | None] = [None] * len(txs)
    errors: list[BaseException] = []

    def one(i: int) -> None:
        try:
            barrier.wait(timeout=RECEIPT_TIMEOUT_S)
            receipts[i] = net.submit(txs[i], vias[i])
        except BaseException as e:  # noqa: BLE001 - handed to the main thread
            errors.append(e)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(txs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return [r for r in receipts if r is not None]
