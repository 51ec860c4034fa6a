#!/usr/bin/env python3
"""Bare ecrecover rate of libsecp256k1 (through coincurve) on one core, on personal_sign
signatures like the ones tickets carry. Prints JSON."""
import json
import os
import sys
import time

import coincurve
from eth_hash.auto import keccak

n = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
key = coincurve.PrivateKey(bytes([0x31]) * 32)
cases = []
for i in range(1000):
    digest = keccak(b"\x19Ethereum Signed Message:\n32" + keccak(os.urandom(32)))
    cases.append((key.sign_recoverable(digest, hasher=None), digest))
start = time.perf_counter()
for i in range(n):
    sig, digest = cases[i % len(cases)]
    coincurve.PublicKey.from_signature_and_message(sig, digest, hasher=None)
secs = time.perf_counter() - start
print(json.dumps({"recovers": n, "seconds": round(secs, 4), "per_second": round(n / secs, 1)}))
