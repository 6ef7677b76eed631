#!/usr/bin/env bash
# Install the platform on a Debian / Raspberry Pi OS box as a service (docs/deploy.md):
#
#   deploy/install.sh gateway        a site box: the `gateway` extra, facility-gateway@.service
#   deploy/install.sh central        the central server: the `central` extra, facility-ingest@.service
#   deploy/install.sh upgrade        the installed role to this checkout's version; restarts the units
#   deploy/install.sh uninstall [--purge]   units and venv; --purge also config, state and user
#
# Options (before the command): --from SRC installs SRC (a wheel, or a source folder)
# instead of this checkout; --root DIR works inside DIR instead of / (a throwaway tree
# for tests: no apt-get, no systemctl); --no-apt leaves system packages alone.
#
# What it makes: the system user `facility`; /opt/facility/venv; /etc/facility (config,
# root:facility 0750) with env files for secrets (0640); the hardened systemd units. The
# state (/var/lib/facility/...) is made by systemd (StateDirectory=) at first start.
# Existing config is never overwritten.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ROOT=""
SRC="$REPO"
APT=1
PURGE=0
USER_NAME=facility

usage() { sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
say() { echo "install: $*"; }
die() { echo "install: error: $*" >&2; exit 1; }

while [ $# -gt 0 ]; do
  case "$1" in
    --root) ROOT="$(realpath -m "$2")"; APT=0; shift 2 ;;
    --from) SRC="$(realpath "$2")"; shift 2 ;;
    --no-apt) APT=0; shift ;;
    --purge) PURGE=1; shift ;;
    -h|--help) usage ;;
    gateway|central|upgrade|uninstall) break ;;
    *) usage ;;
  esac
done
[ $# -ge 1 ] || usage
COMMAND="$1"; shift
for arg in "$@"; do
  case "$arg" in --purge) PURGE=1 ;; *) usage ;; esac
done

ETC="$ROOT/etc/facility"
OPT="$ROOT/opt/facility"
VENV="$OPT/venv"
UNITS="$ROOT/etc/systemd/system"
STATE="$ROOT/var/lib/facility"

[ "$(id -u)" -eq 0 ] || [ -n "$ROOT" ] || die "run as root (or with --root DIR)"

systemctl_() { if [ -z "$ROOT" ] && command -v systemctl >/dev/null; then systemctl "$@"; fi; }

apt_packages() {
  [ "$APT" -eq 1 ] || return 0
  local missing=() pkg
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    say "installing system packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

# useradd/groupadd --prefix work on another tree's /etc without chrooting into it.
prefix_args() { if [ -n "$ROOT" ]; then echo "--prefix $ROOT"; fi; }

ensure_user() {
  if ! grep -q "^$USER_NAME:" "$ROOT/etc/passwd" 2>/dev/null; then
    say "creating the system user $USER_NAME"
    # shellcheck disable=SC2046
    useradd $(prefix_args) --system --user-group --home-dir /var/lib/facility \
      --no-create-home --shell /usr/sbin/nologin --comment "facility telemetry" "$USER_NAME"
  fi
}

install_venv() {
  local role="$1"
  python3 -c 'import sys; assert sys.version_info >= (3, 11)' 2>/dev/null \
    || die "Python 3.11 or newer is needed (Debian 12, Raspberry Pi OS bookworm)"
  mkdir -p "$OPT"
  if [ ! -x "$VENV/bin/python" ]; then
    say "creating $VENV"
    python3 -m venv "$VENV"
  fi
  say "installing facility-telemetry[$role] from $SRC"
  "$VENV/bin/python" -m pip install -q --upgrade "$SRC[$role]"
  echo "$role" > "$OPT/role"
  "$VENV/bin/facility" --help >/dev/null || die "the installed facility command does not run"
}

# install -m MODE -o root -g facility, or a plain copy inside a --root tree (whose
# facility group exists in its own /etc/group, not in this host's).
put() {
  local mode="$1" src="$2" dst="$3"
  if [ -e "$dst" ]; then return 0; fi
  if [ -n "$ROOT" ]; then install -m "$mode" "$src" "$dst"; else install -m "$mode" -o root -g "$USER_NAME" "$src" "$dst"; fi
}

config_dir() {
  mkdir -p "$ETC"
  chmod 0750 "$ETC"
  [ -n "$ROOT" ] || chgrp "$USER_NAME" "$ETC"
}

secret_template() {  # $1 file, $2 text
  local tmp
  tmp="$(mktemp)"
  printf '%s\n' "$2" > "$tmp"
  put 0640 "$tmp" "$1"
  rm -f "$tmp"
}

install_gateway() {
  apt_packages python3 python3-venv
  ensure_user
  install_venv gateway
  config_dir
  mkdir -p "$ETC/sites"
  secret_template "$ETC/gateway.env" "# Every gateway on this box (facility-gateway@SITE-STATION.service).
# The site model: a folder of site files (deploy/sites/demo shows the shape).
FACILITY_SITE=/etc/facility/sites
# Each station's uplink password goes into /etc/facility/gateway-SITE-STATION.env,
# as written by \`facility broker config\` on the central server."
  install -m 0644 "$REPO/deploy/systemd/facility-gateway@.service" "$UNITS/"
  systemctl_ daemon-reload
  say "done. Next: site files into $ETC/sites/, each station's gateway-SITE-STATION.env"
  say "into $ETC/, then: systemctl enable --now facility-gateway@SITE-STATION"
}

install_central() {
  apt_packages python3 python3-venv mosquitto
  ensure_user
  install_venv central
  config_dir
  mkdir -p "$ETC/sites" "$ETC/alarms"
  local file
  for file in rules.yaml notify.yaml api-tokens.yaml; do
    put 0640 "$REPO/deploy/alarms/$file" "$ETC/alarms/$file"
  done
  local example
  example="$(mktemp)"
  sed -e 's|^\(  site_config:\).*|\1 sites                     # /etc/facility/sites|' \
      -e 's|^\(  data_dir:\).*|\1 /var/lib/facility/ingest/ingest-1|' \
      -e 's|^\(    rules:\) \.\./alarms/|\1 alarms/|' \
      "$REPO/deploy/ingest/ingest.yaml" > "$example"
  put 0640 "$example" "$ETC/ingest-1.yaml"
  rm -f "$example"
  secret_template "$ETC/ingest.env" "# Secrets of every ingest instance (facility-ingest@NAME.service); per instance:
# /etc/facility/NAME.env (e.g. its FACILITY_BROKER_PASSWORD from \`facility broker config\`).
# FACILITY_INFLUX_PASSWORD=
# FACILITY_ACK_SECRET=
# FACILITY_API_TOKEN_ADMIN="
  install -m 0644 "$REPO/deploy/systemd/facility-ingest@.service" "$UNITS/"
  systemctl_ daemon-reload
  say "done. Next: site files into $ETC/sites/, edit $ETC/ingest-1.yaml, then"
  say "facility broker config (docs/deploy.md), facility ingest init, and"
  say "systemctl enable --now facility-ingest@ingest-1"
}

installed_units() {
  systemctl_ list-units --all --plain --no-legend 'facility-gateway@*' 'facility-ingest@*' \
    | awk '{print $1}'
}

upgrade() {
  [ -f "$OPT/role" ] || die "nothing installed in $OPT (run: install.sh gateway|central)"
  local role
  role="$(cat "$OPT/role")"
  install_venv "$role"
  # A checkout's code changes without its version number: replace the package itself
  # even when pip thinks the version is already there (dependencies stay as resolved).
  "$VENV/bin/python" -m pip install -q --force-reinstall --no-deps "$SRC"
  local units
  units="$(installed_units || true)"
  if [ -n "$units" ]; then
    say "restarting: $units"
    # shellcheck disable=SC2086
    systemctl_ try-restart $units
  fi
  say "upgraded the $role install"
}

uninstall() {
  local units
  units="$(installed_units || true)"
  if [ -n "$units" ]; then
    # shellcheck disable=SC2086
    systemctl_ disable --now $units
  fi
  rm -f "$UNITS/facility-gateway@.service" "$UNITS/facility-ingest@.service"
  systemctl_ daemon-reload
  rm -rf "$OPT"
  if [ "$PURGE" -eq 1 ]; then
    rm -rf "$ETC" "$STATE"
    if grep -q "^$USER_NAME:" "$ROOT/etc/passwd" 2>/dev/null; then
      # shellcheck disable=SC2046
      userdel $(prefix_args) "$USER_NAME"
    fi
    say "removed the units, $OPT, $ETC, $STATE and the user $USER_NAME"
  else
    say "removed the units and $OPT; kept $ETC and $STATE (--purge removes them)"
  fi
}

mkdir -p "$UNITS"
case "$COMMAND" in
  gateway) install_gateway ;;
  central) install_central ;;
  upgrade) upgrade ;;
  uninstall) uninstall ;;
esac
