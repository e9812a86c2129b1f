#!/usr/bin/env python3
"""Checks that messages carteiro produced are correct (issue #8).

Usage: check_messages.py MANIFEST.json

The manifest (written by tests/it/message_correctness.rs) names the
directory of the messages, carteiro's host name, and for each message what
was submitted and what the sender rules give:

    {"dir": "...", "hostname": "...", "messages": [CASE, ...], "controls": [CASE, ...]}
    CASE = {"file": "0001.eml", "case": 1, "id": "...", "subject": "...",
            "from": [name|null, address], "sender": [..]|null, "reply_to": [..]|null,
            "to": [[name|null, address], ...], "cc": [...], "bcc": ["address", ...],
            "headers": {"X-Caso": "1", ...}, "text": str|null, "html": str|null,
            "attachments": [{"filename", "content_type", "content_base64"}],
            "mutation": "..." (controls only)}

Every message must: parse with email.policy.default without a defect on any
part or header; be 7-bit, every line CRLF-terminated and at most 998 octets
(CRLF excluded); carry Date (a valid date near now), Message-ID
(<id@hostname>, unique) and MIME-Version: 1.0; decode the Subject, custom
headers, and the display names and addresses of From/Sender/Reply-To/To/Cc
to exactly the input; carry no Bcc; have text and HTML as
multipart/alternative with text/plain first, each body decoding to the input
(line breaks compared as LF; a 7bit body may add a final one, which 7bit
cannot leave out); have every attachment base64, with the given content type,
file name and bytes.

Controls are deliberately broken messages or expectations: each one must be
reported, or the checker itself is wrong.

Prints one JSON document: {"checked", "failed", "failures": [{"case", "file",
"problems"}], "controls", "controls_missed", "stats"}.
"""
import base64
import datetime
import email
import email.policy
import email.utils
import json
import os
import re
import sys
from collections import Counter

MAX_LINE = 998
ALLOWED_TOP = {"text/plain", "text/html", "multipart/alternative", "multipart/mixed"}


def header_defects(part, where):
    out = []
    for name, value in part.items():
        for d in getattr(value, "defects", ()):
            out.append(f"{where} header {name}: defect {type(d).__name__}: {d}")
    return out


# RFC 2047 section 6.2: white space between two adjacent encoded-words is
# not displayed. Python before 3.14.5 keeps it in address headers under the
# modern policies (https://github.com/python/cpython/issues/128110; Subject
# is right), so "=?utf-8?Q?Ofici?= =?utf-8?Q?al?=" reads "Ofici al". The
# display names are read from the header with that white space removed, as
# the fixed parser does; defects are still those of the header as it came.
ENCODED_WORD = r"=\?[^?\s]+\?[BbQq]\?[^?\s]*\?="
SPACE_BETWEEN_ENCODED_WORDS = re.compile(rf"({ENCODED_WORD})[ \t]+(?={ENCODED_WORD})")


def reparsed(msg, name):
    raw = [v for k, v in msg.raw_items() if k.lower() == name.lower()]
    unfolded = re.sub(r"\r?\n(?=[ \t])", "", str(raw[0]))
    return email.policy.default.header_factory(name, SPACE_BETWEEN_ENCODED_WORDS.sub(r"\1", unfolded))


def mailbox_list(msg, name, problems):
    """The (display name, address) pairs of a header, or None when absent."""
    values = msg.get_all(name)
    if values is None:
        return None
    if len(values) != 1:
        problems.append(f"{name} appears {len(values)} times")
    header = reparsed(msg, name)
    addresses = getattr(header, "addresses", None)
    if addresses is None:
        problems.append(f"{name} is not an address header: {header!r}")
        return []
    return [[a.display_name or None, a.addr_spec] for a in addresses]


def expect_mailboxes(msg, name, expected, problems):
    got = mailbox_list(msg, name, problems)
    if not expected:
        if got:
            problems.append(f"{name}: expected no addresses, got {got!r}")
        return
    if got is None:
        problems.append(f"{name}: missing, expected {expected!r}")
    elif got != [list(e) for e in expected]:
        problems.append(f"{name}: got {got!r}, expected {expected!r}")


def lf(text):
    return text.replace("\r\n", "\n")


def check_lines(data, problems, stats):
    if not data.endswith(b"\r\n"):
        problems.append("the message does not end with CRLF")
    lines = data.split(b"\r\n")
    if lines and lines[-1] == b"":
        lines.pop()
    longest = 0
    for number, line in enumerate(lines, 1):
        longest = max(longest, len(line))
        if len(line) > MAX_LINE:
            problems.append(f"line {number} is {len(line)} octets (over {MAX_LINE}): {line[:60]!r}...")
        if b"\r" in line or b"\n" in line:
            problems.append(f"line {number} has a bare CR or LF: {line[:60]!r}...")
    stats["longest_line"] = max(stats.get("longest_line", 0), longest)
    high = [i for i, b in enumerate(data) if b >= 0x80 or b == 0]
    if high:
        problems.append(f"{len(high)} octets are not 7-bit ASCII (first at {high[0]}: "
                        f"{data[max(0, high[0] - 30):high[0] + 10]!r}); no SMTPUTF8/8BITMIME is assumed")


def check_standard_headers(msg, case, hostname, now, seen_ids, problems):
    for name in ("Date", "Message-ID", "MIME-Version", "From"):
        count = len(msg.get_all(name) or [])
        if count != 1:
            problems.append(f"{name} appears {count} times, expected once")
    date = msg["Date"]
    if date is not None:
        when = getattr(date, "datetime", None)
        if when is None or when.tzinfo is None:
            problems.append(f"Date {str(date)!r} is not a date with a time zone")
        elif abs((when - now).total_seconds()) > 3600:
            problems.append(f"Date {str(date)!r} is more than an hour away from now")
    if msg["MIME-Version"] is not None and str(msg["MIME-Version"]).strip() != "1.0":
        problems.append(f"MIME-Version is {str(msg['MIME-Version'])!r}")
    mid = msg["Message-ID"]
    if mid is not None:
        raw = str(mid).strip()
        expected = f"<{case['id']}@{hostname}>" if case.get("id") else None
        if not (raw.startswith("<") and raw.endswith(">") and raw.count("@") == 1):
            problems.append(f"Message-ID {raw!r} is not <local@domain>")
        else:
            domain = raw[1:-1].split("@")[1]
            if domain != hostname:
                problems.append(f"Message-ID {raw!r}: domain {domain!r}, expected carteiro's host name {hostname!r}")
            elif expected and raw != expected:
                problems.append(f"Message-ID {raw!r}, expected {expected!r} (the API's id)")
        if raw in seen_ids:
            problems.append(f"Message-ID {raw!r} is also the Message-ID of case {seen_ids[raw]}")
        seen_ids.setdefault(raw, case["case"])


def check_addresses(msg, data, case, problems):
    expect_mailboxes(msg, "From", [case["from"]], problems)
    expect_mailboxes(msg, "Sender", [case["sender"]] if case.get("sender") else [], problems)
    expect_mailboxes(msg, "Reply-To", [case["reply_to"]] if case.get("reply_to") else [], problems)
    expect_mailboxes(msg, "To", case["to"], problems)
    expect_mailboxes(msg, "Cc", case["cc"], problems)
    if msg.get_all("Bcc") is not None:
        problems.append("a Bcc header is present")
    if not case["to"] and not case["cc"] and msg["To"] is None:
        problems.append("only Bcc recipients, and no To header (an empty group is expected)")
    header_bytes = data.split(b"\r\n\r\n", 1)[0].lower()
    to_cc = {a.lower() for _, a in case["to"] + case["cc"]}
    for address in case["bcc"]:
        if address.lower() not in to_cc and address.lower().encode() in header_bytes:
            problems.append(f"the Bcc recipient {address} is visible in the header")


def check_unstructured(msg, case, problems, stats):
    subject = msg.get_all("Subject")
    if case["subject"] == "":
        if subject and str(subject[0]) != "":
            problems.append(f"Subject {str(subject[0])!r}, expected none")
    elif subject is None:
        problems.append(f"Subject missing, expected {case['subject']!r}")
    else:
        if len(subject) != 1:
            problems.append(f"Subject appears {len(subject)} times")
        if str(subject[0]) != case["subject"]:
            problems.append(f"Subject decodes to {str(subject[0])!r}, expected {case['subject']!r}")
    for name, value in case["headers"].items():
        got = msg.get_all(name)
        if got is None:
            problems.append(f"header {name} missing, expected {value!r}")
        elif len(got) != 1 or str(got[0]) != value:
            problems.append(f"header {name} decodes to {[str(g) for g in got]!r}, expected {value!r}")


def text_of(part, expected, problems, what):
    if part.get_content_charset() is None and not expected.isascii():
        problems.append(f"{what} is not ASCII and has no charset")
    try:
        return part.get_content()
    except Exception as e:  # noqa: BLE001 - reported as a problem
        problems.append(f"{what} does not decode: {type(e).__name__}: {e}")
        return None


def check_body(part, kind, expected, problems, stats):
    ctype = part.get_content_type()
    if ctype != f"text/{kind}":
        problems.append(f"the {kind} body is {ctype}, expected text/{kind}")
        return
    cte = (part.get("Content-Transfer-Encoding") or "7bit").strip().lower()
    stats[f"{kind}_cte_{cte}"] += 1
    if part.get_content_disposition() == "attachment":
        problems.append(f"the {kind} body is marked as an attachment")
    got = text_of(part, expected, problems, f"the {kind} body")
    if got is None:
        return
    got, want = lf(got), lf(expected)
    # 7bit text is lines: one that does not end in a line break gets one.
    # Quoted-printable (a soft line break) and base64 carry the text exactly.
    if cte in ("7bit", "8bit") and not want.endswith("\n") and got == want + "\n":
        got = want
    if got == want + "\n":
        problems.append(f"the {kind} body ({cte}) gained a final line break: "
                        "an empty line after the end of the message?")
    elif got != want:
        # Show where they differ.
        a, b = got, want
        at = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
        problems.append(f"the {kind} body differs from the input at character {at} "
                        f"(got {a[at:at + 40]!r}, expected {b[at:at + 40]!r}; lengths {len(a)}, {len(b)})")


def check_structure(msg, case, problems, stats):
    top = msg.get_content_type()
    if top not in ALLOWED_TOP:
        problems.append(f"top-level Content-Type is {top}")
        return
    attachments = case["attachments"]
    if attachments:
        if top != "multipart/mixed":
            problems.append(f"with attachments the message is {top}, expected multipart/mixed")
            return
        parts = msg.get_payload()
        if len(parts) != 1 + len(attachments):
            problems.append(f"multipart/mixed has {len(parts)} parts, expected the body and {len(attachments)} attachments")
            return
        body, attached = parts[0], parts[1:]
    else:
        if top == "multipart/mixed":
            problems.append("multipart/mixed without attachments")
            return
        body, attached = msg, []

    text, html = case["text"], case["html"]
    if text is not None and html is not None:
        stats["alternative"] += 1
        if body.get_content_type() != "multipart/alternative":
            problems.append(f"text and HTML travel as {body.get_content_type()}, expected multipart/alternative")
        else:
            alts = body.get_payload()
            if [p.get_content_type() for p in alts] != ["text/plain", "text/html"]:
                problems.append(f"multipart/alternative holds {[p.get_content_type() for p in alts]}, "
                                "expected text/plain then text/html")
            else:
                check_body(alts[0], "plain", text, problems, stats)
                check_body(alts[1], "html", html, problems, stats)
    elif text is not None:
        check_body(body, "plain", text, problems, stats)
    else:
        check_body(body, "html", html, problems, stats)

    for number, (part, expected) in enumerate(zip(attached, attachments), 1):
        stats["attachments"] += 1
        what = f"attachment {number} ({expected['filename']!r})"
        if part.get_content_type() != expected["content_type"]:
            problems.append(f"{what} is {part.get_content_type()}, expected {expected['content_type']}")
        cte = (part.get("Content-Transfer-Encoding") or "").strip().lower()
        if cte != "base64":
            problems.append(f"{what} travels as {cte or 'no Content-Transfer-Encoding'}, expected base64")
        if part.get_content_disposition() != "attachment":
            problems.append(f"{what} has disposition {part.get_content_disposition()!r}, expected attachment")
        if part.get_filename() != expected["filename"]:
            problems.append(f"{what}: file name decodes to {part.get_filename()!r}")
        got = part.get_payload(decode=True)
        want = base64.b64decode(expected["content_base64"])
        if got != want:
            problems.append(f"{what}: decoded content differs ({len(got or b'')} octets, expected {len(want)})")


def check(case, directory, hostname, now, seen_ids, stats):
    problems = []
    with open(os.path.join(directory, case["file"]), "rb") as f:
        data = f.read()
    check_lines(data, problems, stats)
    msg = email.message_from_bytes(data, policy=email.policy.default)
    for number, part in enumerate(msg.walk()):
        where = "message" if number == 0 else f"part {number} ({part.get_content_type()})"
        problems.extend(f"{where}: defect {type(d).__name__}: {d}" for d in part.defects)
        problems.extend(header_defects(part, where))
    check_standard_headers(msg, case, hostname, now, seen_ids, problems)
    check_addresses(msg, data, case, problems)
    check_unstructured(msg, case, problems, stats)
    check_structure(msg, case, problems, stats)
    head = data.split(b"\r\n\r\n", 1)[0]
    stats["encoded_words"] += b"=?" in head
    stats["folded_headers"] += b"\r\n " in head or b"\r\n\t" in head
    return problems


def main():
    with open(sys.argv[1], encoding="utf-8") as f:
        manifest = json.load(f)
    directory, hostname = manifest["dir"], manifest["hostname"]
    now = datetime.datetime.now(datetime.timezone.utc)
    stats = Counter()
    seen_ids = {}
    failures = []
    for case in manifest["messages"]:
        problems = check(case, directory, hostname, now, seen_ids, stats)
        if problems:
            failures.append({"case": case["case"], "file": case["file"], "problems": problems})
    controls_missed = []
    for control in manifest.get("controls", []):
        problems = check(control, directory, hostname, now, {}, Counter())
        if not problems:
            controls_missed.append(control["mutation"])
    print(json.dumps({
        "checked": len(manifest["messages"]),
        "failed": len(failures),
        "failures": failures,
        "controls": len(manifest.get("controls", [])),
        "controls_missed": controls_missed,
        "stats": dict(stats),
    }, ensure_ascii=False))


if __name__ == "__main__":
    main()
