"""Only parties the ledger knows may write: four real validator processes refuse a fresh key's txs
with 403 on every node and commit nothing of them, while an issuer's txs commit, and a key that an
issuer registers an asset to may submit from then on."""

from __future__ import annotations

import pytest
from cluster import Cluster, wait_for

from chain.crypto import KeyPair
from chain.genesis import Genesis
from chain.tx import Tx
from node.runtime.ledger import audit_data_dir
from node.sdk.client import NotPermitted, RpcError, sign

ISSUER = ("issuers", "northgate-receipts")
OWNER = ("parties", "riverside-foods")


def _assert_unknown_everywhere(cluster: Cluster, txs: list[Tx]) -> None:
    for i in range(len(cluster.nodes)):
        with cluster.client(i) as c:
            for tx in txs:
                with pytest.raises(RpcError) as e:
                    c.tx(tx.tx_id)
                assert e.value.status == 404, (i, e.value)


def test_an_outsider_is_refused_by_every_node_while_an_issuer_commits(cluster: Cluster) -> None:
    issuer, owner, outsider = cluster.key(*ISSUER), cluster.key(*OWNER), KeyPair.generate()
    height = cluster.status(0)["height"]
    flood = [cluster.register(outsider, outsider.public, f"WR-OUT-{i}", height) for i in range(200)]
    for i in range(len(cluster.nodes)):
        with cluster.client(i) as c:
            with pytest.raises(NotPermitted) as e:
                c.submit(flood[i])
            assert (e.value.status, e.value.code) == (403, "not_permitted")
            results = c.submit_batch(list(flood[4:]))
            assert {r["error"]["code"] for r in results} == {"not_permitted"}
    honest = [cluster.register(issuer, owner.public, f"WR-ADM-{i}", height) for i in range(20)]
    with cluster.client(1) as c:
        assert all("tx_id" in r for r in c.submit_batch(list(honest)))
    for i in range(len(cluster.nodes)):
        with cluster.client(i) as c:
            wait_for(lambda: all(c.tx(t.tx_id)["status"] == "committed" for t in honest), 30, f"issuer txs on node {i}")
            account = c.account(outsider.public)
            assert account["roles"] == [] and account["assets"] == []
    _assert_unknown_everywhere(cluster, flood)

    # standing comes from the ledger: once an asset is registered to the key, it may submit
    with cluster.client(2) as c:
        receipt = c.submit(cluster.register(issuer, outsider.public, "WR-ADM-NEW", c.height()), wait=True, timeout=30)
        assert receipt["receipt"]["status"] == "ok"
        move = sign(outsider, cluster.chain_id, "asset.transfer", {"asset_id": "WR-ADM-NEW", "to": owner.public},
                    expires=c.height() + 100)
        assert c.submit(move, wait=True, timeout=30)["receipt"]["status"] == "ok"
    for i in range(len(cluster.nodes)):
        with cluster.client(i) as c:
            wait_for(lambda: c.asset("WR-ADM-NEW")["owner"] == owner.public, 30, f"the newcomer's transfer on node {i}")
    cluster.stop()
    genesis = Genesis.load(cluster.manifest["genesis"])
    for n in cluster.nodes:
        report = audit_data_dir(n["data_dir"], genesis)
        assert report.ok, f"{n['node_id']}: {report}"
