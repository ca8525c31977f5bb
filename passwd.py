#!/usr/bin/env python3
"""Manage sol password files: one `username:hash` per line.

The hash is SHA-512 crypt (`$6$salt$hash`), the format of glibc's crypt(3),
`openssl passwd -6` and mosquitto_passwd's old default, implemented here
from Ulrich Drepper's specification so that the script needs nothing but the
standard library (Python 3.13 removed the `crypt` module).

Usage:
  passwd.py FILE                     hash every plain-text `user:password` line
                                     in place
  passwd.py -b FILE USER PASSWORD    add USER or change their password; FILE is
                                     created if missing
  passwd.py -D FILE USER             delete USER
  passwd.py -h                       this help

Lines are read as sol reads them: blanks around a line are not part of it,
and blank lines and lines starting with '#' are kept as they are. Lines
already holding a `$6$` hash are left alone, so running `passwd.py FILE`
twice is harmless. Note that `-b` puts the password on the command line,
where other local users may see it (in `ps`) and your shell may save it.

The file is rewritten atomically (a temporary file renamed over it) with
mode 0600, since it holds hashes that can be attacked offline. If FILE is a
symbolic link, the link is replaced by the new file.
"""

import hashlib
import os
import secrets
import sys
import tempfile

ROUNDS_DEFAULT = 5000
ROUNDS_MIN = 1000
ROUNDS_MAX = 999_999_999
SALT_MAX = 16

# The crypt(3) alphabet: the character for each 6-bit value, in order.
ALPHABET = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

# The order in which SHA-512 crypt encodes the 64 digest bytes: each triple
# becomes four characters, the last byte alone becomes two.
_PERMUTATION = [
    (0, 21, 42), (22, 43, 1), (44, 2, 23), (3, 24, 45), (25, 46, 4),
    (47, 5, 26), (6, 27, 48), (28, 49, 7), (50, 8, 29), (9, 30, 51),
    (31, 52, 10), (53, 11, 32), (12, 33, 54), (34, 55, 13), (56, 14, 35),
    (15, 36, 57), (37, 58, 16), (59, 17, 38), (18, 39, 60), (40, 61, 19),
    (62, 20, 41),
]

USAGE = """\
usage: passwd.py FILE
       passwd.py -b FILE USER PASSWORD
       passwd.py -D FILE USER
       passwd.py -h"""


class PasswdError(Exception):
    """A mistake to report on stderr, ending the program with status 1."""


def _repeat_to(data: bytes, length: int) -> bytes:
    """`data` repeated and cut to `length` bytes (steps 16 and 20)."""
    whole, rest = divmod(length, len(data))
    return data * whole + data[:rest]


def _b64_from_24bit(b2: int, b1: int, b0: int, count: int) -> str:
    word = (b2 << 16) | (b1 << 8) | b0
    out = []
    for _ in range(count):
        out.append(ALPHABET[word & 0x3F])
        word >>= 6
    return "".join(out)


def sha512_crypt(password: bytes, salt: str, rounds=None) -> str:
    """SHA-512 crypt of `password`, following Drepper's specification.

    `salt` is cut to 16 characters. `rounds` None means the default of 5000,
    not written into the result; a number is clamped to 1000..999999999 and
    written as `rounds=N$`, as glibc does when the salt string names it.
    """
    salt_bytes = salt.encode("utf-8")[:SALT_MAX]
    salt = salt_bytes.decode("utf-8", errors="strict")
    write_rounds = rounds is not None
    rounds = ROUNDS_DEFAULT if rounds is None else max(ROUNDS_MIN, min(ROUNDS_MAX, rounds))

    # Steps 4-8: digest B of password, salt, password.
    b = hashlib.sha512(password + salt_bytes + password).digest()
    # Steps 1-3, 9-12: digest A.
    a = hashlib.sha512(password + salt_bytes)
    a.update(_repeat_to(b, len(password)))
    n = len(password)
    while n > 0:
        a.update(b if n & 1 else password)
        n >>= 1
    a = a.digest()
    # Steps 13-16: the byte sequence P.
    dp = hashlib.sha512(password * len(password)).digest()
    p = _repeat_to(dp, len(password))
    # Steps 17-20: the byte sequence S.
    ds = hashlib.sha512(salt_bytes * (16 + a[0])).digest()
    s = _repeat_to(ds, len(salt_bytes))
    # Step 21: the rounds.
    c = a
    for i in range(rounds):
        h = hashlib.sha512(p if i & 1 else c)
        if i % 3:
            h.update(s)
        if i % 7:
            h.update(p)
        h.update(c if i & 1 else p)
        c = h.digest()
    # Step 22: the encoding.
    encoded = "".join(_b64_from_24bit(c[x], c[y], c[z], 4) for x, y, z in _PERMUTATION)
    encoded += _b64_from_24bit(0, 0, c[63], 2)

    prefix = f"$6$rounds={rounds}$" if write_rounds else "$6$"
    return f"{prefix}{salt}${encoded}"


def new_hash(password: bytes) -> str:
    """A hash of `password` with a fresh random 16-character salt."""
    salt = "".join(secrets.choice(ALPHABET) for _ in range(SALT_MAX))
    return sha512_crypt(password, salt)


def _check_username(user: str) -> None:
    if not user:
        raise PasswdError("the username is empty")
    if ":" in user:
        raise PasswdError("a username cannot contain ':'")
    if any(ch in user for ch in "\r\n"):
        raise PasswdError("a username cannot contain a line break")
    if user != user.strip():
        raise PasswdError("a username cannot start or end with blanks")
    if user.startswith("#"):
        raise PasswdError("a username cannot start with '#': the line would be a comment")


def _is_other_hash(value: str) -> bool:
    """`$id$...` for a crypt scheme other than SHA-512 ($1$, $5$, $y$, $2b$, $7$...)."""
    if not value.startswith("$") or value.startswith("$6$"):
        return False
    scheme, sep, _ = value[1:].partition("$")
    return bool(sep) and scheme != "" and scheme.isalnum()


def _split(line: str):
    """(username, value) for a user line, None for a blank or comment line."""
    content = line.strip()
    if not content or content.startswith("#"):
        return None
    user, sep, value = content.partition(":")
    return (user, value) if sep else (content, None)


def _is_line_of(line: str, user: str) -> bool:
    """Whether `line` is a `user:...` line for `user`."""
    entry = _split(line)
    return entry is not None and entry[1] is not None and entry[0] == user


def read_lines(path: str, missing_ok: bool = False) -> list:
    """The file's lines without their line ends; [] for a missing file if allowed."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        if missing_ok:
            return []
        raise PasswdError(f"{path}: no such file")
    except OSError as e:
        raise PasswdError(f"{path}: {e.strerror}")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise PasswdError(f"{path}: line {line}: not valid UTF-8")
    if text.startswith("\ufeff"):
        text = text[1:]
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def write_atomically(path: str, lines: list) -> None:
    """Replaces `path` with `lines`, mode 0600, never leaving it half written."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".passwd-", dir=directory)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            f.write("".join(line + "\n" for line in lines))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def hash_in_place(path: str) -> int:
    """Hashes every plain-text password in `path`; returns how many."""
    lines = read_lines(path)
    errors = []
    changed = 0
    out = []
    for number, line in enumerate(lines, start=1):
        entry = _split(line)
        if entry is None:
            out.append(line)
            continue
        user, value = entry
        if value is None:
            errors.append(f"line {number}: expected username:password")
        elif not user:
            errors.append(f"line {number}: empty username")
        elif value.startswith("$6$"):
            out.append(line)
            continue
        elif _is_other_hash(value):
            errors.append(
                f"line {number}: a hash sol does not read (only $6$); "
                "set a new password with -b"
            )
        else:
            out.append(f"{user}:{new_hash(value.encode('utf-8'))}")
            changed += 1
            continue
        out.append(line)
    if errors:
        raise PasswdError(f"{path}: " + f"\n{path}: ".join(errors) + "\nnothing was changed")
    if changed:
        write_atomically(path, out)
    return changed


def set_password(path: str, user: str, password: str) -> None:
    """Adds `user` or replaces their hash; later lines for the same user go."""
    _check_username(user)
    lines = read_lines(path, missing_ok=True)
    entry = f"{user}:{new_hash(password.encode('utf-8'))}"
    out = []
    found = False
    for line in lines:
        if _is_line_of(line, user):
            if not found:
                out.append(entry)
                found = True
            continue
        out.append(line)
    if not found:
        out.append(entry)
    write_atomically(path, out)


def delete_user(path: str, user: str) -> None:
    """Removes every line for `user`."""
    lines = read_lines(path)
    out = [line for line in lines if not _is_line_of(line, user)]
    if len(out) == len(lines):
        raise PasswdError(f"{path}: no user {user!r}")
    write_atomically(path, out)


def main(argv: list) -> int:
    args = argv[1:]
    try:
        if args in (["-h"], ["--help"]):
            print(__doc__.strip())
            return 0
        if args and args[0] == "--hash" and len(args) in (3, 4):
            # For tests: the hash of a password with a given salt.
            rounds = int(args[3]) if len(args) == 4 else None
            print(sha512_crypt(args[1].encode("utf-8"), args[2], rounds))
            return 0
        if len(args) == 4 and args[0] == "-b":
            set_password(args[1], args[2], args[3])
            return 0
        if len(args) == 3 and args[0] == "-D":
            delete_user(args[1], args[2])
            return 0
        if len(args) == 1 and not args[0].startswith("-"):
            changed = hash_in_place(args[0])
            print(f"{args[0]}: hashed {changed} password{'s' if changed != 1 else ''}")
            return 0
    except PasswdError as e:
        print(f"passwd.py: {e}", file=sys.stderr)
        return 1
    except (OSError, ValueError) as e:
        print(f"passwd.py: {e}", file=sys.stderr)
        return 1
    print(USAGE, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
