#!/usr/bin/env python3
"""FastAGI server for control/tests/agi_dialplan.rs, written with pyst2 (PyPI `pyst2`,
`asterisk.agi`), an AGI library Tandem's authors did not write.

Usage: agi_route.py OUT_DIR [CONNECTIONS]

Listens on 127.0.0.1 (a free port, printed on the first stdout line) and serves
CONNECTIONS (default 1) FastAGI connections one after the other. The script run
is chosen by the request path (agi_network_script):

- route:  ANSWER, GET DATA (digits the caller sends as DTMF), SET VARIABLE TARGET to
          them, GET VARIABLE TARGET back, then return so the dialplan goes on.
- hangup: ANSWER, then WAIT FOR DIGIT 20 s read raw, so the line Tandem sends when the
          caller hangs up ("HANGUP") is recorded as is; then one more command, whose
          reply on a dead channel is recorded too.

Each connection writes OUT_DIR/<script>.json: the agi_* environment pyst2 parsed,
the results, and any error.
"""
import json
import os
import socket
import sys
import traceback

import asterisk.agi


def route(agi, out):
    agi.answer()
    out["status_after_answer"] = agi.channel_status()
    out["digits"] = agi.get_data("enter-number", 8000, 4)
    agi.set_variable("TARGET", out["digits"])
    out["target_back"] = agi.get_variable("TARGET")
    agi.verbose("routing to %s" % out["digits"])


def hangup(agi, out, f):
    agi.answer()
    f.write("WAIT FOR DIGIT 20000\n")
    f.flush()
    out["lines"] = [f.readline().strip(), f.readline().strip()]
    f.write("STREAM FILE beep \"\"\n")
    f.flush()
    out["after_hangup"] = f.readline().strip()


def main():
    out_dir = sys.argv[1]
    conns = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(4)
    print(srv.getsockname()[1], flush=True)
    srv.settimeout(60)
    for _ in range(conns):
        conn, _ = srv.accept()
        conn.settimeout(30)
        f = conn.makefile("rw", newline="\n")
        out = {}
        name = "unknown"
        try:
            agi = asterisk.agi.AGI(stdin=f, stdout=f, stderr=open(os.devnull, "w"))
            out["env"] = agi.env
            name = agi.env.get("agi_network_script", "unknown").split("?")[0]
            if name == "route":
                route(agi, out)
            elif name == "hangup":
                hangup(agi, out, f)
        except Exception as e:  # recorded for the test to show
            out["error"] = "%s: %s" % (type(e).__name__, e)
            out["trace"] = traceback.format_exc()
        with open(os.path.join(out_dir, name + ".json"), "w") as fh:
            json.dump(out, fh, indent=1)
        try:
            f.close()
            conn.close()
        except OSError:
            pass


if __name__ == "__main__":
    main()
