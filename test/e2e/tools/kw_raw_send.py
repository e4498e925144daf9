#!/usr/bin/python3
# SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
"""kw_raw_send: hand-crafts one UDP datagram to 127.0.0.1:PORT without connect() or a
UDP socket, as an attacker with CAP_NET_RAW would, to show the gate is not the only way
to a destination.

    kw_raw_send.py MODE PORT TEXT [CGROUP_PROCS]

MODE: hdrincl  socket(AF_INET, SOCK_RAW, IPPROTO_RAW), IP and UDP headers written here
      packet   socket(AF_PACKET, SOCK_RAW), the whole frame on "lo"
      legacy   socket(AF_INET, SOCK_PACKET) only (the kernel makes it AF_PACKET): created
      passed   a raw socket created first, then this process moves itself into the cgroup
             whose cgroup.procs is CGROUP_PROCS, then sends: a socket made elsewhere
      ping     an ICMP echo over socket(AF_INET, SOCK_DGRAM, IPPROTO_ICMP) ("ping"
             sockets: no raw socket), waiting for the reply
Exit status: 0 sent (ping: reply received), else the errno number of the failing call
(the e2e tools' convention), with "CALL: ERRNAME message" on stdout.
"""
import errno
import os
import socket
import struct
import sys

ETH_P_IP = 0x0800


def checksum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    s = (s >> 16) + (s & 0xFFFF)
    s += s >> 16
    return ~s & 0xFFFF


def ip_udp(port, payload):
    udp = struct.pack("!HHHH", 40000, port, 8 + len(payload), 0) + payload  # UDP checksum 0: none
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), os.getpid() & 0xFFFF, 0, 64, socket.IPPROTO_UDP, 0,
                      socket.inet_aton("127.0.0.1"), socket.inet_aton("127.0.0.1"))
    hdr = hdr[:10] + struct.pack("!H", checksum(hdr)) + hdr[12:]
    return hdr + udp


def frame(port, payload):
    return b"\0" * 12 + struct.pack("!H", ETH_P_IP) + ip_udp(port, payload)  # lo: zero MACs


def fail(call, e):
    print("%s: %s %s" % (call, errno.errorcode.get(e.errno, str(e.errno)), e.strerror))
    sys.exit(e.errno or 1)


def step(call, fn, *args):
    try:
        return fn(*args)
    except OSError as e:
        fail(call, e)


def main():
    mode, port, text = sys.argv[1], int(sys.argv[2]), sys.argv[3].encode()
    if mode in ("hdrincl", "passed"):
        s = step("socket(AF_INET, SOCK_RAW)", socket.socket, socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
        if mode == "passed":
            with open(sys.argv[4], "w") as f:
                f.write(str(os.getpid()))
        step("sendto", s.sendto, ip_udp(port, text), ("127.0.0.1", 0))
    elif mode == "packet":
        s = step("socket(AF_PACKET, SOCK_RAW)", socket.socket, socket.AF_PACKET, socket.SOCK_RAW,
                 socket.htons(ETH_P_IP))
        step("sendto", s.sendto, frame(port, text), ("lo", ETH_P_IP))
    elif mode == "legacy":
        step("socket(AF_INET, SOCK_PACKET)", socket.socket, socket.AF_INET, 10, socket.htons(ETH_P_IP))
        print("legacy: created")
        return
    elif mode == "ping":
        s = step("socket(AF_INET, SOCK_DGRAM, IPPROTO_ICMP)", socket.socket, socket.AF_INET, socket.SOCK_DGRAM,
                 socket.IPPROTO_ICMP)
        echo = struct.pack("!BBHHH", 8, 0, 0, 0, 1) + text
        echo = echo[:2] + struct.pack("!H", checksum(echo)) + echo[4:]
        step("sendto", s.sendto, echo, ("127.0.0.1", 0))
        s.settimeout(5)
        reply = step("recv", s.recv, 1500)
        if reply[0] != 0 or text not in reply:
            print("recv: not an echo reply")
            sys.exit(1)
    else:
        print("usage: kw_raw_send.py hdrincl|packet|legacy|passed|ping PORT TEXT [CGROUP_PROCS]")
        sys.exit(64)
    print("%s: sent" % mode)


main()
