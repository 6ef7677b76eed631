#!/usr/bin/env bash
# The whole test suite, against real services (Mosquitto, Modbus over TCP, serial ptys,
# mbpoll), each test starting its own private instance. Extra arguments go to pytest.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$REPO/deploy/bootstrap.sh"
cd "$REPO"
exec "$REPO/.venv/bin/python" -m pytest -q -p no:cacheprovider "$@"
