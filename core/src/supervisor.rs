//! The supervisor owns the lifetime of the node's long-lived tasks (the RTMP listener, the
//! MQTT bridge, the device sampler, payments): each runs as its own tokio task, so a panic or
//! an error ends that task only; the supervisor records it, restarts the task with backoff
//! when its policy says so, and reports every subsystem's health. A failed subsystem
//! degrades one feature, never the process.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::watch;
use tokio::task::{AbortHandle, JoinHandle};

use crate::events::now_ms;

/// What happens when a task ends with an error or a panic. A task that returns `Ok` has
/// finished its work and is never restarted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restart {
    Never,
    /// Again after 1 s, doubling up to `max_backoff`; a run that lasted a minute starts the
    /// doubling over.
    WithBackoff {
        max_backoff: Duration,
    },
}

impl Restart {
    /// The policy of most subsystems: retry for ever, at least every 30 s.
    pub const ALWAYS: Restart = Restart::WithBackoff {
        max_backoff: Duration::from_secs(30),
    };
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    Running,
    /// Failed and waiting to be started again.
    Restarting,
    /// Failed, and its policy says not to restart it.
    Failed,
    /// Finished its work, or stopped with the node.
    Stopped,
}

/// One subsystem as the health report shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TaskHealth {
    pub name: String,
    pub state: TaskState,
    /// Why it last failed, if it ever did.
    pub last_error: Option<String>,
    pub restarts: u32,
    /// When it entered its current state (Unix milliseconds).
    pub since_ms: u64,
}

struct Entry {
    health: TaskHealth,
    /// The current run, so a stop can end a task that does not watch the shutdown signal.
    run: Option<AbortHandle>,
}

/// The task registry. Cheap to clone; every clone is the same registry.
#[derive(Clone)]
pub struct Supervisor {
    tasks: Arc<Mutex<BTreeMap<String, Entry>>>,
    handles: Arc<Mutex<Vec<JoinHandle<()>>>>,
    shutdown: watch::Receiver<bool>,
}

/// A run that lasted this long was healthy: the next failure restarts after 1 s again.
const HEALTHY_RUN: Duration = Duration::from_secs(60);
const FIRST_BACKOFF: Duration = Duration::from_secs(1);

impl Supervisor {
    /// Tasks are asked to stop when `shutdown` turns `true`.
    pub fn new(shutdown: watch::Receiver<bool>) -> Self {
        Self {
            tasks: Default::default(),
            handles: Default::default(),
            shutdown,
        }
    }

    /// Runs `make(shutdown)` as the subsystem `name` until it finishes, the node stops, or
    /// (policy `Never`) it fails. `make` is called again for each restart.
    pub fn spawn<F, Fut>(&self, name: &str, restart: Restart, make: F)
    where
        F: Fn(watch::Receiver<bool>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        let name = name.to_string();
        self.set(&name, TaskState::Running, None);
        let this = self.clone();
        let shutdown = self.shutdown.clone();
        let supervise = async move {
            let mut backoff = FIRST_BACKOFF;
            let mut stop = shutdown.clone();
            loop {
                let started = Instant::now();
                let run = tokio::spawn(make(shutdown.clone()));
                let handle = run.abort_handle();
                this.update(&name, |e| e.run = Some(handle));
                let failure = match run.await {
                    Ok(Ok(())) => None,
                    Ok(Err(e)) => Some(e),
                    Err(j) if j.is_panic() => Some(format!("panicked: {}", panic_text(j))),
                    Err(_) => Some("cancelled".to_string()),
                };
                if *shutdown.borrow() {
                    this.set(&name, TaskState::Stopped, failure);
                    return;
                }
                let Some(error) = failure else {
                    this.set(&name, TaskState::Stopped, None);
                    return;
                };
                let Restart::WithBackoff { max_backoff } = restart else {
                    tracing::error!(subsystem = %name, "failed: {error}; not restarted");
                    this.set(&name, TaskState::Failed, Some(error));
                    return;
                };
                if started.elapsed() >= HEALTHY_RUN {
                    backoff = FIRST_BACKOFF;
                }
                tracing::error!(
                    subsystem = %name,
                    "failed: {error}; restarting in {} s",
                    backoff.as_secs()
                );
                this.set(&name, TaskState::Restarting, Some(error));
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stop.wait_for(|v| *v) => {
                        this.set(&name, TaskState::Stopped, None);
                        return;
                    }
                }
                backoff = (backoff * 2).min(max_backoff);
                this.update(&name, |e| e.health.restarts += 1);
                this.set(&name, TaskState::Running, None);
            }
        };
        if let Ok(mut h) = self.handles.lock() {
            h.retain(|h| !h.is_finished());
            h.push(tokio::spawn(supervise));
        }
    }

    /// Every subsystem, by name.
    pub fn health(&self) -> Vec<TaskHealth> {
        self.tasks
            .lock()
            .map(|t| t.values().map(|e| e.health.clone()).collect())
            .unwrap_or_default()
    }

    /// Waits up to `grace` for every task to end after the shutdown signal, then ends the
    /// rest.
    pub async fn stop(&self, grace: Duration) {
        let mut handles = self
            .handles
            .lock()
            .map(|mut h| std::mem::take(&mut *h))
            .unwrap_or_default();
        let all = async {
            for h in handles.iter_mut() {
                let _ = h.await;
            }
        };
        if tokio::time::timeout(grace, all).await.is_err() {
            if let Ok(t) = self.tasks.lock() {
                for (name, e) in t.iter() {
                    if let Some(run) = &e.run
                        && !run.is_finished()
                    {
                        tracing::warn!(subsystem = %name, "did not stop in time; ended");
                        run.abort();
                    }
                }
            }
            // The supervising loops record the end of what was just aborted.
            for h in handles {
                let _ = h.await;
            }
        }
    }

    /// Changes a registered task's entry.
    fn update(&self, name: &str, change: impl FnOnce(&mut Entry)) {
        if let Ok(mut t) = self.tasks.lock()
            && let Some(e) = t.get_mut(name)
        {
            change(e);
        }
    }

    fn set(&self, name: &str, state: TaskState, error: Option<String>) {
        let Ok(mut t) = self.tasks.lock() else {
            return;
        };
        let e = t.entry(name.to_string()).or_insert_with(|| Entry {
            health: TaskHealth {
                name: name.to_string(),
                state,
                last_error: None,
                restarts: 0,
                since_ms: now_ms(),
            },
            run: None,
        });
        if e.health.state != state {
            e.health.since_ms = now_ms();
        }
        e.health.state = state;
        if error.is_some() {
            e.health.last_error = error;
        }
    }
}

fn panic_text(j: tokio::task::JoinError) -> String {
    let payload = j.into_panic();
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn state(s: &Supervisor, name: &str) -> TaskHealth {
        s.health()
            .into_iter()
            .find(|h| h.name == name)
            .expect("registered")
    }

    async fn until(mut f: impl FnMut() -> bool) {
        for _ in 0..6000 {
            if f() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("condition not reached in 60 s");
    }

    #[tokio::test(start_paused = true)]
    async fn a_panicking_task_is_restarted_and_the_others_run_on() {
        let (tx, rx) = watch::channel(false);
        let s = Supervisor::new(rx);
        let runs = Arc::new(AtomicU32::new(0));
        let r = Arc::clone(&runs);
        s.spawn("flaky", Restart::ALWAYS, move |_| {
            let n = r.fetch_add(1, Ordering::SeqCst);
            async move {
                if n < 2 {
                    panic!("run {n} broke");
                }
                std::future::pending::<()>().await;
                Ok(())
            }
        });
        s.spawn("steady", Restart::ALWAYS, |mut stop| async move {
            let _ = stop.wait_for(|v| *v).await;
            Ok(())
        });
        until(|| runs.load(Ordering::SeqCst) == 3).await;
        until(|| state(&s, "flaky").state == TaskState::Running).await;
        let flaky = state(&s, "flaky");
        assert_eq!(flaky.restarts, 2);
        assert_eq!(flaky.last_error.as_deref(), Some("panicked: run 1 broke"));
        assert_eq!(state(&s, "steady").state, TaskState::Running);

        tx.send(true).expect("send");
        s.stop(Duration::from_secs(1)).await;
        assert_eq!(state(&s, "steady").state, TaskState::Stopped);
        assert_eq!(state(&s, "flaky").state, TaskState::Stopped);
    }

    #[tokio::test(start_paused = true)]
    async fn backoff_doubles_up_to_its_cap() {
        let (_tx, rx) = watch::channel(false);
        let s = Supervisor::new(rx);
        let starts = Arc::new(Mutex::new(Vec::new()));
        let st = Arc::clone(&starts);
        let t0 = tokio::time::Instant::now();
        s.spawn(
            "failing",
            Restart::WithBackoff {
                max_backoff: Duration::from_secs(4),
            },
            move |_| {
                st.lock().expect("lock").push(t0.elapsed().as_secs());
                async { Err("no broker".to_string()) }
            },
        );
        until(|| starts.lock().expect("lock").len() >= 6).await;
        assert_eq!(*starts.lock().expect("lock"), [0, 1, 3, 7, 11, 15]);
        let h = state(&s, "failing");
        assert_eq!(h.last_error.as_deref(), Some("no broker"));
    }

    #[tokio::test(start_paused = true)]
    async fn never_leaves_a_failed_task_failed_and_a_finished_one_stopped() {
        let (_tx, rx) = watch::channel(false);
        let s = Supervisor::new(rx);
        s.spawn("once", Restart::Never, |_| async {
            Err("cannot unlock the account".to_string())
        });
        s.spawn("done", Restart::ALWAYS, |_| async { Ok(()) });
        until(|| {
            state(&s, "once").state == TaskState::Failed
                && state(&s, "done").state == TaskState::Stopped
        })
        .await;
        assert_eq!(state(&s, "once").restarts, 0);
    }

    #[tokio::test]
    async fn stop_ends_a_task_that_ignores_the_signal() {
        let (tx, rx) = watch::channel(false);
        let s = Supervisor::new(rx);
        s.spawn("deaf", Restart::ALWAYS, |_| async {
            std::future::pending::<()>().await;
            Ok(())
        });
        tx.send(true).expect("send");
        let t = Instant::now();
        s.stop(Duration::from_millis(100)).await;
        assert!(t.elapsed() < Duration::from_secs(2));
    }
}
