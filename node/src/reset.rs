//! Factory reset: the data directory emptied, the wallet's keystore kept unless asked.
//!
//! A reset is asked for by writing a marker file and restarting; the next start empties the
//! directory before anything opens it, and removes the marker last. A power cut during the
//! erase leaves the marker, so the next start finishes the job: a box is never left half
//! reset.

use std::path::Path;

/// The marker, in the data directory: `keep-keys` or `all`.
const MARKER: &str = "factory-reset";
/// The wallet's keystore directory, kept by a reset that keeps keys.
const KEYSTORE: &str = "keystore";
/// Made by `mkfs.ext4` at a filesystem's root and owned by root: left as it is.
const LOST_AND_FOUND: &str = "lost+found";

/// Asks for a reset at the next start.
pub fn request(data_dir: &Path, keep_keys: bool) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = data_dir.join(format!("{MARKER}.tmp"));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(if keep_keys { b"keep-keys\n" } else { b"all\n" })?;
    f.sync_all()?;
    std::fs::rename(&tmp, data_dir.join(MARKER))?;
    std::fs::File::open(data_dir)?.sync_all()
}

/// Finishes a requested reset, if there is one: everything in `data_dir` but the marker, the
/// keystore when it is kept and `lost+found` is deleted, then the marker. Whether a reset
/// was done.
pub fn finish_pending(data_dir: &Path) -> std::io::Result<bool> {
    let marker = data_dir.join(MARKER);
    let keep_keys = match std::fs::read_to_string(&marker) {
        Ok(text) => text.trim() != "all",
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    for entry in std::fs::read_dir(data_dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let keep = name == MARKER || name == LOST_AND_FOUND || (keep_keys && name == KEYSTORE);
        if keep {
            continue;
        }
        if entry.file_type()?.is_dir() {
            std::fs::remove_dir_all(entry.path())?;
        } else {
            std::fs::remove_file(entry.path())?;
        }
    }
    std::fs::File::open(data_dir)?.sync_all()?;
    std::fs::remove_file(&marker)?;
    std::fs::File::open(data_dir)?.sync_all()?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data_dir() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        for f in [
            "node.db",
            "node.db-wal",
            "keystore/UTC--key",
            "hls/s1/0.ts",
            "tls/cert.pem",
        ] {
            let p = dir.path().join(f);
            std::fs::create_dir_all(p.parent().expect("parent")).expect("dir");
            std::fs::write(p, b"x").expect("file");
        }
        dir
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut n: Vec<String> = std::fs::read_dir(dir)
            .expect("list")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        n.sort();
        n
    }

    #[test]
    fn nothing_happens_unless_asked() {
        let dir = data_dir();
        assert!(!finish_pending(dir.path()).expect("finish"));
        assert_eq!(
            names(dir.path()),
            ["hls", "keystore", "node.db", "node.db-wal", "tls"]
        );
    }

    #[test]
    fn a_reset_keeps_the_keystore_unless_told_otherwise() {
        let dir = data_dir();
        request(dir.path(), true).expect("request");
        assert!(finish_pending(dir.path()).expect("finish"));
        assert_eq!(names(dir.path()), ["keystore"]);
        assert!(dir.path().join("keystore/UTC--key").exists());
        assert!(!finish_pending(dir.path()).expect("once"), "done once");

        let dir = data_dir();
        request(dir.path(), false).expect("request");
        assert!(finish_pending(dir.path()).expect("finish"));
        assert!(names(dir.path()).is_empty());
    }
}
