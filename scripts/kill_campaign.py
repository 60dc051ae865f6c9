#!/usr/bin/env python3
"""SIGKILL campaign for the `syncengine` binary (driven by scripts/kill-campaign.sh).

Two-way syncs of a local folder with another local folder or an S3 prefix are killed with
SIGKILL at random moments while a concurrent writer keeps changing both sides. Every file the
writer makes carries its own length and checksum, so a torn file is detectable, and every
version it makes is logged.

After each kill (the writer paused):
  - no torn file under a final name (the engine's own temp files are exempt);
  - no lost version: every version the writer produced is on a side (any path, conflict
    copies included), in a trash, or was superseded by the writer itself (it overwrote,
    deleted or renamed over that version where it saw it).
At the end (writer stopped, runs until one exits 0):
  - no conflict copy of a path that only one side ever edited, except the documented limit
    (README, safety): the writer edited the path on a side X where it replaced a copy the
    engine had put there, the run that put it there was killed, and no run completed between
    that run and the edit (so the copy was never recorded and the edit cannot be told from an
    edit of the version it replaced); and the conflict copy's time stamp falls between the
    start of the run that put the copy there and the end of the first run that completed
    after the edit. Such copies are printed as "exempt: …". A conflict copy of a path edited
    on one side where no kill fell between a copy of that path and the edit is still a
    violation (see crash_window_edits);
  - both sides equal;
  - a further (dry) run plans nothing.
Prints a summary line: kills survived and violations.

Forensics (no effect on the criteria): <work>/journal.jsonl logs every writer action with the
version it replaced, every run's start and end (exit code), and each side's holdings after
each run; <work>/runs/NNNN.log keeps each run's output (RUST_LOG from CAMPAIGN_RUST_LOG,
default syncengine=debug) and <work>/runs/NNNN.db a copy of the pair state after it.
"""

import argparse
import hashlib
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time

MAGIC = b"SEV1"
TEMP = ".syncengine-tmp-"
CONFLICT = re.compile(r"^(.*)\.conflict-\d{8}T\d{6}Z-(source|destination)(-\d+)?(\.[^/]*)?$")


def make_content(vid, size, rng):
    payload = rng.randbytes(size) if size else b""
    digest = hashlib.sha256(payload).hexdigest()[:32].encode()
    head = MAGIC + b" " + vid.encode() + b" " + str(size).encode() + b" " + digest + b"\n"
    return head + payload


def parse_content(data):
    """Returns the version id, or None when the content is torn or foreign."""
    nl = data.find(b"\n")
    if nl < 0:
        return None
    parts = data[:nl].split(b" ")
    if len(parts) != 4 or parts[0] != MAGIC:
        return None
    payload = data[nl + 1:]
    try:
        size = int(parts[2])
    except ValueError:
        return None
    if len(payload) != size or hashlib.sha256(payload).hexdigest()[:32].encode() != parts[3]:
        return None
    return parts[1].decode()


MARKER = re.compile(r"\.conflict-\d{8}T\d{6}Z-(?:source|destination)(?:-\d+)?")


def conflict_origins_stamped(path):
    """conflict_origins with, for each, the time stamp of the marker removed."""
    d, _, name = path.rpartition("/")
    if not CONFLICT.match(name):
        return []
    out = []
    for m in MARKER.finditer(name):
        origin = name[: m.start()] + name[m.end():]
        stamp = STAMP.match(m.group(0)).group(1)
        out.append((f"{d}/{origin}" if d else origin, stamp))
    return out


def conflict_origins(path):
    """The paths a conflict copy may have been named after. The engine puts the marker before
    the name's last extension, so a conflict copy of a conflict copy (the writer edits those
    too) has several markers and its origin is ambiguous: every marker, removed, gives one
    candidate. Empty when the name is not a conflict copy."""
    d, _, name = path.rpartition("/")
    if not CONFLICT.match(name):
        return []
    out = []
    for m in MARKER.finditer(name):
        origin = name[: m.start()] + name[m.end():]
        out.append(f"{d}/{origin}" if d else origin)
    return out


class Journal:
    """Forensics, no effect on the pass criteria: <work>/journal.jsonl gets every writer action
    (side, op, path, version made, version it replaced), every run's start and end (exit code,
    killed or not) and, after each run, what each side holds (path -> version id, trash
    included); <work>/runs/NNNN.log keeps each run's stderr (RUST_LOG, default
    syncengine=debug) and stdout, <work>/runs/NNNN.db a copy of the pair state after it."""

    def __init__(self, work):
        self.t0 = time.time()
        self.f = open(os.path.join(work, "journal.jsonl"), "w")
        self.lock = threading.Lock()

    def log(self, **ev):
        ev["t"] = round(time.time() - self.t0, 4)
        with self.lock:
            self.f.write(json.dumps(ev) + "\n")
            self.f.flush()


def internal(path):
    return path == ".syncengine" or path.startswith(".syncengine/")


class LocalSide:
    def __init__(self, name, root, scratch):
        self.name, self.root, self.scratch = name, root, scratch
        os.makedirs(root, exist_ok=True)
        os.makedirs(scratch, exist_ok=True)

    def url(self):
        return self.root

    def files(self):
        out = {}
        for d, dirs, names in os.walk(self.root):
            for n in names:
                full = os.path.join(d, n)
                rel = os.path.relpath(full, self.root)
                if n.startswith(TEMP) or os.path.islink(full):
                    continue
                try:
                    with open(full, "rb") as f:
                        out[rel] = f.read()
                except OSError:
                    continue
        return out

    def paths(self):
        out = []
        for d, dirs, names in os.walk(self.root):
            for n in names:
                if not n.startswith(TEMP):
                    out.append(os.path.relpath(os.path.join(d, n), self.root))
        return out

    def read(self, path):
        try:
            with open(os.path.join(self.root, path), "rb") as f:
                return f.read()
        except OSError:
            return None

    def write(self, path, data):
        full = os.path.join(self.root, path)
        try:
            os.makedirs(os.path.dirname(full), exist_ok=True)
        except OSError:
            return False  # a file where a folder should be
        tmp = os.path.join(self.scratch, f"w{random.random()}")
        with open(tmp, "wb") as f:
            f.write(data)
        try:
            os.replace(tmp, full)  # atomic: the writer never tears its own files
            return True
        except OSError:
            os.unlink(tmp)
            return False

    def delete(self, path):
        try:
            os.unlink(os.path.join(self.root, path))
            return True
        except OSError:
            return False

    def rename(self, a, b):
        fb = os.path.join(self.root, b)
        if os.path.lexists(fb):
            return False
        try:
            os.makedirs(os.path.dirname(fb), exist_ok=True)
            os.rename(os.path.join(self.root, a), fb)
            return True
        except OSError:
            return False


class S3Side:
    def __init__(self, name, endpoint, bucket, prefix):
        import boto3  # from the test servers' virtualenv

        self.name, self.bucket, self.prefix = name, bucket, prefix.strip("/")
        self.s3 = boto3.client(
            "s3",
            endpoint_url=endpoint,
            aws_access_key_id="a",
            aws_secret_access_key="b",
            region_name="us-east-1",
        )

    def url(self):
        return f"s3://{self.bucket}/{self.prefix}"

    def key(self, path):
        return f"{self.prefix}/{path}"

    def paths(self):
        out = []
        token = None
        while True:
            kw = {"Bucket": self.bucket, "Prefix": self.prefix + "/"}
            if token:
                kw["ContinuationToken"] = token
            page = self.s3.list_objects_v2(**kw)
            for obj in page.get("Contents", []):
                rel = obj["Key"][len(self.prefix) + 1:]
                if not rel.rsplit("/", 1)[-1].startswith(TEMP):
                    out.append(rel)
            if not page.get("IsTruncated"):
                return out
            token = page["NextContinuationToken"]

    def files(self):
        out = {}
        token = None
        while True:
            kw = {"Bucket": self.bucket, "Prefix": self.prefix + "/"}
            if token:
                kw["ContinuationToken"] = token
            page = self.s3.list_objects_v2(**kw)
            for obj in page.get("Contents", []):
                rel = obj["Key"][len(self.prefix) + 1:]
                if rel.rsplit("/", 1)[-1].startswith(TEMP):
                    continue
                data = self.read(rel)
                if data is not None:
                    out[rel] = data
            if not page.get("IsTruncated"):
                return out
            token = page["NextContinuationToken"]

    def read(self, path):
        try:
            return self.s3.get_object(Bucket=self.bucket, Key=self.key(path))["Body"].read()
        except Exception:
            return None

    def write(self, path, data):
        self.s3.put_object(Bucket=self.bucket, Key=self.key(path), Body=data)
        return True

    def delete(self, path):
        self.s3.delete_object(Bucket=self.bucket, Key=self.key(path))
        return True

    def rename(self, a, b):
        if self.read(b) is not None or self.read(a) is None:
            return False
        self.s3.copy_object(
            Bucket=self.bucket, Key=self.key(b), CopySource={"Bucket": self.bucket, "Key": self.key(a)}
        )
        self.s3.delete_object(Bucket=self.bucket, Key=self.key(a))
        return True


NAMES = [f"{d}{n}" for d in ("", "docs/", "docs/sub/", "pics/") for n in ("a.txt", "b.bin", "c", "d.md", "e.txt")]


class Writer(threading.Thread):
    """Keeps changing both sides; logs every version and what it superseded itself."""

    def __init__(self, sides, rng):
        super().__init__(daemon=True)
        self.sides, self.rng = sides, rng
        self.run_flag = threading.Event()
        self.idle = threading.Event()
        self.stop_flag = False
        self.lock = threading.Lock()
        self.versions = {}  # vid -> (side, path)
        self.superseded = set()
        self.edited_by = {}  # path -> sides that wrote it
        self.counter = 0
        self.journal = None
        self.edits = []  # (time, side, path, version it replaced or None), every write/delete/rename away

    def log(self, **ev):
        if self.journal:
            self.journal.log(**ev)

    def pause(self):
        self.run_flag.clear()
        self.idle.wait()

    def resume(self):
        self.idle.clear()
        self.run_flag.set()

    def size(self):
        r = self.rng.random()
        if r < 0.7:
            return self.rng.randrange(0, 2000)
        if r < 0.95:
            return self.rng.randrange(20_000, 300_000)
        return self.rng.randrange(1_000_000, 4_000_000)

    def new_version(self, side, path):
        self.counter += 1
        vid = f"{side.name}{self.counter}"
        data = make_content(vid, self.size(), self.rng)
        return vid, data

    def supersede(self, side, path):
        old = side.read(path)
        if old is not None:
            vid = parse_content(old)
            if vid:
                self.superseded.add(vid)
            return vid
        return None

    def step(self):
        side = self.rng.choice(self.sides)
        live = [p for p in side.paths() if not internal(p)]
        op = self.rng.random()
        if op < 0.45 or not live:
            path = self.rng.choice(NAMES) if self.rng.random() < 0.7 or not live else self.rng.choice(live)
            vid, data = self.new_version(side, path)
            old = self.supersede(side, path)
            ok = side.write(path, data)
            self.log(ev="write", side=side.name, path=path, vid=vid, old=old, ok=ok)
            if ok:
                with self.lock:
                    self.edits.append((time.time(), side.name, path, old))
                    self.versions[vid] = (side.name, path)
                    self.edited_by.setdefault(path, set()).add(side.name)
        elif op < 0.7:
            path = self.rng.choice(live)
            vid, data = self.new_version(side, path)
            old = self.supersede(side, path)
            ok = side.write(path, data)
            self.log(ev="write", side=side.name, path=path, vid=vid, old=old, ok=ok)
            if ok:
                with self.lock:
                    self.edits.append((time.time(), side.name, path, old))
                    self.versions[vid] = (side.name, path)
                    self.edited_by.setdefault(path, set()).add(side.name)
        elif op < 0.85:
            path = self.rng.choice(live)
            old = self.supersede(side, path)
            ok = side.delete(path)
            self.log(ev="delete", side=side.name, path=path, old=old, ok=ok)
            with self.lock:
                self.edits.append((time.time(), side.name, path, old))
            self.edited_by.setdefault(path, set()).add(side.name)
        else:
            a = self.rng.choice(live)
            b = self.rng.choice(NAMES)
            data = side.read(a)
            old = parse_content(data) if data is not None else None
            ok = side.rename(a, b)
            self.log(ev="rename", side=side.name, path=a, to=b, old=old, ok=ok)
            if ok:
                with self.lock:
                    self.edits.append((time.time(), side.name, a, old))
                self.edited_by.setdefault(a, set()).add(side.name)
                self.edited_by.setdefault(b, set()).add(side.name)

    def run(self):
        while not self.stop_flag:
            if not self.run_flag.is_set():
                self.idle.set()
                self.run_flag.wait(0.05)
                continue
            try:
                self.step()
            except Exception as e:  # a race with the engine (a folder vanished…): try again
                print(f"writer: {e!r}", file=sys.stderr)
            time.sleep(self.rng.uniform(0.002, 0.03))
        self.idle.set()


def check(sides, writer, label, violations):
    present = set()
    for side in sides:
        for path, data in side.files().items():
            vid = parse_content(data)
            if vid is None and internal(path):
                continue  # the engine's own files (.syncengine/root-id); trash copies parse
            if vid is None:
                violations.append(f"{label}: torn or foreign file {side.name}:{path} ({len(data)} bytes)")
            else:
                present.add(vid)
    with writer.lock:
        for vid, (side, path) in writer.versions.items():
            if vid not in present and vid not in writer.superseded:
                violations.append(f"{label}: lost version {vid} (written on {side} at {path})")
                writer.superseded.add(vid)  # report each loss once


def run_sync(args, sides, extra=(), env=None, log=None):
    """log: a file for the run's stdout and stderr (else both are pipes)."""
    cmd = [args.bin, "sync", sides[0].url(), sides[1].url(), "--mode", "two-way",
           "--state-dir", args.state, "--json", "-q", *extra]
    out = log if log is not None else subprocess.PIPE
    return subprocess.Popen(cmd, stdout=out, stderr=out, env=env)


def snapshot(journal, sides, args, attempt):
    """What each side holds after a run (path -> version id), journaled with a copy of the
    pair state (forensics); the final criterion uses the holdings (see crash_window_edits)."""
    held = {}
    for side in sides:
        held[side.name] = {p: parse_content(d) or f"?{len(d)}" for p, d in side.files().items()}
    journal.log(ev="snapshot", attempt=attempt, sides=held)
    for n in os.listdir(args.state):
        if n.endswith(".db"):
            shutil.copy(os.path.join(args.state, n), os.path.join(args.work, "runs", f"{attempt:04d}.db"))
    return held


class Run:
    def __init__(self, start, end, killed, held):
        self.start, self.end, self.killed, self.held = start, end, killed, held


def crash_window_edits(runs, writer):
    """The documented limit (README, safety): a copy that landed but was not yet recorded, then
    edited on the side it landed on before a later run recorded it, cannot be told from an edit
    of what was there before, so both versions are kept as a conflict.

    Returns {path: [(placed_by, closed_by)]}: the writer's edits (write, delete, rename away) of
    `path` on a side X that replaced a version the engine had put there (a version the writer
    did not write at that side and path) when the run that put it there was killed and no run
    completed (exit other than SIGKILL) between that run and the edit. The run that put it
    there is the first run after the last completed one before the edit whose holdings show
    the version at X:path, else the run during or after which the edit fell; a version that a
    completed run left at X:path was recorded by it, and its edits are ordinary ones. Each
    window is given as (placed_by, closed_by): the run that placed the copy and the first
    completed run after the edit (None: none came), between whose start and end the conflict
    copy must have been made. `runs` are in order, final runs included."""
    out = {}
    with writer.lock:
        edits = list(writer.edits)
        versions = dict(writer.versions)
    for t, side, path, old in edits:
        if old is None or versions.get(old) == (side, path):
            continue  # nothing there, or the writer's own version there
        last_done = None  # the last completed run that ended before the edit
        started = []  # runs after it that started before the edit
        for r in runs:
            if r.start >= t:
                break
            if r.end < t and not r.killed:
                last_done, started = r, []
            else:
                started.append(r)
        closed_by = next((r for r in runs if not r.killed and r.end >= t), None)
        if not started:
            continue
        if last_done is not None and last_done.held.get(side, {}).get(path) == old:
            continue  # recorded by a completed run
        placed_by = next((r for r in started if r.held is not None and r.held.get(side, {}).get(path) == old),
                         started[-1])
        if placed_by.killed:
            out.setdefault(path, []).append((placed_by, closed_by))
    return out


STAMP = re.compile(r"\.conflict-(\d{8}T\d{6}Z)-")


def exempt_by_crash_window(name_origins, windows):
    """True when one origin of a conflict copy had a crash-window edit (crash_window_edits)
    and the copy's stamp (the marker whose removal gives that origin) falls in that window."""
    import calendar
    for origin, stamp in name_origins:
        secs = calendar.timegm(time.strptime(stamp, "%Y%m%dT%H%M%SZ"))
        for placed_by, closed_by in windows.get(origin, ()):
            hi = closed_by.end if closed_by is not None else float("inf")
            if placed_by.start - 1 <= secs <= hi + 1:
                return True
    return False


def kill_window(durations, first_guess):
    """How long after its start a run may be killed. Runs take from a fraction of a second
    (local, release build) to seconds (S3, debug build): a fixed window either lets most runs
    finish before the kill or kills them all before their first action. The window follows
    the calibration runs (every tenth run is left to finish, see `main`): uniform up to 90% of
    the median of the last 15, so kills fall anywhere from listing to the last copy."""
    if not durations:
        return first_guess
    recent = sorted(durations[-15:])
    return max(0.02, 0.9 * recent[len(recent) // 2])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--pair", choices=["local", "s3"], default="local")
    ap.add_argument("--kills", type=int, default=100)
    ap.add_argument("--work", required=True)
    ap.add_argument("--seed", type=int, default=int(time.time()))
    ap.add_argument("--endpoint", default="http://127.0.0.1:9100")
    ap.add_argument("--bucket", default="test")
    ap.add_argument("--max-wait", type=float, default=0.6,
                    help="kill window (seconds) until the first calibration run has ended")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    shutil.rmtree(args.work, ignore_errors=True)
    os.makedirs(args.work)
    os.makedirs(os.path.join(args.work, "runs"))
    journal = Journal(args.work)
    args.state = os.path.join(args.work, "state")
    scratch = os.path.join(args.work, "scratch")
    a = LocalSide("A", os.path.join(args.work, "a"), scratch)
    if args.pair == "local":
        b = LocalSide("B", os.path.join(args.work, "b"), scratch)
    else:
        b = S3Side("B", args.endpoint, args.bucket, f"kill-{args.seed}-{os.getpid()}")
    sides = [a, b]
    env = dict(os.environ, AWS_ACCESS_KEY_ID="a", AWS_SECRET_ACCESS_KEY="b", AWS_REGION="us-east-1",
               AWS_ENDPOINT_URL=args.endpoint, AWS_ALLOW_HTTP="true",
               RUST_LOG=os.environ.get("CAMPAIGN_RUST_LOG", "syncengine=debug"))

    writer = Writer(sides, rng)
    writer.journal = journal
    writer.start()
    violations = []
    kills = attempts = survived = 0
    exits = {}
    runs = []
    durations = []
    while kills < args.kills and attempts < args.kills * 5:
        attempts += 1
        writer.resume()
        time.sleep(rng.uniform(0.0, 0.3))
        log = open(os.path.join(args.work, "runs", f"{attempts:04d}.log"), "wb")
        journal.log(ev="run", attempt=attempts)
        start = time.time()
        proc = run_sync(args, sides, env=env, log=log)
        if attempts % 10 == 1:
            # A calibration run: left to finish, it measures how long runs take now.
            proc.wait()
        else:
            time.sleep(rng.uniform(0.005, kill_window(durations, args.max_wait)))
        killed = proc.poll() is None
        if killed:
            proc.send_signal(signal.SIGKILL)
        proc.wait()
        end = time.time()
        log.close()
        if not killed:
            durations.append(end - start)
        journal.log(ev="end", attempt=attempts, rc=proc.returncode, killed=killed)
        if proc.returncode == -signal.SIGKILL:
            kills += 1
        exits[proc.returncode] = exits.get(proc.returncode, 0) + 1
        writer.pause()
        held = snapshot(journal, sides, args, attempts)
        runs.append(Run(start, end, proc.returncode == -signal.SIGKILL, held))
        before = len(violations)
        check(sides, writer, f"after attempt {attempts} (kill {kills})", violations)
        if proc.returncode == -signal.SIGKILL and len(violations) == before:
            survived += 1
        if attempts % 10 == 0:
            print(f"  {args.pair}: {attempts} runs, {kills} kills, {len(violations)} violations", flush=True)

    writer.stop_flag = True
    writer.resume()
    writer.join()
    # Converge: runs until one ends with exit 0 (a few may find work left by the last kill).
    final = None
    for i in range(5):
        journal.log(ev="run", attempt=f"final{i}")
        start = time.time()
        final = run_sync(args, sides, env=env)
        out, err = final.communicate()
        end = time.time()
        journal.log(ev="end", attempt=f"final{i}", rc=final.returncode, killed=False,
                    out=out.decode()[-2000:], err=err.decode()[-20000:])
        runs.append(Run(start, end, False, snapshot(journal, sides, args, 9000 + i)))
        if final.returncode == 0:
            break
    if final is None or final.returncode != 0:
        violations.append(f"final: no clean run (exit {final.returncode}): {err.decode()[-500:]}")
    check(sides, writer, "final", violations)
    live = [{p: d for p, d in s.files().items() if not internal(p)} for s in sides]
    if live[0] != live[1]:
        only = sorted(set(live[0]) ^ set(live[1]))
        differ = sorted(p for p in set(live[0]) & set(live[1]) if live[0][p] != live[1][p])
        violations.append(f"final: sides differ: only on one side {only[:10]}, different {differ[:10]}")
    windows = crash_window_edits(runs, writer)
    for p in set(live[0]) | set(live[1]):
        origins = conflict_origins(p)
        if origins and all(len(writer.edited_by.get(o, ())) < 2 for o in origins):
            edited = {o: sorted(writer.edited_by.get(o, ())) for o in origins}
            if exempt_by_crash_window(conflict_origins_stamped(p), windows):
                print(f"exempt: conflict copy {p} (origin edited by {edited}): an unrecorded copy "
                      "left by a killed run was edited where it landed (the documented limit)")
                continue
            violations.append(f"final: conflict copy {p}, but no side pair edited its origin: {edited}")
    dry = run_sync(args, sides, extra=["--dry-run"], env=env)
    out, err = dry.communicate()
    try:
        stats = json.loads(out.decode().strip().splitlines()[-1])
        keys = ["uploaded", "downloaded", "deleted_source", "deleted_destination",
                "renamed_source", "renamed_destination", "conflicts"]
        busy = {k: stats[k] for k in keys if stats.get(k)}
        if busy:
            violations.append(f"final: a further run plans work: {busy}")
    except (ValueError, IndexError, KeyError):
        violations.append(f"final: the dry run printed no JSON (exit {dry.returncode}): {err.decode()[-300:]}")

    for v in violations:
        print("VIOLATION", v)
    print(f"kill campaign {args.pair}: {survived} of {kills} kills survived ({attempts} runs), "
          f"{len(violations)} violations (exit codes {exits}; {len(writer.versions)} versions written; seed {args.seed})")
    return 1 if violations else 0


if __name__ == "__main__":
    sys.exit(main())
