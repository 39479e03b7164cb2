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


def test_deployment_errors_name_the_setting_and_the_cli_its_flag(tmp_path):
    """The library names settings (a Flower run config or a Python caller has no flags); the CLI shows its flags."""
    from conftest import run_cli_in_process
    from w2vprof.errors import SettingError
    from w2vprof.fl.tls import write_tls_files

    write_tls_files(tmp_path / "dep" / "tls", ["10.0.0.5"])
    with pytest.raises(SettingError, match=r"^out holds .* \(lacks 10.0.0.6\); ask for new keys \(new_keys\)"):
        write_tls_files(tmp_path / "dep" / "tls", ["10.0.0.6"])
    common = ["fl", "deploy-config", "--node", "jetson=/data/c0.tsv", "--validation", "/data/heldout.tsv"]
    moved = run_cli_in_process(*common, "--superlink", "10.0.0.6:9093", "--out", str(tmp_path / "dep"))
    assert moved.returncode == 2 and moved.stderr.count("\n") == 1, moved.stderr
    assert moved.stderr.startswith("w2vprof: error: --out holds ") and "ask for new keys (--new-keys)" in moved.stderr
    no_port = run_cli_in_process(*common, "--superlink", "10.0.0.6", "--out", str(tmp_path / "new"))
    assert no_port.returncode == 2
    assert no_port.stderr == "w2vprof: error: --superlink must be HOST:PORT, got '10.0.0.6'\n"


# --- With Flower: real processes on loopback ports ------------------------------------------------------------------

flower = pytest.mark.skipif(
    __import__("importlib").util.find_spec("flwr") is None, reason="needs Flower (pip install 'w2vprof[fl]')"
)

#: A refused SuperNode exits at its first refusal instead of retrying.
GIVE_UP = ["--max-retries", "0", "--max-wait-time", "30"]


def _still_running(pids: list[int]) -> list[int]:
    import psutil

    return [pid for pid in pids if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]


def _without_option(command: list[str], option: str) -> list[str]:
    at = command.index(option)
    return command[:at] + command[at + 2 :]


def _with_value(command: list[str], option: str, value: str) -> list[str]:
    at = command.index(option)
    return [*command[: at + 1], value, *command[at + 2 :]]


def _intruder_commands(plan, stranger_key: Path) -> dict[str, list[str]]:
    """SuperNodes that must be turned away, each on a port of its own: a fresh key nobody registered, no key at
    all, and a registered member's key without the CA certificate (our CA is not in the system's trust store)."""
    from w2vprof.fl.deploy import NodeSpec
    from w2vprof.fl.rehearsal import free_port

    def member_command() -> list[str]:
        return plan.supernode_command(NodeSpec(plan.nodes[0].name, "/nowhere.tsv", port=free_port()))

    return {
        "stranger": _with_value(member_command(), "--auth-supernode-private-key", str(stranger_key)),
        "keyless": _without_option(member_command(), "--auth-supernode-private-key"),
        "no-ca": _without_option(member_command(), "--root-certificates"),
    }


@pytest.mark.integration
@flower
def test_deploy_local_rehearses_over_tls_and_turns_strangers_away(tmp_path, monkeypatch):
    """`fl deploy-local`: 2 SuperNodes registered by key, TLS everywhere, a round, and no process left behind.

    Once the members' keys are registered, three intruders try the rehearsal's SuperLink (_intruder_commands) and
    are all refused. They share the rehearsal's SuperLink rather than a SuperLink of their own (each Flower process
    imports for seconds on a small machine); the two members that join and train are what shows the refusals come
    from the key and the CA, not from a broken SuperLink.
    """
    import contextlib
    import subprocess

    from typer.testing import CliRunner

    import w2vprof.fl.rehearsal as rehearsal
    from w2vprof.cli.main import app
    from w2vprof.fl.processes import LocalProcesses
    from w2vprof.fl.records import read_clients_csv, read_rounds_csv
    from w2vprof.fl.tls import write_supernode_keys

    (stranger,) = write_supernode_keys(tmp_path / "stranger-keys", ["stranger"])
    intruders: dict[str, subprocess.Popen] = {}
    lifetimes = contextlib.ExitStack()  # the intruders are stopped when the test ends, however it ends
    register = rehearsal.register_supernodes

    def register_then_send_intruders(plan, processes) -> None:
        register(plan, processes)
        launcher = lifetimes.enter_context(LocalProcesses(tmp_path / "intruders", plan.environment(), tmp_path))
        for name, command in _intruder_commands(plan, stranger.private_key).items():
            intruders[name] = launcher.launch(command + GIVE_UP, f"{name}.log")

    monkeypatch.setattr(rehearsal, "register_supernodes", register_then_send_intruders)
    out = tmp_path / "rehearsal"
    with lifetimes:
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
                "1",  # Flower starts a fresh ClientApp process per client per round: more rounds only repeat it
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
        exits = {name: process.wait(timeout=180) for name, process in intruders.items()}
    logs = out / "logs"
    assert result.exit_code == 0, result.output + (logs / "flwr-run.log").read_text()[-3000:]
    rounds = read_rounds_csv(out / "results" / "rounds.csv")
    assert [r.round for r in rounds] == [0, 1] and [r.participants for r in rounds[1:]] == [2]
    clients = read_clients_csv(out / "results" / "clients.csv")
    assert sorted(c.client for c in clients) == ["node-0", "node-1"]
    assert all(c.status == "ok" and c.peak_rss_bytes and c.client_sec for c in clients)
    superlink_log = (logs / "superlink.log").read_text()
    assert "Uvicorn running on https://127.0.0.1:" in superlink_log  # TLS, not plain HTTP
    assert "SuperNode authentication is disabled" not in superlink_log
    assert superlink_log.count("Activated node_id") == 2  # the two members, no intruder
    for node in ("node-0", "node-1"):
        assert "registered successfully" in (logs / f"register-{node}.log").read_text()
    assert "--enable-supernode-auth" in (out / "commands.sh").read_text()
    pids = [int(p) for p in result.output.split("started and stopped pids ")[1].split(";")[0].split(", ")]
    assert len(pids) == 6 and _still_running(pids) == []  # SuperLink, 2 registrations, 2 SuperNodes, flwr run

    refusals = {name: (tmp_path / "intruders" / f"{name}.log").read_text(errors="replace") for name in intruders}
    assert sorted(exits) == ["keyless", "no-ca", "stranger"] and all(code != 0 for code in exits.values()), exits
    assert "No SuperNode found with the given public key" in superlink_log  # the stranger's fresh key
    assert "Failed to initialize the connection to the SuperLink" in refusals["stranger"]
    assert "All SuperNodes must be registered via the CLI" in refusals["keyless"]  # no self-registration
    assert "SSL/TLS handshake error" in refusals["no-ca"]
    assert _still_running([process.pid for process in intruders.values()]) == []
