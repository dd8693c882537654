"""seeds/demo.json holds the demo consortium: the default of `init`, `localnet up` and `demo`."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from node.cli.main import main
from node.devnet import story
from node.devnet.provision import DEFAULT_SEED, load_seed

CLASSES = {"warehouse_receipt", "property_deed", "receivable"}


def test_the_seed_holds_the_demo_consortium() -> None:
    seed = load_seed(DEFAULT_SEED)
    roles = [inst["role"] for inst in seed["institutions"]]
    assert roles == ["bank", "warehouse operator", "land registry", "regulator"]
    assert set().union(*(i["classes"] for i in seed["issuers"])) == CLASSES
    assert seed["regulators"] and seed["auditors"]
    assert {a["class"] for a in seed["assets"]} == CLASSES
    for a in seed["assets"]:
        # realistic paper: a document to hash and a few facts, with where the document lives
        assert a["document"] and "doc_uri" in a["meta"] and len(a["meta"]) >= 4, a["asset_id"]


def test_the_demo_story_finds_its_cast_in_the_seed() -> None:
    seed = load_seed(DEFAULT_SEED)
    names = {e["name"] for group in story.KEY_GROUPS for e in seed.get(group, [])}
    wanted = {
        "haitong-metals",
        "riverside-foods",
        "harbour-bank-lending",
        "lin-family",
        "orchard-developments",
        "apex-components",
        "marlow-estates",
        "supervisor-enforcement",
        "ledger-audit",
    }
    assert wanted <= names
    assert {story.COPPER, story.DEED, story.INVOICE} <= {a["asset_id"] for a in seed["assets"]}


def test_init_uses_the_demo_seed_by_default(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["init", "--out", str(tmp_path / "c")])
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "c" / "consortium.json").read_text())
    assert manifest["chain_id"] == json.loads(DEFAULT_SEED.read_text())["chain_id"]
    assert [n["node_id"] for n in manifest["nodes"]] == [i["node_id"] for i in load_seed(DEFAULT_SEED)["institutions"]]
