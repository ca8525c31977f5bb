#!/usr/bin/env bash
# Where sol spends its time under fan-in, fan-out and pairs.
#
#   callgrind  instruction counts per function (valgrind --tool=callgrind):
#              exact and repeatable on a noisy machine; the load is a fixed
#              number of messages, so "instructions per message" is stable.
#   perf       cpu-clock samples with call graphs (perf record -e cpu-clock;
#              this VM has no hardware counters), sol on CPU 0, load on 1.
#   strace     system calls per message (strace -c -f), one run each.
#
# Usage: bench/profile.sh [--tools "callgrind perf strace"] [--only ID,ID]
#                         [--out DIR]
# Writes DIR/<tool>.<id>.txt summaries (default DIR: target/profile).
set -eu  # no pipefail: `| head` ends its writer early on purpose

ROOT=$(cd "$(dirname "$0")/.." && pwd)
TOOLS="callgrind perf strace"
ONLY=""
OUT=$ROOT/target/profile
while [ $# -gt 0 ]; do
    case "$1" in
        --tools) TOOLS=$2; shift ;;
        --only) ONLY=$2; shift ;;
        --out) OUT=$2; shift ;;
        -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
        *) echo "profile.sh: unknown option $1" >&2; exit 1 ;;
    esac
    shift
done
mkdir -p "$OUT"
(cd "$ROOT" && cargo build --release --bin sol --bin sol-bench)
SOL=$ROOT/target/release/sol
BENCH=$ROOT/target/release/sol-bench
PORT=21890
WORK=$(mktemp -d)
PID=""
trap 'stop; rm -rf "$WORK"' EXIT
cat > "$WORK/sol.conf" <<CONF
ip_address 127.0.0.1
ip_port $PORT
log_level WARNING
max_queued_messages 100000
CONF
# sol's default QoS 1/2 window (100) is kept: the profile is of the defaults.

# ID|arguments with a fixed message count (200 000 deliveries each, about)
SCENARIOS=(
    "fanin_q0|fanin --pubs 10 --qos 0 --messages 20000"
    "fanin_q1|fanin --pubs 10 --qos 1 --messages 20000"
    "fanout100_q0|fanout --subs 100 --qos 0 --messages 2000"
    "fanout100_q1|fanout --subs 100 --qos 1 --messages 2000"
    "pairs100_q0|pairs --pairs 100 --qos 0 --messages 2000"
    "pairs100_q1|pairs --pairs 100 --qos 1 --messages 2000"
)

wait_port() {
    for _ in $(seq 400); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
            sleep 0.2
            return 0
        fi
        sleep 0.05
    done
    echo "profile.sh: nothing listening on $PORT" >&2
    return 1
}

stop() {
    if [ -n "$PID" ]; then
        kill "$PID" 2>/dev/null || true
        wait "$PID" 2>/dev/null || true
        PID=""
    fi
}

# Shorter paths in the summaries: the toolchain's and the registry's.
shorten() {
    sed -E 's#/rustc/[0-9a-f]+/library/#std:#g; s#/root/.cargo/registry/src/[^/]+/##g; s#'"$ROOT"'/##g; s# +\[[^]]*\]$##; s# +- +- *$##'
}

selected() {
    [ -z "$ONLY" ] && return 0
    case ",$ONLY," in *",$1,"*) return 0 ;; esac
    return 1
}

run_bench() {
    # shellcheck disable=SC2086
    taskset -c 1 "$BENCH" $1 --port $PORT --pid "$PID" --label sol --quiet --drain 60 \
        | tee "$WORK/bench.txt" | grep '^{' > "$WORK/bench.json"
    sed -n 's/.*"received":\([0-9]*\).*/\1/p' "$WORK/bench.json"
}

for entry in "${SCENARIOS[@]}"; do
    id=${entry%%|*}
    args=${entry#*|}
    selected "$id" || continue
    for tool in $TOOLS; do
        echo "== $tool $id: sol-bench $args" >&2
        case "$tool" in
        callgrind)
            rm -f "$OUT/callgrind.$id.out"*
            taskset -c 0 valgrind --tool=callgrind --callgrind-out-file="$OUT/callgrind.$id.out" \
                "$SOL" -c "$WORK/sol.conf" 2>"$WORK/valgrind.log" &
            PID=$!
            wait_port
            # Count the load only: zero after start-up, dump after the run
            # (the dump is the file with the .1 suffix).
            callgrind_control -z "$PID" >/dev/null 2>&1
            received=$(run_bench "$args")
            callgrind_control -d "$PID" >/dev/null 2>&1
            stop
            file="$OUT/callgrind.$id.out.1"
            total=$(callgrind_annotate "$file" | sed -n 's/^\([0-9,]*\) (100.0%).*PROGRAM TOTALS.*/\1/p' | tr -d ,)
            {
                echo "# sol-bench $args"
                echo "# delivered: $received; instructions: $total; per delivery: $((${total:-0} / (received > 0 ? received : 1)))"
                # Zeroing mid-run leaves the frames then on the stack at
                # 100 %; they carry no cost of their own and are skipped.
                echo "# self cost"
                callgrind_annotate --inclusive=no --threshold=100 "$file" | sed -n '/file:function/,$p' \
                    | grep -v '(100.0%)' | head -32
                echo
                echo "# inclusive cost"
                callgrind_annotate --inclusive=yes --threshold=100 "$file" | sed -n '/file:function/,$p' \
                    | grep -v '(100.0%)' | head -45
            } | shorten > "$OUT/callgrind.$id.txt"
            ;;
        perf)
            taskset -c 0 "$SOL" -c "$WORK/sol.conf" &
            PID=$!
            wait_port
            perf record -q -e cpu-clock -F 2999 -g -p "$PID" -o "$OUT/perf.$id.data" 2>/dev/null &
            perf_pid=$!
            sleep 0.3
            # Samples need time: a 5-second run, not the fixed count.
            timed="${args%--messages*}--duration 5"
            received=$(run_bench "$timed")
            kill -INT "$perf_pid"
            wait "$perf_pid" 2>/dev/null || true
            stop
            {
                echo "# sol-bench $timed; delivered $received"
                perf report -i "$OUT/perf.$id.data" --no-children --sort symbol --percent-limit 0.7 --stdio 2>/dev/null \
                    | grep -v '^$' | grep -E '^ +[0-9]|^#' | head -60
            } | shorten > "$OUT/perf.$id.txt"
            ;;
        strace)
            taskset -c 0 "$SOL" -c "$WORK/sol.conf" &
            PID=$!
            wait_port
            strace -c -f -p "$PID" -o "$OUT/strace.$id.raw" &
            strace_pid=$!
            sleep 0.5
            received=$(run_bench "$args")
            kill -INT "$strace_pid"
            wait "$strace_pid" 2>/dev/null || true
            stop
            {
                echo "# sol-bench $args; delivered $received"
                cat "$OUT/strace.$id.raw"
                # Columns: % time, seconds, usecs/call, calls, errors, name.
                awk -v n="$received" '$NF == "total" { printf "# system calls per delivery: %.3f\n", $4 / (n > 0 ? n : 1) }' \
                    "$OUT/strace.$id.raw"
            } > "$OUT/strace.$id.txt"
            ;;
        esac
    done
done
echo "summaries in $OUT" >&2
