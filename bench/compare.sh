#!/usr/bin/env bash
# compare.sh — kvraft vs etcd 3.4, back to back on this machine, same closed-loop load.
#
# Usage:
#   bench/compare.sh [--rounds R] [--duration D] [--warmup W] [--no-build] [--out FILE]
#                    [--only NAME[,NAME...]]
#
# Builds `kvraft` (cargo build --release -p kvraft, in the workspace) and `etcd-bench`
# (bench/etcd, a separate cargo project) unless --no-build. Then, R rounds (default 3); in each
# round, for each workload below, one kvraft run and one etcd run back to back — kvraft first
# in odd rounds, etcd first in even rounds. Each run gets a fresh 3-node cluster with fresh data
# dirs under $BENCH_TMP (default /work: a real disk, so fsync costs what it costs), deleted
# afterwards:
#   kvraft: `kvraft local --nodes 3 --base-port $KV_BASE_PORT --data DIR` in the background,
#           1.5 s to elect, every key written (`kvraft bench --ops 8000 --mix put=1`, so gets hit
#           existing keys, as etcd-bench does), then `kvraft bench --cluster ...`, then SIGINT.
#   etcd:   bench/etcd/run-etcd.sh DIR -- etcd-bench --endpoints ... (3 members on 2379/22379/
#           32379, fsync on; etcd-bench finds the leader, writes every key, then measures).
# Finally prints, per workload and system, the MEDIAN over rounds of ops/s, p50 and p99, and
# the kvraft/etcd throughput ratio. Every run's numbers go to a TSV (--out; default
# bench/results/compare-DATE.tsv).
#
# Workloads (1000 keys, 16-byte keys, 100-byte values; --duration 5s, --warmup 1s by default):
#   put1     1 client;  kvraft --mix append=1, etcd --mix put=1 (etcd has no append)
#   put16    16 clients, put=1
#   put64    64 clients, put=1
#   get16    16 clients, get=1 (linearizable gets on both)
#   mixed16  16 clients, get=50,put=50
#
# Needs: etcd 3.4 (apt-get install -y etcd-server etcd-client) and, to build etcd-bench, protoc
# (apt-get install -y protobuf-compiler); both are installed here when missing and running as
# root. Environment: KV_BASE_PORT (default 7000: clients 7001-7003, peers 7101-7103), BENCH_TMP.
set -euo pipefail

BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$BENCH")
ROUNDS=3
DURATION=5s
WARMUP=1s
BUILD=1
OUT=""
ONLY=""
KV_BASE_PORT=${KV_BASE_PORT:-7000}
BENCH_TMP=${BENCH_TMP:-/work}

while [[ $# -gt 0 ]]; do
    case $1 in
        --rounds) ROUNDS=$2; shift 2 ;;
        --duration) DURATION=$2; shift 2 ;;
        --warmup) WARMUP=$2; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        --out) OUT=$2; shift 2 ;;
        --only) ONLY=$2; shift 2 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "compare.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || { echo "compare.sh: --rounds must be a positive integer" >&2; exit 2; }

# name | clients | kvraft mix | etcd mix | label
WORKLOADS=(
    "put1|1|append=1|put=1|1 client put (kv append=1, etcd put=1)"
    "put16|16|put=1|put=1|16 clients put"
    "put64|64|put=1|put=1|64 clients put"
    "get16|16|get=1|get=1|16 clients get"
    "mixed16|16|get=50,put=50|get=50,put=50|16 clients get=50,put=50"
)
if [[ -n $ONLY ]]; then
    selected=()
    for w in "${WORKLOADS[@]}"; do
        [[ ",$ONLY," == *",${w%%|*},"* ]] && selected+=("$w")
    done
    [[ ${#selected[@]} -gt 0 ]] || { echo "compare.sh: --only matches no workload" >&2; exit 2; }
    WORKLOADS=("${selected[@]}")
fi

# --- tools ---------------------------------------------------------------------------------
need_apt() { # need_apt COMMAND PACKAGE...
    command -v "$1" >/dev/null && return 0
    if [[ $(id -u) == 0 ]]; then
        echo "compare.sh: installing ${*:2}" >&2
        apt-get install -y "${@:2}" >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y "${@:2}" >/dev/null; }
    fi
    command -v "$1" >/dev/null || { echo "compare.sh: $1 missing: apt-get install -y ${*:2}" >&2; exit 1; }
}
need_apt etcd etcd-server etcd-client
need_apt etcdctl etcd-client

KV_TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
EB_TARGET=${CARGO_TARGET_DIR:-$BENCH/etcd/target}
if [[ $BUILD == 1 ]]; then
    need_apt protoc protobuf-compiler
    echo "== building kvraft (release)" >&2
    (cd "$ROOT" && cargo build --release -p kvraft)
    echo "== building etcd-bench (release)" >&2
    (cd "$BENCH/etcd" && cargo build --release)
fi
KV=$KV_TARGET/release/kvraft
EB=$EB_TARGET/release/etcd-bench
for b in "$KV" "$EB"; do [[ -x $b ]] || { echo "compare.sh: $b not built" >&2; exit 1; }; done

# --- scratch space and cleanup -------------------------------------------------------------
mkdir -p "$BENCH_TMP"
SCRATCH=$(mktemp -d "$BENCH_TMP/tmp-compare.XXXXXX")
KV_PID=""
cleanup() {
    if [[ -n $KV_PID ]]; then kill -INT "$KV_PID" 2>/dev/null || true; wait "$KV_PID" 2>/dev/null || true; fi
    # On Ctrl-C, run-etcd.sh stops its members by itself: give it up to 10 s before removing
    # the data under them.
    local _
    for _ in $(seq 1 100); do
        pgrep -f -- "$SCRATCH/" >/dev/null || break
        sleep 0.1
    done
    rm -rf "$SCRATCH"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [[ -z $OUT ]]; then
    mkdir -p "$BENCH/results"
    OUT=$BENCH/results/compare-$(date +%Y%m%d-%H%M%S).tsv
fi
printf 'round\tworkload\tsystem\tclients\tmix\tops\tops_per_s\tfailed\tp50_ms\tp99_ms\tp999_ms\tmax_ms\n' >"$OUT"

port_free() { ! ss -Hltn "sport = :$1" 2>/dev/null | grep -q .; }
check_ports() {
    local p
    for p in "$@"; do
        port_free "$p" || { echo "compare.sh: port $p is in use; stop what holds it (or set KV_BASE_PORT)" >&2; return 1; }
    done
}

KV_CLUSTER=1=127.0.0.1:$((KV_BASE_PORT + 1)),2=127.0.0.1:$((KV_BASE_PORT + 2)),3=127.0.0.1:$((KV_BASE_PORT + 3))
ETCD_ENDPOINTS=http://127.0.0.1:2379,http://127.0.0.1:22379,http://127.0.0.1:32379
COMMON=(--keys 1000 --key-size 16 --value-size 100 --duration "$DURATION" --warmup "$WARMUP")

# record ROUND WORKLOAD SYSTEM CLIENTS MIX OUTPUT: parses the bench's three lines into $OUT.
record() {
    local line2 line3
    line2=$(grep -E '^[0-9]+ ops in ' <<<"$6" | head -n 1)
    line3=$(grep -E '^latency ms:' <<<"$6" | head -n 1)
    if [[ -z $line2 || -z $line3 ]]; then
        printf '%s\t%s\t%s\t%s\t%s\tNA\tNA\tNA\tNA\tNA\tNA\tNA\n' "$1" "$2" "$3" "$4" "$5" >>"$OUT"
        return
    fi
    # "29561 ops in 6.00s: 4927 ops/s (0 failed)"
    # "latency ms: p50 3.050  p99 6.554  p999 11.982  max 19.382"
    awk -v r="$1" -v w="$2" -v s="$3" -v c="$4" -v m="$5" -v l2="$line2" -v l3="$line3" 'BEGIN {
        n = split(l2, a, /[ ():]+/); ops = a[1]; rate = a[5]; failed = a[7];
        split(l3, b, /[ ]+/);
        printf "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r, w, s, c, m, ops, rate, failed, b[4], b[6], b[8], b[10]
    }' >>"$OUT"
}

# run_kvraft / run_etcd ROUND NAME CLIENTS MIX: one run; its bench output is left in RUN_OUT.
# (Not called in $(...), so that KV_PID stays visible to the EXIT trap.)
run_kvraft() {
    local dir=$SCRATCH/kv-$1-$2 out status=0
    check_ports $((KV_BASE_PORT + 1)) $((KV_BASE_PORT + 2)) $((KV_BASE_PORT + 3)) \
        $((KV_BASE_PORT + 101)) $((KV_BASE_PORT + 102)) $((KV_BASE_PORT + 103)) || return 1
    mkdir -p "$dir"
    "$KV" local --nodes 3 --base-port "$KV_BASE_PORT" --data "$dir/data" --log warn >"$dir/local.log" 2>&1 &
    KV_PID=$!
    sleep 1.5
    if ! kill -0 "$KV_PID" 2>/dev/null; then
        echo "compare.sh: kvraft local exited at start:" >&2; tail -n 5 "$dir/local.log" >&2
        wait "$KV_PID" 2>/dev/null || true; KV_PID=""
        return 1
    fi
    # Write every key (8000 uniform puts over 1000 keys miss ~0.3 keys on average).
    "$KV" bench --cluster "$KV_CLUSTER" --log warn --clients 16 --mix put=1 --ops 8000 --warmup 0 \
        --keys 1000 --key-size 16 --value-size 100 >"$dir/populate.log" 2>&1 || status=$?
    if [[ $status == 0 ]]; then
        out=$("$KV" bench --cluster "$KV_CLUSTER" --log warn --clients "$3" --mix "$4" "${COMMON[@]}" 2>"$dir/bench.err") || status=$?
    fi
    kill -INT "$KV_PID" 2>/dev/null || true
    wait "$KV_PID" 2>/dev/null || true
    KV_PID=""
    if [[ $status != 0 ]]; then
        echo "compare.sh: kvraft run failed ($status):" >&2
        tail -n 5 "$dir/populate.log" "$dir/bench.err" "$dir/local.log" >&2 2>/dev/null || true
    fi
    rm -rf "$dir"
    RUN_OUT=${out:-}
    return "$status"
}

run_etcd() {
    local dir=$SCRATCH/etcd-$1-$2 out status=0
    check_ports 2379 2380 22379 22380 32379 32380 || return 1
    mkdir -p "$dir"
    out=$("$BENCH/etcd/run-etcd.sh" "$dir/data" -- \
        "$EB" --endpoints "$ETCD_ENDPOINTS" --clients "$3" --mix "$4" "${COMMON[@]}" 2>"$dir/bench.err") || status=$?
    if [[ $status != 0 ]]; then
        echo "compare.sh: etcd run failed ($status):" >&2
        tail -n 5 "$dir/bench.err" "$dir"/data/e*.log >&2 2>/dev/null || true
    fi
    rm -rf "$dir"
    RUN_OUT=${out:-}
    return "$status"
}

one() { # one ROUND SYSTEM NAME CLIENTS MIX
    echo "-- round $1, $3, $2 (--clients $4 --mix $5)"
    RUN_OUT=""
    if [[ $2 == kvraft ]]; then run_kvraft "$1" "$3" "$4" "$5" || true
    else run_etcd "$1" "$3" "$4" "$5" || true; fi
    if [[ -n $RUN_OUT ]]; then sed 's/^/   /' <<<"$RUN_OUT"; fi
    record "$1" "$3" "$2" "$4" "$5" "$RUN_OUT"
}

echo "kvraft vs etcd $(etcd --version | head -n 1 | awk '{print $3}'): $ROUNDS round(s), duration $DURATION, warmup $WARMUP;" \
    "data under $SCRATCH ($(df -T "$SCRATCH" | awk 'NR==2 {print $2}'))"
for ((r = 1; r <= ROUNDS; r++)); do
    for w in "${WORKLOADS[@]}"; do
        IFS='|' read -r name clients kvmix etcdmix _label <<<"$w"
        if ((r % 2 == 1)); then
            one "$r" kvraft "$name" "$clients" "$kvmix"
            one "$r" etcd "$name" "$clients" "$etcdmix"
        else
            one "$r" etcd "$name" "$clients" "$etcdmix"
            one "$r" kvraft "$name" "$clients" "$kvmix"
        fi
    done
done

# --- summary -------------------------------------------------------------------------------
# median FILE WORKLOAD SYSTEM COLUMN FORMAT: median over the rounds that produced numbers (the
# mean of the middle two for an even count), printed with FORMAT; "NA" if none.
median() {
    awk -F'\t' -v w="$2" -v s="$3" -v c="$4" 'NR > 1 && $2 == w && $3 == s && $c != "NA" { print $c }' "$1" |
        sort -g | awk -v f="$5" '{ v[NR] = $1 } END {
            if (NR == 0) { print "NA"; exit }
            printf f "\n", (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
# count FILE WORKLOAD SYSTEM: "ok/total" rounds, and the failed operations over all rounds.
count() {
    awk -F'\t' -v w="$2" -v s="$3" 'NR > 1 && $2 == w && $3 == s { t++; if ($7 != "NA") { ok++; f += $8 } }
        END { printf "%d/%d %d", ok, t, f }' "$1"
}

echo
echo "Medians over $ROUNDS round(s); duration $DURATION, warmup $WARMUP; 1000 keys, 16-byte keys, 100-byte values."
echo "3 nodes on loopback, fsync on, on this machine ($(nproc) cores). Rounds: runs that produced numbers / runs."
printf '%-42s | %9s %8s %8s %6s | %9s %8s %8s %6s | %11s\n' \
    workload "kv ops/s" "p50 ms" "p99 ms" rounds "etcd ops/s" "p50 ms" "p99 ms" rounds "kv/etcd ops"
printf '%s\n' "$(printf '%.0s-' {1..128})"
failed_note=""
for w in "${WORKLOADS[@]}"; do
    IFS='|' read -r name _clients _kvmix _etcdmix label <<<"$w"
    read -r kv_ok kv_failed <<<"$(count "$OUT" "$name" kvraft)"
    read -r et_ok et_failed <<<"$(count "$OUT" "$name" etcd)"
    kv_rate=$(median "$OUT" "$name" kvraft 7 %.0f); et_rate=$(median "$OUT" "$name" etcd 7 %.0f)
    ratio=NA
    if [[ $kv_rate != NA && $et_rate != NA ]]; then
        ratio=$(awk -v a="$kv_rate" -v b="$et_rate" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "NA" }')
    fi
    printf '%-42s | %9s %8s %8s %6s | %9s %8s %8s %6s | %11s\n' "$label" \
        "$kv_rate" "$(median "$OUT" "$name" kvraft 9 %.3f)" "$(median "$OUT" "$name" kvraft 10 %.3f)" "$kv_ok" \
        "$et_rate" "$(median "$OUT" "$name" etcd 9 %.3f)" "$(median "$OUT" "$name" etcd 10 %.3f)" "$et_ok" "$ratio"
    if [[ $kv_failed != 0 || $et_failed != 0 ]]; then
        failed_note+="  $label: failed operations kvraft $kv_failed, etcd $et_failed"$'\n'
    fi
done
if [[ -n $failed_note ]]; then
    printf '\nOperations that failed (timed out or errored), all rounds:\n%s' "$failed_note"
fi
echo
echo "Every run: $OUT"
