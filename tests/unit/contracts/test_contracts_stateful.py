"""Random op sequences by random signers, with the ledger's invariants checked after every tx.

The machine draws asset ops and governance ops from small pools (a few assets, documents,
accounts) so that collisions, locks and role changes happen often, and checks:
- every asset has exactly one owner, an account; its status and pledgee agree;
- a redeemed asset never changes again;
- a frozen asset changes owner only by force_transfer; so does a pledged one (a plain transfer
  needs a release first, which is a tx of its own);
- a rejected tx writes nothing; an accepted one changes only the asset it names (plus the
  document index), bumping its version by one;
- asset ids and live document hashes are unique: the doc/ index agrees with the assets;
- governance: the member count matches the member grants, the validator set is never empty,
  an executed proposal never changes again, and a seat that stays in the set keeps its place
  and address whatever happens to its key (rotations) and to the seats around it.
"""

from __future__ import annotations

from typing import Any

from contracts_fixtures import World, doc
from factories import seeded_key
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from chain.crypto import is_account
from contracts import doc_key, read_asset, read_gov, read_proposal, read_roles, read_validator_set
from contracts.standing import has_standing
from contracts.state import standing_key

ASSETS = [f"A{i}" for i in range(5)]
DOCS = [doc(f"d{i}") for i in range(6)]
CLASSES = ["warehouse_receipt", "property_deed", "ship"]
ASSET_OPS = [
    "asset.register",
    "asset.transfer",
    "asset.pledge",
    "asset.release",
    "asset.freeze",
    "asset.unfreeze",
    "asset.force_transfer",
    "asset.amend",
    "asset.redeem",
]
EXTRA_VALIDATOR = seeded_key("validator-extra")
# keys a seat may be rotated to: the extra validator's (so a rotation can block an add and the
# reverse), two fresh ones, and the genesis validator keys (refused while in the set)
ROTATE_KEYS = [EXTRA_VALIDATOR, seeded_key("rotated-a"), seeded_key("rotated-b")]


class Ledger(RuleBasedStateMachine):
    @initialize()
    def start(self) -> None:
        self.w = World()
        c = self.w.c
        self.keys = [c.issuer, c.regulator, c.auditor, *c.users[:4], *c.members]
        self.accounts = [k.public for k in self.keys]
        self.proposals: list[str] = []
        self.executed: dict[str, dict[str, Any]] = {}
        self.known: set[str] = set()  # accounts seen holding a role, owning or holding in pledge
        self.ever_registered: set[str] = set()
        self.seats = read_validator_set(self.w.state)
        for i, asset_id in enumerate(ASSETS[:2]):
            self.w.register(asset_id, c.users[i], f"d{i}")

    def _assets(self) -> dict[str, dict[str, Any]]:
        return {a: dict(x) for a in ASSETS if (x := read_asset(self.w.state, a)) is not None}

    def _args(self, op: str, asset_id: str, who: int, d: int, cls: str) -> dict[str, Any]:
        other = self.accounts[who]
        by_op: dict[str, dict[str, Any]] = {
            "asset.register": {"asset_id": asset_id, "class": cls, "owner": other, "doc_hash": DOCS[d], "meta": {}},
            "asset.transfer": {"asset_id": asset_id, "to": other},
            "asset.pledge": {"asset_id": asset_id, "pledgee": other, "terms_hash": DOCS[d]},
            "asset.release": {"asset_id": asset_id},
            "asset.freeze": {"asset_id": asset_id, "reason": "order"},
            "asset.unfreeze": {"asset_id": asset_id, "reason": "lifted"},
            "asset.force_transfer": {"asset_id": asset_id, "to": other, "order_hash": DOCS[d]},
            "asset.amend": {"asset_id": asset_id, "doc_hash": DOCS[d], "reason": "fix"},
            "asset.redeem": {"asset_id": asset_id},
        }
        return by_op[op]

    def _signer(self, actor: str, anyone: int, op: str, asset_id: str) -> int:
        """Mostly the party the op expects, so that ops succeed often; sometimes anyone at all."""
        asset = read_asset(self.w.state, asset_id)
        if actor == "any":
            return anyone
        if asset is None or op in ("asset.register", "asset.amend"):
            return 0  # the issuer
        expected = {"asset.release": asset["pledgee"], "asset.freeze": self.accounts[1]}
        expected.update(dict.fromkeys(("asset.unfreeze", "asset.force_transfer"), self.accounts[1]))
        wanted = expected.get(op, asset["owner"])
        return self.accounts.index(wanted) if wanted in self.accounts else anyone

    @rule(
        actor=st.sampled_from(["expected", "expected", "expected", "any"]),
        anyone=st.integers(0, 10),
        op=st.sampled_from(ASSET_OPS),
        asset_id=st.sampled_from(ASSETS),
        who=st.integers(0, 10),
        d=st.integers(0, len(DOCS) - 1),
        cls=st.sampled_from(CLASSES),
    )
    def asset_op(self, actor: str, anyone: int, op: str, asset_id: str, who: int, d: int, cls: str) -> None:
        existing = sorted(self._assets())
        if op != "asset.register" and actor != "any" and asset_id not in existing and existing:
            asset_id = existing[d % len(existing)]  # mostly act on assets that exist
        signer = self._signer(actor, anyone, op, asset_id)
        before = self._assets()
        writes, receipt = self.w.run_tx(self.w.sign(self.keys[signer], op, self._args(op, asset_id, who, d, cls)))
        after = self._assets()
        if receipt["status"] == "rejected":
            assert writes == {} and after == before
            return
        changed = {a for a in ASSETS if before.get(a) != after.get(a)}
        assert changed == {asset_id}, (op, changed)
        new, old = after[asset_id], before.get(asset_id)
        parties = {new["owner"], new["pledgee"]} - {None}
        assert set(writes) <= {f"asset/{asset_id}"} | {doc_key(h) for h in DOCS} | {standing_key(p) for p in parties}
        for party in parties:  # whoever the asset now names is known to the ledger from here on
            assert has_standing(self.w.state, party)
        if old is None:
            assert op == "asset.register" and new["version"] == 1
            return
        assert old["status"] != "redeemed", "a redeemed asset changed"
        assert new["version"] == old["version"] + 1 and new["updated_at"] == receipt["height"]
        assert new["asset_id"] == old["asset_id"] and new["class"] == old["class"] and new["issuer"] == old["issuer"]
        if new["owner"] != old["owner"]:
            assert op in ("asset.transfer", "asset.force_transfer")
            if old["status"] in ("frozen", "pledged"):
                assert op == "asset.force_transfer", f"a {old['status']} asset moved by {op}"
        if op == "asset.force_transfer":
            assert (new["status"], new["pledgee"]) == (old["status"], old["pledgee"]), "a forced move lifted a lock"

    @rule(
        signer=st.sampled_from([7, 8, 9, 10, 3]),
        action=st.sampled_from(["grant_role", "revoke_role", "add_validator", "remove_validator", "rotate_validator"]),
        who=st.integers(0, 10),
        role=st.sampled_from(["member", "issuer", "regulator", "auditor"]),
        cls=st.sampled_from(CLASSES),
        node=st.integers(0, 4),
    )
    def propose(self, signer: int, action: str, who: int, role: str, cls: str, node: int) -> None:
        if action in ("grant_role", "revoke_role"):
            params: dict[str, Any] = {"account": self.accounts[who], "role": role}
            if role == "issuer" and action == "grant_role":
                params["classes"] = [cls]
        elif action == "add_validator":
            params = {"node_id": "v4", "public": EXTRA_VALIDATOR.public, "address": "127.0.0.1:27004"}
        elif action == "rotate_validator":
            pool = [*ROTATE_KEYS, *self.w.c.validator_keys]
            params = {"node_id": f"v{node}", "public": pool[who % len(pool)].public}
        else:
            params = {"node_id": f"v{node}"}
        _, receipt = self.w.run_tx(self.w.sign(self.keys[signer], "gov.propose", {"action": action, "params": params}))
        if receipt["status"] == "ok":
            self.proposals.append(receipt["tx_id"])

    @rule(
        signer=st.sampled_from([7, 8, 9, 10, 7, 8, 9, 10, 0, 3]),
        pick=st.integers(0, 1000),
        unknown=st.sampled_from([False] * 9 + [True]),
        newest=st.booleans(),
    )
    def approve(self, signer: int, pick: int, unknown: bool, newest: bool) -> None:
        if not self.proposals and not unknown:
            return
        # half the time the newest proposal, so that actions reach their threshold often (with
        # random picks alone, a run executed a validator-set change about once)
        pid = "ee" * 32 if unknown else self.proposals[-1 if newest else pick % len(self.proposals)]
        self.w.run_tx(self.w.sign(self.keys[signer], "gov.approve", {"proposal_id": pid}))

    # asset ops are drawn three times as often as each governance rule
    asset_op_again = asset_op
    asset_op_third = asset_op

    @invariant()
    def assets_are_well_formed(self) -> None:
        for a in self._assets().values():
            assert is_account(a["owner"])
            assert a["status"] in ("active", "pledged", "frozen", "redeemed")
            if a["status"] == "pledged":
                assert a["pledgee"] is not None
            if a["status"] in ("active", "redeemed"):
                assert a["pledgee"] is None

    @invariant()
    def a_registered_id_stays_registered(self) -> None:
        """Absence proofs rest on this: no op deletes an asset's state (a redeemed one stays), so
        an id absent at a height was never registered up to it."""
        now = set(self._assets())
        assert self.ever_registered <= now, f"{sorted(self.ever_registered - now)} vanished"
        self.ever_registered |= now

    @invariant()
    def document_index_agrees_with_assets(self) -> None:
        live = {a["doc_hash"]: a["asset_id"] for a in self._assets().values() if a["status"] != "redeemed"}
        live_count = sum(1 for a in self._assets().values() if a["status"] != "redeemed")
        assert len(live) == live_count, "two live assets share a document hash"
        for h in DOCS:
            assert self.w.state.get(doc_key(h)) == live.get(h)

    @invariant()
    def standing_is_gained_and_never_lost(self) -> None:
        for acct in self.accounts:
            if read_roles(self.w.state, acct):
                self.known.add(acct)
        for a in self._assets().values():
            self.known.update({a["owner"], a["pledgee"]} - {None})
        for acct in self.accounts:
            assert has_standing(self.w.state, acct) == (acct in self.known), acct[:12]

    @invariant()
    def governance_is_consistent(self) -> None:
        members = sum(1 for acct in self.accounts if any(g["role"] == "member" for g in read_roles(self.w.state, acct)))
        assert read_gov(self.w.state).member_count == members >= 1
        assert read_validator_set(self.w.state).n >= 1
        for pid in self.proposals:
            p = read_proposal(self.w.state, pid)
            if pid in self.executed:
                assert p == self.executed[pid], "an executed proposal changed"
            elif p["status"] == "executed":
                self.executed[pid] = p


    @invariant()
    def seats_keep_their_place_and_address(self) -> None:
        now = read_validator_set(self.w.state)
        was = {v.node_id: v for v in self.seats.validators}
        stayed = [v for v in now.validators if v.node_id in was]
        assert [v.node_id for v in stayed] == [v.node_id for v in self.seats.validators if v.node_id in now.by_node_id]
        for v in stayed:
            assert v.address == was[v.node_id].address, f"{v.node_id} moved"
        self.seats = now


TestLedger = Ledger.TestCase
TestLedger.settings = settings(
    max_examples=60, stateful_step_count=40, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
