"""HTTPS for the sandbox: a throwaway certificate authority and a certificate for 127.0.0.1.

The ``pagerduty`` client refuses a base URL that is not ``https://`` (``ApiClient.url``), so the
sandbox serves TLS like PagerDuty does; the bot only has to trust one more CA (``verify=`` on
the client, or ``SandboxTls.client_context()``). Keys are made once per process with the
``openssl`` command-line tool in a private temporary directory, removed at exit, and never
leave the machine: they protect nothing but a loopback socket, and a key checked into the
repository would only teach secret scanners to cry wolf.
"""

from __future__ import annotations

import atexit
import shutil
import ssl
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

_EC = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
_SERVER_EXTENSIONS = """\
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1, DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
"""
_lock = threading.Lock()
_cached: SandboxTls | None = None


class TlsUnavailable(RuntimeError):
    """The certificates could not be made (no ``openssl`` on the PATH, or it failed)."""


@dataclass(frozen=True)
class SandboxTls:
    """Where the CA certificate (for clients) and the server's certificate and key are."""

    ca_file: Path
    cert_file: Path
    key_file: Path

    def client_context(self) -> ssl.SSLContext:
        """An ``ssl.SSLContext`` trusting the sandbox (what ``verify=`` wants)."""
        return ssl.create_default_context(cafile=str(self.ca_file))


def _openssl(binary: str, *args: str, cwd: Path) -> None:
    done = subprocess.run(
        [binary, *args], cwd=cwd, capture_output=True, text=True, timeout=30, check=False
    )
    if done.returncode != 0:
        raise TlsUnavailable(f"openssl {args[0]} failed: {done.stderr.strip()[-400:]}")


def sandbox_tls() -> SandboxTls:
    """The process's sandbox certificates, made on first use."""
    global _cached
    with _lock:
        if _cached is not None:
            return _cached
        binary = shutil.which("openssl")
        if binary is None:
            raise TlsUnavailable("the PagerDuty sandbox needs the openssl command to serve HTTPS")
        where = Path(tempfile.mkdtemp(prefix="incidentbot-pd-tls-"))
        atexit.register(shutil.rmtree, where, ignore_errors=True)
        (where / "server.ext").write_text(_SERVER_EXTENSIONS, encoding="ascii")
        ca = ["req", "-x509", *_EC, "-keyout", "ca.key", "-out", "ca.pem", "-days", "3650"]
        ca += ["-subj", "/CN=incidentbot sandbox CA"]
        ca += ["-addext", "basicConstraints=critical,CA:TRUE"]
        ca += ["-addext", "keyUsage=critical,keyCertSign,cRLSign"]
        request = ["req", *_EC, "-keyout", "server.key", "-out", "server.csr"]
        request += ["-subj", "/CN=127.0.0.1"]
        signed = ["x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key"]
        signed += ["-set_serial", "1", "-days", "825", "-extfile", "server.ext"]
        signed += ["-out", "server.pem"]
        for args in (ca, request, signed):
            _openssl(binary, *args, cwd=where)
        _cached = SandboxTls(where / "ca.pem", where / "server.pem", where / "server.key")
        return _cached
