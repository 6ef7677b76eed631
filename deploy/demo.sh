#!/usr/bin/env bash
# The demo: the simulated demo site (4 reservoirs, 11 pump stations, 2 car parks) served
# over real Modbus TCP and MQTT, with a scripted morning of incidents, shown live.
# Extra arguments go to `facility simulate` (e.g. --speed 300, --duration 2h, --plain).
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$REPO/deploy/bootstrap.sh"
cd "$REPO"

RUN="$REPO/run/demo"
BROKER_PORT="${DEMO_BROKER_PORT:-18830}"
mkdir -p "$RUN/mosquitto"
cat > "$RUN/mosquitto.conf" <<CONF
user root
listener $BROKER_PORT 127.0.0.1
allow_anonymous true
persistence true
persistence_location $RUN/mosquitto/
log_dest file $RUN/mosquitto.log
CONF
/usr/sbin/mosquitto -c "$RUN/mosquitto.conf" &
BROKER_PID=$!
trap 'kill $BROKER_PID 2>/dev/null || true' EXIT
for _ in $(seq 50); do
  (exec 3<>"/dev/tcp/127.0.0.1/$BROKER_PORT") 2>/dev/null && break
  kill -0 "$BROKER_PID" 2>/dev/null || { echo "demo: the broker did not start (see $RUN/mosquitto.log; is port $BROKER_PORT taken? set DEMO_BROKER_PORT)" >&2; exit 1; }
  sleep 0.1
done

echo "Demo broker: mqtt://127.0.0.1:$BROKER_PORT   (watch: mosquitto_sub -p $BROKER_PORT -t 'parking/#' -v)"
echo "Read a pump yourself: mbpoll -m tcp -a 1 -t 3 -r 1 -c 16 -1 -p 15021 127.0.0.1"
echo
"$REPO/.venv/bin/facility" simulate deploy/sites/demo \
  --scenario deploy/sites/demo/scenarios/demo_incidents.yaml \
  --broker "127.0.0.1:$BROKER_PORT" --speed 60 --duration 1d "$@"
