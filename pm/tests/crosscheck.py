#!/usr/bin/env python3
"""Independent check of lpe-pm: ticket hashes (eth-abi encode_packed + keccak), personal_sign
signatures and recovery (eth-keys), recipientRandHash and the win test, on the cases the Rust
test writes to stdin (JSON lines). Prints one line per disagreement and exits 1 if any."""
import json
import sys

from eth_abi.packed import encode_packed
from eth_hash.auto import keccak
from eth_keys import keys

N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


def personal(msg):
    return keccak(b"\x19Ethereum Signed Message:\n" + str(len(msg)).encode() + msg)


def main():
    bad = 0
    count = 0
    for line in sys.stdin:
        c = json.loads(line)
        count += 1
        aux = b""
        if c["round"] != 0 or int(c["block_hash"], 16) != 0:
            aux = encode_packed(["uint256", "bytes32"], [c["round"], bytes.fromhex(c["block_hash"][2:])])
        packed = encode_packed(
            ["address", "address", "uint256", "uint256", "uint256", "bytes32", "bytes"],
            [c["recipient"], c["sender"], int(c["face_value"]), int(c["win_prob"]), c["nonce"],
             bytes.fromhex(c["rrh"][2:]), aux])
        h = keccak(packed)
        if "0x" + h.hex() != c["hash"]:
            bad += 1
            print(f"case {count}: hash {h.hex()} != {c['hash']}")
        pk = keys.PrivateKey(bytes.fromhex(c["key"][2:]))
        if pk.public_key.to_checksum_address().lower() != c["sender"].lower():
            bad += 1
            print(f"case {count}: address differs")
        sig = pk.sign_msg_hash(personal(h))
        r, s, v = sig.r, sig.s, sig.v
        if s > N // 2:
            s, v = N - s, v ^ 1
        ours = r.to_bytes(32, "big") + s.to_bytes(32, "big") + bytes([v + 27])
        if "0x" + ours.hex() != c["sig"]:
            bad += 1
            print(f"case {count}: signature {ours.hex()} != {c['sig']}")
        theirs = bytes.fromhex(c["sig"][2:])
        rec = keys.Signature(theirs[:64] + bytes([theirs[64] - 27])).recover_public_key_from_msg_hash(personal(h))
        if rec.to_checksum_address().lower() != c["sender"].lower():
            bad += 1
            print(f"case {count}: recovered signer differs")
        rand = int(c["rand"])
        rrh = keccak(rand.to_bytes(32, "big"))
        if "0x" + rrh.hex() != c["rand_hash"]:
            bad += 1
            print(f"case {count}: recipientRandHash differs")
        win = int.from_bytes(keccak(theirs + rand.to_bytes(32, "big")), "big") < int(c["win_prob"])
        if win != c["win"]:
            bad += 1
            print(f"case {count}: win {win} != {c['win']}")
    print(f"{count} cases, {bad} disagreements")
    return 1 if bad or count == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
