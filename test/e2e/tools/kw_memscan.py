#!/usr/bin/env python3
"""kw_memscan: searches the memory of live processes for the secrets of a key dump.

    kw_memscan.py scan DUMP PID...   one JSON line per PID (below)
    kw_memscan.py hold DUMP          a positive control: keeps every secret of DUMP in
                                     memory as raw bytes, prints "holding N", sleeps

DUMP is what `kwarden-testhooks agent --test-key-dump FILE` writes (see
agent/testhooks/key_dump.h): lines of name=value fields. The secrets are the fields
key, secret and crypto_info (hex) of at least 16 bytes; the shorter iv, salt and
rec_seq are counted as skipped (too short for a search without false hits). Each secret
is searched in two forms: as dumped, and byte-reversed (BoringSSL keeps a private scalar
as little-endian words, so the reversed form is how an EC key sits in memory).

A scan reads /proc/PID/maps and every readable mapping through /proc/PID/mem (root
reads a non-dumpable process too). Its line:
    {"pid", "comm", "regions": mappings read, "bytes": bytes read,
     "unreadable": mappings whose read failed, "secrets": secrets searched,
     "skipped_short": fields under 16 bytes, "found": {label: ["as-is|reversed in MAPPING
     at +OFFSET", ...]}}
"""
import json
import os
import sys
import time

SECRET_FIELDS = ("key", "secret", "crypto_info")
MIN_LEN = 16
CHUNK = 8 << 20


def parse_dump(path):
    """[(label, bytes)] for every secret, and the number of short fields skipped."""
    secrets, short = [], 0
    with open(path) as f:
        for line in f:
            words = line.split()
            if not words:
                continue
            fields = dict(w.split("=", 1) for w in words[1:] if "=" in w)
            if words[0] == "svid":
                where = f"svid {fields.get('spiffe_id', '?')} serial={fields.get('serial', '?')}"
            else:
                where = f"{words[0]} conn={fields.get('conn', '?')} {fields.get('role', '?')} {fields.get('dir', '?')}"
            for name in ("key", "secret", "crypto_info", "iv", "salt", "rec_seq"):
                if name not in fields:
                    continue
                raw = bytes.fromhex(fields[name])
                if name in SECRET_FIELDS and len(raw) >= MIN_LEN:
                    secrets.append((f"{where} {name}", raw))
                else:
                    short += 1
    return secrets, short


def regions(pid):
    with open(f"/proc/{pid}/maps") as f:
        for line in f:
            parts = line.split(None, 5)
            start, end = (int(x, 16) for x in parts[0].split("-"))
            perms = parts[1]
            name = parts[5].strip() if len(parts) > 5 else "[anon]"
            yield start, end, perms, name


def scan(pid, secrets, short):
    # The same bytes may carry several labels (one side's TX key is the other's RX key).
    patterns = {}
    for label, raw in secrets:
        patterns.setdefault(raw, []).append((label, "as-is"))
        patterns.setdefault(raw[::-1], []).append((label, "reversed"))
    overlap = max(len(p) for p in patterns) - 1 if patterns else 0
    with open(f"/proc/{pid}/comm") as f:
        comm = f.read().strip()
    report = {"pid": pid, "comm": comm, "regions": 0, "bytes": 0, "unreadable": [], "secrets": len(secrets),
              "skipped_short": short, "found": {}}
    fd = os.open(f"/proc/{pid}/mem", os.O_RDONLY)
    try:
        for start, end, perms, name in regions(pid):
            if "r" not in perms:
                continue
            where = f"{start:x}-{end:x} {perms} {name}"
            prev = b""
            try:
                for at in range(start, end, CHUNK):
                    data = os.pread(fd, min(CHUNK, end - at), at)
                    report["bytes"] += len(data)
                    window = prev + data
                    base = at - len(prev)
                    for pattern, labels in patterns.items():
                        i = window.find(pattern)
                        while i >= 0:
                            # A hit inside PREV was reported with the previous chunk.
                            if i + len(pattern) > len(prev):
                                for label, form in labels:
                                    report["found"].setdefault(label, []).append(
                                        f"{form} in {where} at +{base + i - start:#x}")
                            i = window.find(pattern, i + 1)
                    prev = window[-overlap:] if overlap else b""
            except OSError as e:
                report["unreadable"].append(f"{where}: {e.strerror}")
                continue
            report["regions"] += 1
    finally:
        os.close(fd)
    return report


def main(argv):
    if len(argv) >= 3 and argv[1] == "scan":
        secrets, short = parse_dump(argv[2])
        for pid in argv[3:]:
            print(json.dumps(scan(int(pid), secrets, short)), flush=True)
        return 0
    if len(argv) == 3 and argv[1] == "hold":
        secrets, _ = parse_dump(argv[2])
        held = [raw for _, raw in secrets]  # the raw bytes, as a process holding keys would
        print(f"holding {len(held)}", flush=True)
        while True:
            time.sleep(3600)
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
