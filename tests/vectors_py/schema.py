#!/usr/bin/env python3
"""Validates conformance vectors against tests/vectors/schema/vectors.schema.json.

A JSON Schema validator for the subset of draft 2020-12 the vector schema uses, in the standard
library only (CI has python3 everywhere, not pip). It refuses a schema keyword it does not know,
so the schema cannot grow a rule this validator silently skips.

    python3 tests/vectors_py/schema.py FILE...     prints "FILE: ok" or "FILE: invalid: WHY"
                                                   for each file; exits 1 if any is invalid
"""
import json
import re
import sys
from pathlib import Path

SCHEMA = Path(__file__).resolve().parent.parent / "vectors" / "schema" / "vectors.schema.json"
KNOWN = {"$schema", "title", "description", "$defs", "$ref", "type", "properties", "required",
         "additionalProperties", "enum", "const", "pattern", "minimum", "maximum", "minLength",
         "oneOf", "allOf", "not", "if", "then"}
TYPES = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}


class Invalid(Exception):
    pass


def same(a, b):
    """JSON equality: 1 is not true, as in JSON Schema's const and enum."""
    return type(a) is type(b) and a == b if isinstance(a, bool) or isinstance(b, bool) else a == b


def check(schema, value, root, path="$"):
    if schema is True:
        return
    if schema is False:
        raise Invalid(f"{path}: not allowed here")
    unknown = set(schema) - KNOWN
    if unknown:
        raise SystemExit(f"schema.py: schema keyword(s) {sorted(unknown)} not supported; extend schema.py")
    if "$ref" in schema:
        ref = schema["$ref"]
        assert ref.startswith("#/$defs/"), ref
        check(root["$defs"][ref[len("#/$defs/"):]], value, root, path)
    if "type" in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(TYPES[t](value) for t in types):
            raise Invalid(f"{path}: {json.dumps(value)[:60]} is not of type {' or '.join(types)}")
    if "const" in schema and not same(schema["const"], value):
        raise Invalid(f"{path}: must be {json.dumps(schema['const'])}")
    if "enum" in schema and not any(same(e, value) for e in schema["enum"]):
        raise Invalid(f"{path}: {json.dumps(value)[:60]} is not one of {schema['enum']}")
    if isinstance(value, str):
        if "pattern" in schema and not re.search(schema["pattern"], value):
            raise Invalid(f"{path}: {value[:60]!r} does not match {schema['pattern']}")
        if len(value) < schema.get("minLength", 0):
            raise Invalid(f"{path}: shorter than {schema['minLength']}")
    if TYPES["number"](value):
        if "minimum" in schema and value < schema["minimum"]:
            raise Invalid(f"{path}: {value} is below {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            raise Invalid(f"{path}: {value} is above {schema['maximum']}")
    if isinstance(value, dict):
        for k in schema.get("required", []):
            if k not in value:
                raise Invalid(f"{path}: missing required key {k!r}")
        props = schema.get("properties", {})
        for k, v in value.items():
            if k in props:
                check(props[k], v, root, f"{path}.{k}")
            elif schema.get("additionalProperties", True) is False:
                raise Invalid(f"{path}: unknown key {k!r}")
    for sub in schema.get("allOf", []):
        check(sub, value, root, path)
    if "oneOf" in schema:
        errors = []
        for sub in schema["oneOf"]:
            try:
                check(sub, value, root, path)
            except Invalid as e:
                errors.append(str(e))
        if len(schema["oneOf"]) - len(errors) != 1:
            matched = len(schema["oneOf"]) - len(errors)
            raise Invalid(f"{path}: matches {matched} of the oneOf alternatives, not exactly 1"
                          + (f" ({'; '.join(errors)})" if matched == 0 else ""))
    if "not" in schema:
        try:
            check(schema["not"], value, root, path)
        except Invalid:
            pass
        else:
            raise Invalid(f"{path}: matches a schema it must not ({json.dumps(schema['not'])})")
    if "if" in schema:
        try:
            check(schema["if"], value, root, path)
        except Invalid:
            pass
        else:
            check(schema.get("then", True), value, root, path)


def validate(value, schema=None):
    """None when `value` is a valid vector, else the reason."""
    schema = schema or json.loads(SCHEMA.read_text())
    try:
        check(schema, value, schema)
    except Invalid as e:
        return str(e)
    return None


def main(files):
    schema = json.loads(SCHEMA.read_text())
    bad = 0
    for f in files:
        try:
            why = validate(json.loads(Path(f).read_text(encoding="utf-8")), schema)
        except ValueError as e:
            why = f"not JSON: {e}"
        print(f"{f}: ok" if why is None else f"{f}: invalid: {why}")
        bad += why is not None
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
