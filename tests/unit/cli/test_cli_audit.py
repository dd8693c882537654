"""`titlechain audit verify | proof | verify-proof` on real chains, clean and tampered, offline and over HTTP."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from factories import Consortium, make_consortium, mix_views
from ledger_fixtures import LedgerChain, build_story
from ledger_node import LedgerNode, serve_in_thread
from rpc_fake import FakeNode, signed

from chain.block import Certificate
from chain.crypto import Domain, KeyPair
from chain.database import Database, open_db
from chain.encoding import canonical, decode
from chain.tx import parse_tx
from node.cli.main import main


def run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


class Original:
    def __init__(self, path: Path, consortium: Consortium, genesis: Path) -> None:
        self.path = path
        self.c = consortium
        self.genesis = str(genesis)


@pytest.fixture(scope="module")
def original(tmp_path_factory: pytest.TempPathFactory) -> Original:
    root = tmp_path_factory.mktemp("cli-audit")
    ch = build_story(root / "node")
    ch.close()
    ch.c.genesis.write(root / "genesis.json")
    return Original(root / "node", ch.c, root / "genesis.json")


@pytest.fixture(scope="module")
def other_genesis(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("other") / "genesis.json"
    make_consortium(chain_id="another-chain").genesis.write(path)
    return str(path)


Edit = Callable[[Database], None]


def tampered(original: Original, tmp_path: Path, edit: Edit) -> Path:
    copy = tmp_path / "copy"
    shutil.copytree(original.path, copy)
    db = open_db(copy, create=False)
    try:
        edit(db)
    finally:
        db.close()
    return copy


def drop_signature(height: int) -> Edit:
    def edit(db: Database) -> None:
        key = b"c/%012d" % height
        cert = Certificate.from_plain(decode(db.get(key))).to_plain()
        cert["signatures"].pop()
        db.put(key, canonical(cert))

    return edit


STORY = make_consortium()  # build_story's consortium: the same seeded keys


def mix_views_at(height: int) -> Edit:
    """The stored certificate rebuilt from its block's commits in views 0 and 2 (defect 3)."""

    def edit(db: Database) -> None:
        key = b"c/%012d" % height
        cert = Certificate.from_plain(decode(db.get(key)))
        db.put(key, canonical(mix_views(cert, STORY.validator_keys, STORY.genesis.chain_id, 2).to_plain()))

    return edit


def rewrite_receipt(height: int, index: int, status: str) -> Edit:
    def edit(db: Database) -> None:
        tx_id = decode(db.get(b"b/%012d" % height))["tx_ids"][index]
        key = b"t/" + db.get(b"i/" + tx_id.encode())
        record = decode(db.get(key))
        record[3]["status"] = status
        record[3]["error"] = None
        db.put(key, canonical(record))

    return edit


def rewrite_header_time(height: int) -> Edit:
    def edit(db: Database) -> None:
        key = b"b/%012d" % height
        block = decode(db.get(key))
        block["header"]["time"] += 1
        db.put(key, canonical(block))

    return edit


@contextmanager
def serving(path: Path, consortium: Consortium, node_type: type[LedgerNode] = LedgerNode) -> Iterator[str]:
    """The data dir at path, served over the real RPC by an in-process ledger."""
    ch = LedgerChain(path, consortium)
    try:
        with serve_in_thread(node_type(ch)) as url:
            yield url
    finally:
        ch.close()


# -- audit verify --------------------------------------------------------------------------------------


def test_a_clean_data_dir_passes(original: Original) -> None:
    result = run("audit", "verify", "--data-dir", str(original.path), "--genesis", original.genesis)
    assert result.exit_code == 0, result.stdout + result.stderr
    assert "audit ok" in result.stdout and "5 blocks and 9 txs" in result.stdout


def test_a_clean_chain_passes_over_rpc(original: Original, tmp_path: Path) -> None:
    copy = tampered(original, tmp_path, lambda db: None)  # the node's ledger opens it for writing
    with serving(copy, original.c) as url:
        result = run("audit", "verify", "--rpc", url, "--genesis", original.genesis, "--json")
    assert result.exit_code == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert (report["ok"], report["blocks"], report["txs"], report["height"]) == (True, 5, 9, None)
    offline = run("audit", "verify", "--data-dir", str(original.path), "--genesis", original.genesis, "--json")
    assert json.loads(offline.stdout)["state_root"] == report["state_root"]


@pytest.mark.parametrize(
    ("edit", "height", "why"),
    [
        (drop_signature(4), 4, "certificate"),
        (mix_views_at(2), 2, "not its commit to this block in view 2"),
        (rewrite_header_time(3), 3, "certificate"),
        (rewrite_receipt(2, 1, "ok"), 2, "receipts"),
    ],
    ids=["certificate", "certificate-mixing-views", "header", "receipt"],
)
@pytest.mark.parametrize("kind", ["data_dir", "rpc"])
def test_tampering_fails_at_its_height(
    original: Original, tmp_path: Path, kind: str, edit: Edit, height: int, why: str
) -> None:
    copy = tampered(original, tmp_path, edit)
    if kind == "data_dir":
        result = run("audit", "verify", "--data-dir", str(copy), "--genesis", original.genesis)
    else:
        with serving(copy, original.c) as url:
            result = run("audit", "verify", "--rpc", url, "--genesis", original.genesis)
    assert result.exit_code == 1, result.stdout + result.stderr
    assert "audit FAILED" in result.stdout
    assert f"first bad height: {height}\n" in result.stdout
    assert why in result.stdout.split("why:", 1)[1]


def test_a_node_serving_another_tx_under_an_id_fails_there(original: Original, tmp_path: Path) -> None:
    class Liar(LedgerNode):
        def tx_info(self, tx_id: str) -> dict[str, Any] | None:
            info = super().tx_info(tx_id)
            if info is not None and info["height"] == 3:
                info = {**info, "tx": self.reads.tx(self.reads.block(1)["tx_ids"][0])["tx"]}
            return info

    copy = tampered(original, tmp_path, lambda db: None)
    with serving(copy, original.c, Liar) as url:
        result = run("audit", "verify", "--rpc", url, "--genesis", original.genesis, "--json")
    report = json.loads(result.stdout)
    assert result.exit_code == 1
    assert (report["ok"], report["height"]) == (False, 3) and "another tx" in report["reason"]


def test_another_chains_genesis_fails_at_height_0(original: Original, other_genesis: str, tmp_path: Path) -> None:
    result = run("audit", "verify", "--data-dir", str(original.path), "--genesis", other_genesis)
    assert result.exit_code == 1 and "first bad height: 0" in result.stdout
    copy = tampered(original, tmp_path, lambda db: None)
    with serving(copy, original.c) as url:
        result = run("audit", "verify", "--rpc", url, "--genesis", other_genesis)
    assert result.exit_code == 1 and "first bad height: 0" in result.stdout and "another chain" in result.stdout


def test_a_fake_chain_over_rpc_fails_re_execution(tmp_path: Path) -> None:
    """The FakeNode's blocks are well signed and certified, but their state roots are made up."""
    node = FakeNode()
    tx = signed(node)
    node.mempool[tx.tx_id] = tx
    node.commit()
    node.genesis.write(tmp_path / "genesis.json")
    with serve_in_thread(node) as url:
        result = run("audit", "verify", "--rpc", url, "--genesis", str(tmp_path / "genesis.json"))
    assert result.exit_code == 1
    assert "first bad height: 1" in result.stdout and "state_root differs" in result.stdout


def test_progress_is_reported(original: Original) -> None:
    result = run("audit", "verify", "--data-dir", str(original.path), "--genesis", original.genesis, "--progress")
    assert result.exit_code == 0, result.stdout + result.stderr
    assert "5/5" in result.stderr  # the bar's last state, drawn on stderr


def test_audit_usage_errors_exit_2(original: Original, tmp_path: Path) -> None:
    for args in (
        ["--data-dir", str(original.path)],  # no genesis
        ["--genesis", original.genesis],  # no source
        ["--rpc", "http://127.0.0.1:9", "--data-dir", str(original.path), "--genesis", original.genesis],
        ["--data-dir", str(tmp_path), "--genesis", original.genesis],
        ["--data-dir", str(original.path), "--genesis", str(original.path / "CURRENT")],
    ):
        result = run("audit", "verify", *args)
        assert result.exit_code == 2, (args, result.stdout, result.stderr)


def test_an_unreachable_node_exits_1(original: Original) -> None:
    result = run("audit", "verify", "--rpc", "http://127.0.0.1:9", "--genesis", original.genesis)
    assert result.exit_code == 1 and "cannot reach the node" in result.stderr


# -- proofs -----------------------------------------------------------------------------------------


def fetched_proof(original: Original, root: Path, asset_id: str) -> Path:
    """`audit proof ASSET_ID --out FILE` from the story (head 5) served over the RPC."""
    copy = root / "node"
    shutil.copytree(original.path, copy)
    out = root / f"{asset_id}.json"
    with serving(copy, original.c) as url:
        result = run("audit", "proof", asset_id, "--rpc", url, "--out", str(out))
    assert result.exit_code == 0, result.stderr
    assert f"proof of {asset_id} as of height 5 written to {out}" in result.stderr
    return out


@pytest.fixture(scope="module")
def proof_file(original: Original, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fetched_proof(original, tmp_path_factory.mktemp("proof"), "WR-1")


def test_proof_to_stdout_is_the_same_json(original: Original, proof_file: Path, tmp_path: Path) -> None:
    copy = tampered(original, tmp_path, lambda db: None)
    with serving(copy, original.c) as url:
        result = run("audit", "proof", "WR-1", "--rpc", url)
        missing = run("audit", "proof", "NO-SUCH", "--rpc", url)
    assert result.exit_code == 0
    assert json.loads(result.stdout) == json.loads(proof_file.read_text())
    # an id no asset holds is answered with a proof of its absence, not an error
    assert missing.exit_code == 0, missing.stderr
    assert (json.loads(missing.stdout)["claim"], json.loads(missing.stdout)["asset"]) == ("absence", None)


def test_a_valid_proof_names_owner_status_and_height(original: Original, proof_file: Path) -> None:
    result = run("audit", "verify-proof", str(proof_file), "--genesis", original.genesis)
    assert result.exit_code == 0, result.stdout + result.stderr
    assert "proof valid: asset WR-1" in result.stdout
    assert original.c.users[4].public in result.stdout and "active" in result.stdout and "height  5" in result.stdout
    as_json = json.loads(run("audit", "verify-proof", str(proof_file), "--genesis", original.genesis, "--json").stdout)
    assert (as_json["ok"], as_json["owner"], as_json["status"], as_json["height"]) == (
        True,
        original.c.users[4].public,
        "active",
        5,
    )


def _mixed(plain: dict[str, Any]) -> dict[str, Any]:
    cert = Certificate.from_plain(plain)
    return mix_views(cert, STORY.validator_keys, STORY.genesis.chain_id, cert.view + 2).to_plain()


def _altered(proof_file: Path, tmp_path: Path, edit: Callable[[dict[str, Any]], None]) -> str:
    proof = json.loads(proof_file.read_text())
    edit(proof)
    out = tmp_path / "altered.json"
    out.write_text(json.dumps(proof))
    return str(out)


@pytest.mark.parametrize(
    ("edit", "why"),
    [
        (lambda p: p["asset"].update(owner="00" * 32), "state_proof"),
        (lambda p: p["header"].update(height=4), "certificate"),
        (lambda p: p["certificate"]["signatures"].pop(), "certificate"),
        (lambda p: p.update(certificate=_mixed(p["certificate"])), "not its commit to this block in view 2"),
        (lambda p: p["certificate"].pop("view"), "certificate: a certificate is exactly"),
        (lambda p: p.update(version=2), "version: the proof is version 2, this verifier reads version 5"),
        (lambda p: p.pop("validator_changes"), "fields"),
    ],
    ids=["owner", "header", "signature", "mixed-views", "no-view", "old-version", "field"],
)
def test_an_altered_proof_fails_with_the_reason(
    original: Original, proof_file: Path, tmp_path: Path, edit: Any, why: str
) -> None:
    _refused(original, proof_file, tmp_path, edit, why)


def _refused(original: Original, proof_file: Path, tmp_path: Path, edit: Any, why: str) -> None:
    result = run("audit", "verify-proof", _altered(proof_file, tmp_path, edit), "--genesis", original.genesis)
    assert result.exit_code == 1
    assert result.stdout.startswith("proof INVALID:") and why in result.stdout


def test_a_proof_checked_against_another_genesis_fails(proof_file: Path, other_genesis: str) -> None:
    result = run("audit", "verify-proof", str(proof_file), "--genesis", other_genesis)
    assert result.exit_code == 1 and "chain_id" in result.stdout


def test_not_json_is_an_invalid_proof(original: Original, tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.json"
    garbage.write_text("{ nope")
    result = run("audit", "verify-proof", str(garbage), "--genesis", original.genesis)
    assert result.exit_code == 1 and "not JSON" in result.stdout
    assert run("audit", "verify-proof", str(tmp_path / "absent.json"), "--genesis", original.genesis).exit_code == 2


def test_a_fake_nodes_proof_is_fetched_and_refused(original: Original, tmp_path: Path) -> None:
    node = FakeNode()
    tx = signed(node)
    node.mempool[tx.tx_id] = tx
    node.commit()
    out = tmp_path / "fake.json"
    with serve_in_thread(node) as url:
        fetched = run("audit", "proof", tx.args["asset_id"], "--rpc", url, "--out", str(out))
    assert fetched.exit_code == 0, fetched.stderr
    node.genesis.write(tmp_path / "genesis.json")
    result = run("audit", "verify-proof", str(out), "--genesis", str(tmp_path / "genesis.json"))
    assert result.exit_code == 1 and "state_proof" in result.stdout


# -- absence proofs ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def absence_file(original: Original, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fetched_proof(original, tmp_path_factory.mktemp("absence"), "WR-NEVER")


def test_a_valid_absence_proof_says_so_with_its_height(original: Original, absence_file: Path) -> None:
    result = run("audit", "verify-proof", str(absence_file), "--genesis", original.genesis)
    assert result.exit_code == 0, result.stdout + result.stderr
    assert result.stdout.startswith("proof valid: asset WR-NEVER is absent as of height 5\n")
    as_json = json.loads(
        run("audit", "verify-proof", str(absence_file), "--genesis", original.genesis, "--json").stdout
    )
    assert (as_json["ok"], as_json["claim"], as_json["exists"], as_json["owner"], as_json["height"]) == (
        True, "absence", False, None, 5,
    )


@pytest.mark.parametrize(
    ("edit", "why"),
    [
        (lambda p: p.update(asset_id="WR-1"), "state_proof: does not show 'asset/WR-1' absent"),
        (lambda p: p.update(asset_id="WR-3"), "state_proof: does not show 'asset/WR-3' absent"),  # redeemed
        (lambda p: p.update(claim="ownership"), "asset: an ownership proof carries"),
        (lambda p: p.update(certificate=_mixed(p["certificate"])), "not its commit to this block in view 2"),
        (lambda p: p["header"].update(state_root="00" * 32), "certificate"),
    ],
    ids=["registered", "redeemed", "claim", "mixed-views", "root"],
)
def test_an_altered_absence_proof_fails_with_the_reason(
    original: Original, absence_file: Path, tmp_path: Path, edit: Any, why: str
) -> None:
    _refused(original, absence_file, tmp_path, edit, why)


def forge_tx_signature(height: int) -> Edit:
    """The block's first tx re-signed by a key other than its signer's: a real, well-formed Ed25519
    signature (what anyone holding a key and write access to the data dir could make), but not the
    signer's. tx ids and the tx root hash the body only, so only the signature check can see it."""

    def edit(db: Database) -> None:
        key = b"t/" + db.get(b"i/" + decode(db.get(b"b/%012d" % height))["tx_ids"][0].encode())
        record = decode(db.get(key))
        tx = parse_tx(record[2])
        record[2]["sig"] = KeyPair.generate().sign(Domain.TX, tx.body_bytes)
        db.put(key, canonical(record))

    return edit


def test_parallel_signature_checks_name_the_forged_tx_height(original: Original, tmp_path: Path) -> None:
    copy = tampered(original, tmp_path, forge_tx_signature(3))
    args = ["audit", "verify", "--data-dir", str(copy), "--genesis", original.genesis, "--quiet"]
    parallel = run(*args, "--workers", "2")
    assert parallel.exit_code == 1, parallel.stdout + parallel.stderr
    assert "first bad height: 3" in parallel.stdout and "tx 0 (" in parallel.stdout
    assert "bad signature" in parallel.stdout
    # the same report, word for word, as the checks made in this one process
    assert run(*args, "--workers", "1").stdout == parallel.stdout
