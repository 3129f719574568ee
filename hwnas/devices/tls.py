"""TLS for the agent and its client: server contexts, self-signed certificates, SHA-256 pinning (stdlib only).

The agent serves HTTPS with a user's certificate/key or a self-signed pair it creates once (with the
`openssl` command) and reuses; it prints the certificate's SHA-256 fingerprint, which the client pins
(`tls_fingerprint` in the device spec): no CA is involved and the token is only sent after the pin matched.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import ssl
import subprocess
from pathlib import Path

from hwnas.errors import HwnasError

INSECURE = "insecure"  # the `tls_fingerprint` value that allows plain HTTP to a non-loopback agent


class TlsError(HwnasError):
    """A certificate or key cannot be made or loaded, or a peer's certificate does not match its pin."""


def fingerprint_der(der: bytes) -> str:
    """SHA-256 of a DER certificate as colon-separated upper-case hex (as `openssl x509 -fingerprint`)."""
    digest = hashlib.sha256(der).hexdigest().upper()
    return ":".join(digest[i:i + 2] for i in range(0, len(digest), 2))


def normalize_fingerprint(text: str) -> str:
    """A pin as the user wrote it (colons or not, any case) in the canonical form of `fingerprint_der`."""
    digest = "".join(text.split()).replace(":", "").upper()
    if len(digest) != 64 or any(c not in "0123456789ABCDEF" for c in digest):
        raise TlsError(f"tls_fingerprint {text[:80]!r} is not a SHA-256 fingerprint (64 hex digits); copy the "
                       "one the agent prints at start-up")
    return ":".join(digest[i:i + 2] for i in range(0, 64, 2))


def certificate_fingerprint(cert_path: str | os.PathLike[str]) -> str:
    """The SHA-256 fingerprint of the first certificate of a PEM file."""
    try:
        pem = Path(cert_path).read_text(encoding="ascii")
        return fingerprint_der(ssl.PEM_cert_to_DER_cert(pem[pem.index("-----BEGIN CERTIFICATE-----"):]))
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise TlsError(f"cannot read the certificate {cert_path}: {exc}; pass a PEM certificate") from None


def self_signed(folder: str | os.PathLike[str]) -> tuple[Path, Path]:
    """(cert, key) in `folder`: reused when both exist (the fingerprint stays the same across restarts),
    else created with `openssl` (an EC P-256 key, valid 10 years, readable only by this user)."""
    folder = Path(folder)
    cert, key = folder / "agent-cert.pem", folder / "agent-key.pem"
    if cert.is_file() and key.is_file():
        return cert, key
    openssl = shutil.which("openssl")
    if openssl is None:
        raise TlsError("creating a self-signed certificate needs the `openssl` command (e.g. `apt install "
                       "openssl`); or pass your own --tls-cert and --tls-key")
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    old = os.umask(0o077)
    try:
        proc = subprocess.run(
            [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", str(key), "-out", str(cert), "-days", "3650", "-subj", "/CN=hwnas-agent"],
            capture_output=True, text=True, timeout=60)
    finally:
        os.umask(old)
    if proc.returncode != 0 or not cert.is_file():
        tail = (proc.stderr.strip().splitlines() or [""])[-1]
        raise TlsError(f"openssl could not create a certificate in {folder}: {tail[:200]}; pass --tls-cert/--tls-key")
    return cert, key


def server_context(cert: str | os.PathLike[str], key: str | os.PathLike[str]) -> ssl.SSLContext:
    """A TLS 1.2+ server context from a PEM certificate chain and its private key."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(str(cert), str(key))
    except (OSError, ssl.SSLError) as exc:
        raise TlsError(f"cannot load --tls-cert {cert} with --tls-key {key}: {exc}; pass a PEM certificate "
                       "and its unencrypted private key") from None
    return ctx


def pinning_context() -> ssl.SSLContext:
    """A client context that accepts any certificate: the caller checks the peer's fingerprint itself
    (`check_pin`) before it sends anything."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def check_pin(sock: ssl.SSLSocket, pinned: str, where: str) -> None:
    """Raise TlsError unless the peer's certificate has the SHA-256 fingerprint `pinned`."""
    der = sock.getpeercert(binary_form=True)
    got = fingerprint_der(der) if der else "none"
    if got != normalize_fingerprint(pinned):
        raise TlsError(f"the agent at {where} presents a certificate with SHA-256 {got}, not the pinned "
                       f"tls_fingerprint {pinned}; the token was not sent. If you re-created the agent's "
                       "certificate, copy the fingerprint it prints into the device spec")
