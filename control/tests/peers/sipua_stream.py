#!/usr/bin/env python3
"""baresip over TCP or TLS, with hold and resume: a thin layer over the shared sipua.py.

sipua.py (the shared, UDP-only baresip driver: ../shared/peers/sipua) is imported, not
copied. This wrapper adds, before its usual arguments:

  --sipua-dir DIR        where sipua.py lives (or $SIPUA_DIR)
  --transport udp|tcp|tls  the account's transport: REGISTER, INVITE and everything after
                         go over it (Contact gets ;transport=...)
  --cafile PEM           baresip's sip_cafile: the CA (or self-signed certificate) it trusts
                         for TLS
  --hold-at S            (call mode) put the call on hold S seconds after it is up
                         (baresip `hold`: re-INVITE with a=sendonly)
  --resume-at S          (call mode) resume S seconds after it is up (re-INVITE, sendrecv)

Extra JSON lines: `hold_sent` / `resume_sent` (`ok`, baresip's reply) with `t` as usual.
Everything else (commands, output, exit codes) is sipua.py's: see its README.
"""

from __future__ import annotations

import argparse
import os
import sys
import time


def main() -> int:
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--sipua-dir", default=os.environ.get("SIPUA_DIR"))
    pre.add_argument("--transport", default="udp", choices=["udp", "tcp", "tls"])
    pre.add_argument("--cafile")
    pre.add_argument("--hold-at", type=float)
    pre.add_argument("--resume-at", type=float)
    mine, rest = pre.parse_known_args()
    if not mine.sipua_dir or not os.path.exists(os.path.join(mine.sipua_dir, "sipua.py")):
        print('{"event": "error", "reason": "sipua.py not found (--sipua-dir)"}', flush=True)
        return 3
    sys.path.insert(0, mine.sipua_dir)
    import sipua  # noqa: E402  (found at run time)

    # The account's transport: Contact/AOR parameter and outbound proxy.
    orig_account = sipua.Flow.account_line

    def account_line(self) -> str:
        line = orig_account(self)
        return line.replace(";transport=udp", f";transport={mine.transport}")

    sipua.Flow.account_line = account_line

    # TLS trust: sip_cafile in baresip's config.
    orig_write = sipua.write_config

    def write_config(cfgdir: str, **kw) -> None:
        orig_write(cfgdir, **kw)
        if mine.cafile:
            with open(os.path.join(cfgdir, "config"), "a") as f:
                f.write(f"sip_cafile\t\t{mine.cafile}\n")

    sipua.write_config = write_config

    # Hold and resume at fixed times after the call is up, driven from the event pump that
    # sipua's call loop polls every 50 ms.
    orig_next = sipua.Flow.next_event
    plan = []
    if mine.hold_at is not None:
        plan.append((mine.hold_at, "hold"))
    if mine.resume_at is not None:
        plan.append((mine.resume_at, "resume"))
    plan.sort()
    state = {"up": None}

    def next_event(self, timeout: float):
        ev = orig_next(self, timeout)
        if ev and ev.get("type") == "CALL_ESTABLISHED" and state["up"] is None:
            state["up"] = time.monotonic()
        if ev and ev.get("type") == "CALL_CLOSED":
            plan.clear()
        if state["up"] is not None and plan and time.monotonic() >= state["up"] + plan[0][0]:
            _, cmd = plan.pop(0)
            resp = self.bs.command(cmd)
            sipua.emit(f"{cmd}_sent", ok=bool(resp.get("ok")),
                       data=str(resp.get("data", "")).strip()[:200])
        return ev

    sipua.Flow.next_event = next_event
    return sipua.main(rest)


if __name__ == "__main__":
    sys.exit(main())
