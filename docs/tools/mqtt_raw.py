#!/usr/bin/env python3
"""mqtt_raw: send hand-written bytes to a broker and show what comes back.

For the "Learn MQTT by reading sol" series: the way to see what a broker does
with input no well-behaved client would send. Each HEX argument is sent as
one write (spaces inside it are ignored), with a short pause between writes
so that they arrive as separate reads. Then it waits, printing every whole
packet the broker sends, until the broker closes the connection or the wait
is over.

Usage:  python3 docs/tools/mqtt_raw.py [-p PORT] [-w SECONDS] [--no-read] HEX [HEX ...]
        an argument "sleep:S" pauses S seconds instead of sending;
        --no-read never reads from the socket: a subscriber that has stopped
        reading, for watching what the broker does about it
Example (a CONNECT with clean session 0 and an empty client id):
        python3 docs/tools/mqtt_raw.py '10 0c 00 04 4d 51 54 54 04 00 00 3c 00 00'
Standard library only; Python 3.8 or later.
"""

import argparse
import socket
import time

NAMES = [
    "reserved(0)", "CONNECT", "CONNACK", "PUBLISH", "PUBACK", "PUBREC", "PUBREL",
    "PUBCOMP", "SUBSCRIBE", "SUBACK", "UNSUBSCRIBE", "UNSUBACK", "PINGREQ",
    "PINGRESP", "DISCONNECT", "reserved(15)",
]


def split_packet(buf):
    """(packet, rest) when buf starts with a whole packet, else None."""
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


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, default=1883)
    parser.add_argument("-w", "--wait", type=float, default=3.0,
                        help="seconds to wait for the broker after the last write")
    parser.add_argument("--no-read", action="store_true",
                        help="never read: hold the connection open for the wait, unread")
    parser.add_argument("chunks", nargs="+", metavar="HEX")
    args = parser.parse_args()

    sock = socket.create_connection((args.host, args.port))
    start = time.monotonic()
    state = {"buf": b"", "open": True}

    def listen(seconds):
        """Prints what the broker sends for `seconds`; False once it closed."""
        if args.no_read:
            time.sleep(seconds)
            return True
        deadline = time.monotonic() + seconds
        while state["open"]:
            left = deadline - time.monotonic()
            if left <= 0:
                return True
            sock.settimeout(left)
            try:
                chunk = sock.recv(65536)
            except socket.timeout:
                continue
            except OSError as error:
                print(f"closed   {error} after {time.monotonic() - start:.1f} s")
                state["open"] = False
                break
            if not chunk:
                if state["buf"]:
                    print(f"partial  {state['buf'].hex(' ')}")
                print(f"closed   by the broker after {time.monotonic() - start:.1f} s")
                state["open"] = False
                break
            state["buf"] += chunk
            while (found := split_packet(state["buf"])) is not None:
                packet, state["buf"] = found
                print(f"received {NAMES[packet[0] >> 4]:<11} {packet[:48].hex(' ')}")
        return state["open"]

    for chunk in args.chunks:
        if chunk.startswith("sleep:"):
            if not listen(float(chunk[len("sleep:"):])):
                return
            continue
        data = bytes.fromhex(chunk)
        try:
            sock.sendall(data)
        except OSError as error:
            print(f"write    failed: {error}")
            return
        print(f"sent     {data[:48].hex(' ')}{' ...' if len(data) > 48 else ''}")
        # A short pause, so that each argument arrives as a read of its own.
        if not listen(0.05):
            return
    if listen(args.wait):
        unread = " (never read)" if args.no_read else ""
        print(f"open     still open after {time.monotonic() - start:.1f} s{unread}")

if __name__ == "__main__":
    main()
