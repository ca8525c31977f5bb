#!/usr/bin/env python3
"""mqtt_tap: watch the MQTT packets between a client and a broker.

A tiny TCP relay for the "Learn MQTT by reading sol" series. It listens on
one port, connects each client it accepts to the broker, copies bytes both
ways unchanged, and prints every whole packet it sees, one line each:

    c>s CONNECT      10 14 00 04 4d 51 54 54 04 02 00 3c 00 08 73 65 ...

`c>s` is client to server, `s>c` the other way. Packets are found the way a
broker finds them: the first byte names the type, the next one to four bytes
give the remaining length. Bytes that do not parse are printed as they are.

Usage:  python3 docs/tools/mqtt_tap.py [-n] [LISTEN_PORT [BROKER_HOST [BROKER_PORT]]]
        defaults: 1884 127.0.0.1 1883; -n numbers the connections, so that
        several clients can be told apart: "2 c>s PUBACK ..."
Then point a client at the tap:  mosquitto_pub -p 1884 -t a/b -m hi
Standard library only; Python 3.8 or later.
"""

import argparse
import itertools
import socket
import threading

NAMES = [
    "reserved(0)", "CONNECT", "CONNACK", "PUBLISH", "PUBACK", "PUBREC", "PUBREL",
    "PUBCOMP", "SUBSCRIBE", "SUBACK", "UNSUBSCRIBE", "UNSUBACK", "PINGREQ",
    "PINGRESP", "DISCONNECT", "reserved(15)",
]
PRINT_LOCK = threading.Lock()


def split_packet(buf):
    """Returns (packet, rest) when buf starts with a whole packet, else None.
    A remaining length with a fifth byte returns the whole buffer as one
    'packet' so that it still gets printed."""
    if len(buf) < 2:
        return None
    value, shift = 0, 0
    for i in range(1, 5):
        if i >= len(buf):
            return None
        value += (buf[i] & 0x7F) << shift
        shift += 7
        if buf[i] & 0x80 == 0:
            end = i + 1 + value
            return (buf[:end], buf[end:]) if len(buf) >= end else None
    return buf, b""


def show(direction, packet):
    """One line per packet: direction, name, the first 48 bytes in hex."""
    name = NAMES[packet[0] >> 4]
    shown = packet[:48].hex(" ")
    more = f" ... ({len(packet)} bytes)" if len(packet) > 48 else ""
    with PRINT_LOCK:
        print(f"{direction} {name:<12} {shown}{more}", flush=True)


def pump(src, dst, direction):
    buf = b""
    try:
        while True:
            chunk = src.recv(65536)
            if not chunk:
                break
            # Print first, then forward: an answer cannot be printed before
            # the packet that caused it.
            buf += chunk
            while (found := split_packet(buf)) is not None:
                packet, buf = found
                show(direction, packet)
            dst.sendall(chunk)
    except OSError as error:
        with PRINT_LOCK:
            print(f"{direction} {error}", flush=True)
    finally:
        if buf:
            with PRINT_LOCK:
                print(f"{direction} (partial)    {buf[:48].hex(' ')}", flush=True)
        # Pass the end of the stream on, but let the other direction finish:
        # a broker may still be writing after the client has said goodbye.
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        with PRINT_LOCK:
            print(f"{direction} closed", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", "--number", action="store_true",
                        help="prefix each line with the connection's number")
    parser.add_argument("listen_port", nargs="?", type=int, default=1884)
    parser.add_argument("host", nargs="?", default="127.0.0.1")
    parser.add_argument("port", nargs="?", type=int, default=1883)
    args = parser.parse_args()
    server = socket.create_server(("127.0.0.1", args.listen_port))
    print(f"tap: 127.0.0.1:{args.listen_port} -> {args.host}:{args.port}", flush=True)
    for number in itertools.count(1):
        client, _ = server.accept()
        broker = socket.create_connection((args.host, args.port))
        prefix = f"{number} " if args.number else ""
        for ends in ((client, broker, prefix + "c>s"), (broker, client, prefix + "s>c")):
            threading.Thread(target=pump, args=ends, daemon=True).start()


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        pass
