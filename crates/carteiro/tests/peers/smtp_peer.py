#!/usr/bin/env python3
"""Scriptable SMTP server peer for carteiro's integration tests.

Prints one JSON event per line on stdout ("ready", "message", "data_refused",
and "auth" for each XOAUTH2 attempt when XOAUTH2 is on).
Stops cleanly on SIGTERM, SIGINT or when stdin is closed.

XOAUTH2 (--xoauth2 USER:TOKEN, repeatable, and/or --tokens-file PATH) works as
Gmail's: the client sends base64("user=USER\x01auth=Bearer TOKEN\x01\x01") as the
initial response (or after an empty 334); a listed pair gets 235, anything else
a 334 with the base64 of a JSON error, and after the client's empty line
"535 5.7.8 Username and Password not accepted (scripted XOAUTH2)". The tokens
file (one USER:TOKEN a line) is read again at each AUTH, so a test can rotate
or revoke tokens while the peer runs; its pairs are accepted besides those of
--xoauth2.
"""
import argparse
import asyncio
import base64
import binascii
import json
import logging
import os
import queue
import re
import signal
import ssl
import sys
import threading
import warnings

from aiosmtpd.smtp import MISSING, SMTP, AuthResult, LoginPassword

DATA_SIZE_LIMIT = 50 * 1024 * 1024


class EventWriter:
    """Writes JSON lines to stdout from a thread: a harness that reads stdout
    only after its SMTP client returns must not stall the event loop (a
    message event is bigger than the pipe buffer)."""

    def __init__(self):
        self.queue = queue.Queue()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def __call__(self, **event):
        self.queue.put((json.dumps(event) + "\n").encode())

    def _run(self):
        # os.write, not sys.stdout: no buffer lock held at interpreter exit.
        while (line := self.queue.get()) is not None:
            try:
                while line:
                    line = line[os.write(1, line):]
            except OSError:
                return

    def close(self, timeout=2.0):
        self.queue.put(None)
        self.thread.join(timeout)


emit = EventWriter()


XOAUTH2_ERROR = {"status": "401", "schemes": "bearer", "scope": "https://mail.google.com/"}
XOAUTH2_REFUSED = "535 5.7.8 Username and Password not accepted (scripted XOAUTH2)"
XOAUTH2_RESPONSE = re.compile(rb"\Auser=([^\x01]*)\x01auth=Bearer ([^\x01]*)\x01\x01\Z")


def reply_text(code, stage):
    if 200 <= code < 300:
        return f"{code} 2.0.0 OK (scripted)"
    if code < 500:
        return f"{code} 4.3.0 try again later (scripted)"
    enhanced = "5.1.1" if stage == "rcpt" else "5.7.1"
    return f"{code} {enhanced} refused (scripted)"


class Handler:
    def __init__(self, args):
        self.args = args
        self.rcpt_replies = dict(args.rcpt_reply)
        self.data_replies = list(args.data_replies)
        self.messages_seen = 0

    def xoauth2_tokens(self):
        """The accepted (user, token) pairs: --xoauth2's and, read now, the tokens file's."""
        pairs = set(self.args.xoauth2)
        if self.args.tokens_file:
            try:
                with open(self.args.tokens_file, encoding="utf-8") as f:
                    lines = f.read().splitlines()
            except FileNotFoundError:
                lines = []
            for line in lines:
                line = line.strip()
                if line and not line.startswith("#") and ":" in line:
                    user, _, token = line.partition(":")
                    pairs.add((user, token))
        return pairs

    async def auth_XOAUTH2(self, server, args):
        """The XOAUTH2 mechanism, as Gmail answers it (aiosmtpd calls auth_<NAME> handler methods)."""
        if len(args) == 1 or args[1] == "=":
            # No initial response (or an empty one): ask for it with an empty challenge.
            response = await server.challenge_auth("")
            if response is MISSING:  # "*" or bad base64, already answered
                return AuthResult(success=False, handled=True)
        else:
            try:
                response = base64.b64decode(args[1], validate=True)
            except binascii.Error:
                return AuthResult(success=False, handled=False, message="501 5.5.2 Can't decode base64")
        match = XOAUTH2_RESPONSE.match(response)
        if not match:
            emit(event="auth", mechanism="XOAUTH2", user=None, token=None, ok=False)
            return AuthResult(success=False, handled=False,
                              message="501 5.5.2 malformed XOAUTH2 response (scripted)")
        user, token = (part.decode("utf-8", "replace") for part in match.groups())
        ok = (user, token) in self.xoauth2_tokens()
        emit(event="auth", mechanism="XOAUTH2", user=user, token=token, ok=ok)
        if ok:
            server.session.auth_mechanism = "XOAUTH2"
            return AuthResult(success=True, auth_data=LoginPassword(user.encode(), token.encode()))
        # The error comes as a challenge; the client answers with an empty line.
        answer = await server.challenge_auth(json.dumps(XOAUTH2_ERROR, separators=(",", ":")))
        if answer is MISSING:
            return AuthResult(success=False, handled=True)
        return AuthResult(success=False, handled=False, message=XOAUTH2_REFUSED)

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        # Using this hook means aiosmtpd leaves setting host_name to us.
        session.host_name = hostname
        if not self.args.auth and not xoauth2_enabled(self.args):
            # Otherwise aiosmtpd would still advertise AUTH after STARTTLS.
            responses = [r for r in responses if not r.startswith("250-AUTH")]
        if self.args.pipelining:
            # aiosmtpd reads commands one line at a time, so a pipelined group works.
            responses.insert(1, "250-PIPELINING")
        return responses

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        code = self.rcpt_replies.get(address.lower())
        if code is None or code == 250:
            envelope.rcpt_tos.append(address)
            return "250 2.1.5 OK"
        if 200 <= code < 300:
            envelope.rcpt_tos.append(address)
        return reply_text(code, "rcpt")

    async def handle_DATA(self, server, session, envelope):
        self.messages_seen += 1
        if self.messages_seen == self.args.drop_on_message:
            # The reply after the final dot is lost: the client cannot know the message's fate.
            server.transport.abort()
            return "421 4.4.2 connection dropped (scripted)"
        if self.args.data_delay_s > 0:
            await asyncio.sleep(self.args.data_delay_s)
        code = self.data_replies.pop(0) if self.data_replies else 250
        if code != 250:
            emit(event="data_refused", code=code, rcpt_tos=envelope.rcpt_tos)
            return reply_text(code, "data")
        auth = session.auth_data
        emit(
            event="message",
            mail_from=envelope.mail_from,
            rcpt_tos=envelope.rcpt_tos,
            data_b64=base64.b64encode(envelope.original_content).decode("ascii"),
            auth_user=auth.login.decode("utf-8", "replace") if auth else None,
            auth_mechanism=getattr(session, "auth_mechanism", None),
            tls=self.args.mode == "implicit" or session.ssl is not None,
            session=session.peer[1] if session.peer else None,
        )
        return "250 2.0.0 OK: queued"


def xoauth2_enabled(args):
    return bool(args.xoauth2 or args.tokens_file)


def make_authenticator(user, password):
    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = (isinstance(auth_data, LoginPassword)
              and auth_data.login == user.encode()
              and auth_data.password == password.encode())
        if ok:
            session.auth_mechanism = mechanism
        # handled=False makes aiosmtpd answer 535 itself; handled=True would
        # send nothing and leave the client waiting.
        return AuthResult(success=ok, handled=ok, auth_data=auth_data if ok else None)
    return authenticator


def rcpt_reply(value):
    addr, sep, code = value.rpartition("=")
    if not sep or not addr or not code.isdigit() or not 200 <= int(code) <= 599:
        raise argparse.ArgumentTypeError(f"expected ADDR=CODE, got {value!r}")
    return addr.lower(), int(code)


def user_token(value):
    user, sep, token = value.partition(":")
    if not sep or not user or not token:
        raise argparse.ArgumentTypeError(f"expected USER:TOKEN, got {value!r}")
    return user, token


def data_replies(value):
    codes = [int(c) for c in value.split(",") if c.strip()]
    if not all(200 <= c <= 599 for c in codes):
        raise argparse.ArgumentTypeError(f"codes must be 200..599: {value!r}")
    return codes


def parse_args():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--mode", choices=["plain", "starttls", "implicit"], default="plain")
    p.add_argument("--cert")
    p.add_argument("--key")
    p.add_argument("--auth", metavar="USER:PASS")
    p.add_argument("--require-auth", action="store_true")
    p.add_argument("--xoauth2", type=user_token, action="append", default=[], metavar="USER:TOKEN",
                   help="offer AUTH XOAUTH2 and accept this user and bearer token (repeatable)")
    p.add_argument("--tokens-file", metavar="PATH",
                   help="offer AUTH XOAUTH2 and accept the USER:TOKEN lines of this file, read at each AUTH")
    p.add_argument("--rcpt-reply", type=rcpt_reply, action="append", default=[],
                   metavar="ADDR=CODE")
    p.add_argument("--data-replies", type=data_replies, default=[], metavar="CODE,...")
    p.add_argument("--data-delay-s", type=float, default=0.0)
    p.add_argument("--pipelining", action="store_true", help="advertise PIPELINING")
    p.add_argument("--drop-on-message", type=int, default=0, metavar="N",
                   help="drop the connection instead of answering the N-th message (1-based)")
    p.add_argument("-v", "--verbose", action="store_true", help="log to stderr")
    args = p.parse_args()
    if args.mode != "plain" and not (args.cert and args.key):
        p.error(f"--mode {args.mode} needs --cert and --key")
    if args.auth and ":" not in args.auth:
        p.error("--auth must be USER:PASS")
    return args


async def serve(args):
    loop = asyncio.get_running_loop()
    tls = None
    if args.mode != "plain":
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(args.cert, args.key)

    handler = Handler(args)
    smtp_kwargs = dict(
        hostname="localhost",
        data_size_limit=DATA_SIZE_LIMIT,
        tls_context=tls if args.mode == "starttls" else None,
        require_starttls=False,
        # Only STARTTLS mode must hide AUTH until the upgrade; implicit TLS is
        # encrypted from the start, which aiosmtpd does not recognise.
        auth_require_tls=args.mode == "starttls",
        auth_required=args.require_auth,
        loop=loop,
    )
    excluded = []
    if args.auth:
        user, _, password = args.auth.partition(":")
        smtp_kwargs["authenticator"] = make_authenticator(user, password)
    else:
        excluded += ["PLAIN", "LOGIN"]
    if not xoauth2_enabled(args):
        excluded.append("XOAUTH2")
    if excluded:
        smtp_kwargs["auth_exclude_mechanism"] = excluded

    server = await loop.create_server(
        lambda: SMTP(handler, **smtp_kwargs), args.host, args.port,
        ssl=tls if args.mode == "implicit" else None)

    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    def watch_stdin():
        # Raw os.read: a daemon thread blocked in sys.stdin would hold its
        # buffer lock and can crash interpreter shutdown.
        try:
            while os.read(0, 4096):
                pass
        except OSError:
            pass
        try:
            loop.call_soon_threadsafe(stop.set)
        except RuntimeError:  # loop already closed by a signal-driven stop
            pass
    threading.Thread(target=watch_stdin, daemon=True).start()

    emit(event="ready", port=server.sockets[0].getsockname()[1])
    await stop.wait()
    server.close()


def main():
    args = parse_args()
    level = logging.DEBUG if args.verbose else logging.CRITICAL
    logging.basicConfig(stream=sys.stderr, level=level)
    if not args.verbose:
        warnings.simplefilter("ignore")
    try:
        asyncio.run(serve(args))
    finally:
        emit.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
