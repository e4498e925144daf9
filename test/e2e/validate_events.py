#!/usr/bin/python3
"""Validates every line of event files against policy/events.schema.json, so that the
documented event format is the one the agent writes.

  validate_events.py SCHEMA FILE...   exit 1 on the first file with an invalid line,
                                      naming the line and the schema rule it breaks
  validate_events.py --serve SCHEMA   one request per stdin line (file paths separated
                                      by tabs), one answer per stdout line: "ok N" or
                                      "fail REASON"; the e2e runner starts it once per
                                      boot (importing jsonschema takes seconds under
                                      emulation, and every test asks)
"""
import json
import sys

import jsonschema


def check(validator, files):
    """The number of events checked, or raises ValueError naming the first bad line."""
    checked = 0
    for path in files:
        with open(path) as f:
            for number, line in enumerate(f, 1):
                try:
                    event = json.loads(line)
                except ValueError as e:
                    raise ValueError(f"{path}:{number}: not JSON ({e}): {line[:200]}") from None
                error = jsonschema.exceptions.best_match(validator.iter_errors(event))
                if error is not None:
                    where = "/".join(str(p) for p in error.path)
                    raise ValueError(f"{path}:{number}: /{where}: {error.message[:300]}: {line[:300]}")
                checked += 1
    return checked


def serve(validator):
    for request in sys.stdin:
        files = [p for p in request.rstrip("\n").split("\t") if p]
        try:
            answer = f"ok {check(validator, files)}"
        except (ValueError, OSError) as e:
            answer = "fail " + str(e).replace("\n", " ")
        print(answer, flush=True)


def main():
    serving = sys.argv[1:2] == ["--serve"]
    args = sys.argv[2:] if serving else sys.argv[1:]
    if not args or (serving and len(args) != 1):
        sys.exit("usage: validate_events.py SCHEMA FILE... | validate_events.py --serve SCHEMA")
    with open(args[0]) as f:
        validator = jsonschema.Draft202012Validator(json.load(f))
    if serving:
        serve(validator)
        return
    try:
        checked = check(validator, args[1:])
    except ValueError as e:
        sys.exit(str(e))
    print(f"{checked} events match the schema")


if __name__ == "__main__":
    main()
