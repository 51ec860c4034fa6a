//! Remote transcoders attached to this orchestrator, as go-livepeer's are
//! (`livepeer-wire-workers.md` W1): `RegisterTranscoder` holds a stream of `NotifySegment`
//! tasks open; results come back to `POST /transcodeResults` as `multipart/mixed`.
//!
//! Where go-livepeer is weak this is not (W1.8): no worker registers without a configured
//! secret, secrets are compared in constant time, and a result is taken only from the address
//! the task was sent to (go-livepeer takes any secret holder's answer to any task). A
//! transcoder that disconnects fails its tasks at once, so the segment is transcoded here.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::proto::{Capabilities, NotifySegment, RegisterRequest, SegData};

/// The protocol tag a transcoder sends as `Authorization` on its results.
pub const RESULTS_AUTHORIZATION: &str = "Livepeer-Transcoder-1.0";
/// Tasks queued per transcoder stream before a dispatch counts as failed.
const STREAM_QUEUE: usize = 16;

/// One rendition a transcoder returned, with the pixels it reports.
#[derive(Debug, Clone)]
pub struct RemoteRendition {
    pub data: bytes::Bytes,
    pub pixels: u64,
}

pub type TaskResult = Result<Vec<RemoteRendition>, String>;

struct Remote {
    id: u64,
    address: IpAddr,
    capacity: usize,
    capabilities: Capabilities,
    /// Sessions assigned to it.
    load: usize,
    tasks: mpsc::Sender<NotifySegment>,
}

struct Task {
    transcoder: u64,
    address: IpAddr,
    reply: oneshot::Sender<TaskResult>,
}

#[derive(Default)]
struct Inner {
    transcoders: Vec<Remote>,
    affinity: HashMap<String, u64>,
    tasks: HashMap<i64, Task>,
}

/// The transcoders attached here and the tasks out with them.
pub struct RemoteTranscoders {
    secret: Option<String>,
    inner: Mutex<Inner>,
    next_task: AtomicI64,
    next_id: AtomicU64,
}

/// Why a transcoder was refused at registration (go-livepeer's texts, which a go-livepeer
/// transcoder treats as fatal).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegisterError {
    #[error("invalid secret")]
    Secret,
    #[error("zero capacity")]
    Capacity,
}

/// Removes its transcoder when the registration stream ends (the transcoder went away).
pub struct Registration {
    owner: Arc<RemoteTranscoders>,
    id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.owner.remove(self.id);
    }
}

impl RemoteTranscoders {
    /// `secret`: what transcoders must present; none (or empty) refuses every one.
    pub fn new(secret: Option<String>) -> Self {
        Self {
            secret: secret.filter(|s| !s.is_empty()),
            inner: Mutex::default(),
            next_task: AtomicI64::new(0),
            next_id: AtomicU64::new(0),
        }
    }

    pub fn accepts_any(&self) -> bool {
        self.secret.is_some()
    }

    /// Whether `credentials` is the configured secret.
    pub fn authentic(&self, credentials: &str) -> bool {
        self.secret
            .as_deref()
            .is_some_and(|s| lpe_core::secret::same_secret(s, credentials))
    }

    /// Registers a transcoder from `address`; its tasks arrive on the returned receiver
    /// until the registration is dropped.
    pub fn register(
        self: &Arc<Self>,
        address: IpAddr,
        req: RegisterRequest,
    ) -> Result<(Registration, mpsc::Receiver<NotifySegment>), RegisterError> {
        if !self.authentic(&req.secret) {
            return Err(RegisterError::Secret);
        }
        if req.capacity <= 0 {
            return Err(RegisterError::Capacity);
        }
        let (tx, rx) = mpsc::channel(STREAM_QUEUE);
        let id = self.next_id.fetch_add(1, Ordering::SeqCst);
        let capabilities = req
            .capabilities
            .unwrap_or_else(|| Capabilities::from_ids(crate::proto::capability::TRANSCODING));
        if let Ok(mut inner) = self.inner.lock() {
            inner.transcoders.push(Remote {
                id,
                address,
                capacity: usize::try_from(req.capacity)
                    .unwrap_or(usize::MAX)
                    .min(1000),
                capabilities,
                load: 0,
                tasks: tx,
            });
        }
        tracing::info!(%address, capacity = req.capacity, "remote transcoder attached");
        Ok((
            Registration {
                owner: Arc::clone(self),
                id,
            },
            rx,
        ))
    }

    fn remove(&self, id: u64) {
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        inner.transcoders.retain(|t| t.id != id);
        inner.affinity.retain(|_, t| *t != id);
        // Its tasks fail now: the segments are transcoded here instead.
        let gone: Vec<i64> = inner
            .tasks
            .iter()
            .filter(|(_, t)| t.transcoder == id)
            .map(|(k, _)| *k)
            .collect();
        for k in gone {
            if let Some(t) = inner.tasks.remove(&k) {
                let _ = t
                    .reply
                    .send(Err("the remote transcoder disconnected".into()));
            }
        }
        tracing::info!("remote transcoder detached");
    }

    pub fn attached(&self) -> usize {
        self.inner.lock().map(|i| i.transcoders.len()).unwrap_or(0)
    }

    /// Sends `seg` of `session` to a transcoder (the session's own, else the least loaded one
    /// with room and the capabilities) and waits for its result until `deadline`. `None`:
    /// no transcoder can take it.
    pub async fn transcode(
        &self,
        session: &str,
        url: String,
        seg: SegData,
        orch_id: String,
        deadline: Duration,
    ) -> Option<TaskResult> {
        let (task_id, rx) = {
            let mut inner = self.inner.lock().ok()?;
            let needs = seg.capabilities.clone().unwrap_or_default();
            let id = match inner.affinity.get(session).copied() {
                Some(id) if inner.transcoders.iter().any(|t| t.id == id) => id,
                _ => {
                    let pick = inner
                        .transcoders
                        .iter()
                        .filter(|t| t.load < t.capacity && needs.subset_of(&t.capabilities))
                        .min_by(|a, b| (a.load * b.capacity).cmp(&(b.load * a.capacity)))?
                        .id;
                    inner.affinity.insert(session.to_string(), pick);
                    if let Some(t) = inner.transcoders.iter_mut().find(|t| t.id == pick) {
                        t.load += 1;
                    }
                    pick
                }
            };
            let t = inner.transcoders.iter().find(|t| t.id == id)?;
            let (address, sender) = (t.address, t.tasks.clone());
            let task_id = self.next_task.fetch_add(1, Ordering::SeqCst);
            let notify = NotifySegment {
                url,
                seg_data: Some(seg),
                task_id,
                profiles: b"invalid".to_vec(),
                orch_id,
            };
            if sender.try_send(notify).is_err() {
                self.drop_affinity(&mut inner, session);
                return Some(Err("the remote transcoder is not taking tasks".into()));
            }
            let (reply, rx) = oneshot::channel();
            inner.tasks.insert(
                task_id,
                Task {
                    transcoder: id,
                    address,
                    reply,
                },
            );
            (task_id, rx)
        };
        let result = match tokio::time::timeout(deadline, rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err("the task was dropped".into()),
            Err(_) => Err("Remote transcoder took too long".into()),
        };
        if let Ok(mut inner) = self.inner.lock() {
            inner.tasks.remove(&task_id);
            if result.is_err() {
                self.drop_affinity(&mut inner, session);
            }
        }
        Some(result)
    }

    fn drop_affinity(&self, inner: &mut Inner, session: &str) {
        if let Some(id) = inner.affinity.remove(session)
            && let Some(t) = inner.transcoders.iter_mut().find(|t| t.id == id)
        {
            t.load = t.load.saturating_sub(1);
        }
    }

    /// The session ended: its transcoder is told and its slot freed.
    pub fn end_session(&self, session: &str) {
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        let Some(id) = inner.affinity.get(session).copied() else {
            return;
        };
        if let Some(t) = inner.transcoders.iter().find(|t| t.id == id) {
            let _ = t.tasks.try_send(NotifySegment {
                seg_data: Some(SegData {
                    auth_token: Some(crate::proto::AuthToken {
                        session_id: session.to_string(),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            });
        }
        self.drop_affinity(&mut inner, session);
    }

    /// Hands a result to its task, if it came from where the task went. `false`: no such
    /// task waits for this sender.
    pub fn deliver(&self, from: IpAddr, task_id: i64, result: TaskResult) -> bool {
        let Ok(mut inner) = self.inner.lock() else {
            return false;
        };
        match inner.tasks.get(&task_id) {
            Some(t) if t.address == from => {}
            _ => return false,
        }
        match inner.tasks.remove(&task_id) {
            Some(t) => t.reply.send(result).is_ok(),
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(secret: &str, capacity: i64) -> RegisterRequest {
        RegisterRequest {
            secret: secret.into(),
            capacity,
            capabilities: None,
        }
    }

    #[test]
    fn no_secret_configured_refuses_everyone() {
        let r = Arc::new(RemoteTranscoders::new(Some(String::new())));
        assert!(!r.accepts_any());
        let ip: IpAddr = [127, 0, 0, 1].into();
        assert_eq!(
            r.register(ip, request("", 1)).err(),
            Some(RegisterError::Secret)
        );
        let r = Arc::new(RemoteTranscoders::new(Some("s3cret".into())));
        assert_eq!(
            r.register(ip, request("wrong", 1)).err(),
            Some(RegisterError::Secret)
        );
        assert_eq!(
            r.register(ip, request("s3cret", 0)).err(),
            Some(RegisterError::Capacity)
        );
        let (reg, _rx) = r.register(ip, request("s3cret", 2)).expect("registered");
        assert_eq!(r.attached(), 1);
        drop(reg);
        assert_eq!(r.attached(), 0);
    }

    /// A task of session `sess` sent out, waiting for its result.
    fn dispatch(r: &Arc<RemoteTranscoders>) -> tokio::task::JoinHandle<Option<TaskResult>> {
        let r = Arc::clone(r);
        tokio::spawn(async move {
            r.transcode(
                "sess",
                "u".into(),
                SegData::default(),
                "o".into(),
                Duration::from_secs(5),
            )
            .await
        })
    }

    #[tokio::test]
    async fn results_are_taken_only_from_the_transcoder_given_the_task() {
        let r = Arc::new(RemoteTranscoders::new(Some("s".into())));
        let here: IpAddr = [10, 0, 0, 2].into();
        let (reg, mut rx) = r.register(here, request("s", 1)).expect("registered");
        let waiting = dispatch(&r);
        let task = rx.recv().await.expect("a task");
        let ok = Ok(vec![RemoteRendition {
            data: bytes::Bytes::from_static(b"x"),
            pixels: 1,
        }]);
        assert!(
            !r.deliver([10, 0, 0, 3].into(), task.task_id, ok.clone()),
            "another address"
        );
        assert!(
            !r.deliver(here, task.task_id + 1, ok.clone()),
            "another task"
        );
        assert!(r.deliver(here, task.task_id, ok));
        let got = waiting
            .await
            .expect("joined")
            .expect("dispatched")
            .expect("result");
        assert_eq!(got[0].pixels, 1);
        // A disconnect fails what is out: the caller transcodes it itself.
        let waiting = dispatch(&r);
        let _ = rx.recv().await.expect("a task");
        drop(reg);
        let got = waiting.await.expect("joined").expect("dispatched");
        assert!(got.is_err());
        assert!(
            r.transcode(
                "sess",
                "u".into(),
                SegData::default(),
                "o".into(),
                Duration::from_secs(1)
            )
            .await
            .is_none()
        );
    }
}
