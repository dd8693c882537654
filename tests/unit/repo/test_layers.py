"""The tree's architecture, enforced: what each layer and each package of node/ may import
(docs/architecture.md, "The node's packages"). Every import counts, including those inside
functions, so a lazy import cannot hide a dependency that points the wrong way."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
OURS = ("chain", "contracts", "node", "seeds")

# package -> the packages of ours it may import (itself always allowed)
ALLOWED: dict[str, set[str]] = {
    "chain": set(),
    "contracts": {"chain"},
    "node.consensus": {"chain", "node.errors"},
    "node.p2p": {"chain", "node.errors"},
    "node.rpc": {"chain", "contracts", "node.errors", "node.version"},
    "node.sdk": {"chain", "node.errors"},
    "node.runtime": {"chain", "contracts", "node.errors", "node.version", "node.consensus", "node.p2p", "node.rpc"},
    "node.explorer": {"chain", "contracts", "node.errors", "node.rpc", "node.sdk", "node.runtime"},
    "node.devnet": {
        "chain", "contracts", "seeds", "node.errors", "node.console", "node.sdk", "node.runtime", "node.rpc",
    },
    "node.cli": {
        "chain", "contracts", "seeds", "node.errors", "node.version", "node.console", "node.consensus",
        "node.sdk", "node.runtime", "node.rpc", "node.explorer", "node.devnet",
    },
}
# The shared modules at node/'s top: each imports only what is listed.
SHARED: dict[str, set[str]] = {
    "node": set(),
    "node.errors": {"chain.errors", "contracts.errors"},  # the three error roots, mapped to exit codes
    "node.version": set(),
    "node.console": set(),
    "node.client": {"node.sdk"},  # the SDK's first import path, kept for programs written against it
    "node.__main__": {"node.cli"},
}
# The consensus core is a plain state machine: no I/O, clock, threads or randomness.
CONSENSUS_FORBIDDEN = {
    "asyncio", "socket", "time", "random", "os", "threading", "subprocess", "select", "ssl",
    "aiohttp", "httpx", "rocksdict", "logging", "secrets", "datetime", "multiprocessing",
}
# What the SDK may pull in from outside the project: an issuer's program stays slim.
SDK_THIRD_PARTY = {"httpx", "nacl", "msgpack"}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            # `from node.runtime import ledger` may import the module node.runtime.ledger
            if node.module.split(".")[0] in OURS:
                names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _owner(module: str) -> str | None:
    """The package of ALLOWED a module of ours belongs to, or its own name if it is SHARED."""
    if module in SHARED:
        return module
    for name in sorted(ALLOWED, key=len, reverse=True):
        if module == name or module.startswith(name + "."):
            return name
    return None


def _covered(imported: str, allowed: set[str]) -> bool:
    return any(imported == a or imported.startswith(a + ".") for a in allowed)


SOURCES = sorted(p for top in ("chain", "contracts", "node") for p in (ROOT / top).rglob("*.py"))


def test_every_node_module_sits_in_a_package_or_is_a_named_shared_module() -> None:
    loose = [_module_name(p) for p in (ROOT / "node").glob("*.py") if p.name != "__init__.py"]
    assert sorted(m for m in loose if m not in SHARED) == []


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_point_only_where_the_architecture_allows(path: Path) -> None:
    me = _module_name(path)
    owner = _owner(me)
    assert owner is not None, f"{me} belongs to no package the architecture names"
    allowed = (ALLOWED.get(owner) or SHARED.get(owner) or set()) | {owner}
    ours = {i for i in _imports(path) if i.split(".")[0] in OURS and i != "node"}
    wrong = sorted(i for i in ours if not _covered(i, allowed))
    assert wrong == [], f"{me} ({owner}) may not import {wrong}"


@pytest.mark.parametrize("path", sorted((ROOT / "node" / "consensus").rglob("*.py")), ids=lambda p: p.name)
def test_the_consensus_core_does_no_io(path: Path) -> None:
    used = {i.split(".")[0] for i in _imports(path)}
    assert sorted(used & CONSENSUS_FORBIDDEN) == []


@pytest.mark.parametrize("path", sorted((ROOT / "node" / "sdk").rglob("*.py")), ids=lambda p: p.name)
def test_the_sdk_needs_nothing_of_the_node_and_few_libraries(path: Path) -> None:
    third_party = {
        i.split(".")[0] for i in _imports(path)
        if i.split(".")[0] not in OURS and not _is_stdlib(i.split(".")[0])
    }
    assert sorted(third_party - SDK_THIRD_PARTY) == []


def _is_stdlib(name: str) -> bool:
    import sys

    return name in sys.stdlib_module_names or name == "__future__"


def test_the_checker_sees_a_wrong_import(tmp_path: Path) -> None:
    # the check itself must be able to fail: a consensus module importing the runtime is caught
    bad = tmp_path / "bad.py"
    bad.write_text("import asyncio\nfrom node.runtime import ledger\n")
    assert not _covered("node.runtime.ledger", ALLOWED["node.consensus"] | {"node.consensus"})
    assert {"asyncio", "node.runtime", "node.runtime.ledger"} <= _imports(bad)
