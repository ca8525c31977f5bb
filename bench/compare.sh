#!/usr/bin/env bash
# Side-by-side benchmark of sol, mosquitto and rumqttd with sol-bench.
#
# Each broker runs on CPU 0 (taskset -c 0), the load on CPU 1, with
# equivalent loopback-only configurations (written below). Every scenario is
# run against each broker in turn (A B C A B C ...), ROUNDS times, each run
# against a freshly started broker so that no run inherits another's memory
# or sessions. The figure compared is messages per broker CPU-second, which a
# noisy shared machine disturbs far less than wall-clock rates; ratios are
# sol over the better of the two peers.
#
# Usage: bench/compare.sh [--install] [--rounds N] [--duration SECS]
#                         [--brokers "sol mosquitto rumqttd"] [--only ID,ID]
#                         [--out DIR] [--sol-before PATH]
#   --install   apt-get install mosquitto, and cargo install rumqttd if
#               `cargo install --list` does not have it. Nothing is installed
#               without it.
#   --out DIR   write the results, table and chart into DIR instead of
#               target/compare and docs/ (docs/ is left alone).
#   --sol-before PATH
#               a second sol binary (built from the code before a change),
#               run as broker "sol-before" beside the others with the same
#               configuration, so that a before/after comparison comes from
#               one run; `bench/report.py beforeafter` prints its table.
#
# Writes DIR/results.jsonl (every run, one JSON line each), then
# bench/report.py turns it into the table in docs/benchmarks.md and
# docs/benchmarks-compare.svg.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
ROUNDS=3
DURATION=3
BROKERS="sol mosquitto rumqttd"
ONLY=""
OUT=""
INSTALL=0
SOL_BEFORE=""
while [ $# -gt 0 ]; do
    case "$1" in
        --install) INSTALL=1 ;;
        --rounds) ROUNDS=$2; shift ;;
        --duration) DURATION=$2; shift ;;
        --brokers) BROKERS=$2; shift ;;
        --only) ONLY=$2; shift ;;
        --out) OUT=$2; shift ;;
        --sol-before) SOL_BEFORE=$2; shift ;;
        -h|--help) sed -n '2,28p' "$0"; exit 0 ;;
        *) echo "compare.sh: unknown option $1" >&2; exit 1 ;;
    esac
    shift
done

if [ "$INSTALL" = 1 ]; then
    command -v mosquitto >/dev/null || { apt-get update && apt-get install -y mosquitto; }
    cargo install --list | grep -q '^rumqttd ' || cargo install rumqttd
fi

# The scenarios of the comparison table: ID|sol-bench arguments.
SCENARIOS=(
    "fanin10_q0|fanin --pubs 10 --qos 0 --size 16"
    "fanin10_q1|fanin --pubs 10 --qos 1 --size 16"
    "fanout100_q0|fanout --subs 100 --qos 0 --size 16"
    "fanout1000_q0|fanout --subs 1000 --qos 0 --size 16"
    "fanout10000_q0|fanout --subs 10000 --qos 0 --size 16 --sources 4"
    "fanout100_q1|fanout --subs 100 --qos 1 --size 16"
    "pairs100_q0|pairs --pairs 100 --qos 0 --size 16"
    "pairs100_q1|pairs --pairs 100 --qos 1 --size 16"
    # @default: each broker with its own default QoS 1/2 window (sol's
    # max_inflight_messages, mosquitto's 20, rumqttd's 100), publishers
    # keeping up to 500 PUBLISHes unacknowledged.
    "fanin10_q1_default|fanin --pubs 10 --qos 1 --size 16 --inflight 500 @default"
    # 10 s: 10 000 samples, so that the p99 is the 100th slowest, not the 30th.
    "latency_q1|latency --qos 1 --rate 1000 --size 16 --duration 10"
    "conns10000|conns --conns 10000 --sources 4 --hold 1"
    # @unix: over each broker's Unix socket (rumqttd has none: skipped).
    "conns10000_unix|conns --conns 10000 --hold 1 @unix"
)

OUT=${OUT:-$ROOT/target/compare}
mkdir -p "$OUT"
RESULTS=$OUT/results.jsonl
: > "$RESULTS"
WORK=$(mktemp -d)
trap 'stop_broker; rm -rf "$WORK"' EXIT

# 20 000 is the hard limit on these machines; conns needs 10 000 per side.
ulimit -n "$(ulimit -Hn)"

(cd "$ROOT" && cargo build --release --bin sol --bin sol-bench)
SOL=$ROOT/target/release/sol
BENCH=$ROOT/target/release/sol-bench

if [ -n "$SOL_BEFORE" ]; then
    SOL_BEFORE=$(cd "$(dirname "$SOL_BEFORE")" && pwd)/$(basename "$SOL_BEFORE")
    BROKERS=${BROKERS/sol/sol sol-before}
fi

declare -A PORT=([sol]=21883 [mosquitto]=21884 [rumqttd]=21885 [sol-before]=21886)
# mosquitto drops root privileges before it creates its socket: the
# directory must be writable by its user.
chmod 711 "$WORK"
mkdir -m 1777 "$WORK/sock"
declare -A SOCK=([sol]=$WORK/sock/sol.sock [mosquitto]=$WORK/sock/mosquitto.sock [sol-before]=$WORK/sock/sol-before.sock)

# The configurations: loopback only, no persistence, no authentication,
# queues deep enough that no scenario drops by policy, TCP_NODELAY on, and
# the same QoS 1/2 window towards each client: 100, rumqttd's default
# (max_inflight_count). sol's and mosquitto's default is 20, and the window
# decides how often a QoS 1 stream wakes the broker: sol's fan-in at QoS 1
# costs half as much CPU per message with 100 (docs/benchmarks.md).
cat > "$WORK/sol.conf" <<CONF
ip_address 127.0.0.1
ip_port ${PORT[sol]}
unix_socket ${SOCK[sol]}
log_level WARNING
max_inflight_messages 100
max_queued_messages 100000
CONF

cat > "$WORK/mosquitto.conf" <<CONF
listener ${PORT[mosquitto]} 127.0.0.1
allow_anonymous true
listener 0 ${SOCK[mosquitto]}
allow_anonymous true
persistence false
set_tcp_nodelay true
max_inflight_messages 100
max_queued_messages 100000
max_connections -1
log_dest none
CONF

# rumqttd 0.20's format (rumqttd generate-config): one v4 (MQTT 3.1.1)
# listener. next_connection_delay_ms defaults to 1, a sleep after every
# accept that alone caps connects at 1000/s; 0 measures the broker instead.
cat > "$WORK/rumqttd.toml" <<CONF
id = 0

[router]
id = 0
max_connections = 30000
max_outgoing_packet_count = 200
max_segment_size = 104857600
max_segment_count = 10

[v4.1]
name = "v4-1"
listen = "127.0.0.1:${PORT[rumqttd]}"
next_connection_delay_ms = 0
    [v4.1.connections]
    connection_timeout_ms = 60000
    max_payload_size = 1048576
    max_inflight_count = 100
    dynamic_filters = true
CONF

# sol-before: sol's configuration on its own port and socket.
sed -e "s/^ip_port .*/ip_port ${PORT[sol-before]}/" -e "s#^unix_socket .*#unix_socket ${SOCK[sol-before]}#" \
    "$WORK/sol.conf" > "$WORK/sol-before.conf"

# The same configurations with each broker's default window (@default).
grep -v '^max_inflight_messages' "$WORK/sol.conf" > "$WORK/sol-default.conf"
grep -v '^max_inflight_messages' "$WORK/sol-before.conf" > "$WORK/sol-before-default.conf"
grep -v '^max_inflight_messages' "$WORK/mosquitto.conf" > "$WORK/mosquitto-default.conf"
# rumqttd requires max_inflight_count; 100, set above, is what its
# generate-config writes.
cp "$WORK/rumqttd.toml" "$WORK/rumqttd-default.toml"

BROKER_PID=""

# start_broker NAME [SUFFIX]: SUFFIX "-default" picks the default-window
# configuration.
start_broker() {
    local name=$1 conf=${2:-}
    case "$name" in
        sol) taskset -c 0 "$SOL" -c "$WORK/sol$conf.conf" 2>"$WORK/sol.log" & ;;
        sol-before) taskset -c 0 "$SOL_BEFORE" -c "$WORK/sol-before$conf.conf" 2>"$WORK/sol-before.log" & ;;
        mosquitto) taskset -c 0 mosquitto -c "$WORK/mosquitto$conf.conf" 2>"$WORK/mosquitto.log" & ;;
        rumqttd) taskset -c 0 rumqttd -q -c "$WORK/rumqttd$conf.toml" >"$WORK/rumqttd.log" 2>&1 & ;;
    esac
    BROKER_PID=$!
    local port=${PORT[$name]}
    for _ in $(seq 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            # One probe connection was opened and closed; let it be reaped.
            sleep 0.2
            return 0
        fi
        sleep 0.05
    done
    echo "compare.sh: $name did not start listening on $port" >&2
    cat "$WORK/$name.log" >&2 || true
    return 1
}

stop_broker() {
    if [ -n "$BROKER_PID" ]; then
        kill "$BROKER_PID" 2>/dev/null || true
        wait "$BROKER_PID" 2>/dev/null || true
        BROKER_PID=""
    fi
}

selected() {
    [ -z "$ONLY" ] && return 0
    case ",$ONLY," in *",$1,"*) return 0 ;; esac
    return 1
}

echo "# $(date -u +%FT%TZ) $(uname -r), $(nproc) CPUs; mosquitto $(mosquitto -h 2>/dev/null | sed -n 's/mosquitto version //p' | head -1); $(rumqttd -V 2>/dev/null || true)" >&2
for round in $(seq "$ROUNDS"); do
    for entry in "${SCENARIOS[@]}"; do
        id=${entry%%|*}
        args=${entry#*|}
        selected "$id" || continue
        for broker in $BROKERS; do
            target="--port ${PORT[$broker]}"
            run_args=$args
            if [[ "$args" == *@unix* ]]; then
                [ -n "${SOCK[$broker]:-}" ] || continue
                target="--unix ${SOCK[$broker]}"
                run_args=${args//@unix/}
            fi
            conf=""
            if [[ "$run_args" == *@default* ]]; then
                conf="-default"
                run_args=${run_args//@default/}
            fi
            # A scenario that names its own duration keeps it.
            [[ "$run_args" == *--duration* ]] || run_args="$run_args --duration $DURATION"
            start_broker "$broker" "$conf"
            echo "round $round: $id on $broker" >&2
            # shellcheck disable=SC2086
            line=$(taskset -c 1 "$BENCH" $run_args $target \
                --pid "$BROKER_PID" --label "$broker" --quiet 2>"$WORK/bench.err" | grep '^{' || true)
            if [ -z "$line" ]; then
                error=$(tr -d '"\\' < "$WORK/bench.err" | tr '\n' ' ' | cut -c1-300)
                echo "  failed: $error" >&2
                line="{\"bench\":\"sol-bench\",\"broker\":\"$broker\",\"failed\":true,\"error\":\"$error\"}"
            fi
            printf '{"id":"%s","round":%s,"args":"%s","run":%s}\n' "$id" "$round" "$args" "$line" >> "$RESULTS"
            stop_broker
        done
    done
done

# A run written elsewhere (--out) leaves docs/ alone: its table is printed.
if [ "$OUT" = "$ROOT/target/compare" ]; then
    python3 "$ROOT/bench/report.py" compare "$RESULTS" --docs "$ROOT/docs"
else
    python3 "$ROOT/bench/report.py" compare "$RESULTS" --docs "$OUT"
fi
