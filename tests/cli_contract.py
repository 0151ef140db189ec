#!/usr/bin/env python3
"""Drives tether the way a script does: through --json outputs and exit codes alone, with no
special cases (issue 15). Every JSON document it sees, on stdout or as an error on stderr, is
validated against schema/cli-output.schema.json; every exit code is the one protocol.md 9 gives.

    python3 tests/cli_contract.py TETHER_BIN SCHEMA_FILE

Needs the `jsonschema` package (Debian: python3-jsonschema). Exits 1 naming the first failure.
"""
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

from jsonschema import Draft202012Validator

BIN, SCHEMA = sys.argv[1], json.load(open(sys.argv[2], encoding="utf-8"))
DIR = os.path.join(tempfile.mkdtemp(prefix="tether-contract-"), "state")
STARTED = []  # (pid) of wrappers this script started, killed at the end whatever happens


def fail(why):
    raise SystemExit(f"cli_contract: {why}")


def validate(kind, doc, what):
    v = Draft202012Validator({**SCHEMA, "$ref": f"#/$defs/{kind}"})
    errors = sorted(v.iter_errors(doc), key=str)
    if errors:
        e = errors[0]
        fail(f"{what}: not a valid {kind}: {e.message} at {list(e.absolute_path)}\n{json.dumps(doc)[:2000]}")


def tether(*args):
    return subprocess.run([BIN, "--dir", DIR, *args], capture_output=True, text=True, timeout=120)


def ok(kind, code, *args):
    """Runs a command that must succeed with exit `code`; returns its validated JSON output."""
    p = tether(*args)
    what = "tether " + " ".join(args)
    if p.returncode != code:
        fail(f"{what}: exit {p.returncode}, expected {code}\nstdout: {p.stdout}\nstderr: {p.stderr}")
    for line in p.stderr.splitlines():
        if line.startswith("{"):
            fail(f"{what}: an error object on stderr although it succeeded: {line}")
    try:
        doc = json.loads(p.stdout)
    except ValueError as e:
        fail(f"{what}: stdout is not one JSON document ({e}): {p.stdout!r}")
    validate(kind, doc, what)
    return doc


def err(code, error, *args):
    """Runs a command that must fail with exit `code`: one JSON error object per stderr line."""
    p = tether(*args)
    what = "tether " + " ".join(args)
    if p.returncode != code:
        fail(f"{what}: exit {p.returncode}, expected {code}\nstdout: {p.stdout}\nstderr: {p.stderr}")
    lines = p.stderr.splitlines()
    if not lines:
        fail(f"{what}: no error on stderr")
    for line in lines:
        e = json.loads(line)
        validate("error", e, what)
        if e["code"] != code or e["error"] != error:
            fail(f"{what}: error {e}, expected {error}/{code}")
    return p.stdout


def detach(*args):
    d = ok("run_detach", 0, "run", "--detach", "--json", *args)
    STARTED.append(d["pid"])
    return d


def one(doc):
    if len(doc) != 1:
        fail(f"expected one job, got {len(doc)}")
    return doc[0]


def main():
    # A fresh machine: nothing listed, success; a job named there: the missing directory (8).
    if ok("status_output", 0, "status", "--json") != []:
        fail("status on a fresh machine listed something")
    err(8, "state-dir", "result", "--json", "nosuch")

    # A job that succeeds, waited for; its result.
    detach("--id", "ok", "--", "sh", "-c", "echo hello")
    j = one(ok("status_output", 0, "status", "--wait", "--json", "ok"))
    if (j["status"], j["wait"]) != ("succeeded", "ended"):
        fail(f"ok: {j['status']} {j['wait']}")
    r = ok("result_output", 0, "result", "--json", "ok")
    if r["log_tail"] != ["hello"] or r["exit"] != {"code": 0}:
        fail(f"ok: result {r['log_tail']} {r['exit']}")

    # A job that fails, started without `--`: exit 1 from both waiters.
    detach("--id", "bad", "sh", "-c", "exit 3")
    ok("status_output", 1, "status", "--wait", "--json", "bad")
    if ok("result_output", 1, "result", "--json", "bad")["exit"] != {"code": 3}:
        fail("bad: exit code not recorded")

    # A long job: result says active (5), a bounded wait times out (124), --any returns at the
    # first to end and names each outcome.
    slow = detach("--id", "slow", "--ttl", "5s", "--interval", "500ms", "sleep", "60")
    if ok("result_output", 5, "result", "--json", "slow")["status"] != "running":
        fail("slow is not running")
    j = one(ok("status_output", 124, "status", "--wait", "--timeout", "1s", "--json", "slow"))
    if j["wait"] != "timed-out":
        fail(f"slow: wait {j['wait']}")
    both = ok("status_output", 0, "status", "--wait", "--any", "--json", "slow", "ok")
    outcomes = {x["id"]: x["wait"] for x in both}
    if outcomes != {"slow": "not-waited", "ok": "ended"}:
        fail(f"--any outcomes {outcomes}")
    ok("status_output", 0, "status", "--json", "--active")
    if [x["id"] for x in ok("status_output", 0, "status", "--json", "--state", "failed")] != ["bad"]:
        fail("--state failed did not select bad alone")
    ok("inspect_output", 0, "inspect", "--json", "slow")

    # The id is taken (9); rm refuses an active job (5); cancel it; then rm works.
    err(9, "id-taken", "run", "--detach", "--json", "--id", "slow", "true")
    err(5, "active", "rm", "--json", "slow")
    c = ok("cancel_output", 0, "cancel", "--json", "--grace", "2s", "slow")
    if c["outcome"] != "cancelled":
        fail(f"cancel: {c['outcome']}")
    ok("result_output", 4, "result", "--json", "slow")
    if ok("cancel_output", 0, "cancel", "--json", "slow")["outcome"] != "already-ended":
        fail("a second cancel did something")

    # A holder SIGKILLed: the job is lost (3) for every waiter.
    lost = detach("--id", "lost", "--ttl", "2s", "--interval", "500ms", "sleep", "60")
    os.kill(lost["pid"], signal.SIGKILL)
    j = one(ok("status_output", 3, "status", "--wait", "--timeout", "30s", "--json", "lost"))
    if j["status"] != "lost":
        fail(f"lost: {j['status']}")

    # rm --force cancels an active job first.
    detach("--id", "forced", "sleep", "60")
    gone = ok("rm_output", 0, "rm", "--json", "--force", "--grace", "2s", "forced")
    if gone[0]["cancel"]["outcome"] != "cancelled":
        fail(f"rm --force: {gone}")

    # logs and gc in JSON; a watch's first lines.
    for line in tether("logs", "--json", "ok").stdout.splitlines():
        validate("logs_line", json.loads(line), "logs --json")
    w = subprocess.Popen([BIN, "--dir", DIR, "watch", "--json"], stdout=subprocess.PIPE, text=True)
    try:
        seen = set()
        deadline = time.time() + 30
        while seen != {"ok", "bad", "slow", "lost"} and time.time() < deadline:
            line = w.stdout.readline()
            if not line:
                break
            doc = json.loads(line)
            validate("watch_line", doc, "watch --json")
            seen.add(doc["id"])
        if seen != {"ok", "bad", "slow", "lost"}:
            fail(f"watch showed {seen}")
    finally:
        w.kill()
        w.wait(timeout=10)
    # A foreground run: the job's output, then its final record as the last line of stdout; the
    # exit code is the job's.
    p = tether("run", "--json", "--id", "fg", "sh", "-c", "echo out; exit 4")
    lines = p.stdout.splitlines()
    if p.returncode != 4 or lines[0] != "out":
        fail(f"run --json in the foreground: exit {p.returncode}, stdout {p.stdout!r}")
    last = json.loads(lines[-1])
    validate("job", last, "run --json (foreground), last line")
    if (last["id"], last["status"], last["exit"]) != ("fg", "failed", {"code": 4}):
        fail(f"run --json final record: {last}")
    removed = ok("rm_output", 0, "rm", "--json", "ok", "bad", "slow", "lost", "fg")
    if sorted(x["id"] for x in removed) != ["bad", "fg", "lost", "ok", "slow"]:
        fail(f"rm removed {removed}")
    ok("gc_output", 0, "gc", "--json", "--older-than", "0s")
    if ok("status_output", 0, "status", "--json") != []:
        fail("jobs left after rm")
    print("cli_contract: ok")


try:
    main()
finally:
    for pid in STARTED:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
