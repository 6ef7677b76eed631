"""`facility broker config`: the central Mosquitto's TLS, credentials and ACL for a site
folder (facility/broker.py; docs/deploy.md says where each file goes)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from facility.broker import (
    Credential,
    Tls,
    acl_file,
    gateway_credentials,
    ingest_credential,
    issue_client_cert,
    make_private_ca,
    mosquitto_conf,
    password_file,
    write_secrets,
)
from facility.cli_args import SitePath, load_site
from facility.config import SiteConfig
from facility.console import console, err, exit_on_config_error
from facility.sourcemap import ConfigError

broker_app = typer.Typer(
    help="The central MQTT broker: its configuration from the site model.", no_args_is_help=True
)


@broker_app.command("config")
def config(
    path: SitePath,
    out: Annotated[Path, typer.Option(help="Folder to write into (created).")],
    ingest: Annotated[
        list[str],
        typer.Option(
            help="An ingest instance's broker user, named as its systemd instance "
            "(facility-ingest@NAME; repeat for several)."
        ),
    ] = ["ingest-1"],  # noqa: B006 (typer reads the default, never mutates it)
    port: Annotated[int, typer.Option(help="The TLS listener's port.")] = 8883,
    bind: Annotated[str | None, typer.Option(help="Listen on this address only.")] = None,
    cert: Annotated[
        Path | None, typer.Option(help="Your server certificate (path on the broker host).")
    ] = None,
    key: Annotated[
        Path | None, typer.Option(help="Its private key (path on the broker host).")
    ] = None,
    ca: Annotated[
        Path | None,
        typer.Option(help="The CA the clients trust (and client certificates' issuer)."),
    ] = None,
    hostname: Annotated[
        list[str] | None,
        typer.Option(help="Names in the private CA's server certificate (default: uplink hosts)."),
    ] = None,
    install_dir: Annotated[
        Path, typer.Option(help="Where the broker host keeps these files.")
    ] = Path("/etc/mosquitto/facility"),
    client_certs: Annotated[
        bool, typer.Option(help="Also require a client certificate (one issued per user).")
    ] = False,
    rotate: Annotated[bool, typer.Option(help="New passwords for everyone.")] = False,
) -> None:
    """Write the broker's TLS listener, one credential per gateway and ingest instance,
    and an ACL keeping each gateway to its own topics."""
    site = load_site(path)
    try:
        credentials = gateway_credentials(site)
    except ConfigError as exc:
        exit_on_config_error(err, exc, path)
    credentials += [ingest_credential(name) for name in ingest]
    if (cert is None) != (key is None):
        err.print("[red]error[/red] --cert and --key go together")
        raise typer.Exit(2)
    broker_dir, secrets_dir = out / "mosquitto", out / "secrets"
    broker_dir.mkdir(parents=True, exist_ok=True)
    passwords = write_secrets(credentials, secrets_dir, rotate)
    (broker_dir / "passwords").write_text(password_file(credentials, passwords))
    (broker_dir / "acl").write_text(acl_file(credentials))
    try:
        names = hostname or site_hosts(site)
        tls = _tls(names, broker_dir, install_dir, cert, key, ca)
        if client_certs:
            _client_certs(credentials, out, broker_dir, ca)
    except RuntimeError as exc:
        err.print(f"[red]error[/red] {escape(str(exc))}")
        raise typer.Exit(1) from None
    conf = mosquitto_conf(install_dir, tls, port, bind, client_certs)
    (broker_dir / "facility.conf").write_text(conf)
    gateways = sum(1 for c in credentials if c.env_file.startswith("gateway-"))
    tls_files = ", tls/" if cert is None else ""
    console.print("[green]ok[/green] ", end="")
    console.print(
        f"{gateways} gateway and {len(ingest)} ingest credentials, ACL and a TLS listener "
        f"on port {port} in {out}\n"
        f"  {broker_dir}/facility.conf -> /etc/mosquitto/conf.d/facility.conf\n"
        f"  {broker_dir}/passwords, acl{tls_files} -> {install_dir}/ "
        "(readable by the mosquitto user only)\n"
        f"  {secrets_dir}/gateway-SITE-STATION.env -> /etc/facility/ on that station's box; "
        "NAME.env of each ingest instance -> /etc/facility/ on the ingest host "
        "(mode 0640, group facility)",
        highlight=False,
        markup=False,  # paths are data
    )


def site_hosts(site: SiteConfig) -> list[str]:
    return sorted({s.gateway.uplink.host for s in site.sites}) or ["localhost"]


def _tls(
    hostnames: list[str],
    broker_dir: Path,
    install_dir: Path,
    cert: Path | None,
    key: Path | None,
    ca: Path | None,
) -> Tls:
    if cert is not None and key is not None:
        return Tls(certfile=cert, keyfile=key, cafile=ca)
    make_private_ca(broker_dir / "tls", hostnames)
    tls_dir = install_dir / "tls"
    return Tls(
        certfile=tls_dir / "server.crt", keyfile=tls_dir / "server.key", cafile=tls_dir / "ca.crt"
    )


def _client_certs(
    credentials: list[Credential], out: Path, broker_dir: Path, ca: Path | None
) -> None:
    if ca is not None:
        raise RuntimeError(
            "--client-certs issues certificates from the private CA: leave out --ca/--cert "
            "(with your own CA, issue the client certificates with it)"
        )
    ca_key, ca_crt = broker_dir / "tls" / "ca.key", broker_dir / "tls" / "ca.crt"
    for cred in credentials:
        issue_client_cert(out / "clients", cred.username, ca_key, ca_crt)
