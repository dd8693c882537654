"""A client written in JavaScript from docs/protocol.md signs every test vector byte for byte,
and encodes the awkward corners of canonical msgpack exactly as chain/encoding.py does."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from js_client import run_client

from chain.encoding import canonical

VECTORS = Path(__file__).resolve().parents[2] / "vectors"


def test_js_client_signs_every_vector_identically() -> None:
    code, report, err = run_client("vectors", str(VECTORS))
    assert code == 0 and report["failures"] == [], (report, err)
    txs = json.loads((VECTORS / "tx_vectors.json").read_text())["txs"]
    assert report["checked"]["txs"] == len(txs) >= 3
    assert report["checked"]["commit_votes"] >= 1
    # the JS client checks the valid certificate (and signs its votes again) and refuses each invalid one
    invalid = json.loads((VECTORS / "commit_vectors.json").read_text())["invalid_certificates"]
    assert report["checked"]["certificates"] == 1 + len(invalid) >= 4


def test_js_client_notices_a_changed_vector(tmp_path: Path) -> None:
    """The comparison can fail: one flipped signature byte in a copy of the vectors is reported."""
    for f in VECTORS.glob("*.json"):
        (tmp_path / f.name).write_text(f.read_text())
    doc = json.loads((tmp_path / "tx_vectors.json").read_text())
    sig = doc["txs"][0]["sig"]
    doc["txs"][0]["sig"] = ("0" if sig[0] != "0" else "1") + sig[1:]
    (tmp_path / "tx_vectors.json").write_text(json.dumps(doc))
    code, report, _ = run_client("vectors", str(tmp_path))
    assert code == 1 and any("txs[0] sig" in f for f in report["failures"]), report


def test_js_client_refuses_a_certificate_moved_to_another_view(tmp_path: Path) -> None:
    for f in VECTORS.glob("*.json"):
        (tmp_path / f.name).write_text(f.read_text())
    doc = json.loads((tmp_path / "commit_vectors.json").read_text())
    doc["certificate"]["view"] += 1  # the same signatures claimed for a later view: none verifies
    (tmp_path / "commit_vectors.json").write_text(json.dumps(doc))
    code, report, _ = run_client("vectors", str(tmp_path))
    assert code == 1 and any("the valid certificate" in f and "does not verify" in f for f in report["failures"]), report


def _big(v: Any) -> Any:
    """JSON for the JS side: integers beyond 2^53 travel as {"$int": "decimal"}."""
    if type(v) is int and abs(v) > 2**53 - 1:
        return {"$int": str(v)}
    if isinstance(v, list):
        return [_big(x) for x in v]
    if isinstance(v, dict):
        return {k: _big(x) for k, x in v.items()}
    return v


def encoding_cases() -> list[dict[str, Any]]:
    ints = [0, 1, 127, 128, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**53, 2**64 - 1,
            -1, -32, -33, -128, -129, -32768, -32769, -(2**31), -(2**31) - 1, -(2**63)]
    strings = ["", "a" * 31, "a" * 32, "a" * 255, "a" * 256, "é" * 40000, "a" * 65536, "日本"]
    values: list[Any] = [*ints, *strings, None, True, False, [], {}, list(range(15)), list(range(16)),
                         {f"k{i:02}": i for i in range(15)}, {f"k{i:02}": i for i in range(16)}]
    # keys whose UTF-16 order differs from their UTF-8 order: U+FFFF sorts before U+1F600 in UTF-8
    values.append({"\U0001f600": 1, "\uffff": 2, "z": 3, "A": 4, "é": 5})
    values.append({"body": {"args": {"nested": [{"b": 1, "a": [True, None]}]}, "expires": 2**40}})
    cases = [{"value": _big(v), "hex": canonical(v).hex()} for v in values]
    # not plain values: both sides refuse them
    cases += [{"value": 1.5, "hex": None}, {"value": {"$int": str(2**64)}, "hex": None},
              {"value": {"$int": str(-(2**63) - 1)}, "hex": None}]
    return cases


def test_js_canonical_encoding_matches_python(tmp_path: Path) -> None:
    cases = encoding_cases()
    assert canonical({"b": 1, "a": [True, None]}).hex() == "82a16192c3c0a16201"  # docs/protocol.md's example
    f = tmp_path / "cases.json"
    f.write_text(json.dumps(cases))
    code, report, err = run_client("encode", str(f))
    assert code == 0 and report["failures"] == [], (report["failures"][:3], err)
    assert report["checked"]["encodings"] == len(cases)
