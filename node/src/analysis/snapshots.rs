//! Object snapshots on disk: `<data_dir>/snapshots/<detection id>.jpg` (0600), kept within
//! a count and a byte budget, the oldest deleted first.

use std::collections::VecDeque;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::PathBuf;
use std::sync::Mutex;

pub struct Snapshots {
    dir: PathBuf,
    kept: usize,
    max_bytes: u64,
    /// Oldest first: `(id, bytes)`.
    index: Mutex<(VecDeque<(String, u64)>, u64)>,
}

/// Detection ids are made by the node; anything else is never a file name here.
fn valid(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl Snapshots {
    /// Opens (creates) the directory and indexes what it holds by age.
    pub fn open(dir: PathBuf, kept: usize, max_bytes: u64) -> std::io::Result<Self> {
        std::fs::create_dir_all(&dir)?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
        let mut found: Vec<(std::time::SystemTime, String, u64)> = std::fs::read_dir(&dir)?
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_str()?.to_string();
                let id = name.strip_suffix(".jpg")?.to_string();
                let meta = e.metadata().ok()?;
                valid(&id).then_some((meta.modified().ok()?, id, meta.len()))
            })
            .collect();
        found.sort();
        let total = found.iter().map(|f| f.2).sum();
        let index = found.into_iter().map(|(_, id, n)| (id, n)).collect();
        let s = Self {
            dir,
            kept: kept.max(1),
            max_bytes,
            index: Mutex::new((index, total)),
        };
        s.enforce();
        Ok(s)
    }

    pub fn path(&self, id: &str) -> Option<PathBuf> {
        let p = self.dir.join(format!("{id}.jpg"));
        (valid(id) && p.is_file()).then_some(p)
    }

    /// Keeps `jpeg` as `id`'s snapshot (replacing an older one), then deletes the oldest
    /// until the limits hold.
    pub fn put(&self, id: &str, jpeg: &[u8]) -> std::io::Result<()> {
        if !valid(id) {
            return Err(std::io::Error::other("not a detection id"));
        }
        let path = self.dir.join(format!("{id}.jpg"));
        let tmp = self.dir.join(format!(".{id}.tmp"));
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(jpeg)?;
        drop(f);
        std::fs::rename(&tmp, &path)?;
        if let Ok(mut idx) = self.index.lock() {
            if let Some(i) = idx.0.iter().position(|(e, _)| e == id) {
                let (_, n) = idx.0.remove(i).unwrap_or_default();
                idx.1 -= n;
            }
            idx.0.push_back((id.to_string(), jpeg.len() as u64));
            idx.1 += jpeg.len() as u64;
        }
        self.enforce();
        Ok(())
    }

    fn enforce(&self) {
        let Ok(mut idx) = self.index.lock() else {
            return;
        };
        while idx.0.len() > self.kept || (idx.1 > self.max_bytes && idx.0.len() > 1) {
            let Some((id, n)) = idx.0.pop_front() else {
                break;
            };
            idx.1 -= n;
            let _ = std::fs::remove_file(self.dir.join(format!("{id}.jpg")));
        }
    }

    /// `(count, bytes)` kept.
    pub fn usage(&self) -> (usize, u64) {
        self.index
            .lock()
            .map(|i| (i.0.len(), i.1))
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_within_count_and_bytes_oldest_first() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = Snapshots::open(dir.path().join("snapshots"), 3, 250).expect("open");
        for i in 0..4 {
            s.put(&format!("d{i}"), &[0u8; 50]).expect("put");
        }
        assert_eq!(s.usage(), (3, 150));
        assert!(s.path("d0").is_none());
        assert!(s.path("d3").is_some());
        // Replacing keeps one entry, renewed.
        s.put("d1", &[0u8; 100]).expect("replace");
        assert_eq!(s.usage(), (3, 200));
        // Bytes: 200 + 100 > 250, so the oldest (d2) goes; then 250 fits.
        s.put("d4", &[0u8; 100]).expect("put");
        assert_eq!(s.usage(), (3, 250));
        assert!(s.path("d2").is_none());
        assert!(s.path("d3").is_some() && s.path("d1").is_some() && s.path("d4").is_some());
        let mode = std::fs::metadata(s.path("d4").expect("d4"))
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(s.put("../x", b"no").is_err());
        assert!(s.path("../node").is_none());
        // Reopened: the index is rebuilt from the files.
        drop(s);
        let s = Snapshots::open(dir.path().join("snapshots"), 3, 250).expect("reopen");
        assert_eq!(s.usage(), (3, 250));
    }
}
