#!/usr/bin/env python3
"""g729ua: a minimal G.729-only SIP user agent for Tandem's transcoding tests.

Python 3 standard library plus ctypes to libbcg729 (Debian libbcg729-0 /
libbcg729-dev), used as an independent G.729 implementation. Loopback only.

Commands (one JSON object per output line, like sipua.py):

  g729ua.py answer --registrar 127.0.0.1:5060 --user 1002 --password pw \
                   --play in.wav --record out.wav [--timeout 30]
      REGISTER with digest auth (MD5 or SHA-256, qop=auth), wait for one
      INVITE, answer it with a G.729-only SDP (PT 18, annexb=no, ptime 20),
      send 200 ms of silence and then `--play` (8 kHz mono 16-bit WAV) encoded with bcg729 as RTP, 20 ms
      per packet (2 frames), then silence; decode what arrives with bcg729 and
      write it to `--record` on BYE. Exit 0 when audio flowed both ways.
  g729ua.py loopback in.wav out.wav
      bcg729 encode + decode of a WAV (the codec-only reference).
  g729ua.py clip in.wav out.wav --start S --seconds N
      cut a part of a WAV.

Exit codes: 0 ok, 1 call flow failed, 3 libbcg729 missing, 4 registration
failed, 5 timeout.
"""

import argparse
import ctypes
import ctypes.util
import hashlib
import json
import os
import random
import re
import socket
import struct
import sys
import threading
import time
import wave

T0 = time.monotonic()
LEAD_IN_SAMPLES = 1600  # 200 ms of silence before --play


def emit(event, **fields):
    fields = {"event": event, "t": round(time.monotonic() - T0, 3), **fields}
    print(json.dumps(fields), flush=True)


# ---------------------------------------------------------------- bcg729


def load_bcg729():
    names = [ctypes.util.find_library("bcg729"), "libbcg729.so.0", "libbcg729.so"]
    for n in names:
        if not n:
            continue
        try:
            lib = ctypes.CDLL(n)
        except OSError:
            continue
        lib.initBcg729EncoderChannel.restype = ctypes.c_void_p
        lib.initBcg729EncoderChannel.argtypes = [ctypes.c_uint8]
        lib.initBcg729DecoderChannel.restype = ctypes.c_void_p
        lib.initBcg729DecoderChannel.argtypes = []
        lib.bcg729Encoder.restype = None
        lib.bcg729Encoder.argtypes = [
            ctypes.c_void_p,
            ctypes.POINTER(ctypes.c_int16),
            ctypes.POINTER(ctypes.c_uint8),
            ctypes.POINTER(ctypes.c_uint8),
        ]
        lib.bcg729Decoder.restype = None
        lib.bcg729Decoder.argtypes = [
            ctypes.c_void_p,
            ctypes.POINTER(ctypes.c_uint8),
            ctypes.c_uint8,
            ctypes.c_uint8,
            ctypes.c_uint8,
            ctypes.c_uint8,
            ctypes.POINTER(ctypes.c_int16),
        ]
        return lib
    return None


class G729:
    """One bcg729 encoder and decoder (no VAD)."""

    def __init__(self, lib):
        self.lib = lib
        self.enc = lib.initBcg729EncoderChannel(0)
        self.dec = lib.initBcg729DecoderChannel()

    def encode(self, pcm):
        """80 samples -> 10 bytes."""
        inp = (ctypes.c_int16 * 80)(*pcm)
        out = (ctypes.c_uint8 * 10)()
        n = ctypes.c_uint8(0)
        self.lib.bcg729Encoder(self.enc, inp, out, ctypes.byref(n))
        return bytes(out[: n.value])

    def decode(self, payload):
        """RTP payload (10-byte frames, optional 2-byte SID) -> samples."""
        samples = []
        off = 0
        while off < len(payload):
            frame = payload[off : off + 10]
            sid = 1 if len(frame) == 2 else 0
            if len(frame) not in (2, 10):
                break
            inp = (ctypes.c_uint8 * len(frame))(*frame)
            out = (ctypes.c_int16 * 80)()
            self.lib.bcg729Decoder(self.dec, inp, len(frame), 0, sid, 0, out)
            samples.extend(out)
            off += len(frame)
        return samples


# ---------------------------------------------------------------- WAV


def read_wav(path):
    with wave.open(path, "rb") as w:
        if w.getsampwidth() != 2:
            raise SystemExit(f"{path}: need 16-bit PCM")
        rate, ch = w.getframerate(), w.getnchannels()
        raw = w.readframes(w.getnframes())
    s = list(struct.unpack(f"<{len(raw) // 2}h", raw))
    if ch > 1:
        s = s[::ch]
    if rate != 8000:
        step = rate / 8000.0
        s = [s[int(i * step)] for i in range(int(len(s) / step))]
    return s


def write_wav(path, samples):
    with wave.open(path, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(struct.pack(f"<{len(samples)}h", *samples))


# ---------------------------------------------------------------- SIP


def parse_msg(data):
    text = data.decode("utf-8", "replace")
    head, _, body = text.partition("\r\n\r\n")
    lines = head.split("\r\n")
    start = lines[0]
    headers = []
    for ln in lines[1:]:
        if ":" in ln:
            k, v = ln.split(":", 1)
            headers.append((k.strip(), v.strip()))
    return start, headers, body


def hget(headers, name, all_=False):
    short = {"via": "v", "from": "f", "to": "t", "call-id": "i", "cseq": "", "contact": "m"}
    names = {name.lower(), short.get(name.lower(), name.lower())}
    vals = [v for k, v in headers if k.lower() in names]
    return vals if all_ else (vals[0] if vals else None)


def digest(chal, method, uri, user, password):
    params = dict(re.findall(r'(\w+)="?([^",]*)"?', chal))
    algo = params.get("algorithm", "MD5").upper()
    h = hashlib.sha256 if algo == "SHA-256" else hashlib.md5
    hx = lambda s: h(s.encode()).hexdigest()
    realm, nonce = params.get("realm", ""), params.get("nonce", "")
    ha1 = hx(f"{user}:{realm}:{password}")
    ha2 = hx(f"{method}:{uri}")
    cnonce = "%08x" % random.getrandbits(32)
    nc = "00000001"
    if "qop" in params:
        resp = hx(f"{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}")
        return (
            f'Digest username="{user}", realm="{realm}", nonce="{nonce}", uri="{uri}", '
            f'response="{resp}", algorithm={algo}, qop=auth, nc={nc}, cnonce="{cnonce}"'
        )
    resp = hx(f"{ha1}:{nonce}:{ha2}")
    return (
        f'Digest username="{user}", realm="{realm}", nonce="{nonce}", uri="{uri}", '
        f'response="{resp}", algorithm={algo}'
    )


class Ua:
    def __init__(self, args, g729):
        self.args = args
        self.g = g729
        host, port = args.registrar.rsplit(":", 1)
        self.reg = (host, int(port))
        self.sip = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sip.bind(("127.0.0.1", 0))
        self.sip.settimeout(0.2)
        self.port = self.sip.getsockname()[1]
        self.rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.rtp.bind(("127.0.0.1", 0))
        self.rtp.settimeout(0.05)
        self.rtp_port = self.rtp.getsockname()[1]
        self.tag = "%x" % random.getrandbits(48)
        self.call_id = "%x@127.0.0.1" % random.getrandbits(64)
        self.stop = threading.Event()
        self.remote_media = None
        self.rx_samples = []
        self.rx_packets = 0
        self.tx_packets = 0
        self.rx_bad = 0

    def send(self, text, dest):
        self.sip.sendto(text.encode(), dest)

    def recv(self, deadline):
        while time.monotonic() < deadline:
            try:
                data, src = self.sip.recvfrom(65535)
            except socket.timeout:
                continue
            return parse_msg(data) + (src,)
        return None

    def register(self):
        a = self.args
        uri = f"sip:{self.reg[0]}:{self.reg[1]}"
        auth = None
        for cseq in (1, 2, 3):
            lines = [
                f"REGISTER {uri} SIP/2.0",
                f"Via: SIP/2.0/UDP 127.0.0.1:{self.port};branch=z9hG4bK{random.getrandbits(48):x};rport",
                "Max-Forwards: 70",
                f"From: <sip:{a.user}@{self.reg[0]}:{self.reg[1]}>;tag={self.tag}",
                f"To: <sip:{a.user}@{self.reg[0]}:{self.reg[1]}>",
                f"Call-ID: reg-{self.call_id}",
                f"CSeq: {cseq} REGISTER",
                f"Contact: <sip:{a.user}@127.0.0.1:{self.port}>",
                "Expires: 300",
                "User-Agent: g729ua",
            ]
            if auth:
                lines.append(auth)
            self.send("\r\n".join(lines + ["Content-Length: 0", "", ""]), self.reg)
            m = self.recv(time.monotonic() + 5)
            while m and m[0].split(" ")[1] in ("100",):
                m = self.recv(time.monotonic() + 5)
            if not m:
                emit("registration_failed", status=None)
                return False
            code = int(m[0].split(" ")[1])
            if code == 200:
                emit("registered", status=200)
                return True
            if code in (401, 407):
                chals = hget(m[1], "WWW-Authenticate" if code == 401 else "Proxy-Authenticate", True)
                chal = next((c for c in chals if "MD5" in c.upper()), chals[0] if chals else "")
                hdr = "Authorization" if code == 401 else "Proxy-Authorization"
                auth = f"{hdr}: " + digest(chal, "REGISTER", uri, a.user, a.password)
                continue
            emit("registration_failed", status=code)
            return False
        emit("registration_failed", status=None)
        return False

    def sdp_answer(self):
        sid = random.getrandbits(31)
        return (
            "v=0\r\n"
            f"o=g729ua {sid} {sid} IN IP4 127.0.0.1\r\n"
            "s=g729ua\r\n"
            "c=IN IP4 127.0.0.1\r\n"
            "t=0 0\r\n"
            f"m=audio {self.rtp_port} RTP/AVP 18\r\n"
            "a=rtpmap:18 G729/8000\r\n"
            "a=fmtp:18 annexb=no\r\n"
            "a=ptime:20\r\n"
            "a=sendrecv\r\n"
        )

    def response(self, headers, code, reason, body="", to_tag=True):
        lines = [f"SIP/2.0 {code} {reason}"]
        for v in hget(headers, "Via", True):
            lines.append(f"Via: {v}")
        lines.append(f"From: {hget(headers, 'From')}")
        to = hget(headers, "To")
        if to_tag and ";tag=" not in to:
            to += f";tag={self.tag}"
        lines.append(f"To: {to}")
        lines.append(f"Call-ID: {hget(headers, 'Call-ID')}")
        lines.append(f"CSeq: {hget(headers, 'CSeq')}")
        lines.append(f"Contact: <sip:{self.args.user}@127.0.0.1:{self.port}>")
        if body:
            lines.append("Content-Type: application/sdp")
        lines.append(f"Content-Length: {len(body.encode())}")
        return "\r\n".join(lines) + "\r\n\r\n" + body

    def media_tx(self, play):
        """Send 200 ms of silence, `play`, then silence, 20 ms per packet,
        until stopped. The lead-in keeps the clip whole when the first packets
        race the caller's 200 OK (a UA that is not yet in the call drops
        them), as a person answering a phone says nothing for a moment."""
        play = [0] * LEAD_IN_SAMPLES + list(play)
        seq, ts, ssrc = random.getrandbits(16), random.getrandbits(32), random.getrandbits(32)
        pos = 0
        nxt = time.monotonic()
        first = True
        while not self.stop.is_set():
            chunk = play[pos : pos + 160]
            pos += 160
            if len(chunk) < 160:
                chunk = list(chunk) + [0] * (160 - len(chunk))
            payload = self.g.encode(chunk[:80]) + self.g.encode(chunk[80:])
            hdr = struct.pack(
                "!BBHII", 0x80, (0x80 if first else 0) | 18, seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc
            )
            first = False
            self.rtp.sendto(hdr + payload, self.remote_media)
            self.tx_packets += 1
            seq += 1
            ts += 160
            nxt += 0.02
            now = time.monotonic()
            if now - nxt > 0.06:
                # Descheduled (busy machine): send late rather than in a burst
                # that the far end's jitter buffer would throw away.
                nxt = now
            time.sleep(max(0.0, nxt - now))

    def media_rx(self):
        while not self.stop.is_set():
            try:
                data, _ = self.rtp.recvfrom(2048)
            except socket.timeout:
                continue
            if len(data) < 12 or data[0] >> 6 != 2:
                self.rx_bad += 1
                continue
            pt = data[1] & 0x7F
            cc = data[0] & 0x0F
            payload = data[12 + 4 * cc :]
            if pt != 18:
                continue  # telephone-event or anything else
            if self.rx_packets == 0:
                emit("rtp_started")
            self.rx_packets += 1
            self.rx_samples.extend(self.g.decode(payload))

    def answer(self, play):
        deadline = time.monotonic() + self.args.timeout
        emit("waiting", contact=f"sip:{self.args.user}@127.0.0.1:{self.port}")
        invite = None
        threads = []
        ok_text = None
        established = False
        while time.monotonic() < deadline:
            m = self.recv(min(deadline, time.monotonic() + 0.5))
            if m is None:
                if invite and not established and ok_text:
                    self.send(ok_text, invite[3])  # retransmit 200 until ACK
                continue
            start, headers, body, src = m
            method = start.split(" ")[0]
            if method == "INVITE" and invite is None:
                offer = body
                if not re.search(r"^m=audio \d+ RTP/AVP[^\r\n]*\b18\b", offer, re.M):
                    emit("closed", reason="offer without G.729", offer=offer)
                    self.send(self.response(headers, 488, "Not Acceptable Here"), src)
                    return 1
                c = re.search(r"^c=IN IP4 (\S+)", offer, re.M).group(1)
                port = int(re.search(r"^m=audio (\d+)", offer, re.M).group(1))
                self.remote_media = (c, port)
                invite = (start, headers, body, src)
                emit("incoming", peer=f"{src[0]}:{src[1]}", offer_formats=re.search(r"^m=audio \d+ RTP/AVP ([^\r\n]*)", offer, re.M).group(1))
                self.send(self.response(headers, 180, "Ringing"), src)
                ok_text = self.response(headers, 200, "OK", self.sdp_answer())
                self.send(ok_text, src)
            elif method == "INVITE":
                self.send(ok_text, src)
            elif method == "ACK" and invite and not established:
                established = True
                emit("established", peer=f"{invite[3][0]}:{invite[3][1]}")
                threads = [
                    threading.Thread(target=self.media_tx, args=(play,), daemon=True),
                    threading.Thread(target=self.media_rx, daemon=True),
                ]
                for t in threads:
                    t.start()
            elif method == "BYE":
                self.send(self.response(headers, 200, "OK", to_tag=False), src)
                self.stop.set()
                for t in threads:
                    t.join(2)
                emit("closed", reason="remote BYE")
                break
            elif method in ("OPTIONS", "CANCEL"):
                self.send(self.response(headers, 200, "OK"), src)
                if method == "CANCEL":
                    emit("closed", reason="CANCEL")
                    return 1
        else:
            self.stop.set()
            emit("result", ok=False, reason="timeout")
            return 5
        if self.args.record:
            write_wav(self.args.record, self.rx_samples)
            emit("recorded", path=self.args.record, seconds=len(self.rx_samples) / 8000.0)
        emit("stats", tx_packets=self.tx_packets, rx_packets=self.rx_packets, rx_bad=self.rx_bad)
        ok = established and self.rx_packets > 0 and self.tx_packets > 0
        emit("result", ok=ok, exit=0 if ok else 1)
        return 0 if ok else 1


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    an = sub.add_parser("answer")
    an.add_argument("--registrar", required=True)
    an.add_argument("--user", required=True)
    an.add_argument("--password", required=True)
    an.add_argument("--play", required=True)
    an.add_argument("--record")
    an.add_argument("--timeout", type=float, default=30.0)
    lb = sub.add_parser("loopback")
    lb.add_argument("inp")
    lb.add_argument("out")
    cl = sub.add_parser("clip")
    cl.add_argument("inp")
    cl.add_argument("out")
    cl.add_argument("--start", type=float, default=0.0)
    cl.add_argument("--seconds", type=float, required=True)
    a = p.parse_args()

    if a.cmd == "clip":
        s = read_wav(a.inp)
        i = int(a.start * 8000)
        write_wav(a.out, s[i : i + int(a.seconds * 8000)])
        return 0
    lib = load_bcg729()
    if lib is None:
        emit("result", ok=False, exit=3, reason="libbcg729 not found (apt-get install libbcg729-dev)")
        return 3
    g = G729(lib)
    if a.cmd == "loopback":
        s = read_wav(a.inp)
        s = s[: len(s) - len(s) % 80]
        out = []
        for i in range(0, len(s), 80):
            out.extend(g.decode(g.encode(s[i : i + 80])))
        write_wav(a.out, out)
        return 0
    ua = Ua(a, g)
    if not ua.register():
        return 4
    return ua.answer(read_wav(a.play))


if __name__ == "__main__":
    sys.exit(main())
