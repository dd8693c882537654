"""HTTPS on the RPC (docs/operations.md, "TLS on the RPC"): a real single-validator node started from
a config file naming a certificate and key, both made here with `cryptography` (self-signed, SAN
127.0.0.1 and localhost), reached by the SDK and the CLI with and without the certificate to trust."""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import socket
import ssl
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from rpc_fake import signed
from rpc_servers import ValidatorServer

from node.cli.main import main
from node.runtime.config import ConfigError, NodeConfig
from node.sdk.client import NO_RETRY, Client, NodeUnreachable


def write_self_signed(cert_path: Path, key_path: Path) -> None:
    """A self-signed server certificate for 127.0.0.1 and localhost; the key written with mode 0600."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "titlechain test node")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))


def write_config(tmp: Path, server: ValidatorServer | None = None, **fields: object) -> Path:
    """The config of a ValidatorServer in `tmp`, as a file there, with `fields` (TLS files relative to it)."""
    base = (server or ValidatorServer(tmp)).cfg.model_dump(mode="json")
    path = tmp / "node.json"
    path.write_text(json.dumps({**base, **fields}))
    return path


@dataclass(frozen=True)
class HttpsNode:
    url: str
    ca: Path
    server: ValidatorServer
    dir: Path


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpsNode]:
    tmp = tmp_path_factory.mktemp("tls-node")
    write_self_signed(tmp / "rpc-cert.pem", tmp / "rpc-key.pem")
    server = ValidatorServer(tmp)
    server.cfg = NodeConfig.load(write_config(tmp, server, rpc_tls_cert="rpc-cert.pem", rpc_tls_key="rpc-key.pem"))
    assert server.cfg.rpc_tls_key == tmp / "rpc-key.pem"  # resolved against the config file's directory
    server.thread.start()
    assert server.started.wait(10), "the node did not start"
    try:
        yield HttpsNode(f"https://127.0.0.1:{server.port}", tmp / "rpc-cert.pem", server, tmp)
    finally:
        server.loop.call_soon_threadsafe(server.loop.stop)
        server.thread.join(10)


def test_status_over_https_with_the_ca(node: HttpsNode) -> None:
    url, ca = node.url, node.ca
    with Client(url, ca=ca) as c:
        assert c.status()["node_id"] == "v0"
    with Client(url.replace("127.0.0.1", "localhost"), ca=ca) as c:  # the other name in the certificate
        assert c.status()["chain_id"]


def test_tls_below_1_2_is_refused(node: HttpsNode) -> None:
    url, ca = node.url, node.ca
    old = ssl.create_default_context(cafile=str(ca))
    with warnings.catch_warnings():  # the deprecation is the point: this client is out of date
        warnings.simplefilter("ignore", DeprecationWarning)
        old.minimum_version = old.maximum_version = ssl.TLSVersion.TLSv1_1
    old.set_ciphers("DEFAULT:@SECLEVEL=0")  # let this client even offer TLS 1.1, so the server is what refuses
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/v1/status", verify=old, timeout=5)


def test_plain_http_to_the_https_port_fails(node: HttpsNode) -> None:
    url = node.url
    with pytest.raises(httpx.TransportError):
        httpx.get(url.replace("https://", "http://") + "/v1/status", timeout=5)


def test_a_client_without_the_ca_is_told_the_fix(node: HttpsNode) -> None:
    url = node.url
    with Client(url) as c, pytest.raises(NodeUnreachable) as e:
        c.status()
    assert "not trusted" in e.value.message and "--cacert FILE" in e.value.message
    result = CliRunner().invoke(main, ["explore", "status", "--rpc", url])
    assert result.exit_code == 1 and "--cacert FILE" in result.output
    ok = CliRunner().invoke(main, ["explore", "status", "--rpc", url, "--cacert", str(node.ca)])
    assert ok.exit_code == 0, ok.output


def test_https_url_to_a_plain_node_names_the_fix(tmp_path: Path) -> None:
    server = ValidatorServer(tmp_path)
    server.thread.start()
    assert server.started.wait(10)
    try:
        with Client(f"https://127.0.0.1:{server.port}") as c, pytest.raises(NodeUnreachable) as e:
            c.status()
        assert "plain HTTP, not TLS: use an http:// URL" in e.value.message
    finally:
        server.loop.call_soon_threadsafe(server.loop.stop)
        server.thread.join(10)


def test_a_key_file_others_can_read_is_refused_at_load(tmp_path: Path) -> None:
    write_self_signed(tmp_path / "c.pem", tmp_path / "k.pem")
    os.chmod(tmp_path / "k.pem", 0o644)
    path = write_config(tmp_path, rpc_tls_cert="c.pem", rpc_tls_key="k.pem")
    with pytest.raises(ConfigError, match=r"accessible by group or others \(mode 0o644\); chmod 600 it"):
        NodeConfig.load(path)


def test_cert_without_key_is_a_config_error(tmp_path: Path) -> None:
    write_self_signed(tmp_path / "c.pem", tmp_path / "k.pem")
    with pytest.raises(ConfigError, match="rpc_tls_cert and rpc_tls_key go together"):
        NodeConfig.load(write_config(tmp_path, rpc_tls_cert="c.pem"))


def test_a_key_that_is_not_the_certificates_is_a_config_error(tmp_path: Path) -> None:
    write_self_signed(tmp_path / "c.pem", tmp_path / "k.pem")
    write_self_signed(tmp_path / "c2.pem", tmp_path / "k2.pem")
    with pytest.raises(ConfigError, match="cannot load"):  # at load, before the node opens its data dir
        NodeConfig.load(write_config(tmp_path, rpc_tls_cert="c.pem", rpc_tls_key="k2.pem"))


def test_tls_does_not_replace_tokens(tmp_path: Path) -> None:
    write_self_signed(tmp_path / "c.pem", tmp_path / "k.pem")
    path = write_config(tmp_path, rpc_tls_cert="c.pem", rpc_tls_key="k.pem", rpc_listen="0.0.0.0:49555")
    with pytest.raises(ConfigError, match="not a loopback address: list rpc_tokens"):
        NodeConfig.load(path)


def test_sdk_over_plain_http_to_the_https_port_names_https(node: HttpsNode) -> None:
    url = node.url
    with Client(url.replace("https://", "http://"), retry=NO_RETRY) as c, pytest.raises(NodeUnreachable) as e:
        c.status()
    assert "the node's RPC serves HTTPS (rpc_tls_cert is set): use an https:// URL" in e.value.message


def test_cli_submits_and_audits_over_https(node: HttpsNode) -> None:
    tx = signed(node.server.node, nonce="over-tls", expires=90)
    tx_file = node.dir / "tx.json"
    tx_file.write_text(json.dumps(tx.to_plain()))
    sent = CliRunner().invoke(main, ["tx", "--send", str(tx_file), "--rpc", node.url, "--cacert", str(node.ca), "--wait"])
    assert sent.exit_code == 0 and "committed" in sent.output, sent.output
    audit = CliRunner().invoke(
        main, ["audit", "verify", "--rpc", node.url, "--cacert", str(node.ca), "--genesis", str(node.dir / "genesis.json")]
    )
    assert audit.exit_code == 0 and "audit ok" in audit.output, audit.output
    proof = CliRunner().invoke(main, ["audit", "proof", tx.args["asset_id"], "--rpc", node.url, "--cacert", str(node.ca)])
    assert proof.exit_code == 0 and json.loads(proof.output)["asset"]["asset_id"] == tx.args["asset_id"], proof.output


def _https_get_health(conn: ssl.SSLSocket) -> bytes:
    conn.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    return conn.recv(4096)


def test_the_connection_cap_holds_over_tls(tmp_path: Path) -> None:
    write_self_signed(tmp_path / "c.pem", tmp_path / "k.pem")
    server = ValidatorServer(tmp_path)
    server.cfg = NodeConfig.load(
        write_config(tmp_path, server, rpc_tls_cert="c.pem", rpc_tls_key="k.pem", rpc_max_connections=2)
    )
    server.thread.start()
    assert server.started.wait(10)
    ctx = ssl.create_default_context(cafile=str(tmp_path / "c.pem"))
    held: list[ssl.SSLSocket] = []
    try:
        for _ in range(2):  # two keep-alive connections, each answered, so the node counts both
            held.append(ctx.wrap_socket(socket.create_connection(("127.0.0.1", server.port), 5), server_hostname="127.0.0.1"))
            assert _https_get_health(held[-1]).startswith(b"HTTP/1.1 200")
        try:  # closed before or right after its handshake, unserved
            with ctx.wrap_socket(socket.create_connection(("127.0.0.1", server.port), 5), server_hostname="127.0.0.1") as third:
                answer = _https_get_health(third)
        except (ConnectionError, ssl.SSLError):
            answer = b""
        assert answer == b"", "a connection over the cap was served"
        held.pop().close()  # below the cap again: a new connection is served
        deadline = time.monotonic() + 5
        while True:
            try:
                with ctx.wrap_socket(socket.create_connection(("127.0.0.1", server.port), 5), server_hostname="127.0.0.1") as c:
                    if _https_get_health(c).startswith(b"HTTP/1.1 200"):
                        break
            except (ConnectionError, ssl.SSLError):
                pass
            assert time.monotonic() < deadline, "the node did not serve again after a connection closed"
    finally:
        for c in held:
            c.close()
        server.loop.call_soon_threadsafe(server.loop.stop)
        server.thread.join(10)


def test_connections_stalled_before_the_handshake_count_against_the_cap(tmp_path: Path) -> None:
    """An attacker opening TCP connections and never starting TLS must hit the cap like a slowloris
    does on plain HTTP: the third connection (cap 2) is closed at once, without a handshake, and the
    stalled ones are closed when the header timeout (here 1 s) ends their handshake."""
    write_self_signed(tmp_path / "c.pem", tmp_path / "k.pem")
    server = ValidatorServer(tmp_path)
    server.cfg = NodeConfig.load(
        write_config(
            tmp_path, server, rpc_tls_cert="c.pem", rpc_tls_key="k.pem", rpc_max_connections=2, rpc_header_timeout_s=1
        )
    )
    server.thread.start()
    assert server.started.wait(10)
    silent = [socket.create_connection(("127.0.0.1", server.port), 5) for _ in range(2)]
    try:
        with socket.create_connection(("127.0.0.1", server.port), 5) as third:
            third.settimeout(0.5)  # well before the stalled ones time out
            try:
                assert third.recv(1) == b""
            except ConnectionResetError:
                pass
        for s in silent:
            s.settimeout(5)
            try:
                assert s.recv(1) == b""
            except ConnectionResetError:
                pass
    finally:
        for s in silent:
            s.close()
        server.loop.call_soon_threadsafe(server.loop.stop)
        server.thread.join(10)
