#!/usr/bin/env bash
# run-etcd.sh — a 3-member etcd 3.4 cluster on loopback, for benchmarking.
#
# Usage:
#   run-etcd.sh [DATADIR] [-- COMMAND [ARGS...]]
#
# Starts three members (default settings, fsync on, --log-level warn):
#   e1: clients http://127.0.0.1:2379   peers http://127.0.0.1:2380
#   e2: clients http://127.0.0.1:22379  peers http://127.0.0.1:22380
#   e3: clients http://127.0.0.1:32379  peers http://127.0.0.1:32380
# with data in DATADIR/e1..e3 (DATADIR must be new or empty; default: `mktemp -d`, which is
# removed at exit — pass a directory on a real disk, not tmpfs, to measure fsync). Each member's
# log goes to DATADIR/eN.log. Waits until `etcdctl endpoint health` reports all three healthy.
#
# With `-- COMMAND ...`: runs COMMAND with ETCD_ENDPOINTS set to the comma-separated client
# URLs, then stops the cluster and exits with COMMAND's status.
# Without a command: prints the endpoints and keeps the cluster up until SIGINT/SIGTERM.
# Either way the members are stopped (SIGTERM, one after the other) by an EXIT trap.
#
# Needs: apt-get install -y etcd-server etcd-client   (etcd 3.4 on Debian 12)
set -euo pipefail

DATA=""
if [[ $# -gt 0 && "$1" != "--" ]]; then
    DATA=$1
    shift
fi
if [[ $# -gt 0 ]]; then
    [[ "$1" == "--" ]] || { echo "run-etcd.sh: expected -- before the command" >&2; exit 2; }
    shift
fi

OWN_DATA=0
if [[ -z "$DATA" ]]; then
    DATA=$(mktemp -d)
    OWN_DATA=1
fi
mkdir -p "$DATA"

NAMES=(e1 e2 e3)
CLIENT_PORTS=(2379 22379 32379)
PEER_PORTS=(2380 22380 32380)
CLUSTER=""
ENDPOINTS=""
for i in 0 1 2; do
    CLUSTER+="${CLUSTER:+,}${NAMES[$i]}=http://127.0.0.1:${PEER_PORTS[$i]}"
    ENDPOINTS+="${ENDPOINTS:+,}http://127.0.0.1:${CLIENT_PORTS[$i]}"
done
TOKEN="bench-$$-$RANDOM"

PIDS=()
stop_cluster() {
    local pid
    # One member at a time: stopped together, a leader tries to hand its leadership to a
    # follower that is itself shutting down and the stop takes ~7 s instead of ~0.3 s.
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    PIDS=()
    if [[ $OWN_DATA == 1 ]]; then rm -rf "$DATA"; fi
}
trap stop_cluster EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

for i in 0 1 2; do
    n=${NAMES[$i]}
    # setsid: a Ctrl-C at the terminal reaches this script only, whose EXIT trap then stops the
    # members one at a time (SIGINT to all three at once makes the stop take ~7 s).
    setsid etcd --name "$n" \
        --data-dir "$DATA/$n" \
        --listen-client-urls "http://127.0.0.1:${CLIENT_PORTS[$i]}" \
        --advertise-client-urls "http://127.0.0.1:${CLIENT_PORTS[$i]}" \
        --listen-peer-urls "http://127.0.0.1:${PEER_PORTS[$i]}" \
        --initial-advertise-peer-urls "http://127.0.0.1:${PEER_PORTS[$i]}" \
        --initial-cluster "$CLUSTER" \
        --initial-cluster-token "$TOKEN" \
        --initial-cluster-state new \
        --logger zap --log-level warn \
        >"$DATA/$n.log" 2>&1 &
    PIDS+=($!)
done

healthy=0
for _ in $(seq 1 150); do
    for pid in "${PIDS[@]}"; do
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "run-etcd.sh: an etcd member exited during startup; logs in $DATA/e*.log:" >&2
            tail -n 5 "$DATA"/e*.log >&2 || true
            exit 1
        fi
    done
    if ETCDCTL_API=3 etcdctl --endpoints="$ENDPOINTS" --dial-timeout=1s --command-timeout=2s \
        endpoint health >/dev/null 2>&1; then
        healthy=1
        break
    fi
    sleep 0.2
done
if [[ $healthy != 1 ]]; then
    echo "run-etcd.sh: cluster not healthy after 30 s; logs in $DATA/e*.log" >&2
    exit 1
fi

export ETCD_ENDPOINTS=$ENDPOINTS
if [[ $# -gt 0 ]]; then
    status=0
    "$@" || status=$?
    exit "$status"
fi

echo "etcd cluster healthy: $ENDPOINTS (data in $DATA); Ctrl-C stops it."
while true; do
    sleep 1 &
    wait $! || true
    for pid in "${PIDS[@]}"; do
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "run-etcd.sh: an etcd member exited; logs in $DATA/e*.log" >&2
            exit 1
        fi
    done
done
