import json

import pytest
from factories import make_consortium

from chain.genesis import Genesis, GenesisError

DOC = make_consortium(4).genesis.doc


def test_loads_and_hashes_stably(tmp_path):
    g = Genesis.from_plain(DOC)
    p = tmp_path / "genesis.json"
    g.write(p)
    again = Genesis.load(p)
    assert again.hash == g.hash
    assert again.validators.n == 4 and again.gov_threshold == 3
    assert again.params.max_block_txs > 0


@pytest.mark.parametrize(
    "field,value",
    [
        ("chain_id", "bad id!"),
        ("time", -1),
        ("validators", []),
        ("validators", [{"node_id": "a", "public": "zz", "address": "h:1"}]),
        ("members", ["nothex"]),
        ("roles", {"ab" * 32: [{"role": "king"}]}),
        ("roles", {"ab" * 32: [{"role": "issuer"}]}),
        ("gov_threshold", 99),
        ("params", {"max_block_txs": 0}),
        ("params", {"unknown_param": 1}),
        ("extra_field", 1),
    ],
)
def test_bad_genesis_names_field(field, value):
    with pytest.raises(GenesisError) as e:
        Genesis.from_plain({**DOC, field: value})
    assert e.value.field.split(".")[0].split("[")[0] == field


def test_missing_field_and_duplicate_validator():
    doc = dict(DOC)
    del doc["members"]
    with pytest.raises(GenesisError, match="members"):
        Genesis.from_plain(doc)
    v = DOC["validators"]
    with pytest.raises(GenesisError, match="twice"):
        Genesis.from_plain({**DOC, "validators": v + [v[0]]})


def test_not_json(tmp_path):
    p = tmp_path / "g.json"
    p.write_text("{not json")
    with pytest.raises(GenesisError, match="not JSON"):
        Genesis.load(p)
    p.write_text(json.dumps({**DOC, "time": 1.5}))
    with pytest.raises(GenesisError):
        Genesis.load(p)
