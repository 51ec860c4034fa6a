//! The service manager's side of a run: `READY=1` once the HTTP server listens and the stored
//! streams were started, `WATCHDOG=1` heartbeats only while the node is healthy, `STOPPING=1`
//! on the way out. Outside systemd (no `NOTIFY_SOCKET`) every call does nothing.
//!
//! The heartbeat is the supervisor's, not a timer's: a node whose store no longer answers, or
//! whose runtime is wedged, stops beating and systemd restarts it; the hardware watchdog,
//! handed to systemd (`RuntimeWatchdogSec`), covers systemd itself.

use std::time::Duration;

use sd_notify::NotifyState;

/// How long one health check may take before the beat it guards is skipped.
const CHECK_TIMEOUT: Duration = Duration::from_secs(5);

pub fn ready(status: &str) {
    notify(&[NotifyState::Ready, NotifyState::Status(status)]);
}

pub fn stopping() {
    notify(&[NotifyState::Stopping]);
}

fn notify(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(false, states) {
        tracing::warn!("cannot notify the service manager: {e}");
    }
}

/// The watchdog period systemd asked for (`WatchdogSec`), when it asked for one.
pub fn watchdog_period() -> Option<Duration> {
    let mut usec = 0;
    sd_notify::watchdog_enabled(false, &mut usec).then(|| Duration::from_micros(usec))
}

/// Beats at a third of `period` for as long as `healthy` answers `Ok` within
/// [`CHECK_TIMEOUT`]; a failed check is logged once per change and its beats are withheld.
pub async fn keep_beating<F>(period: Duration, healthy: F)
where
    F: Fn() -> Result<(), String> + Send + Sync + Clone + 'static,
{
    let mut every = tokio::time::interval(period / 3);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        every.tick().await;
        let check = healthy.clone();
        let verdict =
            match tokio::time::timeout(CHECK_TIMEOUT, tokio::task::spawn_blocking(check)).await {
                Ok(Ok(v)) => v,
                Ok(Err(e)) => Err(format!("the health check failed: {e}")),
                Err(_) => Err(format!(
                    "the health check took over {} s",
                    CHECK_TIMEOUT.as_secs()
                )),
            };
        match verdict {
            Ok(()) => {
                if failing {
                    tracing::info!("healthy again: the watchdog is fed");
                    failing = false;
                }
                notify(&[NotifyState::Watchdog]);
            }
            Err(why) => {
                if !failing {
                    tracing::error!("unhealthy, the watchdog is no longer fed: {why}");
                    failing = true;
                }
            }
        }
    }
}

/// Whether this node answers HTTP on `addr` (a wildcard address is asked on loopback): a
/// `GET /api/health` whose status line comes back within 5 s. Over TLS, an accepted
/// connection is what can be checked without a client.
pub async fn http_answers(addr: std::net::SocketAddr, tls: bool) -> Result<(), String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut addr = addr;
    if addr.ip().is_unspecified() {
        addr.set_ip(if addr.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    let ask = async {
        let mut s = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("HTTP on {addr} refuses connections: {e}"))?;
        if tls {
            return Ok(());
        }
        s.write_all(b"GET /api/health HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")
            .await
            .map_err(|e| format!("HTTP on {addr}: {e}"))?;
        let mut head = [0u8; 12];
        s.read_exact(&mut head)
            .await
            .map_err(|e| format!("HTTP on {addr} does not answer: {e}"))?;
        match &head[9..12] {
            b"200" => Ok(()),
            code => Err(format!(
                "HTTP on {addr} answers /api/health with {}",
                String::from_utf8_lossy(code)
            )),
        }
    };
    tokio::time::timeout(CHECK_TIMEOUT, ask)
        .await
        .unwrap_or_else(|_| Err(format!("HTTP on {addr} did not answer within 5 s")))
}
