#!/usr/bin/env python3
"""Writes the seed corpora under fuzz/seeds/<target>/ from the test fixtures
(RFC 4475 and RFC 5118 messages, the hostile caller-ID corpus) and from SDP bodies,
templates and capture rules of the unit tests. Run from anywhere; the seeds are committed,
so this is only needed when the fixtures change: python3 fuzz/make_seeds.py
"""

import hashlib
import pathlib
import shutil

ROOT = pathlib.Path(__file__).resolve().parent.parent
FIX = ROOT / "tests" / "fixtures"
SEEDS = ROOT / "fuzz" / "seeds"
SEP = b"\xff"  # separates the parts of a multi-part input (never occurs in UTF-8)


def hostile():
    """(id, field, value bytes) of tests/fixtures/hostile-callerid.tsv, escapes decoded."""
    rows = []
    for line in (FIX / "hostile-callerid.tsv").read_text(encoding="utf-8").splitlines()[1:]:
        if not line.strip():
            continue
        cols = line.split("\t")
        rows.append((cols[0], cols[1], unescape(cols[2])))
    return rows


def unescape(s):
    out, i, b = bytearray(), 0, s.encode("utf-8")
    while i < len(b):
        if b[i] == 0x5C and i + 1 < len(b):
            nxt = b[i + 1]
            if nxt == ord("x") and i + 3 < len(b):
                try:
                    out.append(int(b[i + 2:i + 4].decode(), 16))
                    i += 4
                    continue
                except ValueError:
                    pass
            elif nxt == ord("e"):
                out.append(0x1B)
                i += 2
                continue
            elif nxt == 0x5C:
                out.append(0x5C)
                i += 2
                continue
        out.append(b[i])
        i += 1
    return bytes(out)


def write(target, name, data):
    d = SEEDS / target
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(data)


def short(v, limit=2048):
    return v[:limit]


def invite(from_value, extra=b""):
    return (b"INVITE sip:2000@pbx.example SIP/2.0\r\n"
            b"Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKseed\r\n"
            b"From: " + from_value + b"\r\n"
            b"To: <sip:2000@pbx.example>\r\n"
            b"Call-ID: seed@192.0.2.1\r\n"
            b"CSeq: 1 INVITE\r\n"
            b"Max-Forwards: 70\r\n" + extra +
            b"Content-Length: 0\r\n\r\n")


SDP_BODIES = [
    # From the unit tests of src/call/sdp.rs.
    b"v=0\r\no=user1 53655765 2353687637 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\n"
    b"t=0 0\r\nm=audio 6000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n",
    b"v=0\no=- 1 1 IN IP4 10.0.0.1\ns=-\nc=IN IP4 10.0.0.1\nt=0 0\nm=audio 4000 RTP/AVP 8 0 18 99\n",
    b"v=0\r\no=- 7 7 IN IP4 host.example.com\r\ns=-\r\nt=0 0\r\nm=audio 5004 RTP/AVP 0\r\n"
    b"c=IN IP4 192.0.2.5/127\r\n",
    b"v=0\r\no=- 1 1 IN IP6 ::1\r\ns=-\r\nc=IN IP6 ::1\r\nt=0 0\r\nm=audio 7000 RTP/AVP 0 8\r\n",
    b"v=0\r\no=alice 1 2 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\na=sendonly\r\n"
    b"a=ptime:30\r\nm=audio 4000 RTP/AVP 0 101\r\nc=IN IP4 10.0.0.2\r\na=rtpmap:101 telephone-event/8000\r\n"
    b"a=fmtp:101 0-15\r\na=recvonly\r\na=ptime:20\r\n",
    b"v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\n"
    b"m=audio 4000 RTP/AVP 96 97 8\r\na=rtpmap:96 opus/48000/2\r\na=fmtp:96 useinbandfec=1\r\n"
    b"a=rtpmap:97 TELEPHONE-EVENT/8000\r\nm=video 5000 RTP/AVP 31\r\nm=audio 6000 RTP/AVP 0\r\n",
    b"v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\nm=audio 0 RTP/AVP 0\r\n",
]

TEMPLATES = [
    # From the unit tests of src/cti/template.rs and config.example.toml.
    b"https://www.google.com/search?q={TEL}",
    b"https://h/c/{TEL}/x",
    b"https://h/c?q={TELNAME}#frag",
    b"{SVADDR}api/search?tel={TEL}",
    b"{SVADDR}api/login?id={AID}&pw={APW}",
    b"{SVADDR}customers/{EXT_ID}",
    b"https://h/login?id={AID}&pw={APW}&sig=MD5({APW})",
    b"https://h/search?tel={TEL}&who=a b#frag",
    b"{{\"aid\":\"{AID}\"}}",
    b"MD5(UPPERCASE({AID}){DATE-YYYY}{DATE-MM}{DATE-DD})",
    b"x=LOWERCASE(SHA256(a(b)c))",
    b"https://en.wikipedia.org/wiki/Foo_(bar)?q=Md5(x)",
    b"https://h/.{TEL}/{CALLED}./..{NAME}",
    b"/usr/bin/logger -t ctiphone -- hangup {ID} {TEL} {RESULT} {DURATION}",
    b"/bin/echo '{TELNAME}' \"{TEL} x\" -- {COMPANY}",
    b"https://h/?q={TEL",
    b"a)b}c{{d",
]

CAPTURES = [
    (b"json:/data/0/company\njson:/n\nregex:token=([a-z0-9]+)",
     "{\"data\":[{\"company\":\"ACME 株式会社\"}],\"n\":42,\"x\":\"token=abc1\"}".encode()),
    (b"line:session", b"ok\nsession = xyz\n"),
    (b"json:/a\njson:/b", b"{broken"),
    (b"json:\njson:/a~1b/~0\njson:/list/1", b"{\"a/b\":{\"~\":null},\"list\":[true,1.5e300]}"),
    (b"regex:(?s)<name>(.*?)</name>\nregex:(\\d+)", b"<r><name>Bob\n</name><id>12</id></r>"),
    (b"regex:(\nregex:abc\njson:a\nxpath://a\nline:a=b", b"x"),
]


def main():
    if SEEDS.exists():
        shutil.rmtree(SEEDS)
    rows = hostile()

    # sip_message: the torture tests as they are, and each hostile value as a caller.
    for d in ("rfc4475", "rfc5118"):
        for f in sorted((FIX / d).glob("*.dat")):
            write("sip_message", f"{d}-{f.stem}", f.read_bytes())
    for rid, field, v in rows:
        v = short(v)
        if field == "display":
            frm = b'"' + v.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'" <sip:1000@pbx.example>;tag=1'
        elif field == "user":
            frm = b"<sip:" + v + b"@pbx.example>;tag=1"
        else:
            frm = v
        write("sip_message", f"hostile-{rid}", invite(frm, b"P-Asserted-Identity: " + frm + b"\r\n"))
    write("sip_message", "challenge",
          b"SIP/2.0 401 Unauthorized\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKa\r\n"
          b"From: <sip:1000@pbx>;tag=a\r\nTo: <sip:1000@pbx>;tag=b\r\nCall-ID: c\r\nCSeq: 1 REGISTER\r\n"
          b"WWW-Authenticate: Digest realm=\"pbx\", nonce=\"n\\\"1\", qop=\"auth,auth-int\", algorithm=SHA-256, opaque=\"o\"\r\n"
          b"WWW-Authenticate: Digest realm=\"pbx\", nonce=\"n2\", algorithm=MD5\r\nContent-Length: 0\r\n\r\n")

    # sdp: a first byte choosing our codecs and direction, then the body.
    bodies = list(SDP_BODIES)
    # The PBX-style bodies of docs/decisions.md D4 (video, SRTP, port-0 streams, IPv6, ...).
    bodies += [f.read_bytes() for f in sorted((FIX / "sdp").glob("*.sdp"))]
    for d in ("rfc4475", "rfc5118"):
        for f in sorted((FIX / d).glob("*.dat")):
            data = f.read_bytes()
            for sep in (b"\r\n\r\n", b"\n\n"):
                i = data.find(sep)
                if i >= 0 and data[i + len(sep):].startswith(b"v=0"):
                    bodies.append(data[i + len(sep):])
                    break
    for i, b in enumerate(bodies):
        write("sdp", f"body-{i:02}", bytes([i * 37 % 256]) + b)

    # cti_template: each template with a few hostile values, and each value in a template.
    values = [short(v, 512) for _, _, v in rows]
    for i, t in enumerate(TEMPLATES):
        write("cti_template", f"template-{i:02}", t + SEP + b"+81 3-1234&x=1" + SEP + b"Taro" + SEP + b"s3cret")
    for rid, _, v in rows:
        t = TEMPLATES[int(hashlib.sha256(rid.encode()).hexdigest(), 16) % len(TEMPLATES)]
        write("cti_template", f"hostile-{rid}", t + SEP + short(v, 512))

    # ui_text: a width byte, then the value.
    for rid, _, v in rows:
        write("ui_text", f"hostile-{rid}", bytes([80]) + short(v, 4096))
    write("ui_text", "kana", bytes([7]) + "ﾔﾏﾀﾞ ﾀﾛｳ 山田 太郎 e\u0301\u0336\u0336\u0336".encode())

    # cti_capture: rules, 0xFF, reply; and hostile values inside a JSON reply.
    for i, (rules, body) in enumerate(CAPTURES):
        write("cti_capture", f"rules-{i:02}", rules + SEP + body)
    for rid, _, v in rows[:24]:
        text = v.decode("utf-8", "replace")
        esc = text.replace("\\", "\\\\").replace('"', '\\"')
        esc = "".join(c if ord(c) >= 0x20 else f"\\u{ord(c):04x}" for c in esc)
        body = f'{{"data":[{{"company":"{esc}"}}],"name":"{esc}"}}\nsession={esc}\ntoken={esc}'
        write("cti_capture", f"hostile-{rid}", short(body.encode(), 4096))


if __name__ == "__main__":
    main()
