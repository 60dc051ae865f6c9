#!/usr/bin/env python3
"""Creates an Azurite blob container: az_mkcontainer.py NAME [endpoint]. Exits 0 on 201 or 409.

object_store cannot create containers, so the test-server script uses this stdlib-only
SharedKey request against Azurite's well-known development account.
"""
import base64, hmac, hashlib, sys, urllib.request, urllib.error, email.utils
ACC = "devstoreaccount1"
KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
name = sys.argv[1]
ep = sys.argv[2] if len(sys.argv) > 2 else "http://127.0.0.1:10000"
date = email.utils.formatdate(usegmt=True)
ver = "2021-08-06"
sts = "PUT\n\n\n\n\n\n\n\n\n\n\n\n" + f"x-ms-date:{date}\nx-ms-version:{ver}\n" + f"/{ACC}/{ACC}/{name}\nrestype:container"
sig = base64.b64encode(hmac.new(base64.b64decode(KEY), sts.encode(), hashlib.sha256).digest()).decode()
req = urllib.request.Request(f"{ep}/{ACC}/{name}?restype=container", method="PUT",
    headers={"x-ms-date": date, "x-ms-version": ver, "Authorization": f"SharedKey {ACC}:{sig}", "Content-Length": "0"})
try:
    r = urllib.request.build_opener(urllib.request.ProxyHandler({})).open(req)
    print(r.status)
except urllib.error.HTTPError as e:
    print(e.code, e.read()[:300])
    sys.exit(0 if e.code == 409 else 1)
