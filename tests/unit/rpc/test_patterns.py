"""Identifiers match whole strings: no pattern of the project accepts a trailing newline or any
control character (Python's `$` matches before a final newline: `WR-1` and `WR-1\\n` were once two
assets), and the RPC refuses such ids in paths with 400."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chain.genesis import CHAIN_ID_PATTERN, CLASS_PATTERN
from chain.patterns import WholePattern
from chain.tx import OP_PATTERN, TxError
from chain.validators import ADDRESS_PATTERN, NODE_ID_PATTERN
from contracts import validate_args
from contracts.args import ASSET_ID_PATTERN
from node.cli import common as cli_common
from node.cli import tx as cli_tx
from node.rpc import base, paging
from node.runtime import config

PATTERNS = {
    "asset_id": ASSET_ID_PATTERN, "class": CLASS_PATTERN, "chain_id": CHAIN_ID_PATTERN, "op": OP_PATTERN,
    "node_id": NODE_ID_PATTERN, "address": ADDRESS_PATTERN, "rpc digits": base.DIGITS, "rpc seconds": base._SECONDS,
    "cli url": cli_common._URL, "cli arg name": cli_tx.NAME, "host name": config.HOST_NAME,
    "history cursor": paging.HISTORY_CURSOR,
}
CONTROL = st.characters(categories=["Cc"]) | st.sampled_from(["\n", "\r", "\x00", "\x7f", "\x85", "\u2028"])


def test_every_whole_pattern_of_the_project_is_listed_here() -> None:
    import chain.genesis
    import chain.tx
    import chain.validators
    import contracts.args
    modules = (chain.genesis, chain.tx, chain.validators, contracts.args, cli_common, cli_tx, config, paging, base)
    found = {id(v) for mod in modules for v in vars(mod).values() if isinstance(v, WholePattern)}
    assert found <= {id(p) for p in PATTERNS.values()}


@settings(max_examples=300, deadline=None)
@given(data=st.data(), name=st.sampled_from(sorted(PATTERNS)), bad=CONTROL)
def test_no_pattern_accepts_a_control_character_anywhere(data: st.DataObject, name: str, bad: str) -> None:
    pattern = PATTERNS[name]
    good = data.draw(st.from_regex(pattern.pattern.removesuffix("$") + r"\Z", fullmatch=True))
    assert pattern.matches(good)
    at = data.draw(st.integers(0, len(good)))
    assert not pattern.matches(good[:at] + bad + good[at:]), (name, good, at, bad)
    assert not pattern.matches(good + "\n")


def test_anchors_are_required_and_non_str_never_matches() -> None:
    with pytest.raises(ValueError):
        WholePattern("[a-z]+")
    assert not ASSET_ID_PATTERN.matches(b"WR-1") and not ASSET_ID_PATTERN.matches(None)


@pytest.mark.parametrize("asset_id", ["WR-1\n", "WR-1\r\n", "WR-1\x00", "\nWR-1"])
def test_register_refuses_an_id_with_a_newline_or_control_character(asset_id: str) -> None:
    args = {"asset_id": asset_id, "class": "warehouse_receipt", "owner": "cd" * 32, "doc_hash": "ab" * 32, "meta": {}}
    validate_args("asset.register", {**args, "asset_id": "WR-1"})
    with pytest.raises(TxError) as e:
        validate_args("asset.register", args)
    assert e.value.code == "invalid_args"
