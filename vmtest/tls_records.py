#!/usr/bin/env python3
"""Reads a pcap of TCP connections (tcpdump -w) and shows each direction's payload as TLS
records: content type, version, length (with --summary: the count of each type). Exits 1
if a payload is not a sequence of TLS records, or if PLAINTEXT (bytes the app sent)
appears anywhere on the wire.

    tls_records.py [--summary] PCAP PLAINTEXT"""
import struct
import sys

TYPES = {20: "change_cipher_spec", 21: "alert", 22: "handshake", 23: "application_data"}


def packets(path):
    with open(path, "rb") as f:
        data = f.read()
    magic = struct.unpack("<I", data[:4])[0]
    endian = "<" if magic in (0xA1B2C3D4, 0xA1B23C4D) else ">"
    linktype = struct.unpack(endian + "I", data[20:24])[0]
    at = 24
    while at + 16 <= len(data):
        _, _, incl, _ = struct.unpack(endian + "IIII", data[at:at + 16])
        yield linktype, data[at + 16:at + 16 + incl]
        at += 16 + incl


def tcp_payload(linktype, frame):
    off = 14 if linktype == 1 else 16 if linktype == 113 else 4 if linktype == 0 else None
    if off is None:
        return None
    ip = frame[off:]
    if not ip:
        return None
    if ip[0] >> 4 == 4:
        ihl = (ip[0] & 15) * 4
        total = struct.unpack(">H", ip[2:4])[0]
        proto, src, dst, seg = ip[9], ip[12:16], ip[16:20], ip[ihl:total]
    else:
        proto, src, dst, seg = ip[6], ip[8:24], ip[24:40], ip[40:]
    if proto != 6:
        return None
    sport, dport, seq = struct.unpack(">HHI", seg[:8])
    return (sport, dport), seq, seg[(seg[12] >> 4) * 4:]


def reassemble(segs):
    """The byte stream of one direction from its segments by offset. Retransmissions and
    window probes may cover a range again with other boundaries: each byte is taken once.
    A hole (a segment the capture lacks) ends the stream there: returns (stream, whole)."""
    stream, end = bytearray(), 0
    for offset in sorted(segs):
        data = segs[offset]
        if offset > end:
            return bytes(stream), False
        if offset + len(data) > end:
            stream += data[end - offset:]
            end = offset + len(data)
    return bytes(stream), True


def main():
    args = sys.argv[1:]
    summary = args[:1] == ["--summary"]
    if summary:
        args = args[1:]
    path, plaintext = args[0], args[1].encode()
    streams = {}  # direction -> {offset: payload}, offsets relative to the first payload
    first = {}  # direction -> the sequence number of the first payload seen
    for linktype, frame in packets(path):
        got = tcp_payload(linktype, frame)
        if got and got[2]:
            base = first.setdefault(got[0], got[1])
            offset = (got[1] - base) % (1 << 32)
            if offset >= 1 << 31:
                continue  # before the first payload seen: a retransmission of nothing we need
            segs = streams.setdefault(got[0], {})
            if len(got[2]) > len(segs.get(offset, b"")):
                segs[offset] = got[2]
    ok = True
    for (sport, dport), segs in sorted(streams.items()):
        stream, captured = reassemble(segs)
        records, at = [], 0
        while at + 5 <= len(stream):
            ctype, ver, length = stream[at], struct.unpack(">H", stream[at + 1:at + 3])[0], struct.unpack(">H", stream[at + 3:at + 5])[0]
            if ctype not in TYPES or ver not in (0x0301, 0x0303):
                break
            records.append(f"{TYPES[ctype]}({length})")
            at += 5 + length
        whole = at == len(stream)
        ok &= whole and captured
        if summary:
            counts = {}
            for r in records:
                kind = r.split("(")[0]
                counts[kind] = counts.get(kind, 0) + 1
            shown = " ".join(f"{kind} {n}" for kind, n in counts.items())
        else:
            shown = " ".join(records)
        print(f"  {sport} -> {dport}: {len(stream)} bytes, {len(records)} TLS records"
              f"{'' if whole else ', NOT all TLS records'}{'' if captured else ', a hole in the capture'}: {shown}")
        if plaintext in stream:
            print(f"  the plaintext '{plaintext.decode()}' is on the wire ({sport} -> {dport})")
            ok = False
    if not streams:
        print("  no TCP payload was captured")
        ok = False
    elif ok:
        print(f"  every byte on the wire is a TLS record; '{plaintext.decode()}' appears nowhere")
    sys.exit(0 if ok else 1)


main()
