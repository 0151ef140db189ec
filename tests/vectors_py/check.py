#!/usr/bin/env python3
"""A second implementation of the tether protocol, from protocol.md alone, checked on every vector.

Python standard library only. It parses records (section 4), folds lease files (6.5), judges
(section 7) and applies writes (sections 5 and 6), and runs every reading vector
(tests/vectors/*.json, section 10.1) and writing vector (tests/vectors/write/*.json, 10.2), after
validating each against the vector schema. It exists to show the protocol is implementable from
its text: it shares no code with the Rust implementation. Where writing it (and comparing it with
the Rust code, tests/differential.rs) showed the text silent, protocol.md gained a sentence and
the vectors a case; no choice is left to guess here.

    python3 tests/vectors_py/check.py      exits 0 when every vector passes
"""
import base64
import calendar
import datetime
import json
import re
import sys
import zlib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import schema  # noqa: E402  (the vector schema's validator, next to this file)

VECTORS = Path(__file__).resolve().parent.parent / "vectors"
MAX_INT = 2**53 - 1
MAX_BYTES = 1 << 20
ALLOWANCE_MS = 30_000
STATUSES = ["starting", "running", "succeeded", "failed", "cancelled", "lost"]
ACTIVE = ["starting", "running"]
REASONS = ["exited", "signaled", "start-failed", "heartbeat-timeout", "probe-failed", "holder-signaled", "cancelled",
           "worker-exited", "pid-reused", "lease-expired", "host-rebooted"]
READER_REASONS = ["worker-exited", "pid-reused", "lease-expired", "host-rebooted"]
ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
TIMESTAMP = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]{1,9}))?Z")


class Corrupt(Exception):
    pass


class Unsupported(Exception):
    pass


class Fraction:
    """A JSON number written with a fraction or an exponent: never an integer (4.1)."""

    def __init__(self, text):
        self.text = text


# ---------------------------------------------------------------- section 4: the record

def timestamp_ms(v, what):
    """4.1: the one timestamp form, as whole milliseconds (extra digits truncated)."""
    m = TIMESTAMP.fullmatch(v) if isinstance(v, str) else None
    if not m:
        raise Corrupt(f"{what} is not a timestamp: {v!r}")
    y, mo, d, h, mi, s = (int(x) for x in m.groups()[:6])
    if y < 1970 or s > 59:
        raise Corrupt(f"{what} is out of range: {v!r}")
    try:
        datetime.datetime(y, mo, d, h, mi, s)
    except ValueError:
        raise Corrupt(f"{what} is not a real date and time: {v!r}")
    frac = (m.group(7) or "") + "000"
    return calendar.timegm((y, mo, d, h, mi, s)) * 1000 + int(frac[:3])


def integer(v, what, lo=0, hi=MAX_INT):
    if type(v) is not int or not lo <= v <= hi:
        raise Corrupt(f"{what} is not an integer from {lo} to {hi}: {v!r}")
    return v


def string(v, what, nullable=False):
    if v is None and nullable:
        return None
    if not isinstance(v, str):
        raise Corrupt(f"{what} is not a string{' or null' if nullable else ''}")
    return v


def obj(v, what):
    if not isinstance(v, dict):
        raise Corrupt(f"{what} is not an object")
    return v


def opt(o, key, parse, default=None):
    """An optional field: absent means its default; present, it is parsed (null only if allowed)."""
    return parse(o[key]) if key in o else default


def req(o, key, parse, what):
    if key not in o:
        raise Corrupt(f"{what}.{key} is missing")
    return parse(o[key])


def plain(v):
    """An unknown member's value as plain JSON (a Fraction becomes the double it denotes)."""
    if isinstance(v, Fraction):
        return float(v.text)
    if isinstance(v, list):
        return [plain(x) for x in v]
    if isinstance(v, dict):
        return {k: plain(x) for k, x in v.items()}
    return v


def with_extra(o, known):
    """4.3: unknown members of an object are kept, at every level, as JSON values."""
    known["extra"] = {k: plain(v) for k, v in o.items() if k not in known}
    return known


def progress_of(v, what):
    o = obj(v, what)
    # 4.1: extended_until is a timestamp or null (checked, but kept in extra: readers only show it);
    # probe is never checked: a reader ignores one not of its form.
    opt(o, "extended_until", lambda x: None if x is None else timestamp_ms(x, f"{what}.extended_until"))
    return with_extra(o, {
        "message": opt(o, "message", lambda x: string(x, f"{what}.message", True)),
        "at": opt(o, "at", lambda x: None if x is None else timestamp_ms(x, f"{what}.at")),
        "count": opt(o, "count", lambda x: integer(x, f"{what}.count"), 0),
        "rejected": opt(o, "rejected", lambda x: integer(x, f"{what}.rejected"), 0),
    })


def exit_of(v, what):
    if v is None:
        return None
    o = obj(v, what)
    if len(o) != 1 or next(iter(o)) not in ("code", "signal"):
        raise Corrupt(f"{what} is not {{\"code\": N}} or {{\"signal\": N}}")
    k, n = next(iter(o.items()))
    return {k: integer(n, f"{what}.{k}", -(2**31), 2**31 - 1)}


def enum(v, values, what, nullable=False):
    if v is None and nullable:
        return None
    if v not in values or not isinstance(v, str):
        raise Corrupt(f"{what} {v!r} is not one of {values}")
    return v


def late_of(v, i):
    w = f"late[{i}]"
    o = obj(v, w)
    return with_extra(o, {
        "at": req(o, "at", lambda x: timestamp_ms(x, f"{w}.at"), w),
        "epoch": req(o, "epoch", lambda x: integer(x, f"{w}.epoch"), w),
        "status": opt(o, "status", lambda x: enum(x, STATUSES, f"{w}.status", True)),
        "reason": opt(o, "reason", lambda x: enum(x, REASONS, f"{w}.reason", True)),
        "exit": opt(o, "exit", lambda x: exit_of(x, f"{w}.exit")),
        "progress": opt(o, "progress", lambda x: None if x is None else progress_of(x, f"{w}.progress")),
        "note": opt(o, "note", lambda x: string(x, f"{w}.note"), ""),
    })


def number(t):
    """4.1 and 4.4 step 3: a number beyond an IEEE 754 double is corrupt wherever it is; one with
    a fraction or an exponent, or -0, is never an integer."""
    if abs(float(t)) > sys.float_info.max:
        raise Corrupt(f"the number {t[:20]} is beyond the range of a double")
    return int(t) if t != "-0" and all(c in "-0123456789" for c in t) else Fraction(t)


def no_lone_surrogates(v, depth=0):
    """4.4 step 3: Python's json joins escaped pairs into one character; a lone half stays. Also
    the nesting limit: the record is depth 1, each array or object inside one deeper."""
    if isinstance(v, (list, dict)):
        depth += 1
        if depth > 64:
            raise Corrupt("arrays and objects nested deeper than 64")
    if isinstance(v, str):
        if any(0xD800 <= ord(c) <= 0xDFFF for c in v):
            raise Corrupt("a string holds a lone surrogate")
    elif isinstance(v, list):
        for x in v:
            no_lone_surrogates(x, depth)
    elif isinstance(v, dict):
        for k, x in v.items():
            no_lone_surrogates(k, depth)
            no_lone_surrogates(x, depth)


def json_text(data):
    """4.4 steps 2-4: the bytes as one JSON object, or Corrupt."""
    if len(data) > MAX_BYTES:
        raise Corrupt(f"{len(data)} bytes, over 1 MiB")
    try:
        text = data.decode("utf-8")  # strict: invalid UTF-8 raises; a BOM stays U+FEFF and fails below
        # 4.1: a number with a fraction or an exponent, or -0, is never an integer.
        value = json.loads(text, parse_float=number, parse_int=number, parse_constant=lambda c: (_ for _ in ()).throw(
            Corrupt(f"{c} is not JSON")))
    except (UnicodeDecodeError, ValueError) as e:
        raise Corrupt(f"not JSON in UTF-8: {e}")
    except RecursionError:
        raise Corrupt("nested too deep")  # far beyond the limit of 64 checked below
    no_lone_surrogates(value)
    if not isinstance(value, dict):
        raise Corrupt("not an object")
    return value


def parse_record(data):
    """Section 4.4, in its order. Returns the record as a dict of known fields with defaults filled
    (timestamps as ms), plus "extra": the unknown top-level fields. Raises Corrupt or Unsupported."""
    o = json_text(data)
    if "protocol" not in o:
        raise Corrupt("no protocol")
    p = o["protocol"]
    if type(p) is not int or p < 1 or p > MAX_INT:
        raise Corrupt(f"protocol {p!r} is not an integer from 1 to 2^53-1")
    if p > 1:
        raise Unsupported(p)
    holder = obj(req(o, "holder", lambda x: x, "record"), "holder")
    lease = obj(req(o, "lease", lambda x: x, "record"), "lease")
    child = opt(o, "child", lambda x: x)
    r = {
        "protocol": 1,
        "id": req(o, "id", lambda x: string(x, "id"), "record"),
        "name": opt(o, "name", lambda x: string(x, "name", True)),
        "argv": req(o, "argv", lambda x: x, "record"),
        "cwd": opt(o, "cwd", lambda x: string(x, "cwd", True)),
        "created_at": req(o, "created_at", lambda x: timestamp_ms(x, "created_at"), "record"),
        "status": req(o, "status", lambda x: enum(x, STATUSES, "status"), "record"),
        "reason": req(o, "reason", lambda x: enum(x, REASONS, "reason", True), "record"),
        "holder": with_extra(holder, {
            "pid": req(holder, "pid", lambda x: integer(x, "holder.pid", 1, 2**31 - 1), "holder"),
            "start": req(holder, "start", lambda x: string(x, "holder.start"), "holder"),
            "boot_id": req(holder, "boot_id", lambda x: string(x, "holder.boot_id"), "holder"),
            "host": req(holder, "host", lambda x: string(x, "holder.host"), "holder"),
            "time_ns": opt(holder, "time_ns", lambda x: string(x, "holder.time_ns", True)),
            "pid_ns": opt(holder, "pid_ns", lambda x: string(x, "holder.pid_ns", True)),
        }),
        "child": None if child is None else with_extra(child, {
            "pid": req(obj(child, "child"), "pid", lambda x: integer(x, "child.pid", 1, 2**31 - 1), "child"),
            "start": req(child, "start", lambda x: string(x, "child.start"), "child"),
            "pgid": req(child, "pgid", lambda x: integer(x, "child.pgid", 1, 2**31 - 1), "child"),
        }),
        "lease": with_extra(lease, {
            "epoch": req(lease, "epoch", lambda x: integer(x, "lease.epoch", 1), "lease"),
            "interval_ms": req(lease, "interval_ms", lambda x: integer(x, "lease.interval_ms", 1), "lease"),
            "ttl_ms": req(lease, "ttl_ms", lambda x: integer(x, "lease.ttl_ms"), "lease"),
            "renewed_at": req(lease, "renewed_at", lambda x: timestamp_ms(x, "lease.renewed_at"), "lease"),
            "renewed_mono_ms": req(lease, "renewed_mono_ms", lambda x: integer(x, "lease.renewed_mono_ms"), "lease"),
        }),
        "progress": opt(o, "progress", lambda x: progress_of(x, "progress"),
                        {"message": None, "at": None, "count": 0, "rejected": 0, "extra": {}}),
        "exit": opt(o, "exit", lambda x: exit_of(x, "exit")),
        "finished_at": opt(o, "finished_at", lambda x: None if x is None else timestamp_ms(x, "finished_at")),
        "late": [late_of(x, i) for i, x in enumerate(opt(o, "late", lambda x: x if isinstance(x, list)
                                                          else (_ for _ in ()).throw(Corrupt("late is not an array")), []))],
        "meta": opt(o, "meta", lambda x: {k: string(v, f"meta.{k}") for k, v in obj(x, "meta").items()}, {}),
        "unique": opt(o, "unique", lambda x: string(x, "unique", True)),
    }
    if not isinstance(r["argv"], list) or not all(isinstance(a, str) for a in r["argv"]):
        raise Corrupt("argv is not an array of strings")
    if not ID.fullmatch(r["id"]):
        raise Corrupt(f"id {r['id']!r} does not match section 3")
    if r["lease"]["ttl_ms"] < 2 * r["lease"]["interval_ms"]:
        raise Corrupt("ttl_ms is less than twice interval_ms")
    r["extra"] = {k: plain(v) for k, v in o.items() if k not in r}
    return r


# ---------------------------------------------------------------- 6.5: the lease file

N = r"(0|[1-9][0-9]*)"
SLOT = re.compile(rf"tether-lease-1 {N} {N} {N} {N} {N} (-1|0|[1-9][0-9]*) ([0-9a-f]{{8}}) *\n")


def slot(b):
    if len(b) != 128 or any(c > 0x7F for c in b):
        return None
    text = b.decode("ascii")
    m = SLOT.fullmatch(text)
    if not m:
        return None
    body = text[:m.start(7) - 1]
    if f"{zlib.crc32(body.encode()):08x}" != m.group(7):
        return None
    seq, epoch, mono, wall, beats, beat_at = (int(x) for x in m.groups()[:6])
    if seq < 1 or epoch < 1 or max(seq, epoch, mono, wall, beats, beat_at) > MAX_INT:
        return None
    return {"seq": seq, "epoch": epoch, "mono": mono, "wall": wall, "beats": beats, "beat_at": beat_at}


def fold(rec, data):
    """6.5 Reading: fold the newest valid slot into an active record, in place."""
    if rec["status"] not in ACTIVE or data is None or len(data) < 256:
        return
    slots = [s for s in (slot(data[:128]), slot(data[128:256])) if s]
    if not slots:
        return
    # max() keeps the first of equals, so offset 0 wins a full tie, as 6.5 says.
    s = max(slots, key=lambda s: (s["seq"], s["mono"]))
    lease, prog = rec["lease"], rec["progress"]
    if s["epoch"] != lease["epoch"] or s["mono"] <= lease["renewed_mono_ms"]:
        return
    lease["renewed_mono_ms"], lease["renewed_at"] = s["mono"], s["wall"]
    if s["beats"] > prog["count"]:
        prog["count"] = s["beats"]
        if s["beat_at"] != -1:
            prog["at"] = s["beat_at"]


# ---------------------------------------------------------------- section 7: the verdict

def lease_age(rec, reader):
    """7.3: (rule, expires_in_ms); expired when expires_in_ms < 0, i.e. age > ttl."""
    h, lease = rec["holder"], rec["lease"]
    ttl = lease["ttl_ms"]
    if (h["boot_id"] == reader["boot_id"] and h["host"] == reader["host"]
            and h["time_ns"] == reader["time_ns"] and reader["now_mono_ms"] >= lease["renewed_mono_ms"]):
        return "mono", ttl - (reader["now_mono_ms"] - lease["renewed_mono_ms"])
    age = reader["now_wall"] - lease["renewed_at"] - ALLOWANCE_MS
    return "wall", ttl - age


def verdict(rec, probe, reader):
    """7.4: (verdict, status, reason, rule, expires_in_ms)."""
    if rec["status"] not in ACTIVE:
        return "terminal", rec["status"], rec["reason"], "R1", None
    _, left = lease_age(rec, reader)
    expired = left < 0
    if rec["holder"]["host"] != reader["host"]:
        return ("lost", "lost", "lease-expired", "R2", None) if expired else ("active", rec["status"], None, "R2", left)
    if rec["holder"]["boot_id"] != reader["boot_id"]:
        return "lost", "lost", "host-rebooted", "R3", None
    pid_ns = rec["holder"]["pid_ns"]
    if pid_ns is None or pid_ns != reader["pid_ns"]:
        # R3a: the pid is numbered in another (or an unknown) pid namespace: the lease alone.
        return ("lost", "lost", "lease-expired", "R3a", None) if expired else ("active", rec["status"], None, "R3a", left)
    if probe["holder"] == "gone":
        return "lost", "lost", "worker-exited", "R4", None
    if probe["start"] is not None and probe["start"] != rec["holder"]["start"]:
        return "lost", "lost", "pid-reused", "R5", None
    if expired:
        return "lost", "lost", "lease-expired", "R6", None
    return "active", rec["status"], None, "R7", left


def record_bytes(v):
    """10.1: an object serialized compactly, a string as UTF-8, or base64."""
    if "record_base64" in v:
        return base64.b64decode(v["record_base64"], validate=True)
    r = v["record"]
    return r.encode("utf-8") if isinstance(r, str) else \
        json.dumps(r, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def run_read(v):
    e = v["expect"]
    try:
        rec = parse_record(record_bytes(v))
    except Corrupt:
        got = {"verdict": "corrupt"}
    except Unsupported:
        got = {"verdict": "unsupported", "rule": "R0"}
    else:
        fold(rec, v["lease_file"].encode("utf-8") if "lease_file" in v else None)
        r = v["reader"]
        reader = dict(r, now_wall=timestamp_ms(r["now_wall"], "reader.now_wall"))
        verd, status, reason, rule, left = verdict(rec, v["probe"], reader)
        got = {"verdict": verd, "status": status, "reason": reason, "rule": rule,
               "lease": {"renewed_at": rec["lease"]["renewed_at"],
                         "renewed_mono_ms": rec["lease"]["renewed_mono_ms"]},
               "progress": {"count": rec["progress"]["count"], "at": rec["progress"]["at"]}}
        if left is not None:
            got["expires_in_ms"] = left
    want = dict(e)
    if "lease" in want:
        want["lease"] = dict(want["lease"], renewed_at=timestamp_ms(want["lease"]["renewed_at"], "expect"))
    if "progress" in want and want["progress"]["at"] is not None:
        want["progress"] = dict(want["progress"], at=timestamp_ms(want["progress"]["at"], "expect"))
    diffs = [f"{k}: want {want[k]!r}, got {got.get(k, '(none)')!r}"
             for k in want if got.get(k, "(none)") != want[k]]
    # 10.1: `rule` is checked whenever the outcome has one (absent only for corrupt).
    if "rule" not in want and "rule" in got:
        diffs.append(f"rule: want none, got {got['rule']!r}")
    return diffs


# ---------------------------------------------------------------- sections 5 and 6: writing

def parse_given(o, what):
    """A record given as an object in a vector (current, write.record, expect.record)."""
    try:
        return parse_record(json.dumps(o).encode())
    except (Corrupt, Unsupported) as e:
        raise SystemExit(f"{what} is not a valid record: {e}")


def comparable(rec):
    """10.2: records compare as section 4 values, unknown members at every level included;
    late[].note is not compared."""
    r = json.loads(json.dumps(rec))
    for el in r["late"]:
        el.pop("note", None)
    return r


def apply(cur, w):
    """Section 5 on the folded current record: (next record, None) or (None, late element or None)."""
    kind = w["kind"]
    if cur["status"] not in ACTIVE:
        return None, None
    if kind in ("renew", "acquire", "finish", "lease") and w["epoch"] != cur["lease"]["epoch"]:
        return None, None
    if kind == "finish" and w["status"] not in ("succeeded", "failed", "lost"):
        return None, None
    if kind == "reap" and w["reason"] not in READER_REASONS:
        return None, None
    nxt = json.loads(json.dumps(cur))
    if kind == "lease":
        return nxt, None  # 6.5: the renewal goes to the lease file; the record is not written
    at = timestamp_ms(w["at"], "write.at")
    if kind in ("renew", "acquire"):
        nxt["lease"]["renewed_at"], nxt["lease"]["renewed_mono_ms"] = at, w["mono_ms"]
    if kind == "renew":
        if w.get("running", False):
            nxt["status"] = "running"
        if "child" in w:
            nxt["child"] = replaced(cur["child"], child_of(w["child"]))
        if "progress" in w:
            nxt["progress"] = replaced(cur["progress"], progress_of(w["progress"], "write.progress"))
    elif kind == "acquire":
        nxt["lease"]["epoch"] += 1
    elif kind == "finish":
        nxt.update(status=w["status"], reason=w["reason"], exit=exit_of(w["exit"], "write.exit"), finished_at=at)
        if "progress" in w:
            nxt["progress"] = replaced(cur["progress"], progress_of(w["progress"], "write.progress"))
    elif kind == "reap":
        nxt.update(status="lost", reason=w["reason"], finished_at=at)
    elif kind == "cancel":
        nxt.update(status="cancelled", reason="cancelled", finished_at=at)
    return nxt, None


def replaced(old, new):
    """4.3: an object a write replaces whole keeps the old one's unknown members, unless the new
    one sets the same name."""
    if old is not None:
        new["extra"] = dict(old["extra"], **new["extra"])
    return new


def child_of(v):
    return with_extra(v, {"pid": v["pid"], "start": v["start"], "pgid": v["pgid"]})


def late_element(w):
    return {"at": timestamp_ms(w["at"], "write.at"), "epoch": w["epoch"], "status": w["status"],
            "reason": w["reason"], "exit": exit_of(w["exit"], "write.exit"),
            "progress": progress_of(w["progress"], "write.progress") if "progress" in w else None, "extra": {}}


def lease_write(v, w):
    """6.5 Writing: the file after one renewal by a new writer (None: no file)."""
    data = v["lease_file"].encode("utf-8") if "lease_file" in v else b""
    if len(data) < 256:
        data = (b" " * 127 + b"\n") * 2
    slots = [s for s in (slot(data[:128]), slot(data[128:256])) if s]
    seq = max([s["seq"] for s in slots], default=0) + 1
    beat_at = -1 if w["beat_at"] is None else timestamp_ms(w["beat_at"], "write.beat_at")
    body = (f"tether-lease-1 {seq} {w['epoch']} {w['mono_ms']} {timestamp_ms(w['at'], 'write.at')} "
            f"{w['beats']} {beat_at}")
    line = f"{body} {zlib.crc32(body.encode()):08x}".ljust(127).encode() + b"\n"
    o = (seq % 2) * 128
    return data[:o] + line + data[o + 128:]


def run_write(v):
    w, e = v["write"], v["expect"]
    cur = None if v["current"] is None else parse_given(v["current"], "current")
    if w["kind"] == "create":
        if cur is None:
            got = {"result": "written", "record": parse_given(w["record"], "write.record")}
        else:
            got = {"result": "refused", "status": cur["status"], "epoch": cur["lease"]["epoch"],
                   "late": None, "record": cur}
    else:
        folded = json.loads(json.dumps(cur))
        fold(folded, v["lease_file"].encode("utf-8") if "lease_file" in v else None)
        nxt, _ = apply(folded, w)
        lease_file = v["lease_file"].encode("utf-8") if "lease_file" in v else None
        if nxt is not None and w["kind"] == "lease":
            got = {"result": "written", "record": cur}
            lease_file = lease_write(v, w)
        elif nxt is not None:
            got = {"result": "written", "record": nxt}
        else:
            got = {"result": "refused", "status": cur["status"], "epoch": cur["lease"]["epoch"], "late": None,
                   "record": cur}
            if w["kind"] == "finish":
                # 6.4: the late element goes into the record written under the lock, which holds
                # the folded values (6.5); a refusal that writes nothing leaves the file as it was.
                got["late"] = late_element(w)
                folded["late"] = (folded["late"] + [got["late"]])[-16:]
                got["record"] = folded
        if "lease_file" in e:
            got["lease_file"] = None if lease_file is None else lease_file.decode("utf-8")
    want = dict(e, record=parse_given(e["record"], "expect.record"))
    if want.get("late") is not None:
        want["late"] = late_of(want["late"], 0)
        want["late"].pop("note")
    got["record"], want["record"] = comparable(got["record"]), comparable(want["record"])
    return [f"{k}: want {json.dumps(want[k])[:300]}, got {json.dumps(got.get(k))[:300]}"
            for k in set(want) | set(got) if got.get(k) != want.get(k)]


def main():
    sch = json.loads(schema.SCHEMA.read_text())
    failures, names, counts = [], set(), {"read": 0, "write": 0}
    for kind, files in (("read", sorted(VECTORS.glob("*.json"))),
                        ("write", sorted((VECTORS / "write").glob("*.json")))):
        for f in files:
            v = json.loads(f.read_text(encoding="utf-8"))
            counts[kind] += 1
            why = schema.validate(v, sch)
            if why:
                failures.append(f"{f.name}: not a valid vector: {why}")
                continue
            if v["name"] in names:
                failures.append(f"{f.name}: duplicate name {v['name']!r}")
            names.add(v["name"])
            diffs = run_read(v) if kind == "read" else run_write(v)
            if diffs:
                failures.append(f"{f.name} ({v['name']}):\n    " + "\n    ".join(diffs))
    for x in failures:
        print(x)
    total = counts["read"] + counts["write"]
    print(f"check.py: {total - len(failures)} of {total} vectors pass "
          f"({counts['read']} reading, {counts['write']} writing)")
    return 1 if failures or counts["read"] < 40 or counts["write"] < 40 else 0


if __name__ == "__main__":
    sys.exit(main())
