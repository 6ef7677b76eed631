#!/usr/bin/env bash
# Set up everything the platform needs on a Debian machine, as root: system packages
# (only when missing), a virtual environment in .venv and the pinned Python packages.
# Safe to run again: it does only what is not done yet. Sourced by demo.sh and test.sh.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$REPO/.venv"
# fonts-wqy-zenhei: the sites' names are Chinese; reports and the console print them.
# systemd (systemd-analyze) and openssl: the install tests and `facility broker config`.
SYSTEM_PACKAGES=(mosquitto mosquitto-clients influxdb victoria-metrics mbpoll socat chromium
  fonts-wqy-zenhei systemd openssl)

missing=()
for pkg in "${SYSTEM_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ! python3 -c 'import sys; assert sys.version_info >= (3, 11)' 2>/dev/null; then
  missing+=(python3)
fi
if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c 'import ensurepip' 2>/dev/null; then
  missing+=(python3-venv)
fi
if [ "${#missing[@]}" -gt 0 ]; then
  echo "bootstrap: installing system packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

stamp="$VENV/.installed-$(sha256sum "$REPO/pyproject.toml" | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  echo "bootstrap: creating $VENV and installing Python packages"
  python3 -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip
  "$VENV/bin/python" -m pip install -q -e "$REPO[dev]"
  # fail loudly if incomplete: dev must pull the central extra too
  "$VENV/bin/python" -c 'import facility, simulators, pymodbus, aiomqtt, fastapi, matplotlib, apprise, pytest'
  rm -f "$VENV"/.installed-*
  touch "$stamp"
fi
