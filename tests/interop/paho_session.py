#!/usr/bin/python3
"""Interoperability with paho-mqtt, the Eclipse Python client.

A scripted session: connect (MQTT 3.1.1 and 3.1), QoS 0/1/2 in both
directions, downgrade, wildcards, unsubscribe, ordering, retained messages,
wills (a child process killed with SIGKILL), persistent sessions, and the
Unix socket where paho supports it (paho 2.x has transport="unix").

Works with paho 1.x and 2.x (CallbackAPIVersion.VERSION2 when present).

Usage:
  paho_session.py --sol SOL_BINARY           start sol on a temporary sol.conf
  paho_session.py --mosquitto [BINARY]       the same against mosquitto
  paho_session.py --external PORT [--unix PATH]  a broker already running

Prints one line per check and "N passed, N failed"; exits 1 on a failure.
"""

import argparse
import os
import queue
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback

import paho.mqtt
import paho.mqtt.client as mqtt

TIMEOUT = 5.0
HOST = "127.0.0.1"
PAHO_2 = hasattr(mqtt, "CallbackAPIVersion")


def unix_supported():
    # transport="unix" came with paho 2.0 (1.x rejects it in the constructor).
    return int(paho.mqtt.__version__.split(".")[0]) >= 2


def new_paho_client(client_id, clean, protocol=mqtt.MQTTv311, transport="tcp"):
    kwargs = dict(client_id=client_id, clean_session=clean, protocol=protocol, transport=transport)
    if PAHO_2:
        return mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, **kwargs)
    return mqtt.Client(**kwargs)


class Client:
    """A paho client with its network loop on a thread and queues to wait on."""

    def __init__(self, target, client_id, clean=True, protocol=mqtt.MQTTv311, will=None):
        self.target = target
        transport = "unix" if target.get("unix") else "tcp"
        self.paho = new_paho_client(client_id, clean, protocol, transport)
        self.connacks = queue.Queue()
        self.subacks = queue.Queue()
        self.unsubacks = queue.Queue()
        self.messages = queue.Queue()
        self.paho.on_connect = self._on_connect
        self.paho.on_subscribe = self._on_subscribe
        self.paho.on_unsubscribe = self._on_unsubscribe
        self.paho.on_message = self._on_message
        if will:
            self.paho.will_set(*will)

    # paho 1.x and 2.x callbacks differ in their arguments.
    def _on_connect(self, client, userdata, flags, rc, properties=None):
        present = flags.session_present if PAHO_2 else bool(flags.get("session present"))
        code = rc.value if hasattr(rc, "value") else int(rc)
        self.connacks.put((present, code))

    def _on_subscribe(self, client, userdata, mid, granted, properties=None):
        self.subacks.put([g.value if hasattr(g, "value") else g for g in granted])

    def _on_unsubscribe(self, client, userdata, mid, *rest):
        self.unsubacks.put(mid)

    def _on_message(self, client, userdata, msg):
        self.messages.put((msg.topic, bytes(msg.payload), msg.qos, bool(msg.retain)))

    def connect(self, keepalive=30):
        """Connects and returns the CONNACK's session-present flag."""
        if self.target.get("unix"):
            self.paho.connect(self.target["unix"], keepalive=keepalive)
        else:
            self.paho.connect(HOST, self.target["port"], keepalive=keepalive)
        self.paho.loop_start()
        present, code = self.connacks.get(timeout=TIMEOUT)
        assert code == 0, "CONNACK code %d" % code
        return present

    def subscribe(self, topic, qos):
        self.paho.subscribe(topic, qos)
        granted = self.subacks.get(timeout=TIMEOUT)
        assert granted == [qos], "SUBACK %r for %s at %d" % (granted, topic, qos)

    def unsubscribe(self, topic):
        self.paho.unsubscribe(topic)
        self.unsubacks.get(timeout=TIMEOUT)

    def publish(self, topic, payload, qos=0, retain=False):
        info = self.paho.publish(topic, payload, qos, retain)
        info.wait_for_publish(TIMEOUT)
        assert info.is_published(), "publish to %s not completed" % topic

    def recv(self):
        try:
            return self.messages.get(timeout=TIMEOUT)
        except queue.Empty:
            raise AssertionError("no message within %.0f s" % TIMEOUT)

    def expect(self, topic, payload, qos, retain=False):
        got = self.recv()
        want = (topic, payload, qos, retain)
        assert got == want, "expected %r, got %r" % (want, got)

    def until_marker(self, publisher, topic):
        """Everything received before a marker that `publisher` sends to
        `topic` (which this client subscribes to) after what it sent before."""
        marker = b"marker %d" % random.getrandbits(32)
        publisher.publish(topic, marker, 1)
        before = []
        while True:
            got = self.recv()
            if got[0] == topic and got[1] == marker:
                return before
            before.append(got)

    def close(self):
        """DISCONNECT, then stop the loop."""
        self.paho.disconnect()
        self.paho.loop_stop()


# ---------------------------------------------------------------------------
# The broker
# ---------------------------------------------------------------------------


def port_free(port):
    with socket.socket() as s:
        try:
            s.bind((HOST, port))
            return True
        except OSError:
            return False


def start_broker(kind, binary, work):
    """Starts sol or mosquitto on a free port below 32768 and a Unix socket."""
    for attempt in range(5):
        port = random.randint(20000, 32000)
        if not port_free(port):
            continue
        unix = os.path.join(work, "broker.sock")
        if os.path.exists(unix):
            os.unlink(unix)
        if kind == "sol":
            conf = os.path.join(work, "sol.conf")
            with open(conf, "w") as f:
                f.write("ip_address 127.0.0.1\nip_port %d\nunix_socket %s\n" % (port, unix))
        else:
            conf = os.path.join(work, "mosquitto.conf")
            with open(conf, "w") as f:
                f.write("user %s\nlistener %d 127.0.0.1\nlistener 0 %s\nallow_anonymous true\n"
                        % (os.environ.get("USER") or _username(), port, unix))
        log = open(os.path.join(work, "broker.log"), "w")
        proc = subprocess.Popen([binary, "-c", conf], stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
        deadline = time.time() + 5
        while time.time() < deadline and proc.poll() is None:
            if not port_free(port) and os.path.exists(unix):
                try:
                    socket.create_connection((HOST, port), timeout=1).close()
                    print("broker (%s) on %s:%d and %s" % (kind, HOST, port, unix))
                    return proc, port, unix
                except OSError:
                    pass
            time.sleep(0.1)
        proc.kill()
        proc.wait()
        print("broker did not start on port %d (attempt %d)" % (port, attempt + 1))
    return None, None, None


def _username():
    import pwd

    return pwd.getpwuid(os.getuid()).pw_name


# ---------------------------------------------------------------------------
# The checks
# ---------------------------------------------------------------------------

RUN = "paho%d" % random.getrandbits(24)
_ids = [0]


def new_id(prefix="p"):
    _ids[0] += 1
    return "%s%s%d" % (prefix, RUN, _ids[0])


def check_connect_311_and_31(tcp):
    for protocol in (mqtt.MQTTv311, mqtt.MQTTv31):
        c = Client(tcp, new_id(), protocol=protocol)
        assert c.connect() is False, "session present on a clean session"
        t = "%s/proto%d" % (RUN, protocol)
        c.subscribe(t, 1)
        c.publish(t, b"hello", 1)
        c.expect(t, b"hello", 1)
        c.close()


def check_qos_both_directions(tcp):
    sub = Client(tcp, new_id())
    sub.connect()
    t = RUN + "/qos"
    sub.subscribe(t, 2)
    pub = Client(tcp, new_id())
    pub.connect()
    for q in (0, 1, 2):
        pub.publish(t, b"at %d" % q, q)
        sub.expect(t, b"at %d" % q, q)
    sub.close()
    pub.close()


def check_downgrade(tcp):
    sub = Client(tcp, new_id())
    sub.connect()
    t = RUN + "/down"
    sub.subscribe(t, 0)
    sub.publish(t, b"two", 2)
    sub.expect(t, b"two", 0)
    sub.close()


def check_wildcards_and_unsubscribe(tcp):
    sub = Client(tcp, new_id())
    sub.connect()
    marker = RUN + "/wmarker"
    sub.subscribe(marker, 1)
    sub.subscribe(RUN + "/w/+/x", 1)
    sub.subscribe(RUN + "/h/#", 1)
    for topic in ("w/a/x", "w/a/b/x", "h", "h/1/2", "hx"):
        sub.publish("%s/%s" % (RUN, topic), topic.encode(), 1)
    got = [m[0] for m in sub.until_marker(sub, marker)]
    want = ["%s/%s" % (RUN, t) for t in ("w/a/x", "h", "h/1/2")]
    assert got == want, "got %r" % got
    sub.unsubscribe(RUN + "/h/#")
    sub.publish(RUN + "/h/1", b"unsubscribed", 1)
    got = sub.until_marker(sub, marker)
    assert got == [], "after unsubscribe: %r" % got
    sub.close()


def check_order(tcp):
    sub = Client(tcp, new_id())
    sub.connect()
    t = RUN + "/order"
    sub.subscribe(t, 1)
    pub = Client(tcp, new_id())
    pub.connect()
    infos = [pub.paho.publish(t, str(n), 1) for n in range(500)]
    for info in infos:
        info.wait_for_publish(TIMEOUT)
    got = [sub.recv()[1] for _ in range(500)]
    want = [str(n).encode() for n in range(500)]
    assert got == want, "first difference at %d" % next(i for i in range(500) if got[i] != want[i])
    sub.close()
    pub.close()


def check_retained(tcp):
    t = RUN + "/ret"
    pub = Client(tcp, new_id())
    pub.connect()
    pub.publish(t, b"old", 1, retain=True)
    pub.publish(t, b"kept", 2, retain=True)
    sub = Client(tcp, new_id())
    sub.connect()
    sub.subscribe(t, 1)
    sub.expect(t, b"kept", 1, retain=True)
    pub.publish(t, b"live", 1, retain=True)
    sub.expect(t, b"live", 1, retain=False)
    pub.publish(t, b"", 1, retain=True)
    sub.expect(t, b"", 1, retain=False)
    late = Client(tcp, new_id())
    late.connect()
    late.subscribe(t, 1)
    got = late.until_marker(pub, t)
    assert got == [], "deleted retained message delivered: %r" % got
    for c in (pub, sub, late):
        c.close()


def spawn_will_child(target, topic, payload, qos, retain):
    """A child process that connects with a will and waits to be killed."""
    args = [sys.executable, os.path.abspath(__file__), "--will-child",
            str(target.get("port") or 0), target.get("unix") or "", topic, payload, str(qos),
            "1" if retain else "0"]
    child = subprocess.Popen(args, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    line = child.stdout.readline().strip()
    assert line == "ready", "will child said %r" % line
    return child


def will_child(argv):
    port, unix, topic, payload, qos, retain = argv
    target = {"port": int(port), "unix": unix or None}
    c = Client(target, new_id("w"), will=(topic, payload.encode(), int(qos), retain == "1"))
    c.connect()
    print("ready", flush=True)
    time.sleep(60)


def check_will(target):
    t = RUN + "/will" + ("u" if target.get("unix") else "")
    watcher = Client(target, new_id())
    watcher.connect()
    watcher.subscribe(t, 2)
    child = spawn_will_child(target, t, "gone", 1, False)
    child.send_signal(signal.SIGKILL)
    child.wait()
    watcher.expect(t, b"gone", 1)

    child = spawn_will_child(target, t, "remembered", 2, True)
    child.send_signal(signal.SIGKILL)
    child.wait()
    watcher.expect(t, b"remembered", 2, retain=False)
    late = Client(target, new_id())
    late.connect()
    late.subscribe(t, 2)
    late.expect(t, b"remembered", 2, retain=True)
    late.publish(t, b"", 1, retain=True)
    for c in (watcher, late):
        c.close()


def check_no_will_after_disconnect(tcp):
    t = RUN + "/nowill"
    watcher = Client(tcp, new_id())
    watcher.connect()
    watcher.subscribe(t, 1)
    polite = Client(tcp, new_id(), will=(t, b"must not appear", 1, False))
    polite.connect()
    polite.close()
    time.sleep(0.2)
    got = watcher.until_marker(watcher, t)
    assert got == [], "will after DISCONNECT: %r" % got
    watcher.close()


def check_persistent_session(tcp):
    cid = new_id("s")
    t = RUN + "/away"
    c = Client(tcp, cid, clean=False)
    assert c.connect() is False, "session present for a new session"
    c.subscribe(t, 2)
    c.close()
    time.sleep(0.2)
    pub = Client(tcp, new_id())
    pub.connect()
    pub.publish(t, b"one", 1)
    pub.publish(t, b"zero", 0)
    pub.publish(t, b"two", 2)
    c = Client(tcp, cid, clean=False)
    assert c.connect() is True, "no session present on resume"
    c.expect(t, b"one", 1)
    c.expect(t, b"two", 2)
    got = c.until_marker(pub, t)
    assert got == [], "QoS 0 kept offline, or extra: %r" % got
    c.close()
    c = Client(tcp, cid, clean=True)
    assert c.connect() is False, "session present with clean session"
    c.close()
    pub.close()


def check_unix(target):
    sub = Client(target, new_id())
    sub.connect()
    t = RUN + "/unix"
    sub.subscribe(t, 2)
    tcp_pub = Client({"port": target["port"]}, new_id())
    tcp_pub.connect()
    for q in (0, 1, 2):
        tcp_pub.publish(t, b"tcp %d" % q, q)
        sub.expect(t, b"tcp %d" % q, q)
        sub.publish(t, b"unix %d" % q, q)
        sub.expect(t, b"unix %d" % q, q)
    sub.close()
    tcp_pub.close()


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--will-child":
        will_child(sys.argv[2:])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--sol", metavar="BINARY")
    group.add_argument("--mosquitto", metavar="BINARY", nargs="?", const="mosquitto")
    group.add_argument("--external", metavar="PORT", type=int)
    parser.add_argument("--unix", metavar="PATH")
    args = parser.parse_args()

    print("paho-mqtt %s" % paho.mqtt.__version__)
    work = tempfile.mkdtemp(prefix="sol-paho.")
    proc = None
    try:
        if args.external:
            port, unix = args.external, args.unix
        else:
            kind, binary = ("sol", args.sol) if args.sol else ("mosquitto", args.mosquitto)
            proc, port, unix = start_broker(kind, binary, work)
            if proc is None:
                print("could not start the broker")
                print("0 passed, 1 failed")
                return 1
        return run_checks(port, unix, proc, work)
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(work, ignore_errors=True)


def run_checks(port, unix, proc, work):
    tcp = {"port": port}
    checks = [
        ("MQTT 3.1.1 and 3.1 connect and round trip", check_connect_311_and_31, tcp),
        ("QoS 0, 1 and 2 in both directions", check_qos_both_directions, tcp),
        ("delivery at the subscription's lower QoS", check_downgrade, tcp),
        ("+ and # wildcards, unsubscribe", check_wildcards_and_unsubscribe, tcp),
        ("500 QoS 1 messages in order", check_order, tcp),
        ("retained: stored, flagged, replaced, cleared", check_retained, tcp),
        ("will of a killed client, plain and retained", check_will, tcp),
        ("no will after DISCONNECT", check_no_will_after_disconnect, tcp),
        ("persistent session: session present and offline QoS 1/2", check_persistent_session, tcp),
    ]
    if unix and unix_supported():
        target = {"port": port, "unix": unix}
        checks.append(("the Unix socket, QoS 0/1/2 and TCP in between", check_unix, target))
        checks.append(("will over the Unix socket", check_will, target))
    elif unix:
        print("skip the Unix socket checks: paho %s has no unix transport (paho 2.x has)"
              % paho.mqtt.__version__)
    passed = failed = 0
    for name, check, target in checks:
        try:
            check(target)
            passed += 1
            print("ok   " + name)
        except Exception as e:  # a check's failure must not stop the others
            failed += 1
            print("FAIL %s: %s" % (name, e))
            traceback.print_exc(limit=3, file=sys.stdout)
    if proc is not None and proc.poll() is not None:
        failed += 1
        print("FAIL the broker exited during the session (status %s)" % proc.returncode)
    if failed and proc is not None:
        print("broker log (last 30 lines):")
        with open(os.path.join(work, "broker.log")) as f:
            for line in f.readlines()[-30:]:
                print("  | " + line.rstrip())
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
