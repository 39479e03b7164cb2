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
    for name in (x509.DNSName("link.lab"), x509.DNSName("localhost"),
                 x509.IPAddress(ipaddress.ip_address("192.168.1.10")), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))):
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
        with socket.create_connection(("127.0.0.1", port_box[0]), timeout=10) as raw, \
                client.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
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
