#!/usr/bin/env bash
# The demo: the simulated demo site (4 reservoirs, 11 pump stations, 2 car parks) served
# over real Modbus TCP and MQTT, one gateway per station polling it, a private Mosquitto
# and the ingest's receiver acknowledging every batch, with a scripted morning of
# incidents and a broker outage at one minute. Extra arguments go to `facility demo`
# (e.g. --speed 300, --duration 2h, --outage-for 0, --plain).
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$REPO/deploy/bootstrap.sh"
cd "$REPO"
exec "$REPO/.venv/bin/facility" demo deploy/sites/demo \
  --scenario deploy/sites/demo/scenarios/demo_incidents.yaml \
  --speed 60 --duration 1d --run-dir run/demo "$@"
