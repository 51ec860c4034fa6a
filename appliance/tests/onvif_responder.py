"""An ONVIF camera for the tests, run inside a network namespace the test creates.

Answers WS-Discovery probes for NetworkVideoTransmitter on 239.255.255.250:3702 with a
ProbeMatch naming its device service, and serves the device and media services over HTTP:
GetCapabilities, GetDeviceInformation, GetProfiles, GetStreamUri, each only with a valid
WS-Security UsernameToken digest for USER/PASSWORD (otherwise a NotAuthorized fault).

Usage: onvif_responder.py ADDRESS HTTP_PORT USER PASSWORD. Prints "ready" once listening.
"""

import base64
import hashlib
import http.server
import re
import socket
import struct
import sys
import threading

ADDRESS, PORT, USER, PASSWORD = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
DEVICE = f"http://{ADDRESS}:{PORT}/onvif/device_service"
# The camera names its media service by another host, as cameras behind NAT do.
MEDIA = f"http://192.0.2.99:{PORT}/onvif/media_service"
ENV = '<?xml version="1.0" encoding="UTF-8"?><s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope" xmlns:tt="http://www.onvif.org/ver10/schema" xmlns:tds="http://www.onvif.org/ver10/device/wsdl" xmlns:trt="http://www.onvif.org/ver10/media/wsdl" xmlns:ter="http://www.onvif.org/ver10/error">{header}<s:Body>{body}</s:Body></s:Envelope>'


def discovery():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", 3702))
    s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP,
                 struct.pack("4s4s", socket.inet_aton("239.255.255.250"), socket.inet_aton(ADDRESS)))
    while True:
        data, peer = s.recvfrom(65536)
        text = data.decode("utf-8", "replace")
        if "NetworkVideoTransmitter" not in text or "Probe" not in text:
            continue
        m = re.search(r"<[^>]*MessageID>([^<]+)<", text)
        if not m:
            continue
        header = ('<s:Header><w:RelatesTo xmlns:w="http://schemas.xmlsoap.org/ws/2004/08/addressing">'
                  f"{m.group(1)}</w:RelatesTo></s:Header>")
        body = ('<d:ProbeMatches xmlns:d="http://schemas.xmlsoap.org/ws/2005/04/discovery" '
                'xmlns:w="http://schemas.xmlsoap.org/ws/2004/08/addressing"><d:ProbeMatch>'
                "<w:EndpointReference><w:Address>urn:uuid:5a1e0000-0000-4000-a000-00000000c0de</w:Address></w:EndpointReference>"
                "<d:Types>dn:NetworkVideoTransmitter</d:Types>"
                "<d:Scopes>onvif://www.onvif.org/name/Stage%20Left onvif://www.onvif.org/hardware/TestCam-2 "
                "onvif://www.onvif.org/location/hall</d:Scopes>"
                f"<d:XAddrs>{DEVICE}</d:XAddrs><d:MetadataVersion>1</d:MetadataVersion></d:ProbeMatch></d:ProbeMatches>")
        s.sendto(ENV.format(header=header, body=body).encode(), peer)


def authorized(text):
    user = re.search(r"<(?:\w+:)?Username>([^<]*)<", text)
    digest = re.search(r"<(?:\w+:)?Password[^>]*>([^<]*)<", text)
    nonce = re.search(r"<(?:\w+:)?Nonce[^>]*>([^<]*)<", text)
    created = re.search(r"<(?:\w+:)?Created[^>]*>([^<]*)<", text)
    if not (user and digest and nonce and created) or user.group(1) != USER:
        return False
    expected = base64.b64encode(hashlib.sha1(
        base64.b64decode(nonce.group(1)) + created.group(1).encode() + PASSWORD.encode()).digest()).decode()
    return expected == digest.group(1)


def answer(text):
    if "GetCapabilities" in text:
        return (f"<tds:GetCapabilitiesResponse><tds:Capabilities><tt:Media><tt:XAddr>{MEDIA}</tt:XAddr>"
                "</tt:Media></tds:Capabilities></tds:GetCapabilitiesResponse>")
    if "GetDeviceInformation" in text:
        return ("<tds:GetDeviceInformationResponse><tds:Manufacturer>Test &amp; Co</tds:Manufacturer>"
                "<tds:Model>TestCam-2</tds:Model><tds:FirmwareVersion>1.2.3</tds:FirmwareVersion>"
                "<tds:SerialNumber>SN42</tds:SerialNumber></tds:GetDeviceInformationResponse>")
    if "GetProfiles" in text:
        profile = ('<trt:Profiles token="{t}" fixed="true"><tt:Name>{n}</tt:Name><tt:VideoEncoderConfiguration token="v{t}">'
                   "<tt:Encoding>H264</tt:Encoding><tt:Resolution><tt:Width>{w}</tt:Width><tt:Height>{h}</tt:Height>"
                   "</tt:Resolution><tt:RateControl><tt:FrameRateLimit>25</tt:FrameRateLimit></tt:RateControl>"
                   "</tt:VideoEncoderConfiguration></trt:Profiles>")
        return ("<trt:GetProfilesResponse>" + profile.format(t="main", n="mainStream", w=1920, h=1080)
                + profile.format(t="sub", n="subStream", w=640, h=360) + "</trt:GetProfilesResponse>")
    m = re.search(r"<(?:\w+:)?ProfileToken>([^<]*)<", text)
    if "GetStreamUri" in text and m:
        path = {"main": "Streaming/101", "sub": "Streaming/102"}.get(m.group(1))
        if path:
            return (f"<trt:GetStreamUriResponse><trt:MediaUri><tt:Uri>rtsp://admin:leak@{ADDRESS}:554/{path}</tt:Uri>"
                    "</trt:MediaUri></trt:GetStreamUriResponse>")
    return None


class Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        text = self.rfile.read(int(self.headers.get("content-length", 0))).decode("utf-8", "replace")
        if not authorized(text):
            body = ('<s:Fault><s:Code><s:Value>s:Sender</s:Value><s:Subcode><s:Value>ter:NotAuthorized</s:Value>'
                    '</s:Subcode></s:Code><s:Reason><s:Text xml:lang="en">Sender not Authorized</s:Text></s:Reason></s:Fault>')
            status = 400
        else:
            body = answer(text)
            status = 200 if body else 400
            body = body or '<s:Fault><s:Code><s:Value>s:Sender</s:Value></s:Code><s:Reason><s:Text>unknown</s:Text></s:Reason></s:Fault>'
        data = ENV.format(header="", body=body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/soap+xml; charset=utf-8")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


threading.Thread(target=discovery, daemon=True).start()
server = http.server.ThreadingHTTPServer((ADDRESS, PORT), Handler)
print("ready", flush=True)
server.serve_forever()
