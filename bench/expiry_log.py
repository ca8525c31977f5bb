#!/usr/bin/env python3
"""The figures of docs/reliability.md for abandoned sessions and log
amplification, against any sol binary (the one before the fix included).

    bench/expiry_log.py log    path/to/sol
    bench/expiry_log.py expiry path/to/sol [--expiry 2s] [--sessions N] [--messages M] [--wait S]

Each run starts the binary with `max_memory 64MB` and a `log_path` in a
fresh temporary directory, keeps a bystander doing QoS 1 round trips to
itself every 50 ms, and prints what it measured:

- `log`: 2 000 CONNECTs, each on its own connection, whose client id
  (60 000 bytes) and username (39 000 bytes) are U+0001; the bytes of log
  written per byte received.
- `expiry`: N (1 000) persistent sessions subscribed to one topic and
  left, M (50) QoS 1 messages of 1 000 bytes queued for each;
  `memory/used` and `clients/disconnected` from `$SOL/broker/` and the
  broker's RSS, once queued and again S (5) s later. `--expiry` sets
  persistent_client_expiration (a binary that does not know the key
  refuses to start). The bystander's slowest round trip covers the
  moment they all expire.
"""

import os
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time


def remaining_length(n):
    out = bytearray()
    while True:
        byte = n % 128
        n //= 128
        if n:
            byte |= 0x80
        out.append(byte)
        if not n:
            return bytes(out)


def packet(first, body):
    return bytes([first]) + remaining_length(len(body)) + body


def string(b):
    return struct.pack(">H", len(b)) + b


def connect(client_id, clean=True, username=None, keepalive=60):
    flags = (0x02 if clean else 0) | (0x80 if username is not None else 0)
    body = string(b"MQTT") + bytes([4, flags]) + struct.pack(">H", keepalive)
    body += string(client_id)
    if username is not None:
        body += string(username)
    return packet(0x10, body)


def subscribe(pid, topic, qos):
    return packet(0x82, struct.pack(">H", pid) + string(topic) + bytes([qos]))


def publish(topic, payload, qos, pid=None):
    body = string(topic) + (struct.pack(">H", pid) if qos else b"") + payload
    return packet(0x30 | (qos << 1), body)


DISCONNECT = b"\xe0\x00"


def read_exact(sock, n):
    data = bytearray()
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return bytes(data)


def read_packet(sock):
    first = read_exact(sock, 1)[0]
    n, shift = 0, 0
    while True:
        byte = read_exact(sock, 1)[0]
        n |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            break
    return first, read_exact(sock, n)


def parse_publish(first, body):
    (tlen,) = struct.unpack(">H", body[:2])
    topic = body[2 : 2 + tlen]
    rest = body[2 + tlen :]
    qos = (first >> 1) & 3
    pid = None
    if qos:
        (pid,) = struct.unpack(">H", rest[:2])
        rest = rest[2:]
    return topic, qos, pid, rest


def dial(addr, client_id, clean=True, username=None):
    sock = socket.create_connection(addr)
    sock.sendall(connect(client_id, clean, username))
    first, body = read_packet(sock)
    assert first == 0x20, (first, body)
    return sock, body


class Sol:
    def __init__(self, binary, extra=""):
        self.dir = tempfile.mkdtemp(prefix="sol-expiry-log-")
        self.log = os.path.join(self.dir, "sol.log")
        conf = os.path.join(self.dir, "sol.conf")
        with open(conf, "w") as f:
            f.write(
                f"ip_port 0\nlog_path {self.log}\nmax_memory 64MB\n"
                f"stats_publish_interval 1s\n{extra}"
            )
        self.proc = subprocess.Popen(
            [binary, "-c", conf],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.time() + 10
        while True:
            text = self.text()
            if "listening on tcp " in text:
                addr = text.split("listening on tcp ")[1].split()[0]
                host, port = addr.rsplit(":", 1)
                self.addr = (host, int(port))
                return
            if self.proc.poll() is not None or time.time() > deadline:
                sys.exit(f"sol did not start:\n{text}")
            time.sleep(0.05)

    def text(self):
        try:
            with open(self.log, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def log_len(self):
        try:
            return os.path.getsize(self.log)
        except FileNotFoundError:
            return 0

    def rss(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        return 0

    def stop(self):
        self.proc.kill()
        self.proc.wait()


class Bystander(threading.Thread):
    """QoS 1 to its own topic every 50 ms; keeps the slowest round trip."""

    def __init__(self, addr):
        super().__init__(daemon=True)
        self.sock, _ = dial(addr, b"bystander")
        self.topic = b"bystander/t"
        self.sock.sendall(subscribe(1, self.topic, 1))
        read_packet(self.sock)
        self.slowest = 0.0
        self.trips = 0
        self.stopping = False

    def run(self):
        pid = 0
        while not self.stopping:
            pid = pid % 65535 + 1
            sent = time.time()
            self.sock.sendall(publish(self.topic, b"%d" % pid, 1, pid))
            while True:
                first, body = read_packet(self.sock)
                if first >> 4 == 3:
                    _, qos, their, payload = parse_publish(first, body)
                    if qos:
                        self.sock.sendall(packet(0x40, struct.pack(">H", their)))
                    if payload == b"%d" % pid:
                        break
            self.slowest = max(self.slowest, time.time() - sent)
            self.trips += 1
            time.sleep(0.05)

    def finish(self):
        self.stopping = True
        self.join(10)
        return self.slowest


def settle(sol):
    last = -1
    while sol.log_len() != last:
        last = sol.log_len()
        time.sleep(1.5)
    return last


def run_log(binary):
    sol = Sol(binary)
    bystander = Bystander(sol.addr)
    bystander.start()
    before_log, before_rss = sol.log_len(), sol.rss()
    sent = 0
    started = time.time()
    for n in range(2000):
        client_id = (b"%d-" % n).ljust(60_000, b"\x01")
        raw = connect(client_id, username=b"\x01" * 39_000)
        sock = socket.create_connection(sol.addr)
        sock.sendall(raw)
        read_packet(sock)
        sock.close()
        sent += len(raw)
    elapsed = time.time() - started
    slowest = bystander.finish()
    written = settle(sol) - before_log
    print(
        f"log: {sent} bytes of CONNECT in {elapsed:.1f} s; {written} bytes of log "
        f"({written / sent:.4f} per byte received); RSS {before_rss >> 20} -> "
        f"{sol.rss() >> 20} MiB; bystander slowest {slowest * 1000:.0f} ms "
        f"over {bystander.trips} round trips"
    )
    sol.stop()


def stats(addr, leaves, wait=3.0):
    """The latest `$SOL/broker/<leaf>` values, retained ones first."""
    sock, _ = dial(addr, b"watcher-%d" % time.time_ns())
    sock.sendall(subscribe(1, b"$SOL/broker/#", 0))
    seen = {}
    sock.settimeout(wait)
    deadline = time.time() + wait
    try:
        while time.time() < deadline and not all(leaf in seen for leaf in leaves):
            first, body = read_packet(sock)
            if first >> 4 == 3:
                topic, _, _, payload = parse_publish(first, body)
                seen[topic.decode().removeprefix("$SOL/broker/")] = payload.decode()
    except socket.timeout:
        pass
    sock.sendall(DISCONNECT)
    sock.close()
    return {leaf: seen.get(leaf, "?") for leaf in leaves}


def run_expiry(binary, expiry, sessions, messages, wait):
    extra = f"persistent_client_expiration {expiry}\n" if expiry else ""
    sol = Sol(binary, extra)
    bystander = Bystander(sol.addr)
    bystander.start()
    rss_start = sol.rss()
    started = time.time()
    topic = b"expiry/t"
    for n in range(sessions):
        sock, _ = dial(sol.addr, b"gone-%d" % n, clean=False)
        sock.sendall(subscribe(1, topic, 1))
        read_packet(sock)
        sock.sendall(DISCONNECT)
        sock.close()
    pub, _ = dial(sol.addr, b"publisher")
    for pid in range(1, messages + 1):
        pub.sendall(publish(topic, b"x" * 1000, 1, pid))
        read_packet(pub)
    setup = time.time() - started
    leaves = ["memory/used", "clients/disconnected", "clients/expired"]
    # A publication after the last message, not the retained one from before.
    time.sleep(1.2)
    filled = stats(sol.addr, leaves)
    rss_filled = sol.rss()
    time.sleep(wait)
    later = stats(sol.addr, leaves, wait=10)
    slowest = bystander.finish()
    print(
        f"expiry ({expiry or 'not set'}, {sessions} sessions x {messages}): RSS {rss_start >> 20} MiB at start, "
        f"{rss_filled >> 20} MiB queued, {sol.rss() >> 20} MiB {wait} s later; "
        f"queued {filled} after {setup:.1f} s; {wait} s later {later}; bystander slowest "
        f"{slowest * 1000:.0f} ms over {bystander.trips} round trips"
    )
    sol.stop()


def main():
    if len(sys.argv) < 3 or sys.argv[1] not in ("log", "expiry"):
        sys.exit(__doc__)
    binary = sys.argv[2]
    if sys.argv[1] == "log":
        run_log(binary)
    else:
        options = dict(zip(sys.argv[3::2], sys.argv[4::2]))
        run_expiry(
            binary,
            options.get("--expiry"),
            int(options.get("--sessions", 1000)),
            int(options.get("--messages", 50)),
            float(options.get("--wait", 5)),
        )


if __name__ == "__main__":
    main()
