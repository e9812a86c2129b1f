#!/usr/bin/env python3
"""Verifies the DKIM signature of a message with dkimpy, as a receiver would.

Usage: dkim_verify.py MESSAGE_FILE NAME=TXT...  (the DNS TXT records, e.g.
"s1._domainkey.acme.example=v=DKIM1; k=ed25519; p=..."): lookups are answered
from these records only, never from the network. Prints one JSON line:
{"signed": bool, "verified": bool, "selector": ..., "domain": ...}.
"""
import json
import re
import sys

import dkim


def main():
    message = open(sys.argv[1], "rb").read()
    records = {}
    for arg in sys.argv[2:]:
        name, _, txt = arg.partition("=")
        records[name.lower().rstrip(".")] = txt.encode("ascii")

    def dnsfunc(name, timeout=5):
        if isinstance(name, bytes):
            name = name.decode("ascii")
        return records.get(name.lower().rstrip("."))

    head = message.split(b"\r\n\r\n", 1)[0]
    signed = re.search(rb"^DKIM-Signature:", head, re.I | re.M) is not None
    tags = {}
    if signed:
        found = re.search(rb"^DKIM-Signature:(.*?)(?=\r\n[^ \t])", head + b"\r\nX", re.I | re.M | re.S)
        for part in found.group(1).replace(b"\r\n", b"").split(b";"):
            key, _, value = part.strip().partition(b"=")
            tags[key.decode()] = value.strip().decode()
    verified = signed and dkim.verify(message, dnsfunc=dnsfunc, minkey=1024)
    print(json.dumps({"signed": signed, "verified": bool(verified), "selector": tags.get("s"), "domain": tags.get("d"),
                      "algorithm": tags.get("a")}))


if __name__ == "__main__":
    main()
