#!/usr/bin/env python3
"""Random inputs judged by check.py, for tests/differential.rs to judge again with the Rust code.

Two implementations written apart disagree exactly where protocol.md leaves a choice open, so
random mutations of a valid record (values swapped for integers written every way, timestamps
near the form, wrong types, arrays for objects, deep nesting, duplicates...), random lease-file
slots and random timestamps are classified here and printed as JSON; the Rust test fails on any
input where the two disagree. Deterministic for a given seed.

    python3 tests/vectors_py/differential.py SEED COUNT > cases.json
"""
import copy
import json
import random
import sys
import time
import zlib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import check  # noqa: E402

BASE = json.loads((check.VECTORS / "r7-lease-fresh-active.json").read_text())["record"]
BASE.update(meta={"k": "v"}, unique="u1",
            late=[{"at": "2026-11-24T10:00:01.000Z", "epoch": 1, "status": "succeeded", "reason": "exited",
                   "exit": {"code": 0}, "progress": {"count": 1}, "note": "n"}])
BASE["progress"]["rejected"] = 2
VALUES = ["0", "-1", "1", "2", "1.0", "1e3", "1E3", "-0", "9007199254740991", "9007199254740992", "2147483647",
          "2147483648", "-2147483648", "-2147483649", "18446744073709551616", "1e400", "1e-400", "true", "false",
          "null", '"x"', '""', "[]", "{}", "[1]", '["a"]', '"2026-11-24T10:00:00Z"', '"2026-11-24T10:00:00.1Z"',
          '"2026-11-24T10:00:00.1234567890Z"', '"2026-11-24T10:00:60Z"', '"2026-02-29T10:00:00Z"',
          '"2024-02-29T10:00:00Z"', '"1970-01-01T00:00:00Z"', '"1969-12-31T23:59:59Z"', '"2026-11-24T10:00:00"',
          '"running"', '"starting"', '"lost"', '"exited"', '"worker-exited"', '{"code": 1}', '{"signal": 9}',
          '{"code": 1, "signal": 2}', '{"code": "1"}', '{"message": null}', '{"count": 3, "at": null}',
          '{"pid": 1, "start": "s", "pgid": 1}', '"\\u0000"', '"\\ud800"', '"\\ud83d\\ude00"', "1.5", "0.0",
          '{"at": "2026-11-24T10:00:00Z", "epoch": 1}', '[{"at": "2026-11-24T10:00:00Z", "epoch": 1}]',
          '"job-2"', '"a b"', "[[[[[[[[[[]]]]]]]]]]", '"job-1\\n"']
MARK = "@@MARK@@"


def paths(v, p=()):
    if isinstance(v, dict):
        for k, x in v.items():
            yield p + (k,)
            yield from paths(x, p + (k,))
    elif isinstance(v, list):
        for i, x in enumerate(v):
            yield p + (i,)
            yield from paths(x, p + (i,))


def record_case(rng, n):
    r = copy.deepcopy(BASE)
    vals = []
    for _ in range(rng.choice([1, 1, 1, 2])):
        p = rng.choice(list(paths(r)))
        o = r
        for k in p[:-1]:
            o = o[k]
        op = rng.random()
        if op < 0.15 and isinstance(o, dict):
            del o[p[-1]]
        elif op < 0.25 and isinstance(o, dict):
            o[f"zz{n}"] = MARK
            vals.append(rng.choice(VALUES))
        else:
            o[p[-1]] = MARK
            vals.append(rng.choice(VALUES))
    t = json.dumps(r)
    for val in vals:
        t = t.replace(json.dumps(MARK), val, 1)
    if rng.random() < 0.05:
        t = t.replace('"status": ', '"status": "succeeded", "status": ', 1)
    try:
        rec = check.parse_record(t.encode())
        got = ["ok", rec["status"], rec["lease"]["epoch"], rec["lease"]["renewed_at"],
               rec["lease"]["renewed_mono_ms"], rec["progress"]["count"], rec["progress"]["at"], rec["created_at"]]
    except check.Corrupt:
        got = ["corrupt"]
    except check.Unsupported:
        got = ["unsupported"]
    return {"record": t, "python": got}


def slot_case(rng):
    f = ["tether-lease-1", "5", "1", "59000", "1795514409000", "12", "-1"]
    pieces = list("0123456789 -+aAfF.\tx") + ["00", "9007199254740991", "9007199254740992", "-0", "\u0662"]
    for _ in range(rng.choice([0, 1, 1, 2])):
        i = rng.randrange(1, 7)
        f[i] = rng.choice([rng.choice(pieces), f[i] + rng.choice(pieces), rng.choice(pieces) + f[i]])
    body = " ".join(f)
    crc = f"{zlib.crc32(body.encode()):08x}"
    crc = crc if rng.random() < 0.9 else rng.choice(["0000000g", crc.upper(), crc[:7]])
    s = (f"{body} {crc}".ljust(127) + "\n") if len(body) < 118 else body[:127] + "\n"
    if rng.random() < 0.05:
        s = s[:-2] + rng.choice(["\t", "x", "\u00e9"]) + "\n"
    v = check.slot(s.encode())
    got = None if v is None else [v["seq"], v["epoch"], v["mono"], v["wall"], v["beats"], v["beat_at"]]
    return {"slot": s, "python": got}


def timestamp_case(rng):
    t = list("2026-11-24T10:00:00.123Z")
    for _ in range(rng.choice([1, 1, 2])):
        t[rng.randrange(len(t))] = rng.choice(list("0123456789TZtz:.-+ ") + ["", "60", "1234567890", "29", "\u0662"])
    t = "".join(t)
    try:
        got = check.timestamp_ms(t, "t")
    except check.Corrupt:
        got = None
    return {"timestamp": t, "python": got}


def verdict_case(rng):
    """Valid records and readers on the boundaries of 7.3 and 7.4."""
    r = copy.deepcopy(BASE)
    r["status"] = rng.choice(["running", "running", "starting", "succeeded", "lost"])
    iv = rng.choice([1, 2, 1000, 5000])
    ttl = rng.choice([2 * iv, 2 * iv + 1, 10000, 60000])
    mono0 = rng.choice([0, 1000, 50000, 2**53 - 1])
    t0 = 1795514400000 + rng.choice([0, -1, 1, 3600000, -3600000])
    r["lease"].update(interval_ms=iv, ttl_ms=ttl, renewed_mono_ms=mono0, renewed_at=fmt(t0))
    r["holder"]["time_ns"] = rng.choice([None, "T1"])
    r["holder"]["pid_ns"] = rng.choice([None, "P1", "P1", "P1"])
    reader = {"boot_id": rng.choice(["B1", "B1", "B2"]), "host": rng.choice(["h1", "h1", "h2"]),
              "time_ns": rng.choice([None, None, "T1"]), "pid_ns": rng.choice([None, "P1", "P1", "P2"]),
              "now_wall": fmt(1795514400000 + rng.choice([0, ttl, ttl + 29999, ttl + 30000, ttl + 30001, -40000, 3600000])),
              "now_mono_ms": max(0, mono0 + rng.choice([0, ttl, ttl + 1, -1, 5000, -5000, 10**6]))}
    probe = rng.choice([{"holder": "gone"}, {"holder": "alive", "start": "linux:100"},
                        {"holder": "alive", "start": None}, {"holder": "alive", "start": "linux:9"}])
    rec = check.parse_record(json.dumps(r).encode())
    got = list(check.verdict(rec, probe, dict(reader, now_wall=check.timestamp_ms(reader["now_wall"], "now"))))
    return {"verdict": {"record": r, "probe": probe, "reader": reader}, "python": got}


def fmt(ms):
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + f".{ms % 1000:03d}Z"


def main(seed, count):
    rng = random.Random(seed)
    cases = [record_case(rng, n) for n in range(count)]
    cases += [slot_case(rng) for _ in range(count)] + [timestamp_case(rng) for _ in range(count)]
    cases += [verdict_case(rng) for _ in range(count)]
    json.dump(cases, sys.stdout)


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]))
