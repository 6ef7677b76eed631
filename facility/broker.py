"""The central Mosquitto's security, written from the site model.

One credential per gateway (per station) and per ingest instance, a password file in
Mosquitto's own format (PBKDF2-SHA512, `$7$`, as `mosquitto_passwd` writes), an ACL in
which a gateway may publish only its own `up` and `status` topics and read only its own
`ack`, and a TLS listener: the operator's certificate, or a private CA made here for a
test bed (openssl). Passwords are random and kept in per-credential env files, which a
re-run reuses, so adding a station does not change anyone else's password.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import secrets
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from facility.config import SiteConfig
from facility.sourcemap import ConfigError, ConfigIssue, SourceDoc
from facility.wire import TOPIC_ROOT, topic

PBKDF2_ITERATIONS = 101  # mosquitto_passwd's own default in Mosquitto 2.0
SALT_BYTES = 12
INGEST_PASSWORD_ENV = "FACILITY_BROKER_PASSWORD"  # what deploy/ingest/ingest.yaml names
CA_DAYS = 3650
SERVER_DAYS = 825


@dataclass(frozen=True)
class Credential:
    username: str
    env_name: str  # the variable the client reads its password from
    env_file: str  # secrets/<this>: copy it to the client's box
    publish: tuple[str, ...]
    subscribe: tuple[str, ...]
    comment: str


@dataclass(frozen=True)
class Tls:
    """Where the listener's files are (on the broker host) and what to copy from."""

    certfile: Path
    keyfile: Path
    cafile: Path | None  # the CA the clients trust; with client_certs, also the issuer


def gateway_credentials(config: SiteConfig) -> list[Credential]:
    """One per station, named as its gateway will name itself; every problem at once."""
    issues: list[ConfigIssue] = []
    found: list[Credential] = []
    owner: dict[str, str] = {}
    for site in config.sites:
        doc = config.sources.get(site.id)
        uplink = site.gateway.uplink

        def problem(field: str, message: str, doc: SourceDoc | None = doc) -> None:
            path: list[str | int] = ["gateway", "uplink", field]
            issues.append(
                doc.issue(path, message)
                if doc is not None
                else ConfigIssue(str(config.root), 0, ".".join(map(str, path)), message)
            )

        if uplink.username is None:
            problem(
                "username",
                'set it, e.g. username: "{site}-{station}", so that each gateway has its '
                "own credential",
            )
            continue
        if uplink.password_env is None:
            problem("password_env", "set it, e.g. password_env: FACILITY_UPLINK_PASSWORD")
            continue
        for station in site.stations:
            name = uplink.username_for(site.id, station.id) or ""
            if name in owner:
                problem(
                    "username",
                    f"{site.id}/{station.id} and {owner[name]} would share the user {name!r}: "
                    "put {station} (and {site}) in it",
                )
                continue
            owner[name] = f"{site.id}/{station.id}"
            found.append(
                Credential(
                    username=name,
                    env_name=uplink.password_env,
                    env_file=f"gateway-{site.id}-{station.id}.env",
                    publish=(
                        topic(site.id, station.id, "up"),
                        topic(site.id, station.id, "status"),
                    ),
                    subscribe=(topic(site.id, station.id, "ack"),),
                    comment=f"gateway {site.id}/{station.id}",
                )
            )
    if issues:
        raise ConfigError(issues)
    return found


def ingest_credential(name: str) -> Credential:
    return Credential(
        username=name,
        env_name=INGEST_PASSWORD_ENV,
        env_file=f"{name}.env",  # the unit facility-ingest@NAME reads /etc/facility/NAME.env
        publish=(f"{TOPIC_ROOT}/+/+/ack",),
        subscribe=(f"{TOPIC_ROOT}/+/+/up", f"{TOPIC_ROOT}/+/+/status"),
        comment=f"ingest instance {name}",
    )


def password_hash(password: str, salt: bytes | None = None) -> str:
    """Mosquitto 2's `$7$` line: PBKDF2-HMAC-SHA512, base64 salt and digest."""
    salt = secrets.token_bytes(SALT_BYTES) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, PBKDF2_ITERATIONS)
    return (
        f"$7${PBKDF2_ITERATIONS}${base64.b64encode(salt).decode()}"
        f"${base64.b64encode(digest).decode()}"
    )


def _existing_password(env_file: Path, env_name: str) -> str | None:
    try:
        text = env_file.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    match = re.search(rf"^{re.escape(env_name)}=(\S+)$", text, re.MULTILINE)
    return match[1] if match else None


def write_secrets(credentials: Sequence[Credential], folder: Path, rotate: bool) -> dict[str, str]:
    """Each credential's env file (0600), reusing the password already there."""
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    passwords: dict[str, str] = {}
    for cred in credentials:
        path = folder / cred.env_file
        password = None if rotate else _existing_password(path, cred.env_name)
        password = password or secrets.token_urlsafe(24)
        body = f"# {cred.comment}: user {cred.username}\n{cred.env_name}={password}\n"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(body)
        passwords[cred.username] = password
    return passwords


def password_file(credentials: Sequence[Credential], passwords: dict[str, str]) -> str:
    return "".join(f"{c.username}:{password_hash(passwords[c.username])}\n" for c in credentials)


def acl_file(credentials: Sequence[Credential]) -> str:
    lines = [
        "# Written by `facility broker config`: re-run it instead of editing.",
        "# Whatever is not granted here is refused (a refused publish is dropped silently).",
    ]
    for cred in credentials:
        lines += ["", f"# {cred.comment}", f"user {cred.username}"]
        lines += [f"topic write {t}" for t in cred.publish]
        lines += [f"topic read {t}" for t in cred.subscribe]
    return "\n".join(lines) + "\n"


def mosquitto_conf(
    install_dir: Path, tls: Tls, port: int, bind: str | None, client_certs: bool
) -> str:
    listener = f"listener {port} {bind}" if bind else f"listener {port}"
    lines = [
        "# Written by `facility broker config`: re-run it instead of editing. For",
        "# /etc/mosquitto/conf.d/ (Debian's mosquitto.conf reads that folder).",
        "per_listener_settings false",
        "allow_anonymous false",
        f"password_file {install_dir / 'passwords'}",
        f"acl_file {install_dir / 'acl'}",
        "",
        listener,
        f"certfile {tls.certfile}",
        f"keyfile {tls.keyfile}",
        "tls_version tlsv1.2",
    ]
    if tls.cafile is not None:
        lines.append(f"cafile {tls.cafile}")
    if client_certs:
        # A certificate is required on top of the password: a stolen password alone
        # does not connect.
        lines.append("require_certificate true")
    return "\n".join(lines) + "\n"


def _openssl(*args: str | Path) -> None:
    binary = shutil.which("openssl")
    if binary is None:
        raise RuntimeError("openssl is not installed (apt-get install openssl)")
    done = subprocess.run(
        [binary, *(str(a) for a in args)], capture_output=True, text=True, timeout=120
    )
    if done.returncode != 0:
        raise RuntimeError(f"openssl {args[0]} failed: {done.stderr.strip()}")


def make_private_ca(folder: Path, hostnames: Sequence[str]) -> tuple[Path, Path, Path, Path]:
    """A CA and a server certificate for `hostnames` (test beds: an operator with a CA of
    their own passes its files instead). Kept across re-runs."""
    folder.mkdir(parents=True, exist_ok=True)
    ca_key, ca_crt = folder / "ca.key", folder / "ca.crt"
    key, crt = folder / "server.key", folder / "server.crt"
    if not ca_crt.exists():
        _openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", ca_key)
        _openssl(
            "req", "-x509", "-new", "-key", ca_key, "-sha256", "-days", str(CA_DAYS),
            "-subj", "/CN=facility private CA", "-out", ca_crt,
        )  # fmt: skip
        os.chmod(ca_key, 0o600)
    _issue(folder, "server", hostnames[0], ca_key, ca_crt, hostnames, server=True)
    return ca_key, ca_crt, key, crt


def issue_client_cert(folder: Path, name: str, ca_key: Path, ca_crt: Path) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    return _issue(folder, f"client-{name}", name, ca_key, ca_crt, (), server=False)


def _issue(
    folder: Path,
    stem: str,
    common_name: str,
    ca_key: Path,
    ca_crt: Path,
    hostnames: Sequence[str],
    server: bool,
) -> tuple[Path, Path]:
    key, csr, crt = folder / f"{stem}.key", folder / f"{stem}.csr", folder / f"{stem}.crt"
    if crt.exists() and key.exists():
        return crt, key
    _openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", key)
    os.chmod(key, 0o600)
    _openssl("req", "-new", "-key", key, "-subj", f"/CN={common_name}", "-out", csr)
    extensions = folder / f"{stem}.ext"
    if server:
        names = ",".join(
            f"IP:{h}" if re.fullmatch(r"[\d.]+|[0-9a-fA-F:]+:[0-9a-fA-F:]*", h) else f"DNS:{h}"
            for h in hostnames
        )
        extensions.write_text(f"subjectAltName={names}\nextendedKeyUsage=serverAuth\n")
    else:
        extensions.write_text("extendedKeyUsage=clientAuth\n")
    _openssl(
        "x509", "-req", "-in", csr, "-CA", ca_crt, "-CAkey", ca_key, "-CAcreateserial",
        "-days", str(SERVER_DAYS), "-sha256", "-extfile", extensions, "-out", crt,
    )  # fmt: skip
    csr.unlink()
    extensions.unlink()
    return crt, key
