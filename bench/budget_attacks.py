#!/usr/bin/env python3
"""The attacks of issue 16, items 6 and 7, against a broker binary, beside
a bystander doing QoS 1 round trips every 50 ms; prints the figures of
docs/reliability.md ("Work per turn").

    bench/budget_attacks.py [--sol target/release/sol] [--max-memory 64MB]

Starts the broker on a free port with a generated config, runs:

  deep      2 000 filters of 100 levels that part after 11 levels and
            follow `a/t/t/...` to their last one, then 243 KB of QoS 0
            PUBLISHes to `a/t/.../end`, which match none of them;
  subscribe 10 000 retained topics `w/N/v`, then one SUBSCRIBE of 10 000
            filters `w/+/qN` that match none of them;
  reader    100 000 retained QoS 0 messages of 100 bytes under `rw/`, then
            a reader of `rw/#` that reads as fast as it can;

and for each prints how long the broker took, the bystander's worst round
trip and (reader) how many messages arrived. Python's standard library only.
"""

import argparse
import os
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time


def remaining(n):
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
    return bytes([first]) + remaining(len(body)) + body


def string(s):
    s = s.encode() if isinstance(s, str) else s
    return struct.pack(">H", len(s)) + s


def connect(client_id):
    body = string("MQTT") + bytes([4, 0x02]) + struct.pack(">H", 60) + string(client_id)
    return packet(0x10, body)


def publish(topic, payload, qos=0, retain=False, pid=None):
    body = string(topic) + (struct.pack(">H", pid) if qos else b"") + payload
    return packet(0x30 | (qos << 1) | int(retain), body)


def subscribe(pid, filters):
    body = struct.pack(">H", pid) + b"".join(string(f) + bytes([q]) for f, q in filters)
    return packet(0x82, body)


class Client:
    def __init__(self, port, client_id, timeout=120):
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.settimeout(timeout)
        self.buf = bytearray()
        self.sock.sendall(connect(client_id))
        first, body = self.read()
        assert first == 0x20 and body == b"\0\0", (first, body)

    def send(self, data):
        self.sock.sendall(data)

    def fill(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise EOFError
            self.buf += chunk

    def read(self):
        self.fill(2)
        length, shift, i = 0, 0, 1
        while True:
            self.fill(i + 1)
            byte = self.buf[i]
            length |= (byte & 0x7F) << shift
            shift += 7
            i += 1
            if not byte & 0x80:
                break
        self.fill(i + length)
        first, body = self.buf[0], bytes(self.buf[i : i + length])
        del self.buf[: i + length]
        return first, body

    def until(self, first):
        """Reads up to the packet whose first byte is `first`; returns how
        many PUBLISH packets came before it."""
        publishes = 0
        while True:
            got, _ = self.read()
            if got == first:
                return publishes
            if got & 0xF0 == 0x30:
                publishes += 1

    def sync(self, pid):
        self.send(publish("budget/sync", b"", 1, pid=pid))
        while True:
            first, body = self.read()
            if first == 0x40 and body == struct.pack(">H", pid):
                return


class Bystander(threading.Thread):
    def __init__(self, port):
        super().__init__(daemon=True)
        self.client = Client(port, "bystander", timeout=30)
        self.client.send(subscribe(1, [("by/rt", 1)]))
        self.client.until(0x90)
        self.stop = False
        self.worst = 0.0
        self.trips = 0

    def run(self):
        pid = 1
        while not self.stop:
            started = time.monotonic()
            self.client.send(publish("by/rt", b"ping", 1, pid=pid))
            while True:
                first, body = self.client.read()
                if first & 0xF0 == 0x30:
                    # The copy it subscribed to: acknowledge it.
                    self.client.send(packet(0x40, body[7:9]))
                    break
            self.worst = max(self.worst, time.monotonic() - started)
            self.trips += 1
            pid = pid % 60000 + 1
            time.sleep(0.05)

    def finish(self):
        time.sleep(0.2)
        self.stop = True
        self.join(30)
        return self.worst


def deep(port):
    sub = Client(port, "deep-sub")
    filters = []
    for i in range(2000):
        levels = ["a"] + ["t" if i >> b & 1 else "+" for b in range(11)]
        levels += ["+"] * (99 - len(levels)) + ["z%d" % i]
        filters.append(("/".join(levels), 0))
    for n in range(0, len(filters), 200):
        sub.send(subscribe(n // 200 + 1, filters[n : n + 200]))
        sub.until(0x90)
    topic = "/".join(["a"] + ["t"] * 98 + ["end"])
    one = publish(topic, b"x")
    flood = one * (243 * 1024 // len(one))
    bystander = Bystander(port)
    bystander.start()
    time.sleep(0.2)
    attacker = Client(port, "deep-flood")
    started = time.monotonic()
    attacker.send(flood)
    attacker.sync(1)
    took = time.monotonic() - started
    worst = bystander.finish()
    print("deep: %d publishes routed in %.3f s; bystander worst %.1f ms"
          % (len(flood) // len(one), took, worst * 1000))


def subscribe_many(port):
    pub = Client(port, "wide-pub")
    pub.send(b"".join(publish("w/%d/v" % i, b"r", retain=True) for i in range(10000)))
    pub.sync(1)
    bystander = Bystander(port)
    bystander.start()
    time.sleep(0.2)
    attacker = Client(port, "wide-sub")
    started = time.monotonic()
    attacker.send(subscribe(1, [("w/+/q%d" % i, 0) for i in range(10000)]))
    attacker.until(0x90)
    # A filter subscribed after them gets its retained message once the
    # walks before it are done.
    attacker.send(subscribe(2, [("w/7/v", 0)]))
    attacker.until(0x90)
    first, _ = attacker.read()
    assert first == 0x31, first
    took = time.monotonic() - started
    worst = bystander.finish()
    print("subscribe: 10000 filters walked in %.3f s; bystander worst %.1f ms"
          % (took, worst * 1000))


def reader(port):
    pub = Client(port, "rw-pub")
    for n in range(0, 100000, 10000):
        pub.send(b"".join(publish("rw/%d" % i, b"p" * 100, retain=True)
                          for i in range(n, n + 10000)))
    pub.sync(1)
    bystander = Bystander(port)
    bystander.start()
    time.sleep(0.2)
    r = Client(port, "rw-reader", timeout=5)
    started = time.monotonic()
    r.send(subscribe(1, [("rw/#", 0)]))
    r.until(0x90)
    got = 0
    try:
        while got < 100000:
            first, _ = r.read()
            if first & 0xF0 == 0x30:
                got += 1
    except (socket.timeout, EOFError):
        pass
    took = time.monotonic() - started
    worst = bystander.finish()
    print("reader: %d of 100000 retained messages in %.3f s; bystander worst %.1f ms"
          % (got, took, worst * 1000))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--sol", default="target/release/sol")
    parser.add_argument("--max-memory", default="64MB")
    parser.add_argument("attacks", nargs="*", default=["deep", "subscribe", "reader"])
    args = parser.parse_args()
    for attack in args.attacks:
        port = free_port()
        with tempfile.NamedTemporaryFile("w", suffix=".conf", delete=False) as conf:
            conf.write("ip_address 127.0.0.1\nip_port %d\nmax_memory %s\n" % (port, args.max_memory))
        broker = subprocess.Popen([args.sol, "-c", conf.name], stderr=subprocess.DEVNULL)
        try:
            time.sleep(0.5)
            {"deep": deep, "subscribe": subscribe_many, "reader": reader}[attack](port)
        finally:
            broker.kill()
            broker.wait()
            os.unlink(conf.name)


if __name__ == "__main__":
    sys.exit(main())
