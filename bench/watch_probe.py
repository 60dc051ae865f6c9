#!/usr/bin/env python3
"""bench/watch.sh's helper: edits a file and times its arrival on the other side, and a
minimal S3 client (standard library only: SigV4 over one kept-alive HTTP connection) for the
buckets the benchmark makes.

usage:
  watch_probe.py edits FILE DEST N [--poll-ms 10] [--timeout 120]
      Writes FILE N times (new content each time: truncate and write in place, as an editor
      saving without a rename does) and after each write polls DEST every --poll-ms until it
      holds the new content, then writes the next. DEST is a local path, or s3:BUCKET/KEY
      (the S3_* variables below). Latency = the first poll that sees the new content, minus
      the moment the write returned. Prints one line per edit, then a JSON summary line.
  watch_probe.py mb BUCKET | rb BUCKET | count BUCKET PREFIX
      Make a bucket; remove one (emptied first when the server wants that); count the
      objects under PREFIX/ outside the engine's .syncengine/ folder.

S3 settings: S3_ENDPOINT (http://127.0.0.1:9400), S3_KEY, S3_SECRET, S3_REGION (us-east-1).
Only the endpoint given is contacted (path-style requests).
"""
import datetime
import hashlib
import hmac
import http.client
import json
import os
import statistics
import sys
import time
import urllib.parse
import xml.etree.ElementTree as ET

EMPTY_SHA = hashlib.sha256(b"").hexdigest()


class S3:
    """Path-style S3 requests signed with SigV4, over one persistent connection."""

    def __init__(self) -> None:
        url = urllib.parse.urlsplit(os.environ.get("S3_ENDPOINT", "http://127.0.0.1:9400"))
        self.host = url.netloc
        self.key = os.environ["S3_KEY"]
        self.secret = os.environ["S3_SECRET"]
        self.region = os.environ.get("S3_REGION", "us-east-1")
        self.conn = http.client.HTTPConnection(url.hostname, url.port or 80, timeout=30)

    def request(self, method: str, path: str, query=(), body: bytes = b""):
        """(status, body bytes) of one request; reconnects once on a dropped connection."""
        now = datetime.datetime.now(datetime.timezone.utc)
        amz_date = now.strftime("%Y%m%dT%H%M%SZ")
        day = now.strftime("%Y%m%d")
        payload = hashlib.sha256(body).hexdigest() if body else EMPTY_SHA
        q = lambda s: urllib.parse.quote(s, safe="-_.~")  # noqa: E731
        uri = urllib.parse.quote(path, safe="/-_.~")
        canon_query = "&".join(f"{q(k)}={q(v)}" for k, v in sorted(query))
        headers = {"host": self.host, "x-amz-content-sha256": payload, "x-amz-date": amz_date}
        signed = ";".join(sorted(headers))
        canon_headers = "".join(f"{k}:{headers[k]}\n" for k in sorted(headers))
        creq = "\n".join([method, uri, canon_query, canon_headers, signed, payload])
        scope = f"{day}/{self.region}/s3/aws4_request"
        to_sign = "\n".join(
            ["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(creq.encode()).hexdigest()]
        )
        k = ("AWS4" + self.secret).encode()
        for part in (day, self.region, "s3", "aws4_request"):
            k = hmac.new(k, part.encode(), hashlib.sha256).digest()
        sig = hmac.new(k, to_sign.encode(), hashlib.sha256).hexdigest()
        headers["Authorization"] = (
            f"AWS4-HMAC-SHA256 Credential={self.key}/{scope}, SignedHeaders={signed}, Signature={sig}"
        )
        headers["Content-Length"] = str(len(body))
        target = uri + ("?" + canon_query if canon_query else "")
        for attempt in (0, 1):
            try:
                self.conn.request(method, target, body=body or None, headers=headers)
                resp = self.conn.getresponse()
                return resp.status, resp.read()
            except (http.client.HTTPException, OSError):
                self.conn.close()
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def keys(self, bucket: str, prefix: str = ""):
        """Every key under prefix (ListObjectsV2, page after page)."""
        token = None
        while True:
            query = [("list-type", "2"), ("max-keys", "1000")]
            if prefix:
                query.append(("prefix", prefix))
            if token:
                query.append(("continuation-token", token))
            status, body = self.request("GET", f"/{bucket}", query)
            if status != 200:
                sys.exit(f"listing s3://{bucket}/{prefix}: HTTP {status}: {body[:300]!r}")
            root = ET.fromstring(body)
            ns = root.tag[: root.tag.index("}") + 1] if root.tag.startswith("{") else ""
            for c in root.iter(f"{ns}Contents"):
                yield c.find(f"{ns}Key").text
            if root.findtext(f"{ns}IsTruncated") != "true":
                return
            token = root.findtext(f"{ns}NextContinuationToken")


def edits(file: str, dest: str, n: int, poll_ms: float, timeout: float) -> None:
    if dest.startswith("s3:"):
        s3 = S3()
        path = "/" + dest[3:]

        def read() -> bytes | None:
            status, body = s3.request("GET", path)
            return body if status == 200 else None
    else:

        def read() -> bytes | None:
            try:
                with open(dest, "rb") as fh:
                    return fh.read()
            except OSError:
                return None

    lat, polls, poll_cost, timeouts = [], 0, [], 0
    for i in range(n):
        content = f"edit {i} of {n}, written at {time.time_ns()}\n".encode()
        with open(file, "wb") as fh:
            fh.write(content)
        t0 = time.monotonic()
        while True:
            a = time.monotonic()
            got = read()
            b = time.monotonic()
            polls += 1
            poll_cost.append(b - a)
            if got == content:
                lat.append(b - t0)
                break
            if b - t0 > timeout:
                timeouts += 1
                lat.append(float("inf"))
                break
            time.sleep(poll_ms / 1000)
        print(f"edit {i + 1}/{n}: {lat[-1]:.3f} s", file=sys.stderr, flush=True)
    done = [x for x in lat if x != float("inf")]
    print(
        json.dumps(
            {
                "edits": n,
                "arrived": len(done),
                "timeouts": timeouts,
                "median_s": statistics.median(done) if done else None,
                "p90_s": statistics.quantiles(done, n=10, method="inclusive")[-1] if len(done) >= 2 else None,
                "min_s": min(done) if done else None,
                "worst_s": max(lat) if lat else None,
                "polls": polls,
                "poll_cost_mean_ms": statistics.mean(poll_cost) * 1000,
                "poll_cost_max_ms": max(poll_cost) * 1000,
                "all_s": [round(x, 4) for x in lat],
            }
        )
    )


def main() -> None:
    a = sys.argv[1:]
    if not a:
        sys.exit(__doc__)
    cmd = a[0]
    if cmd == "edits":
        opts = {"--poll-ms": 10.0, "--timeout": 120.0}
        pos = []
        i = 1
        while i < len(a):
            if a[i] in opts:
                opts[a[i]] = float(a[i + 1])
                i += 2
            else:
                pos.append(a[i])
                i += 1
        if len(pos) != 3:
            sys.exit(__doc__)
        edits(pos[0], pos[1], int(pos[2]), opts["--poll-ms"], opts["--timeout"])
    elif cmd == "mb" and len(a) == 2:
        status, body = S3().request("PUT", f"/{a[1]}")
        if status != 200:
            sys.exit(f"making bucket {a[1]}: HTTP {status}: {body[:300]!r}")
    elif cmd == "rb" and len(a) == 2:
        s3 = S3()
        status, _ = s3.request("DELETE", f"/{a[1]}")
        if status in (200, 204, 404):
            return
        for k in list(s3.keys(a[1])):
            s3.request("DELETE", f"/{a[1]}/{k}")
        status, body = s3.request("DELETE", f"/{a[1]}")
        if status not in (200, 204, 404):
            sys.exit(f"removing bucket {a[1]}: HTTP {status}: {body[:300]!r}")
    elif cmd == "count" and len(a) == 3:
        prefix = a[2].strip("/") + "/" if a[2].strip("/") else ""
        print(sum(1 for k in S3().keys(a[1], prefix) if "/.syncengine/" not in "/" + k[len(prefix):]))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
