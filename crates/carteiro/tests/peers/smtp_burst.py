#!/usr/bin/env python3
"""Opens N SMTP sessions at once against carteiro's listener, each logging in
over STARTTLS with an API key and sending one message, and prints one JSON
line: {"accepted": [ids], "retry": count, "other": [errors]}. A 4xx at any
step (or a refused connection) is "told to retry"; a 250 after DATA carries
carteiro's id ("queued as ID").

Usage: smtp_burst.py HOST PORT API_KEY N
"""
import json
import smtplib
import ssl
import sys
import threading


def one(host, port, key, i, results, lock):
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    outcome = None
    try:
        with smtplib.SMTP(host, port, timeout=60) as smtp:
            smtp.ehlo("burst.example")
            smtp.starttls(context=context)
            smtp.ehlo("burst.example")
            smtp.login("burst", key)
            smtp.mail("app@burst.example")
            code, reply = smtp.rcpt(f"r{i}@example.com")
            if code >= 400:
                raise smtplib.SMTPResponseException(code, reply)
            body = (f"From: App <app@burst.example>\r\nTo: r{i}@example.com\r\nSubject: burst {i}\r\n"
                    f"Message-ID: <burst-{i}@burst.example>\r\n\r\nmessage {i}\r\n").encode()
            code, reply = smtp.data(body)
            reply = reply.decode()
            if code == 250 and "queued as " in reply:
                outcome = ("accepted", reply.rsplit("queued as ", 1)[1].strip())
            elif 400 <= code < 500:
                outcome = ("retry", None)
            else:
                outcome = ("other", f"{code} {reply}")
    except smtplib.SMTPResponseException as e:
        outcome = ("retry", None) if 400 <= e.smtp_code < 500 else ("other", f"{e.smtp_code} {e.smtp_error!r}")
    except (smtplib.SMTPServerDisconnected, ConnectionError) as e:
        # A 421 greeting is read by smtplib as a disconnect.
        outcome = ("retry", None) if "421" in str(e) or isinstance(e, ConnectionError) else ("other", repr(e))
    except Exception as e:  # noqa: BLE001 - reported, and the test fails on it
        outcome = ("other", repr(e))
    with lock:
        results.append(outcome)


def main():
    host, port, key, n = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    results, lock = [], threading.Lock()
    threads = [threading.Thread(target=one, args=(host, port, key, i, results, lock)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(json.dumps({
        "accepted": [v for k, v in results if k == "accepted"],
        "retry": sum(1 for k, _ in results if k == "retry"),
        "other": [v for k, v in results if k == "other"],
    }))


if __name__ == "__main__":
    main()
