//! `livepeer-edge wallet`: V3 keystores that an independent implementation (PyPI eth-keyfile,
//! the same format geth and go-livepeer use) reads and writes; the password never shows.

use std::path::Path;
use std::process::Command;

const PASSWORD: &str = "tr0ub4dor&3-horse";

fn edge(data: &Path, args: &[&str], env_password: Option<&str>) -> (i32, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_livepeer-edge"));
    cmd.arg("wallet").args(args).arg("--data-dir").arg(data);
    cmd.env_remove("LPE_WALLET_PASSWORD");
    if let Some(p) = env_password {
        cmd.env("LPE_WALLET_PASSWORD", p);
    }
    let out = cmd.output().expect("run");
    let (so, se) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(
        !so.contains(PASSWORD) && !se.contains(PASSWORD),
        "password leaked"
    );
    (out.status.code().unwrap_or(-1), so, se)
}

fn python(script: &str, args: &[&str]) -> String {
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

const READ: &str = r#"
import sys, eth_keyfile
from eth_keys import keys
key = eth_keyfile.extract_key_from_keyfile(sys.argv[1], sys.argv[2].encode())
print(keys.PrivateKey(key).public_key.to_checksum_address())
"#;

const WRITE: &str = r#"
import sys, json, os, eth_keyfile
from eth_keys import keys
key = os.urandom(32)
doc = eth_keyfile.create_keyfile_json(key, sys.argv[2].encode(), kdf="scrypt")
open(sys.argv[1], "w").write(json.dumps(doc))
print(keys.PrivateKey(key).public_key.to_checksum_address())
"#;

#[test]
fn keystores_interoperate_with_eth_keyfile() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pw_file = dir.path().join("password");
    std::fs::write(&pw_file, format!("{PASSWORD}\n")).expect("write");
    let pw_arg = pw_file.to_str().expect("utf-8");

    // No password: a clear refusal.
    let data = dir.path().join("node");
    let (code, _, err) = edge(&data, &["new"], None);
    assert_eq!(code, 1);
    assert!(err.contains("password"), "{err}");

    // Ours, read by eth-keyfile.
    let (code, out, err) = edge(&data, &["new", "--password-file", pw_arg], None);
    assert_eq!(code, 0, "{err}");
    let mut lines = out.lines();
    let address = lines.next().expect("address").to_string();
    let path = lines.next().expect("path").to_string();
    assert_eq!(python(READ, &[&path, PASSWORD]), address);
    let (code, out, _) = edge(&data, &["address"], None);
    assert_eq!(code, 0);
    assert_eq!(out.trim(), address);
    let (code, exported, _) = edge(&data, &["export"], None);
    assert_eq!(code, 0);
    let backup = dir.path().join("backup.json");
    std::fs::write(&backup, exported).expect("write");
    assert_eq!(
        python(READ, &[backup.to_str().expect("utf-8"), PASSWORD]),
        address
    );
    // One account per node.
    let (code, _, err) = edge(&data, &["new", "--password-file", pw_arg], None);
    assert_eq!(code, 1, "{err}");

    // Theirs, imported by us (password from the environment this time).
    let theirs = dir.path().join("theirs.json");
    let their_address = python(WRITE, &[theirs.to_str().expect("utf-8"), PASSWORD]);
    let data2 = dir.path().join("node2");
    let (code, out, err) = edge(
        &data2,
        &["import", "--keystore-file", theirs.to_str().expect("utf-8")],
        Some(PASSWORD),
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.lines().next(), Some(their_address.as_str()));
    // A wrong password opens nothing.
    let data3 = dir.path().join("node3");
    let (code, _, err) = edge(
        &data3,
        &["import", "--keystore-file", theirs.to_str().expect("utf-8")],
        Some("wrong"),
    );
    assert_eq!(code, 1);
    assert!(err.contains("wrong password"), "{err}");
}
