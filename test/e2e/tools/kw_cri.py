#!/usr/bin/python3
# SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
"""kw_cri: a small Kubernetes CRI client. It drives containerd's CRI plugin (runtime.v1,
as containerd 1.6 serves it) the way the kubelet does: gRPC on the containerd Unix
socket, one RuntimeService call per command.

    kw_cri.py [--address unix:///PATH] [--timeout S] COMMAND ...
      version                          -> {"version", "runtime_name", ...}
      runp [--runtime-handler H] POD.json          -> {"pod_sandbox_id": ID}
      create POD_ID CONTAINER.json POD.json        -> {"container_id": ID}
      start CONTAINER_ID | rm CONTAINER_ID         -> {}
      stop CONTAINER_ID [GRACE]        StopContainer timeout: GRACE seconds before
                                       SIGKILL (default 10) -> {}
      stopp POD_ID | rmp POD_ID                    -> {}
      status [--verbose] CONTAINER_ID  -> {"id", "state", "exit_code", "reason",
                                           "message"[, "info"]}
      exec [--seconds S] CONTAINER_ID CMD...       ExecSync: CMD run in the container by
                                       its runtime -> {"stdout", "stderr", "exit_code"}
      wait CONTAINER_ID SECONDS        polls status every 0.2 s until the state is
                                       EXITED and prints it; on timeout prints the
                                       last status and exits 1

Output is one JSON line on stdout. A failure exits 1 after one stderr line,
"kw_cri: METHOD: GRPC_STATUS_CODE DETAILS" (or "kw_cri: COMMAND: WHAT" for bad input).
Every call has a deadline of --timeout seconds (default 60).

POD.json and CONTAINER.json have the kubelet/crictl shape in snake_case (crictl's
pod-config.json and container-config.json), limited to the fields in the schemas below.
A key not in a schema is an error naming its path, so a typo cannot silently drop a
field. Enums take the number or the name: NamespaceMode POD=0 CONTAINER=1 NODE=2
TARGET=3; ProfileType RuntimeDefault=0 Unconfined=1 Localhost=2. status --verbose adds
"info", the runtime's verbose info map, whose values (JSON text from containerd) are
parsed when they are JSON.

Why the messages are encoded by hand: Debian's grpc-tools is too old to generate
runtime.v1 stubs, and a few messages are all this needs. The field numbers are those of
k8s.io/cri-api pkg/apis/runtime/v1/api.proto; a comment on each schema lists them.
"""
import argparse
import json
import sys
import time
from collections import namedtuple

import grpc

SERVICE = "/runtime.v1.RuntimeService/"
KUBELET_API_VERSION = "0.1.0"  # what the kubelet sends in VersionRequest.version
MAX_MESSAGE = 16 << 20  # the kubelet's gRPC message size limit (verbose status is big)
POLL_INTERVAL = 0.2
DEFAULT_STOP_GRACE = 10

WIRE_VARINT, WIRE_FIXED64, WIRE_LEN, WIRE_FIXED32 = 0, 1, 2, 5
UINT64_MASK = (1 << 64) - 1

# NamespaceMode: POD=0 CONTAINER=1 NODE=2 TARGET=3
NAMESPACE_MODE = {"POD": 0, "CONTAINER": 1, "NODE": 2, "TARGET": 3}
# SecurityProfile.ProfileType: RuntimeDefault=0 Unconfined=1 Localhost=2
PROFILE_TYPE = {"RuntimeDefault": 0, "Unconfined": 1, "Localhost": 2}
# ContainerState: CONTAINER_CREATED=0 CONTAINER_RUNNING=1 CONTAINER_EXITED=2
# CONTAINER_UNKNOWN=3 (printed without the prefix)
CONTAINER_STATE = ("CREATED", "RUNNING", "EXITED", "UNKNOWN")


class Failure(Exception):
    """One failed step: printed as "kw_cri: WHERE: WHAT", exit 1."""

    def __init__(self, where, what):
        super().__init__(f"{where}: {what}")


# A schema maps each JSON key to its Field: kind is string, uint32, int64, bool, enum
# (arg: the name -> number dict), message (arg: its schema), strings (repeated string),
# messages (repeated message, arg: its schema) or map (map<string, string>).
Field = namedtuple("Field", "number kind arg", defaults=(None,))

# KeyValue: key=1, value=2 (also the entry of every map<string, string>)
KEY_VALUE = {"key": Field(1, "string"), "value": Field(2, "string")}
# Int64Value: value=1
INT64_VALUE = {"value": Field(1, "int64")}
# NamespaceOption: network=1, pid=2, ipc=3
NAMESPACE_OPTION = {
    "network": Field(1, "enum", NAMESPACE_MODE),
    "pid": Field(2, "enum", NAMESPACE_MODE),
    "ipc": Field(3, "enum", NAMESPACE_MODE),
}
# SecurityProfile: profile_type=1, localhost_ref=2
SECURITY_PROFILE = {
    "profile_type": Field(1, "enum", PROFILE_TYPE),
    "localhost_ref": Field(2, "string"),
}
# PodSandboxMetadata: name=1, uid=2, namespace=3, attempt=4
POD_SANDBOX_METADATA = {
    "name": Field(1, "string"),
    "uid": Field(2, "string"),
    "namespace": Field(3, "string"),
    "attempt": Field(4, "uint32"),
}
# LinuxSandboxSecurityContext: namespace_options=1, seccomp=9
LINUX_SANDBOX_SECURITY_CONTEXT = {
    "namespace_options": Field(1, "message", NAMESPACE_OPTION),
    "seccomp": Field(9, "message", SECURITY_PROFILE),
}
# LinuxPodSandboxConfig: cgroup_parent=1, security_context=2
LINUX_POD_SANDBOX_CONFIG = {
    "cgroup_parent": Field(1, "string"),
    "security_context": Field(2, "message", LINUX_SANDBOX_SECURITY_CONTEXT),
}
# PodSandboxConfig: metadata=1, hostname=2, log_directory=3, labels=6, annotations=7,
# linux=8
POD_SANDBOX_CONFIG = {
    "metadata": Field(1, "message", POD_SANDBOX_METADATA),
    "hostname": Field(2, "string"),
    "log_directory": Field(3, "string"),
    "labels": Field(6, "map"),
    "annotations": Field(7, "map"),
    "linux": Field(8, "message", LINUX_POD_SANDBOX_CONFIG),
}
# ContainerMetadata: name=1, attempt=2
CONTAINER_METADATA = {"name": Field(1, "string"), "attempt": Field(2, "uint32")}
# ImageSpec: image=1
IMAGE_SPEC = {"image": Field(1, "string")}
# Capability: add_capabilities=1, drop_capabilities=2
CAPABILITY = {
    "add_capabilities": Field(1, "strings"),
    "drop_capabilities": Field(2, "strings"),
}
# LinuxContainerSecurityContext: capabilities=1, namespace_options=3, run_as_user=5,
# run_as_group=12, seccomp=15
LINUX_CONTAINER_SECURITY_CONTEXT = {
    "capabilities": Field(1, "message", CAPABILITY),
    "namespace_options": Field(3, "message", NAMESPACE_OPTION),
    "run_as_user": Field(5, "message", INT64_VALUE),
    "run_as_group": Field(12, "message", INT64_VALUE),
    "seccomp": Field(15, "message", SECURITY_PROFILE),
}
# LinuxContainerConfig: security_context=2
LINUX_CONTAINER_CONFIG = {
    "security_context": Field(2, "message", LINUX_CONTAINER_SECURITY_CONTEXT),
}
# ContainerConfig: metadata=1, image=2, command=3, args=4, envs=6, labels=9,
# annotations=10, log_path=11, linux=15
CONTAINER_CONFIG = {
    "metadata": Field(1, "message", CONTAINER_METADATA),
    "image": Field(2, "message", IMAGE_SPEC),
    "command": Field(3, "strings"),
    "args": Field(4, "strings"),
    "envs": Field(6, "messages", KEY_VALUE),
    "labels": Field(9, "map"),
    "annotations": Field(10, "map"),
    "log_path": Field(11, "string"),
    "linux": Field(15, "message", LINUX_CONTAINER_CONFIG),
}
# VersionRequest: version=1
VERSION_REQUEST = {"version": Field(1, "string")}
# RunPodSandboxRequest: config=1, runtime_handler=2
RUN_POD_SANDBOX_REQUEST = {
    "config": Field(1, "message", POD_SANDBOX_CONFIG),
    "runtime_handler": Field(2, "string"),
}
# CreateContainerRequest: pod_sandbox_id=1, config=2, sandbox_config=3
CREATE_CONTAINER_REQUEST = {
    "pod_sandbox_id": Field(1, "string"),
    "config": Field(2, "message", CONTAINER_CONFIG),
    "sandbox_config": Field(3, "message", POD_SANDBOX_CONFIG),
}
# StartContainerRequest, RemoveContainerRequest: container_id=1
CONTAINER_ID_REQUEST = {"container_id": Field(1, "string")}
# StopContainerRequest: container_id=1, timeout=2
STOP_CONTAINER_REQUEST = {
    "container_id": Field(1, "string"),
    "timeout": Field(2, "int64"),
}
# StopPodSandboxRequest, RemovePodSandboxRequest: pod_sandbox_id=1
POD_SANDBOX_ID_REQUEST = {"pod_sandbox_id": Field(1, "string")}
# ContainerStatusRequest: container_id=1, verbose=2
CONTAINER_STATUS_REQUEST = {
    "container_id": Field(1, "string"),
    "verbose": Field(2, "bool"),
}
# ExecSyncRequest: container_id=1, cmd=2, timeout=3 (seconds)
EXEC_SYNC_REQUEST = {
    "container_id": Field(1, "string"),
    "cmd": Field(2, "strings"),
    "timeout": Field(3, "int64"),
}

# Decoded responses, fields picked by number:
# VersionResponse: version=1, runtime_name=2, runtime_version=3, runtime_api_version=4
VERSION_RESPONSE_STRINGS = {
    "version": 1,
    "runtime_name": 2,
    "runtime_version": 3,
    "runtime_api_version": 4,
}
# RunPodSandboxResponse: pod_sandbox_id=1; CreateContainerResponse: container_id=1
ID_RESPONSE_FIELD = 1
# ContainerStatusResponse: status=1, info=2 (map<string, string>)
STATUS_RESPONSE_STATUS, STATUS_RESPONSE_INFO = 1, 2
# ContainerStatus: id=1, state=3, exit_code=7 (int32), reason=10, message=11
CONTAINER_STATUS_ID, CONTAINER_STATUS_STATE, CONTAINER_STATUS_EXIT_CODE = 1, 3, 7
CONTAINER_STATUS_REASON, CONTAINER_STATUS_MESSAGE = 10, 11
# ExecSyncResponse: stdout=1, stderr=2 (bytes), exit_code=3 (int32)
EXEC_SYNC_STDOUT, EXEC_SYNC_STDERR, EXEC_SYNC_EXIT_CODE = 1, 2, 3


# --- encoding ---

def varint(value):
    """The base-128 varint of value; a negative int64 as its 64-bit two's complement."""
    value &= UINT64_MASK
    out = bytearray()
    while value > 0x7F:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    out.append(value)
    return bytes(out)


def tag(number, wire):
    return varint(number << 3 | wire)


def length_delimited(number, payload):
    return tag(number, WIRE_LEN) + varint(len(payload)) + payload


def check_int(value, low, high, path):
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{path}: want an integer in [{low}, {high}], got {value!r}")
    return value


def check_str(value, path):
    if not isinstance(value, str):
        raise ValueError(f"{path}: want a string, got {value!r}")
    return value


def check_list(value, path):
    if not isinstance(value, list):
        raise ValueError(f"{path}: want a list, got {value!r}")
    return value


def enum_number(names, value, path):
    """An enum value given by number or by name."""
    if isinstance(value, str) and value in names:
        return names[value]
    if isinstance(value, int) and not isinstance(value, bool) and value in names.values():
        return value
    raise ValueError(f"{path}: want one of {names}, got {value!r}")


def encode_scalar(number, kind, arg, value, path):
    """One string/integer/bool/enum field; proto3 defaults (0, "", false) are left out."""
    if kind == "string":
        data = check_str(value, path).encode()
        return length_delimited(number, data) if data else b""
    if kind == "bool":
        if not isinstance(value, bool):
            raise ValueError(f"{path}: want true or false, got {value!r}")
        number_value = int(value)
    elif kind == "uint32":
        number_value = check_int(value, 0, (1 << 32) - 1, path)
    elif kind == "int64":
        number_value = check_int(value, -(1 << 63), (1 << 63) - 1, path)
    else:
        number_value = enum_number(arg, value, path)
    return tag(number, WIRE_VARINT) + varint(number_value) if number_value else b""


def child(path, key):
    return f"{path}.{key}" if path else key


def encode_field(field, value, path):
    number, kind, arg = field
    if kind == "message":
        return length_delimited(number, encode_message(arg, value, path))
    if kind == "messages":
        return b"".join(length_delimited(number, encode_message(arg, item, f"{path}[{i}]"))
                        for i, item in enumerate(check_list(value, path)))
    if kind == "strings":
        return b"".join(length_delimited(number, check_str(item, f"{path}[{i}]").encode())
                        for i, item in enumerate(check_list(value, path)))
    if kind == "map":
        if not isinstance(value, dict):
            raise ValueError(f"{path}: want an object of strings, got {value!r}")
        return b"".join(
            length_delimited(number, encode_message(
                KEY_VALUE, {"key": key, "value": item}, child(path, key)))
            for key, item in value.items())
    return encode_scalar(number, kind, arg, value, path)


def encode_message(schema, obj, path=""):
    """obj (a JSON object) as the protobuf message schema describes, fields in number
    order; a key the schema lacks is an error naming its path."""
    if not isinstance(obj, dict):
        raise ValueError(f"{path or '.'}: want an object, got {obj!r}")
    for key in obj:
        if key not in schema:
            raise ValueError(f"unknown key {child(path, key)}")
    return b"".join(encode_field(field, obj[key], child(path, key))
                    for key, field in sorted(schema.items(), key=lambda kv: kv[1].number)
                    if key in obj)


# --- decoding: a generic wire decoder, then fields picked by number ---

def read_varint(buf, pos):
    value = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise ValueError("truncated or overlong varint")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos


def decode_fields(buf):
    """One message as {field number: [values]}: ints for varint and fixed fields, bytes
    for length-delimited ones, in wire order."""
    fields = {}
    pos = 0
    while pos < len(buf):
        key, pos = read_varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == WIRE_VARINT:
            value, pos = read_varint(buf, pos)
        elif wire == WIRE_LEN:
            size, pos = read_varint(buf, pos)
            value, pos = bytes(buf[pos:pos + size]), pos + size
        elif wire in (WIRE_FIXED64, WIRE_FIXED32):
            size = 8 if wire == WIRE_FIXED64 else 4
            value, pos = int.from_bytes(buf[pos:pos + size], "little"), pos + size
        else:
            raise ValueError(f"field {number}: unsupported wire type {wire}")
        if pos > len(buf):
            raise ValueError(f"field {number}: truncated")
        fields.setdefault(number, []).append(value)
    return fields


def scalar(fields, number, kind, default):
    """The last value of a singular field (protobuf's last-one-wins)."""
    value = fields.get(number, [default])[-1]
    if not isinstance(value, kind):
        raise ValueError(f"field {number}: unexpected wire type")
    return value


def text(fields, number):
    return scalar(fields, number, bytes, b"").decode()


def signed(fields, number):
    """An int32/int64 varint field (negative values arrive as 64-bit two's complement)."""
    value = scalar(fields, number, int, 0)
    return value - (1 << 64) if value >> 63 else value


def embedded(fields, number):
    """Every occurrence of a length-delimited field (a message or a map entry)."""
    values = fields.get(number, [])
    if not all(isinstance(value, bytes) for value in values):
        raise ValueError(f"field {number}: unexpected wire type")
    return values


def submessage(fields, number):
    """An embedded message; repeated occurrences merge, which concatenation does."""
    return decode_fields(b"".join(embedded(fields, number)))


def string_map(fields, number):
    entries = map(decode_fields, embedded(fields, number))
    return {text(entry, 1): text(entry, 2) for entry in entries}


def json_or_text(value):
    try:
        return json.loads(value)
    except ValueError:
        return value


def decode_status(buf):
    """ContainerStatusResponse -> {"id", "state", "exit_code", "reason", "message"} and
    "info" when the runtime sent it (verbose)."""
    response = decode_fields(buf)
    status = submessage(response, STATUS_RESPONSE_STATUS)
    state = scalar(status, CONTAINER_STATUS_STATE, int, 0)
    out = {
        "id": text(status, CONTAINER_STATUS_ID),
        "state": CONTAINER_STATE[state] if state < len(CONTAINER_STATE) else str(state),
        "exit_code": signed(status, CONTAINER_STATUS_EXIT_CODE),
        "reason": text(status, CONTAINER_STATUS_REASON),
        "message": text(status, CONTAINER_STATUS_MESSAGE),
    }
    info = string_map(response, STATUS_RESPONSE_INFO)
    if info:
        out["info"] = {key: json_or_text(value) for key, value in info.items()}
    return out


def decode_version(buf):
    response = decode_fields(buf)
    return {name: text(response, number) for name, number in VERSION_RESPONSE_STRINGS.items()}


def decode_id(name):
    return lambda buf: {name: text(decode_fields(buf), ID_RESPONSE_FIELD)}


def decode_exec_sync(buf):
    response = decode_fields(buf)
    return {"stdout": scalar(response, EXEC_SYNC_STDOUT, bytes, b"").decode(errors="replace"),
            "stderr": scalar(response, EXEC_SYNC_STDERR, bytes, b"").decode(errors="replace"),
            "exit_code": signed(response, EXEC_SYNC_EXIT_CODE)}


def decode_empty(_buf):
    return {}


# --- gRPC ---

def call(args, method, schema, request, decode):
    """One RuntimeService call with a deadline; returns the decoded response."""
    try:
        body = encode_message(schema, request)
    except ValueError as err:
        raise Failure(args.command, err) from None
    options = [("grpc.max_receive_message_length", MAX_MESSAGE),
               ("grpc.max_send_message_length", MAX_MESSAGE)]
    with grpc.insecure_channel(args.address, options=options) as channel:
        stub = channel.unary_unary(SERVICE + method, request_serializer=None,
                                   response_deserializer=None)
        try:
            reply = stub(body, timeout=args.timeout)
        except grpc.RpcError as err:
            raise Failure(method, f"{err.code().name} {err.details()}") from None
    try:
        return decode(reply)
    except ValueError as err:
        raise Failure(method, f"bad response: {err}") from None


def load_config(args, path, schema):
    """A JSON config file, checked against schema so that an error names the file and
    the key path in it."""
    try:
        with open(path, encoding="utf-8") as f:
            config = json.load(f)
        encode_message(schema, config)
    except (OSError, ValueError) as err:
        raise Failure(args.command, f"{path}: {err}") from None
    return config


def container_status(args, verbose):
    return call(args, "ContainerStatus", CONTAINER_STATUS_REQUEST,
                {"container_id": args.container_id, "verbose": verbose}, decode_status)


# --- commands ---

def cmd_version(args):
    return call(args, "Version", VERSION_REQUEST, {"version": KUBELET_API_VERSION},
                decode_version)


def cmd_runp(args):
    request = {"config": load_config(args, args.pod, POD_SANDBOX_CONFIG),
               "runtime_handler": args.runtime_handler}
    return call(args, "RunPodSandbox", RUN_POD_SANDBOX_REQUEST, request,
                decode_id("pod_sandbox_id"))


def cmd_create(args):
    request = {"pod_sandbox_id": args.pod_id,
               "config": load_config(args, args.container, CONTAINER_CONFIG),
               "sandbox_config": load_config(args, args.pod, POD_SANDBOX_CONFIG)}
    return call(args, "CreateContainer", CREATE_CONTAINER_REQUEST, request,
                decode_id("container_id"))


def cmd_start(args):
    return call(args, "StartContainer", CONTAINER_ID_REQUEST,
                {"container_id": args.container_id}, decode_empty)


def cmd_stop(args):
    return call(args, "StopContainer", STOP_CONTAINER_REQUEST,
                {"container_id": args.container_id, "timeout": args.grace}, decode_empty)


def cmd_rm(args):
    return call(args, "RemoveContainer", CONTAINER_ID_REQUEST,
                {"container_id": args.container_id}, decode_empty)


def cmd_stopp(args):
    return call(args, "StopPodSandbox", POD_SANDBOX_ID_REQUEST,
                {"pod_sandbox_id": args.pod_id}, decode_empty)


def cmd_rmp(args):
    return call(args, "RemovePodSandbox", POD_SANDBOX_ID_REQUEST,
                {"pod_sandbox_id": args.pod_id}, decode_empty)


def cmd_status(args):
    return container_status(args, args.verbose)


def cmd_exec(args):
    """ExecSync: runs CMD in the container through its runtime (the exec of kubectl exec
    and of exec probes); the result carries the command's exit code."""
    if not args.cmd:
        raise Failure("exec", "no command to run")
    return call(args, "ExecSync", EXEC_SYNC_REQUEST,
                {"container_id": args.container_id, "cmd": args.cmd,
                 "timeout": args.seconds}, decode_exec_sync)


def cmd_wait(args):
    deadline = time.monotonic() + args.seconds
    while True:
        status = container_status(args, False)
        if status["state"] == "EXITED":
            return status
        if time.monotonic() >= deadline:
            print(json.dumps(status))
            raise Failure("wait", f"{args.container_id} still {status['state']} "
                                  f"after {args.seconds:g} s")
        time.sleep(POLL_INTERVAL)


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="kw_cri.py", description="A small CRI (runtime.v1) client for containerd.")
    parser.add_argument("--address", default="unix:///run/containerd/containerd.sock")
    parser.add_argument("--timeout", type=float, default=60.0,
                        help="deadline of each gRPC call, seconds")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("version").set_defaults(run=cmd_version)
    runp = commands.add_parser("runp")
    runp.add_argument("--runtime-handler", default="")
    runp.add_argument("pod", metavar="POD.json")
    runp.set_defaults(run=cmd_runp)
    create = commands.add_parser("create")
    create.add_argument("pod_id", metavar="POD_ID")
    create.add_argument("container", metavar="CONTAINER.json")
    create.add_argument("pod", metavar="POD.json")
    create.set_defaults(run=cmd_create)
    for name, run in (("start", cmd_start), ("rm", cmd_rm)):
        sub = commands.add_parser(name)
        sub.add_argument("container_id", metavar="CONTAINER_ID")
        sub.set_defaults(run=run)
    stop = commands.add_parser("stop")
    stop.add_argument("container_id", metavar="CONTAINER_ID")
    stop.add_argument("grace", metavar="TIMEOUT", type=int, nargs="?",
                      default=DEFAULT_STOP_GRACE)
    stop.set_defaults(run=cmd_stop)
    for name, run in (("stopp", cmd_stopp), ("rmp", cmd_rmp)):
        sub = commands.add_parser(name)
        sub.add_argument("pod_id", metavar="POD_ID")
        sub.set_defaults(run=run)
    status = commands.add_parser("status")
    status.add_argument("--verbose", action="store_true")
    status.add_argument("container_id", metavar="CONTAINER_ID")
    status.set_defaults(run=cmd_status)
    execs = commands.add_parser("exec")
    execs.add_argument("--seconds", type=int, default=30,
                       help="how long the runtime lets the command run")
    execs.add_argument("container_id", metavar="CONTAINER_ID")
    execs.add_argument("cmd", metavar="CMD", nargs=argparse.REMAINDER)
    execs.set_defaults(run=cmd_exec)
    wait = commands.add_parser("wait")
    wait.add_argument("container_id", metavar="CONTAINER_ID")
    wait.add_argument("seconds", metavar="SECONDS", type=float)
    wait.set_defaults(run=cmd_wait)
    return parser.parse_args(argv)


def main(argv):
    args = parse_args(argv)
    try:
        result = args.run(args)
    except Failure as err:
        print(f"kw_cri: {err}", file=sys.stderr)
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
