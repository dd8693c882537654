"""`titlechain demo` end to end: the story on four real validator processes, and its cleanup.

Ports come from their own range (tests/ports.py, movable with TITLECHAIN_TEST_BASE_PORT) so these
runs never collide with the other integration tests or with a developer's localnet on 26600.
"""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import ports
import pytest
from rich.console import Console

from node.devnet import demo, localnet, story
from node.devnet.localnet import node_pids
from node.devnet.provision import consortium_ports

PORTS = len(consortium_ports(0, demo.VALIDATORS))


def free_base_port(count: int = PORTS, start: int = ports.DEMO[0], stop: int = ports.DEMO[1]) -> int:
    """A base port P such that P .. P+count-1 can all be bound on 127.0.0.1 right now."""
    for base in range(start + (os.getpid() % 40) * 20, stop - count, count):
        try:
            demo.check_ports_free(base)
        except demo.DemoError:
            continue
        return base
    raise RuntimeError(f"no {count} consecutive free ports in {start}..{stop}")


def processes_under(path: Path) -> list[str]:
    """Command lines of live processes that name a file under path (a node started there)."""
    found = []
    needle = str(path).encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if needle in cmdline and state != "Z":
            found.append(cmdline.replace(b"\0", b" ").decode(errors="replace"))
    return found


def run_in_process(**kwargs: object) -> tuple[int, str]:
    buf = io.StringIO()
    code = demo.run_demo(console=Console(file=buf, width=160, color_system=None), **kwargs)  # type: ignore[arg-type]
    return code, buf.getvalue()


@pytest.fixture
def stop_after(tmp_path: Path) -> Iterator[Path]:
    """A --dir for the demo; whatever a test leaves running there is stopped afterwards."""
    root = tmp_path / "consortium"
    yield root
    if (root / "localnet.json").exists():
        localnet.down_and_wait(root)  # also reaps the nodes, children of this process


def test_demo_tells_the_whole_story_and_leaves_nothing(tmp_path: Path) -> None:
    # the real command, as the README runs it; its temp dir goes under our TMPDIR to be checked
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = {**os.environ, "TMPDIR": str(tmp), "COLUMNS": "60"}
    proc = subprocess.run(
        [sys.executable, "-m", "node", "demo", "--base-port", str(free_base_port())],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    for outcome in (
        "duplicate_document",
        "asset_locked",
        "not_pledgee",
        "not_owner",
        "asset_redeemed",
        "is refused",
        "was never issued: absent as of block",
        "clean",
        "every validator process has exited",
        "Every expected outcome happened",
    ):
        assert outcome in out, f"{outcome!r} missing from the demo's output:\n{out}"
    # piped, no sentence is broken across lines (rich's default 80 columns used to fold them)
    sentence = next(line for line in out.splitlines() if "signs two sales of the same receipt" in line)
    assert "submits them at the same instant, to" in sentence, out
    assert processes_under(tmp) == []
    assert list(tmp.iterdir()) == [], "the demo left its temp dir (or an audit copy) behind"


def test_a_busy_port_is_named_and_nothing_starts(tmp_path: Path) -> None:
    base = free_base_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", base + 3))
        s.listen()
        code, out = run_in_process(base_port=base, workdir=tmp_path / "d")
    assert code == 1
    assert f"port {base + 3}" in out and "--base-port" in out
    assert not (tmp_path / "d").exists()


def test_a_used_directory_is_refused(tmp_path: Path) -> None:
    (tmp_path / "note.txt").write_text("someone's files")
    code, out = run_in_process(base_port=free_base_port(), workdir=tmp_path)
    assert code == 2 and "new or empty directory" in out


def test_an_unexpected_outcome_names_its_step_and_still_stops(
    stop_after: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def wrong(told: story.Story) -> None:
        # the Lin family never owned the invoice: this is refused, and the demo expected ok
        told.tx(
            "lin-family", "asset.transfer", {"asset_id": story.INVOICE, "to": told.cast.account("marlow-estates")}, "x"
        )

    monkeypatch.setattr(story.Story, "receivable", wrong)
    code, out = run_in_process(base_port=free_base_port(), workdir=stop_after)
    assert code == 1
    assert "step 8 (A receivable is factored, paid and redeemed) failed: expected ok, got rejected not_owner" in out
    configs = [n["config"] for n in json.loads((stop_after / "localnet.json").read_text())["nodes"]]
    assert [c for c in configs if node_pids(c)] == []
    assert (stop_after / "genesis.json").exists(), "--dir is kept for inspection"


def test_keep_leaves_the_consortium_up_until_localnet_down(stop_after: Path) -> None:
    code, out = run_in_process(base_port=free_base_port(), workdir=stop_after, keep=True)
    assert code == 0, out
    assert f"titlechain localnet down --dir {stop_after}" in out
    nodes = json.loads((stop_after / "localnet.json").read_text())["nodes"]
    assert all(node_pids(n["config"]) for n in nodes)
    localnet.down_and_wait(stop_after)  # `localnet down`, then checks that no node is left
