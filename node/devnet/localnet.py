"""`titlechain localnet up/down`: a local consortium as background processes (docs/cli.md).

`up` creates the consortium directory on first use (`init`), starts one `titlechain node run
--config` process per validator in its own session (so a terminal's Ctrl-C does not reach them),
returns once every node answers `ready`, and writes DIR/localnet.json. `down` stops the processes
listed there with SIGTERM (a node finishes its write and closes its database), then SIGKILL after a
deadline. A pid is only signalled while /proc shows it still runs our node with that config, so a
stale localnet.json can never kill an unrelated process that reused the pid.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from node.devnet.provision import DEFAULT_BASE_PORT, DEFAULT_SEED, Consortium, init_consortium
from node.errors import NodeError
from node.sdk.client import Client, RpcError

READY_DEADLINE_S = 60.0
STOP_DEADLINE_S = 15.0


class LocalnetError(NodeError, RuntimeError):
    pass


def node_command(config: Path) -> list[str]:
    return [sys.executable, "-m", "node", "node", "run", "--config", str(config)]


def start_node(
    config: Path, log_path: Path, env: Mapping[str, str] | None = None, args: Sequence[str] = ()
) -> subprocess.Popen[bytes]:
    """Start one validator process, detached from our session; its stdout/stderr go to log_path.
    `env` adds variables to ours (tests: a misbehaving node, node/runtime/misbehave.py); `args`
    go after `node run --config FILE` (e.g. --state-sync)."""
    log = open(log_path, "ab")  # noqa: SIM115 - handed to the child
    try:
        return subprocess.Popen(
            [*node_command(config), *args], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            env=None if env is None else {**os.environ, **env},
        )
    finally:
        log.close()


def wait_ready(rpcs: list[str], deadline_s: float = READY_DEADLINE_S, alive: Callable[[], str | None] | None = None) -> None:
    """Block until every RPC answers status with ready: true; raise with what is missing."""
    deadline = time.monotonic() + deadline_s
    pending = list(rpcs)
    while pending:
        if alive is not None and (dead := alive()):
            raise LocalnetError(dead)
        still = []
        for rpc in pending:
            try:
                with Client(rpc, timeout=2.0) as c:
                    if not c.status().get("ready"):
                        still.append(rpc)
            except (RpcError, OSError, Exception):  # noqa: BLE001 - not up yet, whatever the reason
                still.append(rpc)
        pending = still
        if pending:
            if time.monotonic() > deadline:
                raise LocalnetError(f"not ready after {deadline_s:.0f} s: {', '.join(pending)}")
            time.sleep(0.2)


def manifest_path(root: Path) -> Path:
    return root / "localnet.json"


def up(
    root: str | Path,
    *,
    validators: int = 4,
    base_port: int = DEFAULT_BASE_PORT,
    seed: str | Path | None = None,
    say: Callable[[str], None] = lambda s: None,
    node_settings: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Start a local consortium in `root` (created there unless one exists; `node_settings` are
    set in every new node's config, e.g. the bench's `state_retention`); the manifest."""
    root = Path(root)
    if manifest_path(root).exists():
        running = [pid for n in json.loads(manifest_path(root).read_text())["nodes"] for pid in node_pids(n["config"])]
        if running:
            raise LocalnetError(f"{root}: a localnet is already running here (pids {running}); `localnet down` first")
    if (root / "consortium.json").exists():
        cons = Consortium.load(root)
        say(f"reusing the consortium in {root}")
    else:
        cons = init_consortium(
            root, validators=validators, seed_path=seed or DEFAULT_SEED, base_port=base_port, node_settings=node_settings,
        )
        say(f"created consortium {cons.chain_id} in {root}")
    procs = []
    for n in cons.nodes:
        procs.append(start_node(n.config, n.config.parent / "stdout.log"))
        say(f"started {n.node_id} (pid {procs[-1].pid}) rpc {n.rpc}")
    manifest = {
        "chain_id": cons.chain_id,
        "genesis": str(cons.genesis.resolve()),
        "nodes": [
            {"node_id": n.node_id, "rpc": n.rpc, "pid": p.pid, "data_dir": str(n.data_dir.resolve()), "config": str(n.config.resolve())}
            for n, p in zip(cons.nodes, procs, strict=True)
        ],
        "keys": {
            group: [str(p.resolve()) for p in cons.key_paths(group)] for group in ("members", "issuers", "regulators", "auditors")
        },
    }
    _write_manifest(root, manifest)

    def dead() -> str | None:
        for n, p in zip(cons.nodes, procs, strict=True):
            if p.poll() is not None:
                return f"{n.node_id} exited with {p.returncode}; see {n.config.parent / 'stdout.log'}"
        return None

    try:
        wait_ready([n.rpc for n in cons.nodes], alive=dead)
    except LocalnetError:
        down(root)
        raise
    say("all nodes ready")
    return manifest


def _write_manifest(root: Path, manifest: dict[str, Any]) -> None:
    tmp = manifest_path(root).with_suffix(".tmp")
    tmp.write_text(json.dumps(manifest, indent=2) + "\n")
    os.replace(tmp, manifest_path(root))


def _config_of(pid: int) -> Path | None:
    """The config a `titlechain node run --config FILE` process runs, resolved; None for any other process."""
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        cwd = Path(f"/proc/{pid}/cwd").resolve()
    except OSError:
        return None
    for i in range(len(args) - 3):
        if args[i : i + 3] == [b"node", b"run", b"--config"]:
            return (cwd / os.fsdecode(args[i + 3])).resolve()
    return None


def _is_our_node(pid: int, config: str) -> bool:
    return _config_of(pid) == Path(config).resolve()


def node_pids(config: str) -> list[int]:
    """Every running process that serves this config: the one `up` started, or a restart of it
    by `titlechain node run --config` (docs/cli.md), whose pid the manifest cannot know."""
    want = Path(config).resolve()
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and _config_of(int(entry.name)) == want and not _is_zombie(int(entry.name)):
            pids.append(int(entry.name))
    return pids


def stop_pid(pid: int, config: str, deadline_s: float = STOP_DEADLINE_S) -> str:
    """SIGTERM, wait, SIGKILL if needed, and wait for the process to be gone; returns what happened."""
    if not _is_our_node(pid, config):
        return "not running"
    os.kill(pid, signal.SIGTERM)
    outcome = "stopped" if _wait_gone(pid, config, deadline_s) else None
    if outcome is None:
        os.kill(pid, signal.SIGKILL)
        outcome = "killed after the stop deadline" if _wait_gone(pid, config, deadline_s) else "still running after SIGKILL"
    try:
        os.waitpid(pid, os.WNOHANG)  # reap it if we started it in this process, so no zombie lingers
    except ChildProcessError:
        pass
    return outcome


def _wait_gone(pid: int, config: str, deadline_s: float) -> bool:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if not _is_our_node(pid, config) or _is_zombie(pid):
            return True
        time.sleep(0.05)
    return False


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z"
    except (OSError, IndexError):
        return True


def down(root: str | Path, say: Callable[[str], None] = lambda s: None) -> None:
    root = Path(root)
    if not manifest_path(root).exists():
        raise LocalnetError(f"{root}: no localnet.json here")
    manifest = json.loads(manifest_path(root).read_text())
    for n in manifest["nodes"]:
        pids = node_pids(n["config"]) or [n["pid"]]
        say(f"{n['node_id']}: " + ", ".join(stop_pid(pid, n["config"]) for pid in pids))


STOPPED_DEADLINE_S = 5.0  # for a process that `localnet down` killed to be gone


def node_log_tails(root: Path) -> str:
    """The last line each node wrote to stdout/stderr, to say why it did not come up."""
    lines = []
    for log in sorted(root.glob("nodes/*/stdout.log")):
        text = log.read_text(errors="replace").strip().splitlines()
        if text:
            lines.append(f"\n    {log.parent.name}: {text[-1][:300]}")
    return "".join(lines)


def down_and_wait(root: Path, say: Callable[[str], None] = lambda s: None) -> None:
    """`localnet down`, then check that no process serving one of its configs is left."""
    manifest = json.loads(manifest_path(root).read_text())
    down(root, say=say)
    deadline = time.monotonic() + STOPPED_DEADLINE_S
    while True:
        for n in manifest["nodes"]:
            _reap(n["pid"])
        left = [f"{n['node_id']} (pids {pids})" for n in manifest["nodes"] if (pids := node_pids(n["config"]))]
        if not left:
            return
        if time.monotonic() > deadline:
            raise LocalnetError(f"still running after `localnet down`: {', '.join(left)}")
        time.sleep(0.05)


def _reap(pid: int) -> None:
    # the nodes are our children (node/devnet/localnet.py starts them): collect their exit status so no
    # zombie lingers while the calling process (a test runner, say) goes on
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
