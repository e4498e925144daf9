#!/usr/bin/python3
"""Validates every line of the given event files against policy/events.schema.json,
so that the documented event format is the one the agent writes. Exit 1 on the first
file with an invalid line, naming the line and the schema rule it breaks."""
import json
import sys

import jsonschema

schema_path, files = sys.argv[1], sys.argv[2:]
with open(schema_path) as f:
    validator = jsonschema.Draft202012Validator(json.load(f))
checked = 0
for path in files:
    with open(path) as f:
        for number, line in enumerate(f, 1):
            try:
                event = json.loads(line)
            except ValueError as e:
                sys.exit(f"{path}:{number}: not JSON ({e}): {line[:200]}")
            error = jsonschema.exceptions.best_match(validator.iter_errors(event))
            if error is not None:
                where = "/".join(str(p) for p in error.path)
                sys.exit(f"{path}:{number}: /{where}: {error.message[:300]}: {line[:300]}")
            checked += 1
print(f"{checked} events match the schema")
