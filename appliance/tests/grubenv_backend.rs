//! The GRUB images' RAUC bootloader backend (`image/rauc/grubenv-backend`), driven as RAUC
//! drives it through a box's life, its blocks read back and changed by GRUB's own tool: RAUC's
//! GRUB slot logic, written in place.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

fn backend() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../image/rauc/grubenv-backend")
}

fn run(env: &Path, args: &[&str]) -> Result<String, String> {
    let out = Command::new(backend())
        .args(args)
        .env("GRUBENV", env)
        .output()
        .expect("the backend runs");
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

fn editenv(env: &Path, args: &[&str]) -> String {
    let out = Command::new("grub-editenv")
        .arg(env)
        .args(args)
        .output()
        .expect("grub-editenv runs");
    assert!(out.status.success(), "grub-editenv {args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The variables as GRUB's parser reads them.
fn grub_reads(env: &Path) -> BTreeMap<String, String> {
    editenv(env, &["list"])
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A write by the backend: the same file (inode, 1024 bytes), and the block's second sector
/// nothing but padding, so a torn write leaves the old block or the new one.
fn step(env: &Path, args: &[&str]) -> String {
    let before = std::fs::metadata(env).expect("env").ino();
    let out = run(env, args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
    let block = std::fs::read(env).expect("env");
    assert_eq!(block.len(), 1024, "{args:?}");
    assert!(block[512..].iter().all(|b| *b == b'#'), "{args:?}");
    assert_eq!(
        std::fs::metadata(env).expect("env").ino(),
        before,
        "{args:?}"
    );
    out
}

#[test]
fn the_grubenv_backend_keeps_rauc_slot_logic_and_writes_in_place() {
    let dir = tempfile::tempdir().expect("tempdir");
    let env = dir.path().join("grubenv");
    // As the images are built: a block GRUB reads as slot A good and first.
    let first_boot = vars(&[
        ("ORDER", "A B"),
        ("A_OK", "1"),
        ("B_OK", "0"),
        ("A_TRY", "0"),
        ("B_TRY", "0"),
    ]);
    run(&env, &["create"]).expect("create");
    assert_eq!(grub_reads(&env), first_boot);
    let created = std::fs::read(&env).expect("env");
    assert!(run(&env, &["create"]).is_err(), "create over a block");
    assert_eq!(std::fs::read(&env).expect("env"), created);
    assert_eq!(step(&env, &["get-primary"]), "A");
    assert_eq!(step(&env, &["get-state", "A"]), "good");
    assert_eq!(step(&env, &["get-state", "B"]), "bad");

    // GRUB boots A and marks it tried; until the node marks it good, A is not primary.
    editenv(&env, &["set", "A_TRY=1"]);
    assert_eq!(step(&env, &["get-state", "A"]), "bad");
    assert!(run(&env, &["get-primary"]).is_err());
    step(&env, &["set-state", "A", "good"]);
    assert_eq!(grub_reads(&env), first_boot);

    // An update installed to B: B first and good, A kept as the fallback.
    step(&env, &["set-primary", "B"]);
    assert_eq!(
        grub_reads(&env),
        vars(&[
            ("ORDER", "B A"),
            ("A_OK", "1"),
            ("B_OK", "1"),
            ("A_TRY", "0"),
            ("B_TRY", "0")
        ])
    );
    assert_eq!(step(&env, &["get-primary"]), "B");

    // B was tried and never came up: GRUB went back to A, which marks B bad.
    editenv(&env, &["set", "B_TRY=1", "A_TRY=1"]);
    step(&env, &["set-state", "A", "good"]);
    step(&env, &["set-state", "B", "bad"]);
    assert_eq!(step(&env, &["get-primary"]), "A");
    assert_eq!(step(&env, &["get-state", "B"]), "bad");
    assert_eq!(
        grub_reads(&env),
        vars(&[
            ("ORDER", "B A"),
            ("A_OK", "1"),
            ("B_OK", "0"),
            ("A_TRY", "0"),
            ("B_TRY", "0")
        ])
    );

    // What it refuses, leaving the block as it was.
    let kept = std::fs::read(&env).expect("env");
    assert!(run(&env, &["set-state", "C", "good"]).is_err());
    assert!(run(&env, &["set-state", "A", "maybe"]).is_err());
    assert!(run(&env, &["set-primary"]).is_err());
    assert!(run(&env, &["reboot"]).is_err());
    assert_eq!(std::fs::read(&env).expect("env"), kept);

    // An environment GRUB would not load is an error, never a guess at the slots' states.
    for broken in [&b""[..], &b"ORDER=A B\n"[..], &kept[..512]] {
        std::fs::write(&env, broken).expect("env");
        let e = run(&env, &["get-primary"]).expect_err("a broken block");
        assert!(e.contains("environment block"), "{e}");
        assert!(run(&env, &["set-state", "A", "good"]).is_err());
        assert_eq!(std::fs::read(&env).expect("env"), broken);
    }
    std::fs::remove_file(&env).expect("env");
    assert!(run(&env, &["get-state", "A"]).is_err());
    assert!(!env.exists());
}
