"""A deployment only its own devices can join: the keys fl.tls makes (a real TLS handshake against the CA, key
files 0600, nothing overwritten unless asked) and, with Flower installed, a real SuperLink that refuses a SuperNode
with an unregistered key and one without the CA certificate."""

from __future__ import annotations

import datetime
import ipaddress
import os
import socket
import ssl
import stat
import threading
from pathlib import Path

import pytest

from w2vprof.errors import BadInput

pytest.importorskip("cryptography")


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _load_cert(path: Path):
    from cryptography import x509

    return x509.load_pem_x509_certificate(path.read_bytes())


def test_the_server_certificate_is_signed_by_the_ca_for_every_host(tmp_path):
    from cryptography import x509
    from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

    from w2vprof.fl.tls import write_tls_files

    now = datetime.datetime(2030, 1, 2, tzinfo=datetime.timezone.utc)
    files, made = write_tls_files(tmp_path / "tls", ["192.168.1.10", "link.lab"], now=now)
    assert made
    ca, server = _load_cert(files.ca_cert), _load_cert(files.server_cert)
    store = Store([ca])
    addresses = [x509.IPAddress(ipaddress.ip_address(a)) for a in ("192.168.1.10", "127.0.0.1")]
    for name in (x509.DNSName("link.lab"), x509.DNSName("localhost"), *addresses):
        verifier = PolicyBuilder().store(store).time(now).build_server_verifier(name)
        chain = verifier.verify(server, [])
        assert chain[-1] == ca  # the chain ends at our CA: the server certificate is signed by it
    with pytest.raises(VerificationError):  # a host the certificate does not name is refused
        PolicyBuilder().store(store).time(now).build_server_verifier(x509.DNSName("other.lab")).verify(server, [])
    other, _ = write_tls_files(tmp_path / "other", ["192.168.1.10"], now=now)
    stranger = PolicyBuilder().store(Store([_load_cert(other.ca_cert)])).time(now)
    with pytest.raises(VerificationError):  # another deployment's CA does not vouch for this server
        stranger.build_server_verifier(x509.DNSName("localhost")).verify(server, [])
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def _serve_once(files, port_box: list, ready: threading.Event) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(files.server_cert, files.server_key)
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port_box.append(listener.getsockname()[1])
        ready.set()
        listener.settimeout(10)
        try:
            connection, _ = listener.accept()
            with context.wrap_socket(connection, server_side=True) as tls:
                tls.sendall(b"ok")
        except (OSError, ssl.SSLError):
            pass


def _handshake(files, cafile: Path) -> bytes:
    port_box: list = []
    ready = threading.Event()
    server = threading.Thread(target=_serve_once, args=(files, port_box, ready), daemon=True)
    server.start()
    ready.wait(10)
    try:
        client = ssl.create_default_context(cafile=str(cafile))
        with socket.create_connection(("127.0.0.1", port_box[0]), timeout=10) as raw, client.wrap_socket(
            raw, server_hostname="127.0.0.1"
        ) as tls:
            return tls.recv(2)
    finally:
        server.join(10)


def test_python_ssl_accepts_the_server_only_with_our_ca(tmp_path):
    """What Flower's clients do (OpenSSL, hostname checked): the handshake succeeds with ca.crt, fails without it."""
    from w2vprof.fl.tls import write_tls_files

    files, _ = write_tls_files(tmp_path / "tls", ["10.0.0.5"])
    assert _handshake(files, files.ca_cert) == b"ok"
    stranger, _ = write_tls_files(tmp_path / "stranger", ["10.0.0.5"])
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(files, stranger.ca_cert)


def test_private_keys_are_0600_and_public_files_are_not_secret(tmp_path):
    from w2vprof.fl.tls import write_supernode_keys, write_tls_files

    old_umask = os.umask(0o000)  # even a permissive umask must not open a private key to others
    try:
        files, _ = write_tls_files(tmp_path / "tls", ["10.0.0.5"])
        keys = write_supernode_keys(tmp_path / "keys", ["jetson", "pi4"])
    finally:
        os.umask(old_umask)
    assert _mode(files.server_key) == 0o600
    assert [_mode(k.private_key) for k in keys] == [0o600, 0o600]
    assert _mode(files.ca_cert) & 0o044  # certificates and public keys are meant to be copied around
    assert not (tmp_path / "tls" / "ca.key").exists()  # the CA key is not kept: nobody can sign more certificates
    assert sorted(p.name for p in (tmp_path / "keys").iterdir()) == ["jetson.key", "jetson.pub", "pi4.key", "pi4.pub"]


def test_supernode_keys_are_what_flower_reads(tmp_path):
    """OpenSSH EC keys on a NIST curve: flower-supernode loads the private key, `flwr supernode register` the public."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from w2vprof.fl.tls import write_supernode_keys

    (keys,) = write_supernode_keys(tmp_path, ["jetson"])
    private = serialization.load_ssh_private_key(keys.private_key.read_bytes(), None)
    public = serialization.load_ssh_public_key(keys.public_key.read_bytes())
    assert isinstance(private, ec.EllipticCurvePrivateKey) and isinstance(private.curve, ec.SECP384R1)
    assert private.public_key().public_numbers() == public.public_numbers()
    assert keys.public_key.read_text().startswith("ecdsa-sha2-nistp384 ")


def test_writing_again_keeps_every_key_unless_asked(tmp_path):
    from w2vprof.fl.tls import write_supernode_keys, write_tls_files

    files, made = write_tls_files(tmp_path / "tls", ["10.0.0.5"])
    before = {p: p.read_bytes() for p in files.all()}
    keys = write_supernode_keys(tmp_path / "keys", ["a"])
    key_before = keys[0].private_key.read_bytes()

    again, made_again = write_tls_files(tmp_path / "tls", ["10.0.0.5", "localhost"])
    assert made and not made_again and {p: p.read_bytes() for p in again.all()} == before
    write_supernode_keys(tmp_path / "keys", ["a", "b"])  # a new device gets a pair; "a" keeps its own
    assert keys[0].private_key.read_bytes() == key_before and (tmp_path / "keys" / "b.key").exists()

    with pytest.raises(BadInput, match="lacks 10.0.0.6"):  # never a silent new CA the devices do not have
        write_tls_files(tmp_path / "tls", ["10.0.0.6"])
    renewed, made_new = write_tls_files(tmp_path / "tls", ["10.0.0.6"], overwrite=True)
    assert made_new and renewed.ca_cert.read_bytes() != before[files.ca_cert]
    assert _mode(renewed.server_key) == 0o600
    write_supernode_keys(tmp_path / "keys", ["a"], overwrite=True)
    assert keys[0].private_key.read_bytes() != key_before and _mode(keys[0].private_key) == 0o600


def test_a_half_pair_or_an_open_key_is_refused(tmp_path):
    from w2vprof.fl.tls import write_private_file, write_supernode_keys, write_tls_files

    (keys,) = write_supernode_keys(tmp_path, ["a"])
    keys.public_key.unlink()
    with pytest.raises(BadInput, match="ask for new keys"):
        write_supernode_keys(tmp_path, ["a"])
    (fresh,) = write_supernode_keys(tmp_path, ["b"])
    fresh.private_key.chmod(0o644)
    with pytest.raises(BadInput, match="readable by others"):
        write_supernode_keys(tmp_path, ["b"])
    with pytest.raises(BadInput, match="refusing to overwrite"):
        write_private_file(fresh.private_key, b"x")
    files, _ = write_tls_files(tmp_path / "tls", ["h"])
    files.server_key.unlink()
    with pytest.raises(BadInput, match="TLS files incomplete"):
        write_tls_files(tmp_path / "tls", ["h"])


def test_bad_names_are_one_line(tmp_path):
    from w2vprof.fl.tls import certificate_hosts, write_supernode_keys, write_tls_files

    with pytest.raises(BadInput, match="cannot name a key file"):
        write_supernode_keys(tmp_path, ["../escape"])
    with pytest.raises(BadInput, match="neither a host name nor an IP address"):
        write_tls_files(tmp_path / "tls", ["bad host"])
    assert not (tmp_path / "tls" / "server.key").exists()  # nothing written for a bad host
    assert certificate_hosts(["0.0.0.0", "[fe80::1]", "localhost"]) == ["fe80::1", "localhost", "127.0.0.1", "::1"]


def test_deploy_config_sets_up_tls_and_supernode_auth_by_default(tmp_path):
    from typer.testing import CliRunner

    from w2vprof.cli.main import app

    common = [
        "fl",
        "deploy-config",
        "--superlink",
        "10.0.0.5:9093",
        "--node",
        "jetson=/data/c0.tsv",
        "--node",
        "pi=/data/c1.tsv",
        "--validation",
        "/data/heldout.tsv",
    ]
    result = CliRunner().invoke(app, [*common, "--out", str(tmp_path / "dep")], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    out = (tmp_path / "dep").resolve()
    commands = (out / "commands.sh").read_text()
    assert "--insecure" not in commands and "# WARNING" not in commands
    assert (
        f"--ssl-ca-certfile {out}/tls/ca.crt --ssl-certfile {out}/tls/server.crt "
        f"--ssl-keyfile {out}/tls/server.key --enable-supernode-auth"
    ) in commands
    for name in ("jetson", "pi"):
        assert f"flwr supernode register {out}/supernode-keys/{name}.pub w2vprof --name {name}" in commands
        assert (
            f"--root-certificates {out}/tls/ca.crt --auth-supernode-private-key "
            f"{out}/supernode-keys/{name}.key --superlink 10.0.0.5:9093"
        ) in commands
        assert _mode(out / "supernode-keys" / f"{name}.key") == 0o600
    assert f'root-certificates = "{out}/tls/ca.crt"' in (out / "flwr-home" / "config.toml").read_text()
    from w2vprof.fl.tls import server_certificate_names

    assert "10.0.0.5" in server_certificate_names(out / "tls" / "server.crt")

    insecure = CliRunner().invoke(app, [*common, "--out", str(tmp_path / "lab"), "--insecure"])
    assert insecure.exit_code == 0, insecure.output
    assert "w2vprof: warning: --insecure: no TLS and no SuperNode authentication" in insecure.output
    lab = tmp_path / "lab"
    assert "flower-superlink --insecure" in (lab / "commands.sh").read_text()
    assert "insecure = true" in (lab / "flwr-home" / "config.toml").read_text()
    assert not (lab / "tls").exists() and not (lab / "supernode-keys").exists()


# --- With Flower: real processes on loopback ports ------------------------------------------------------------------

flower = pytest.mark.skipif(
    __import__("importlib").util.find_spec("flwr") is None, reason="needs Flower (pip install 'w2vprof[fl]')"
)


def _still_running(pids: list[int]) -> list[int]:
    import psutil

    return [pid for pid in pids if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]


def _wait_for_text(path: Path, text: str, timeout_s: float) -> bool:
    import time

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if path.exists() and text in path.read_text(errors="replace"):
            return True
        time.sleep(0.2)
    return False


def _without_option(command: list[str], option: str, takes_value: bool = True) -> list[str]:
    at = command.index(option)
    return command[:at] + command[at + 1 + int(takes_value) :]


@flower
def test_only_registered_supernodes_that_trust_the_ca_can_join(tmp_path):
    """A real SuperLink (TLS + SuperNode auth) on a free loopback port: a SuperNode with a fresh unregistered key,
    one with no key at all, and a registered one without the CA certificate are all turned away; the registered
    one with the CA joins (so the refusals come from the key and the CA, not from a broken SuperLink)."""
    from w2vprof.fl.deploy import (
        IN_MEMORY_DATABASE,
        DeploymentPlan,
        NodeSpec,
        flwr_config_toml,
    )
    from w2vprof.fl.processes import LocalProcesses
    from w2vprof.fl.rehearsal import (
        LOCALHOST,
        free_port,
        register_supernodes,
        wait_for_port,
    )
    from w2vprof.fl.tls import deployment_keys

    keys = deployment_keys(tmp_path, [LOCALHOST], ["member", "stranger"])
    member, stranger = (NodeSpec(name, "/nowhere.tsv", port=free_port()) for name in ("member", "stranger"))
    # Only the member is in the plan, so only its key is registered; the stranger's pair exists but is unknown.
    plan = DeploymentPlan(tmp_path, LOCALHOST, free_port(), [member], keys, IN_MEMORY_DATABASE)
    plan.flwr_home.mkdir()
    (plan.flwr_home / "config.toml").write_text(flwr_config_toml(plan.address, keys.tls.ca_cert))
    give_up = ["--max-retries", "0", "--max-wait-time", "30"]  # a refused SuperNode exits instead of retrying
    with LocalProcesses(tmp_path / "logs", plan.environment(), tmp_path) as processes:
        superlink = processes.launch(plan.superlink_command(listen_host=LOCALHOST), "superlink.log", stop_last=True)
        wait_for_port(LOCALHOST, plan.superlink_port, superlink)
        register_supernodes(plan, processes)
        refused = {
            "stranger": processes.launch(plan.supernode_command(stranger) + give_up, "stranger.log"),
            "keyless": processes.launch(
                _without_option(
                    plan.supernode_command(NodeSpec("stranger", "/x.tsv", port=free_port())),
                    "--auth-supernode-private-key",
                )
                + give_up,
                "keyless.log",
            ),
            "no-ca": processes.launch(
                _without_option(
                    plan.supernode_command(NodeSpec("member", "/x.tsv", port=free_port())), "--root-certificates"
                )
                + give_up,
                "no-ca.log",
            ),
        }
        processes.launch(plan.supernode_command(member), "member.log")
        exits = {name: process.wait(timeout=180) for name, process in refused.items()}
        joined = _wait_for_text(tmp_path / "logs" / "superlink.log", "Activated node_id", 180)
    logs = {
        name: (tmp_path / "logs" / f"{name}.log").read_text(errors="replace")
        for name in ("superlink", "stranger", "keyless", "no-ca", "member")
    }
    assert joined, logs["member"][-2000:]
    assert all(code != 0 for code in exits.values()), exits
    assert logs["superlink"].count("Activated node_id") == 1  # the member, nobody else
    assert "No SuperNode found with the given public key" in logs["superlink"]  # the stranger's fresh key
    assert "Failed to initialize the connection to the SuperLink" in logs["stranger"]
    assert "All SuperNodes must be registered via the CLI" in logs["keyless"]  # no self-registration
    assert "SSL/TLS handshake error" in logs["no-ca"]  # our CA is not in the system's trust store
    assert _still_running(processes.pids) == []


@flower
def test_deploy_local_rehearses_over_tls_with_supernode_auth(tmp_path):
    """`fl deploy-local`: 2 SuperNodes registered by key, TLS everywhere, 2 rounds, and no process left behind."""
    from typer.testing import CliRunner

    from w2vprof.cli.main import app
    from w2vprof.fl.records import read_clients_csv, read_rounds_csv

    out = tmp_path / "rehearsal"
    result = CliRunner().invoke(
        app,
        [
            "fl",
            "deploy-local",
            "--out",
            str(out),
            "--nodes",
            "2",
            "--partitions",
            "synthetic",
            "--rounds",
            "2",
            "--utterances-per-client",
            "2",
            "--validation-utterances",
            "4",
            "--threads",
            "1",
            "--timeout",
            "400",
        ],
        catch_exceptions=False,
    )
    logs = out / "logs"
    assert result.exit_code == 0, result.output + (logs / "flwr-run.log").read_text()[-3000:]
    rounds = read_rounds_csv(out / "results" / "rounds.csv")
    assert [r.round for r in rounds] == [0, 1, 2] and [r.participants for r in rounds[1:]] == [2, 2]
    clients = read_clients_csv(out / "results" / "clients.csv")
    assert sorted(c.client for c in clients) == ["node-0", "node-0", "node-1", "node-1"]
    assert all(c.status == "ok" and c.peak_rss_bytes and c.client_sec for c in clients)
    superlink_log = (logs / "superlink.log").read_text()
    assert "Uvicorn running on https://127.0.0.1:" in superlink_log  # TLS, not plain HTTP
    assert "SuperNode authentication is disabled" not in superlink_log
    assert superlink_log.count("Activated node_id") == 2
    for node in ("node-0", "node-1"):
        assert "registered successfully" in (logs / f"register-{node}.log").read_text()
    assert "--enable-supernode-auth" in (out / "commands.sh").read_text()
    pids = [int(p) for p in result.output.split("started and stopped pids ")[1].split(";")[0].split(", ")]
    assert len(pids) == 6 and _still_running(pids) == []  # SuperLink, 2 registrations, 2 SuperNodes, flwr run
