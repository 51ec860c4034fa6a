"""Schemathesis hooks for the node's API: SDP bodies (WebRTC offers) go on the wire as text."""

import schemathesis

schemathesis.serializer.alias("application/sdp", "text/plain")
