//! Bundles fetched to the data partition: refused before a byte is written when they would
//! not fit, resumed from where an interrupted download stopped (HTTP range requests), cut off
//! at the size cap, written to `<dest>.part` and renamed into place only when whole.

use std::path::{Path, PathBuf};
use std::time::Duration;

use futures_util::StreamExt;
use sha2::Digest;
use tokio::io::AsyncWriteExt;

use crate::UpdateError;

/// What a download may take.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// The largest bundle accepted.
    pub max_bytes: u64,
    /// What stays free on the data partition whatever the bundle's size.
    pub keep_free: u64,
}

/// Bytes the unprivileged user may still write on the filesystem holding `dir`.
pub fn free_bytes(dir: &Path) -> Result<u64, UpdateError> {
    let c = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes())
        .map_err(|e| UpdateError::Io(e.to_string()))?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid NUL-terminated path and `st` a properly sized out-parameter.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return Err(UpdateError::Io(format!(
            "cannot read the free space of {}: {}",
            dir.display(),
            std::io::Error::last_os_error()
        )));
    }
    Ok(st.f_bavail.saturating_mul(st.f_frsize))
}

/// Refuses a bundle of `total` bytes when it is over the cap or would not fit beside what is
/// already written of it.
pub fn check_fits(dir: &Path, total: u64, have: u64, limits: Limits) -> Result<(), UpdateError> {
    if total > limits.max_bytes {
        return Err(UpdateError::TooLarge {
            limit: limits.max_bytes,
        });
    }
    let needed = total.saturating_sub(have) + limits.keep_free;
    let available = free_bytes(dir)?;
    if needed > available {
        return Err(UpdateError::NoSpace {
            needed: total.saturating_sub(have),
            available: available.saturating_sub(limits.keep_free),
        });
    }
    Ok(())
}

fn partial(dest: &Path) -> PathBuf {
    let mut p = dest.as_os_str().to_owned();
    p.push(".part");
    PathBuf::from(p)
}

fn io(what: &str, path: &Path) -> impl FnOnce(std::io::Error) -> UpdateError {
    let msg = format!("{what} {}", path.display());
    move |e| UpdateError::Io(format!("{msg}: {e}"))
}

/// Downloads `url` to `dest`, resuming a `.part` file left by an earlier try; `progress`
/// hears the bytes held and the total when the server said it. Returns the size.
pub async fn fetch(
    url: &str,
    dest: &Path,
    limits: Limits,
    mut progress: impl FnMut(u64, Option<u64>),
) -> Result<u64, UpdateError> {
    let dir = dest.parent().unwrap_or(Path::new("."));
    let part = partial(dest);
    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(20))
        .read_timeout(Duration::from_secs(60))
        .build()
        .map_err(|e| UpdateError::Download(e.to_string()))?;
    let mut have = tokio::fs::metadata(&part)
        .await
        .map(|m| m.len())
        .unwrap_or(0);
    let mut req = client.get(url);
    if have > 0 {
        req = req.header(reqwest::header::RANGE, format!("bytes={have}-"));
    }
    let res = req
        .send()
        .await
        .map_err(|e| UpdateError::Download(e.without_url().to_string()))?;
    let status = res.status();
    let resumed = status == reqwest::StatusCode::PARTIAL_CONTENT && have > 0;
    if !status.is_success() {
        return Err(UpdateError::Download(format!(
            "the server answered {status}"
        )));
    }
    if !resumed {
        have = 0;
    }
    let total = res.content_length().map(|len| len + have);
    if let Some(total) = total {
        check_fits(dir, total, have, limits)?;
    }
    let mut file = tokio::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .append(resumed)
        .truncate(!resumed)
        .open(&part)
        .await
        .map_err(io("cannot write", &part))?;
    progress(have, total);
    let mut body = res.bytes_stream();
    let received = async {
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| UpdateError::Download(e.without_url().to_string()))?;
            have += chunk.len() as u64;
            if have > limits.max_bytes {
                return Err(UpdateError::TooLarge {
                    limit: limits.max_bytes,
                });
            }
            file.write_all(&chunk)
                .await
                .map_err(io("cannot write", &part))?;
            progress(have, total);
        }
        Ok(())
    }
    .await;
    // tokio's file finishes its last write in the background: wait for it, so that the
    // next try's resume point (the part's length) is every byte received.
    let flushed = file.flush().await.map_err(io("cannot write", &part));
    if let Err(e) = received {
        if matches!(e, UpdateError::TooLarge { .. }) {
            drop(file);
            let _ = tokio::fs::remove_file(&part).await;
        }
        return Err(e);
    }
    flushed?;
    if total.is_some_and(|t| t != have) {
        return Err(UpdateError::Download(format!(
            "the connection ended after {have} of {} bytes (it resumes on the next try)",
            total.unwrap_or_default()
        )));
    }
    file.sync_all().await.map_err(io("cannot write", &part))?;
    tokio::fs::rename(&part, dest)
        .await
        .map_err(io("cannot move into place", dest))?;
    Ok(have)
}

/// The file's SHA-256, lower-case hex (read off the async threads).
pub async fn sha256(path: &Path) -> Result<String, UpdateError> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let mut f = std::fs::File::open(&path).map_err(io("cannot read", &path))?;
        let mut h = sha2::Sha256::new();
        std::io::copy(&mut f, &mut h).map_err(io("cannot read", &path))?;
        Ok(hex::encode(h.finalize()))
    })
    .await
    .map_err(|e| UpdateError::Io(e.to_string()))?
}

/// Checks `path` against an expected SHA-256 (hex, either case).
pub async fn verify(path: &Path, expected: &str) -> Result<(), UpdateError> {
    let actual = sha256(path).await?;
    if !actual.eq_ignore_ascii_case(expected.trim()) {
        return Err(UpdateError::Checksum {
            expected: expected.trim().to_lowercase(),
            actual,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A one-file HTTP server on loopback that honours `Range` and, for its first answer,
    /// cuts the body off after `cut` bytes.
    async fn serve(body: Vec<u8>, cut: usize) -> (String, tokio::task::JoinHandle<()>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/bundle.raucb", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let mut first = true;
            while let Ok((mut s, _)) = listener.accept().await {
                let mut req = Vec::new();
                let mut buf = [0u8; 4096];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                let req = String::from_utf8_lossy(&req).to_string();
                let from = req
                    .lines()
                    .find_map(|l| {
                        l.strip_prefix("range: bytes=")
                            .or(l.strip_prefix("Range: bytes="))
                    })
                    .and_then(|r| r.trim_end_matches('-').parse::<usize>().ok());
                let (status, start) = match from {
                    Some(f) => ("206 Partial Content", f),
                    None => ("200 OK", 0),
                };
                let rest = &body[start..];
                let head = format!(
                    "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    rest.len()
                );
                let _ = s.write_all(head.as_bytes()).await;
                let send = if first {
                    &rest[..cut.min(rest.len())]
                } else {
                    rest
                };
                first = false;
                let _ = s.write_all(send).await;
                // A FIN, not a reset: the client gets every byte sent before the cut.
                let _ = s.shutdown().await;
                let _ = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await;
            }
        });
        (url, task)
    }

    fn limits() -> Limits {
        Limits {
            max_bytes: 1 << 20,
            keep_free: 0,
        }
    }

    #[tokio::test]
    async fn an_interrupted_download_resumes_where_it_stopped() {
        let body: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let (url, server) = serve(body.clone(), 70_000).await;
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("bundle.raucb");
        let first = fetch(&url, &dest, limits(), |_, _| {}).await;
        assert!(matches!(first, Err(UpdateError::Download(_))), "{first:?}");
        assert_eq!(std::fs::metadata(partial(&dest)).unwrap().len(), 70_000);
        let mut seen = Vec::new();
        let size = fetch(&url, &dest, limits(), |have, total| {
            seen.push((have, total))
        })
        .await
        .unwrap();
        assert_eq!(size, 200_000);
        // The second answer started at the first one's end.
        assert_eq!(seen[0], (70_000, Some(200_000)));
        assert_eq!(std::fs::read(&dest).unwrap(), body);
        assert!(!partial(&dest).exists());
        let digest = hex::encode(sha2::Sha256::digest(&body));
        verify(&dest, &digest.to_uppercase()).await.unwrap();
        let wrong = verify(&dest, &"0".repeat(64)).await;
        assert!(
            matches!(wrong, Err(UpdateError::Checksum { .. })),
            "{wrong:?}"
        );
        server.abort();
    }

    #[tokio::test]
    async fn a_bundle_over_the_cap_or_the_free_space_is_refused_before_it_is_written() {
        let body = vec![7u8; 300_000];
        let (url, server) = serve(body, usize::MAX).await;
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("bundle.raucb");
        let small = Limits {
            max_bytes: 100_000,
            keep_free: 0,
        };
        let r = fetch(&url, &dest, small, |_, _| {}).await;
        assert!(
            matches!(r, Err(UpdateError::TooLarge { limit: 100_000 })),
            "{r:?}"
        );
        assert!(!partial(&dest).exists() && !dest.exists());
        let full = Limits {
            max_bytes: u64::MAX,
            keep_free: u64::MAX / 2,
        };
        let r = fetch(&url, &dest, full, |_, _| {}).await;
        assert!(matches!(r, Err(UpdateError::NoSpace { .. })), "{r:?}");
        assert!(!partial(&dest).exists() && !dest.exists());
        server.abort();
    }
}
