"""The keys of a deployment only its own devices can join: TLS for the SuperLink, one key pair per SuperNode.

Everything is made with the `cryptography` library (a Flower dependency), nothing by hand:
  tls/ca.crt                    the deployment's own certificate authority (EC P-384, self-signed). Every device
                                and every `flwr` command gets this file to check that it talks to *this* SuperLink.
                                The CA's private key is dropped once the server certificate is signed: nobody can
                                sign another certificate with it later.
  tls/server.crt, server.key    the SuperLink's certificate, signed by the CA, for the host names and addresses the
                                devices use, plus localhost / 127.0.0.1 / ::1 (the SuperLink's own SuperExec connects
                                to 127.0.0.1 when it listens on 0.0.0.0)
  supernode-keys/NAME.key       a SuperNode's private key (EC P-384, OpenSSH format: what
                                `flower-supernode --auth-supernode-private-key` reads); belongs on device NAME only
  supernode-keys/NAME.pub       its public key (OpenSSH format: what `flwr supernode register` reads)

Private keys are written with mode 0600 from the first byte (files.write_bytes_atomic with mode=0o600: never a
moment readable by others, whatever the umask), and an existing key is never overwritten unless asked
(`overwrite=True`, the CLI's --new-keys): keys already copied to devices keep working when a deployment is written
again. Existing files are reused only when they still fit (the server certificate names every host, each SuperNode
has both halves of its pair, private keys are still 0600); anything else is BadInput.
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from w2vprof.errors import BadInput, SettingError
from w2vprof.files import write_bytes_atomic

if TYPE_CHECKING:  # pragma: no cover - names for annotations only
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec

__all__ = [
    "LOCAL_NAMES",
    "PRIVATE_MODE",
    "DeploymentKeys",
    "SuperNodeKeys",
    "TlsFiles",
    "certificate_hosts",
    "check_key_name",
    "check_private_mode",
    "deployment_keys",
    "server_certificate_names",
    "write_private_file",
    "write_supernode_keys",
    "write_tls_files",
]

#: Always in the server certificate: flwr's SuperExec (started by the SuperLink) and a rehearsal connect here.
LOCAL_NAMES = ("localhost", "127.0.0.1", "::1")
PRIVATE_MODE = 0o600
CERT_DAYS = 825  # the longest server-certificate validity every TLS client accepts (Apple's limit)
CLOCK_SKEW = datetime.timedelta(minutes=5)  # a device whose clock is a little behind still accepts a new certificate
TLS_FOLDER = "tls"
KEYS_FOLDER = "supernode-keys"
# The way out of a refusal to reuse or replace what a deployment folder holds ({new_keys}: the caller's word for it)
NEW_KEYS_HINT = "ask for new keys ({new_keys}) to make them again"


@dataclass(frozen=True)
class TlsFiles:
    """The SuperLink's TLS files: ca.crt goes to every device; server.key stays on the SuperLink machine."""

    ca_cert: Path
    server_cert: Path
    server_key: Path

    @classmethod
    def in_folder(cls, folder: Path) -> TlsFiles:
        return cls(folder / "ca.crt", folder / "server.crt", folder / "server.key")

    def all(self) -> tuple[Path, Path, Path]:
        return (self.ca_cert, self.server_cert, self.server_key)


@dataclass(frozen=True)
class SuperNodeKeys:
    """One SuperNode's key pair: the private key for its device, the public key to register at the SuperLink."""

    name: str
    private_key: Path
    public_key: Path


def _crypto_available() -> None:
    try:
        import cryptography  # noqa: F401 - imported only to learn whether it is installed
    except ImportError:
        raise BadInput("TLS keys need the cryptography library: pip install 'w2vprof[fl]'") from None


def certificate_hosts(hosts: Iterable[str]) -> list[str]:
    """The names a server certificate must hold: the given hosts (bind-all addresses dropped) and LOCAL_NAMES."""
    names: list[str] = []
    for host in [*hosts, *LOCAL_NAMES]:
        host = host.strip().strip("[]")
        if not host or host in ("0.0.0.0", "::") or host in names:
            continue
        names.append(host)
    return names


def _as_general_name(host: str) -> x509.GeneralName:
    from cryptography import x509

    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        pass
    try:
        host.encode("ascii")
    except UnicodeEncodeError:
        raise BadInput(f"TLS host {host!r}: give the host name in ASCII (punycode) or an IP address") from None
    if any(c.isspace() or c in "/:@" for c in host):
        raise BadInput(f"TLS host {host!r} is neither a host name nor an IP address")
    return x509.DNSName(host)


def write_private_file(path: Path, data: bytes, overwrite: bool = False) -> None:
    """Write a secret: mode 0600 from its first byte, synced, whole or not at all.

    Without `overwrite` an existing file is BadInput (even one that appears meanwhile is not replaced); with it, the
    new key replaces the old one in one rename.
    """
    try:
        write_bytes_atomic(Path(path), data, mode=PRIVATE_MODE, exclusive=not overwrite)
    except FileExistsError:
        raise SettingError("new_keys", f"is off: refusing to overwrite the key {path} (devices may hold it)") from None


def _write_public_file(path: Path, data: bytes) -> None:
    write_bytes_atomic(path, data)


def _new_ec_key() -> ec.EllipticCurvePrivateKey:
    from cryptography.hazmat.primitives.asymmetric import ec

    return ec.generate_private_key(ec.SECP384R1())


def _pem_private(key: ec.EllipticCurvePrivateKey) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _name(common_name: str) -> x509.Name:
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "w2vprof federated deployment"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name[:64]),
        ]
    )


def _certificate_builder(subject: str, issuer: str, public_key, now: datetime.datetime, days: int):
    from cryptography import x509

    return (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )


def _ca_certificate(key: ec.EllipticCurvePrivateKey, now: datetime.datetime, days: int) -> x509.Certificate:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    key_usage = x509.KeyUsage(
        digital_signature=False,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=True,
        crl_sign=True,
        encipher_only=False,
        decipher_only=False,
    )
    builder = _certificate_builder("w2vprof federation CA", "w2vprof federation CA", key.public_key(), now, days)
    builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
    return builder.add_extension(key_usage, critical=True).sign(key, hashes.SHA384())


def _server_certificate(
    hosts: Sequence[str],
    key: ec.EllipticCurvePrivateKey,
    ca: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    now: datetime.datetime,
    days: int,
) -> x509.Certificate:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import ExtendedKeyUsageOID

    key_usage = x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )
    issuer_key_id = ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    builder = _certificate_builder(hosts[0], "w2vprof federation CA", key.public_key(), now, days)
    builder = (
        builder.add_extension(x509.SubjectAlternativeName([_as_general_name(h) for h in hosts]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(key_usage, critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(issuer_key_id), critical=False)
    )
    return builder.sign(ca_key, hashes.SHA384())


def server_certificate_names(cert_path: Path) -> list[str]:
    """The DNS names and IP addresses in a certificate's subjectAltName, as text."""
    from cryptography import x509

    try:
        cert = x509.load_pem_x509_certificate(Path(cert_path).read_bytes())
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (OSError, ValueError, x509.ExtensionNotFound) as exc:
        raise BadInput(f"{cert_path}: not a readable server certificate ({exc})") from None
    return [str(n) for n in names.get_values_for_type(x509.DNSName)] + [
        str(ip) for ip in names.get_values_for_type(x509.IPAddress)
    ]


def _reusable_tls(files: TlsFiles, hosts: Sequence[str]) -> bool:
    """True when all three files exist and the certificate names every host; False when none exists."""
    present = [p for p in files.all() if p.exists()]
    if not present:
        return False
    if len(present) != 3:
        missing = ", ".join(str(p) for p in files.all() if not p.exists())
        raise SettingError("out", f"holds TLS files incomplete (missing {missing}); {NEW_KEYS_HINT}", ("new_keys",))
    have = {
        ipaddress.ip_address(n).compressed if _is_ip(n) else n.lower()
        for n in server_certificate_names(files.server_cert)
    }
    lacking = [h for h in hosts if (ipaddress.ip_address(h).compressed if _is_ip(h) else h.lower()) not in have]
    if lacking:
        raise SettingError(
            "out",
            f"holds {files.server_cert}, made for other hosts (lacks {', '.join(lacking)}); {NEW_KEYS_HINT} "
            "(a new CA and certificate: every device then needs the new ca.crt)",
            ("new_keys",),
        )
    check_private_mode(files.server_key)
    return True


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def write_tls_files(
    folder: Path,
    hosts: Iterable[str],
    overwrite: bool = False,
    days: int = CERT_DAYS,
    now: datetime.datetime | None = None,
) -> tuple[TlsFiles, bool]:
    """A CA and a server certificate for `hosts` (plus LOCAL_NAMES) in `folder`; returns (files, newly_made).

    Existing files that already name every host are kept (newly_made False) unless `overwrite`.
    """
    _crypto_available()
    names = certificate_hosts(hosts)
    folder = Path(folder)
    files = TlsFiles.in_folder(folder)
    if not overwrite and _reusable_tls(files, names):
        return files, False
    from cryptography.hazmat.primitives import serialization

    folder.mkdir(parents=True, exist_ok=True)
    now = now or datetime.datetime.now(datetime.timezone.utc)
    ca_key, server_key = _new_ec_key(), _new_ec_key()
    ca = _ca_certificate(ca_key, now, days)
    server = _server_certificate(names, server_key, ca, ca_key, now, days)
    write_private_file(files.server_key, _pem_private(server_key), overwrite=overwrite)
    _write_public_file(files.server_cert, server.public_bytes(serialization.Encoding.PEM))
    _write_public_file(files.ca_cert, ca.public_bytes(serialization.Encoding.PEM))
    return files, True


def check_key_name(name: str) -> None:
    """A SuperNode name names its key files: no path separators, nothing that reads as an option."""
    if not name or name in (".", "..") or any(c in name for c in "/\\\0") or name.startswith("-"):
        raise BadInput(f"SuperNode name {name!r} cannot name a key file")


def write_supernode_keys(folder: Path, names: Iterable[str], overwrite: bool = False) -> list[SuperNodeKeys]:
    """One EC P-384 key pair per SuperNode (OpenSSH format, as Flower reads them); existing pairs are kept."""
    _crypto_available()
    from cryptography.hazmat.primitives import serialization

    folder = Path(folder)
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)  # every device's private key: for the owner's eyes only
    made: list[SuperNodeKeys] = []
    for name in names:
        check_key_name(name)
        keys = SuperNodeKeys(name, folder / f"{name}.key", folder / f"{name}.pub")
        present = [p.exists() for p in (keys.private_key, keys.public_key)]
        if all(present) and not overwrite:
            check_private_mode(keys.private_key)
            made.append(keys)
            continue
        if any(present) and not overwrite:
            raise SettingError(
                "out",
                f"holds half a key pair ({keys.private_key} or {keys.public_key} is missing); {NEW_KEYS_HINT}",
                ("new_keys",),
            )
        key = _new_ec_key()
        private = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
        )
        public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        write_private_file(keys.private_key, private, overwrite=overwrite)
        _write_public_file(keys.public_key, public + f" w2vprof-supernode-{name}\n".encode())
        made.append(keys)
    return made


def check_private_mode(path: Path) -> None:
    """A private key readable by others is refused, as ssh does: one line saying how to fix it."""
    mode = Path(path).stat().st_mode & 0o777
    if mode & 0o077:
        raise BadInput(f"{path} is readable by others (mode {mode:o}); chmod 600 {path}")


@dataclass(frozen=True)
class DeploymentKeys:
    """The TLS files and SuperNode key pairs of one deployment, and the Flower (1.42) options that use them."""

    tls: TlsFiles
    supernodes: dict[str, SuperNodeKeys]

    def superlink_flags(self) -> list[str]:
        """TLS on every SuperLink API (Fleet, Control, Runtime share one port), and only registered SuperNodes."""
        return [
            "--ssl-ca-certfile",
            str(self.tls.ca_cert),
            "--ssl-certfile",
            str(self.tls.server_cert),
            "--ssl-keyfile",
            str(self.tls.server_key),
            "--enable-supernode-auth",
        ]

    def supernode_flags(self, name: str) -> list[str]:
        """Check the SuperLink against our CA; sign every request with this device's own key."""
        return [
            "--root-certificates",
            str(self.tls.ca_cert),
            "--auth-supernode-private-key",
            str(self.supernodes[name].private_key),
        ]

    def register_arguments(self, name: str, connection: str) -> list[str]:
        """`flwr supernode register ...`: the SuperLink learns this device's public key (Control API)."""
        return ["supernode", "register", str(self.supernodes[name].public_key), connection, "--name", name]


def deployment_keys(
    out_dir: Path, hosts: Iterable[str], names: Sequence[str], new_keys: bool = False
) -> DeploymentKeys:
    """OUT/tls (CA + SuperLink certificate for `hosts`) and OUT/supernode-keys (one pair per name), kept if present."""
    out_dir = Path(out_dir)
    files, _ = write_tls_files(out_dir / TLS_FOLDER, hosts, overwrite=new_keys)
    pairs = write_supernode_keys(out_dir / KEYS_FOLDER, names, overwrite=new_keys)
    return DeploymentKeys(files, {pair.name: pair for pair in pairs})
