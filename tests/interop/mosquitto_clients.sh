#!/usr/bin/env bash
# Interoperability with the mosquitto command-line clients (mosquitto_pub,
# mosquitto_sub from mosquitto-clients 2.x): a scripted session of QoS 0/1/2
# publish and subscribe, retained messages, wills, persistent sessions,
# MQTT 3.1 and 3.1.1, over TCP and over the Unix socket.
#
# Usage:
#   tests/interop/mosquitto_clients.sh SOL_BINARY
#       starts SOL_BINARY -c CONF on a temporary sol.conf (a free TCP port
#       below 32768 and a Unix socket in a temporary directory)
#   tests/interop/mosquitto_clients.sh --mosquitto [MOSQUITTO_BINARY]
#       the same session against mosquitto, to check the script itself
#   tests/interop/mosquitto_clients.sh --external PORT [UNIX_SOCKET]
#       against a broker already listening on 127.0.0.1:PORT
#
# Prints one line per check and "N passed, N failed" at the end; exits
# non-zero if any check failed.
set -euo pipefail

for tool in mosquitto_pub mosquitto_sub stdbuf; do
    command -v "$tool" >/dev/null || { echo "$tool is not installed" >&2; exit 2; }
done

mode=sol
broker_bin=
port=
unix=
case "${1:-}" in
    --mosquitto) mode=mosquitto; broker_bin=${2:-mosquitto} ;;
    --external) mode=external; port=${2:?PORT}; unix=${3:-} ;;
    ""|-h|--help) sed -n '2,20p' "$0"; exit 2 ;;
    *) broker_bin=$1 ;;
esac

work=$(mktemp -d "${TMPDIR:-/tmp}/sol-interop.XXXXXX")
broker_pid=
sub_pids=()
cleanup() {
    for pid in "${sub_pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    if [ -n "$broker_pid" ]; then
        kill "$broker_pid" 2>/dev/null || true
        wait "$broker_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

passed=0
failed=0
pass() { passed=$((passed + 1)); echo "ok   $1"; }
fail() {
    failed=$((failed + 1))
    echo "FAIL $1"
    shift
    local line
    for line in "$@"; do printf '%s\n' "$line" | sed 's/^/     /'; done
}

# ---------------------------------------------------------------------------
# The broker
# ---------------------------------------------------------------------------

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

start_broker() {
    local attempt conf
    for attempt in 1 2 3 4 5; do
        port=$((20000 + RANDOM % 12000))
        port_in_use "$port" && continue
        unix=$work/broker.sock
        rm -f "$unix"
        if [ "$mode" = sol ]; then
            conf=$work/sol.conf
            printf 'ip_address 127.0.0.1\nip_port %s\nunix_socket %s\n' "$port" "$unix" >"$conf"
            "$broker_bin" -c "$conf" >"$work/broker.log" 2>&1 &
        else
            conf=$work/mosquitto.conf
            printf 'user %s\nlistener %s 127.0.0.1\nlistener 0 %s\nallow_anonymous true\n' \
                "$(id -un)" "$port" "$unix" >"$conf"
            "$broker_bin" -c "$conf" >"$work/broker.log" 2>&1 &
        fi
        broker_pid=$!
        local i
        for i in $(seq 50); do
            if ! kill -0 "$broker_pid" 2>/dev/null; then break; fi
            if port_in_use "$port" && [ -S "$unix" ]; then
                echo "broker ($mode) on 127.0.0.1:$port and $unix"
                return 0
            fi
            sleep 0.1
        done
        kill "$broker_pid" 2>/dev/null || true
        wait "$broker_pid" 2>/dev/null || true
        broker_pid=
        echo "broker did not start on port $port (attempt $attempt):"
        tail -5 "$work/broker.log" || true
    done
    echo "could not start the broker"
    echo "0 passed, 1 failed"
    exit 1
}

if [ "$mode" = external ]; then
    echo "external broker on 127.0.0.1:$port${unix:+ and $unix}"
else
    start_broker
fi

# ---------------------------------------------------------------------------
# Clients
# ---------------------------------------------------------------------------

# Each check uses its own topic prefix, so a run against a shared broker
# (and its retained messages) starts clean.
run_id="interop$$$RANDOM"
tcp=(-h 127.0.0.1 -p "$port")
n_clients=0

# pub ARGS...: mosquitto_pub over TCP, bounded in time. A failure is noted
# and the session goes on: the check that needed the message fails.
pub() { timeout 10 mosquitto_pub "${tcp[@]}" "$@" || echo "     (mosquitto_pub $* failed)"; }
pub_unix() { timeout 10 mosquitto_pub --unix "$unix" "$@" || echo "     (mosquitto_pub --unix $* failed)"; }
# bounded ARGS...: any other client command, same policy.
bounded() { timeout 10 "$@" >/dev/null || echo "     ($* failed)"; }

# sub_start NAME ARGS...: a mosquitto_sub in the background that prints each
# message as "MSG qos retain topic payload" to $work/NAME.out; returns once
# every SUBSCRIBE was acknowledged. ARGS should include -C and -W so it ends.
sub_start() {
    local name=$1
    shift
    local out=$work/$name.out
    # Created here: the background job's redirection may come after our
    # first look at the file.
    : >"$out"
    stdbuf -oL mosquitto_sub -d -F 'MSG %q %r %t %p' "$@" >"$out" 2>&1 &
    local pid=$!
    sub_pids+=("$pid")
    echo "$pid" >"$work/$name.pid"
    local i
    for i in $(seq 100); do
        # One SUBSCRIBE carries every -t; this is its SUBACK.
        if grep -q '^Subscribed (mid' "$out"; then
            return 0
        fi
        if ! kill -0 "$pid" 2>/dev/null; then break; fi
        sleep 0.05
    done
    # A client that got everything it waited for (-C) may print its SUBACK
    # line and exit between the look above and the liveness check: look once
    # more before calling it a failure.
    if grep -q '^Subscribed (mid' "$out"; then
        return 0
    fi
    # Recorded for `expect`, which reports it as this check's failure.
    cp "$out" "$work/$name.nosub"
}

# sub_wait NAME: waits for that mosquitto_sub to exit (its -C or -W).
sub_wait() {
    local pid
    pid=$(cat "$work/$1.pid")
    wait "$pid" 2>/dev/null || true
}

# sub_kill NAME: SIGKILL, so the client cannot send DISCONNECT.
sub_kill() {
    local pid
    pid=$(cat "$work/$1.pid")
    kill -9 "$pid"
    wait "$pid" 2>/dev/null || true
}

# messages NAME: the messages that mosquitto_sub printed.
messages() { grep '^MSG ' "$work/$1.out" || true; }

# expect NAME CHECK EXPECTED...: waits for the subscriber, compares its
# messages with the expected lines.
expect() {
    local name=$1 check=$2
    shift 2
    sub_wait "$name"
    if [ -f "$work/$name.nosub" ]; then
        fail "$check" "mosquitto_sub did not subscribe:" "$(sed 's/^/| /' "$work/$name.nosub")"
        return 0
    fi
    local got want
    got=$(messages "$name")
    want=$(printf '%s\n' "$@")
    [ $# -eq 0 ] && want=
    if [ "$got" = "$want" ]; then
        pass "$check"
    else
        fail "$check" "expected:" "$(printf '%s\n' "$want" | sed 's/^/| /')" "got:" \
            "$(printf '%s\n' "$got" | sed 's/^/| /')"
    fi
}

new_id() { n_clients=$((n_clients + 1)); echo "ic${$}x${n_clients}"; }

# ---------------------------------------------------------------------------
# The session
# ---------------------------------------------------------------------------

t=$run_id

# QoS 0, 1 and 2 end to end, at the QoS of the publish.
for q in 0 1 2; do
    sub_start "qos$q" "${tcp[@]}" -q 2 -t "$t/qos$q" -C 1 -W 5
    pub -q "$q" -t "$t/qos$q" -m "hello at $q"
    expect "qos$q" "QoS $q publish and subscribe over TCP" "MSG $q 0 $t/qos$q hello at $q"
done

# Downgrade to the subscription's QoS.
sub_start down "${tcp[@]}" -q 1 -t "$t/down" -C 2 -W 5
pub -q 2 -t "$t/down" -m "two to one"
pub -q 0 -t "$t/down" -m "zero stays"
expect down "QoS 2 publish to a QoS 1 subscription arrives at QoS 1" \
    "MSG 1 0 $t/down two to one" "MSG 0 0 $t/down zero stays"

# MQTT 3.1 (MQIsdp) clients.
sub_start v31 "${tcp[@]}" -V mqttv31 -q 1 -t "$t/v31" -C 1 -W 5
pub -V mqttv31 -q 1 -t "$t/v31" -m "old protocol"
expect v31 "MQTT 3.1 clients publish and subscribe" "MSG 1 0 $t/v31 old protocol"

# Order: 200 messages at QoS 1 from one publisher.
seq 1 200 >"$work/lines"
sub_start order "${tcp[@]}" -q 1 -t "$t/order" -C 200 -W 10
pub -q 1 -t "$t/order" -l <"$work/lines"
expected_order=()
for i in $(seq 1 200); do expected_order+=("MSG 1 0 $t/order $i"); done
expect order "200 QoS 1 messages arrive in order" "${expected_order[@]}"

# Wildcards.
sub_start wild "${tcp[@]}" -t "$t/w/+/x" -t "$t/h/#" -C 4 -W 5
for topic in w/a/x w/a/b/x w/x h h/1/2 hx w/b/x; do
    pub -t "$t/$topic" -m "$topic"
done
expect wild "+ and # match as they should" \
    "MSG 0 0 $t/w/a/x w/a/x" "MSG 0 0 $t/h h" "MSG 0 0 $t/h/1/2 h/1/2" "MSG 0 0 $t/w/b/x w/b/x"

# A larger payload, byte for byte (mosquitto_sub prints it in hex).
head -c 100000 /dev/urandom >"$work/big"
sub_start big "${tcp[@]}" -q 1 -t "$t/big" -C 1 -W 5 -F '%x'
pub -q 1 -t "$t/big" -f "$work/big"
sub_wait big
if [ "$(grep -v -e '^Client ' -e '^Subscribed ' "$work/big.out")" = "$(od -An -v -tx1 "$work/big" | tr -d ' \n')" ]; then
    pass "a 100 kB payload arrives intact"
else
    fail "a 100 kB payload arrives intact" "$(wc -c <"$work/big.out") bytes of output"
fi

# Retained: stored with its QoS, flagged on delivery, replaced, deleted.
pub -q 1 -r -t "$t/ret" -m "first"
pub -q 1 -r -t "$t/ret" -m "kept"
sub_start ret "${tcp[@]}" -q 2 -t "$t/ret" -C 1 -W 5
expect ret "a retained message is delivered on subscribe with the retain flag" "MSG 1 1 $t/ret kept"
sub_start retlive "${tcp[@]}" -q 1 -t "$t/ret" -C 2 -W 5
pub -q 1 -r -t "$t/ret" -m "live"
expect retlive "live forwarding clears the retain flag" "MSG 1 1 $t/ret kept" "MSG 1 0 $t/ret live"
pub -q 1 -r -t "$t/ret" -n
sub_start retgone "${tcp[@]}" -q 1 -t "$t/ret" -C 1 -W 1
expect retgone "an empty retained payload deletes the retained message"

# Will: a client killed with SIGKILL never sent DISCONNECT.
sub_start watcher "${tcp[@]}" -q 2 -t "$t/will" -C 1 -W 5
sub_start dying "${tcp[@]}" -t "$t/nothing" -W 30 \
    --will-topic "$t/will" --will-payload "gone" --will-qos 1
sub_kill dying
expect watcher "the will of a killed client is published at its QoS" "MSG 1 0 $t/will gone"

# A retained will: once a live subscriber has seen it, a new one gets it
# with the retain flag.
sub_start rwatch "${tcp[@]}" -q 2 -t "$t/rwill" -C 1 -W 5
sub_start dying2 "${tcp[@]}" -t "$t/nothing" -W 30 \
    --will-topic "$t/rwill" --will-payload "remember me" --will-qos 2 --will-retain
sub_kill dying2
expect rwatch "a retained will is published live without the retain flag" \
    "MSG 2 0 $t/rwill remember me"
sub_start rwill "${tcp[@]}" -q 2 -t "$t/rwill" -C 1 -W 5
expect rwill "a retained will is kept" "MSG 2 1 $t/rwill remember me"
pub -q 1 -r -t "$t/rwill" -n

# No will after a clean DISCONNECT (-E: exit once subscribed).
sub_start nowill "${tcp[@]}" -q 1 -t "$t/nowill" -C 1 -W 2
bounded mosquitto_sub "${tcp[@]}" -t "$t/nothing" -E \
    --will-topic "$t/nowill" --will-payload "must not appear"
expect nowill "no will after DISCONNECT"

# Persistent session: subscription and QoS 1/2 messages kept while away.
id=$(new_id)
bounded mosquitto_sub "${tcp[@]}" -c -i "$id" -q 2 -t "$t/away" -E
pub -q 1 -t "$t/away" -m "while away 1"
pub -q 0 -t "$t/away" -m "qos 0 is not kept"
pub -q 2 -t "$t/away" -m "while away 2"
sub_start back "${tcp[@]}" -c -i "$id" -q 2 -t "$t/away" -C 2 -W 5
expect back "a persistent session gets what was queued while away" \
    "MSG 1 0 $t/away while away 1" "MSG 2 0 $t/away while away 2"
bounded mosquitto_sub "${tcp[@]}" -i "$id" -t "$t/away" -E

# The Unix socket.
if [ -n "$unix" ]; then
    for q in 0 1 2; do
        sub_start "unix$q" --unix "$unix" -q 2 -t "$t/unix$q" -C 1 -W 5
        pub_unix -q "$q" -t "$t/unix$q" -m "over unix at $q"
        expect "unix$q" "QoS $q publish and subscribe over the Unix socket" \
            "MSG $q 0 $t/unix$q over unix at $q"
    done
    sub_start cross1 --unix "$unix" -q 1 -t "$t/cross1" -C 1 -W 5
    pub -q 1 -t "$t/cross1" -m "tcp to unix"
    expect cross1 "TCP publisher, Unix subscriber" "MSG 1 0 $t/cross1 tcp to unix"
    sub_start cross2 "${tcp[@]}" -q 1 -t "$t/cross2" -C 1 -W 5
    pub_unix -q 1 -t "$t/cross2" -m "unix to tcp"
    expect cross2 "Unix publisher, TCP subscriber" "MSG 1 0 $t/cross2 unix to tcp"

    pub_unix -q 1 -r -t "$t/uret" -m "retained via unix"
    sub_start uret --unix "$unix" -q 1 -t "$t/uret" -C 1 -W 5
    expect uret "retained over the Unix socket" "MSG 1 1 $t/uret retained via unix"
    pub_unix -q 1 -r -t "$t/uret" -n

    sub_start uwatch "${tcp[@]}" -q 1 -t "$t/uwill" -C 1 -W 5
    sub_start udying --unix "$unix" -t "$t/nothing" -W 30 \
        --will-topic "$t/uwill" --will-payload "unix gone" --will-qos 1
    sub_kill udying
    expect uwatch "the will of a killed Unix socket client" "MSG 1 0 $t/uwill unix gone"
else
    echo "skip the Unix socket checks: no socket path"
fi

if [ "$mode" != external ] && ! kill -0 "$broker_pid" 2>/dev/null; then
    fail "the broker is still running at the end"
fi
if [ "$failed" -gt 0 ] && [ "$mode" != external ]; then
    echo "broker log (last 30 lines):"
    tail -30 "$work/broker.log" | sed 's/^/  | /'
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
