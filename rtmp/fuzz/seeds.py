#!/usr/bin/env python3
"""Writes the seed corpus of the rtmp_ingest target: a good publish and the four inputs that
crashed the node's previous RTMP parser (rml_rtmp 0.8). Each file: read-size byte, answers
byte, then the connection's bytes."""
import struct
from pathlib import Path

HANDSHAKE = b"\x03" + b"\x07" * 1536 * 2


def header0(csid, ts, length, type_id, stream_id):
    return bytes([csid]) + ts.to_bytes(3, "big") + length.to_bytes(3, "big") + bytes([type_id]) + struct.pack("<I", stream_id)


def chunks(csid, payload, size=128):
    out = b""
    for i in range(0, len(payload), size):
        if i:
            out += bytes([0xC0 | csid])
        out += payload[i:i + size]
    return out


def message(csid, type_id, stream_id, payload, size=128):
    return header0(csid, 0, len(payload), type_id, stream_id) + chunks(csid, payload, size)


def s(v):
    b = v.encode()
    return b"\x02" + len(b).to_bytes(2, "big") + b


def n(v):
    return b"\x00" + struct.pack(">d", v)


NULL = b"\x05"


def obj(**kw):
    out = b"\x03"
    for k, v in kw.items():
        out += len(k).to_bytes(2, "big") + k.encode() + v
    return out + b"\x00\x00\x09"


def publish(key):
    return (
        message(3, 20, 0, s("connect") + n(1) + obj(app=s("live"), tcUrl=s("rtmp://h/live")))
        + message(3, 20, 0, s("releaseStream") + n(2) + NULL + s(key))
        + message(3, 20, 0, s("FCPublish") + n(3) + NULL + s(key))
        + message(3, 20, 0, s("createStream") + n(4) + NULL)
        + message(8, 20, 1, s("publish") + n(5) + NULL + s(key) + s("live"))
        + message(4, 18, 1, s("@setDataFrame") + s("onMetaData") + b"\x08\x00\x00\x00\x01" + b"\x00\x05width" + n(320) + b"\x00\x00\x09")
        + message(6, 9, 1, bytes([0x17, 0, 0, 0, 0]) + bytes(40))
        + message(4, 8, 1, bytes([0xAF, 0x00, 0x12, 0x10]))
        + message(3, 20, 1, s("deleteStream") + n(6) + NULL + n(1))
    )


def interleaved():
    set_chunk = message(2, 1, 0, (65536).to_bytes(4, "big"))
    return set_chunk + header0(4, 0, 70000, 9, 1) + bytes(65536) + header0(5, 0, 5000, 9, 1) + bytes(5000)


seeds = {
    "publish": publish("stream-key-1234"),
    "empty_command": header0(3, 0, 0, 0x14, 0),
    "set_data_frame_only": message(4, 18, 1, s("@setDataFrame")),
    "interleaved_underflow": interleaved(),
    "nested_strict_arrays": message(3, 20, 0, s("connect") + b"\x0a\x00\x00\x00\x01" * 200_000),
}
out = Path(__file__).parent / "corpus" / "rtmp_ingest"
out.mkdir(parents=True, exist_ok=True)
for name, body in seeds.items():
    (out / name).write_bytes(bytes([255, 0x55]) + HANDSHAKE + body)
