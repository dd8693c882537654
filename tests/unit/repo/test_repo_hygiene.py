"""Rules about the repository itself: what a reader can follow, and what scripts may import."""

import ast
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]

def _tracked(ext: str) -> list[Path]:
    skip = {".git", "build", "dist", ".venv", ".mypy_cache", ".pytest_cache", ".hypothesis"}
    return [p for p in ROOT.rglob(f"*.{ext}") if not skip & set(p.relative_to(ROOT).parts) and ".egg-info" not in str(p)]


def test_no_reference_to_documents_outside_the_repository() -> None:
    # docs/*.md are the project's own statement of its rules; a citation of a document that is
    # not in the repository (the external specification, the design notes, the shared folder)
    # sends a reader nowhere. Spelled in pieces so that this file does not match itself.
    cited = re.compile(r"\b" + "SP" + r"EC\b|" + "DES" + r"IGN\.md|\.\./" + "sha" + "red")
    found = [
        f"{p.relative_to(ROOT)}:{i}: {line.strip()}"
        for ext in ("py", "md", "toml")
        for p in _tracked(ext)
        for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
        if cited.search(line)
    ]
    assert not found, "cite docs/*.md instead:\n" + "\n".join(found)


def test_scripts_import_only_installed_packages() -> None:
    # a script runs against the installed package; reaching into tests/ through sys.path makes it
    # depend on a checkout's layout and on test helpers that may change under it
    installed = {"chain", "contracts", "node"} | set(sys.stdlib_module_names)
    third_party = {"msgpack", "nacl", "cryptography", "rocksdict", "httpx", "click", "rich", "aiohttp", "pydantic"}
    bad = []
    for script in sorted((ROOT / "scripts").glob("*.py")):
        tree = ast.parse(script.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr == "path" and getattr(node.value, "id", None) == "sys":
                bad.append(f"{script.name}:{node.lineno}: edits or reads sys.path")
            names = (
                [a.name for a in node.names] if isinstance(node, ast.Import)
                else [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0
                else []
            )
            for name in names:
                if name.split(".")[0] not in installed | third_party:
                    bad.append(f"{script.name}:{node.lineno}: imports {name}")
    assert not bad, "\n".join(bad)
