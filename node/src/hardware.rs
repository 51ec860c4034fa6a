//! The box's own hardware, driven by the node: the status LED shows what the box is doing,
//! and the button is how someone standing at it gets the setup code (a short press) or wipes
//! it (a 10 s hold, then a press within 10 s to confirm).
//!
//! Both are optional ([`crate::config::HardwareConfig`]) and looked for again every few seconds
//! while absent, so a device that appears late (a USB keypad, a driver loaded after the node)
//! is picked up, and one that goes away is reported absent instead of failing the node.

use std::sync::Arc;
use std::time::{Duration, Instant};

use lpe_drivers::button::{Button, KeyEdge};
use lpe_drivers::led::{Led, Pattern};
use serde::Serialize;
use tokio::sync::{mpsc, watch};

use crate::Node;

/// A hold this long arms the factory reset.
pub const RESET_HOLD: Duration = Duration::from_secs(10);
/// A press within this long after the hold confirms it; otherwise it is forgotten.
pub const RESET_CONFIRM: Duration = Duration::from_secs(10);
/// How long the LED identifies the box after a short press.
const IDENTIFY: Duration = Duration::from_secs(10);
/// Absent hardware is looked for again this often.
const RESCAN: Duration = Duration::from_secs(3);
/// The box's state is worked out again this often.
const REASSESS: Duration = Duration::from_secs(1);

/// What the status LED shows, most urgent first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BoxState {
    /// A held button armed the factory reset: a press confirms it.
    ResetArmed,
    /// A short press asked the box to show itself (and its setup code).
    Identifying,
    /// A system update is downloading, installing or rebooting.
    Updating,
    #[default]
    Booting,
    /// The store is unreadable, no encoder works, or a stream failed.
    Fault,
    /// No administrator yet: first-boot setup with the console's code.
    NeedsSetup,
    Running,
}

impl BoxState {
    pub fn pattern(self) -> Pattern {
        match self {
            Self::ResetArmed => Pattern(&[(true, 50), (false, 50)]),
            Self::Identifying => Pattern(&[(true, 100), (false, 100), (true, 100), (false, 700)]),
            Self::Updating => Pattern(&[(true, 150), (false, 150)]),
            Self::Booting => Pattern(&[(true, 500), (false, 500)]),
            Self::Fault => Pattern(&[(true, 1800), (false, 200)]),
            Self::NeedsSetup => Pattern(&[(true, 1000), (false, 1000)]),
            Self::Running => Pattern::ON,
        }
    }
}

/// The hardware as the device view shows it.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct HardwareView {
    /// The status LED driven (its LED class name); `null` while none is found.
    pub status_led: Option<String>,
    /// What the LED shows.
    pub showing: BoxState,
    /// The button's input device; `null` while none is found.
    pub button: Option<String>,
    /// A held button armed the factory reset; a press before this time (ms) confirms it.
    pub reset_armed_until_ms: Option<u64>,
}

/// What a button's edges mean: a press shorter than [`RESET_HOLD`], or a hold that reached
/// it (reported once, while still held).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gesture {
    Press,
    Hold,
}

#[derive(Debug, Default)]
struct Gestures {
    down_since: Option<Instant>,
    held: bool,
}

impl Gestures {
    fn edge(&mut self, edge: KeyEdge, now: Instant) -> Option<Gesture> {
        match edge {
            KeyEdge::Down => {
                self.down_since = Some(now);
                self.held = false;
                None
            }
            // The kernel's auto-repeat of a held key, or a repeat whose down was missed.
            KeyEdge::Repeat => {
                self.down_since.get_or_insert(now);
                self.tick(now)
            }
            KeyEdge::Up => {
                let was = self.down_since.take();
                let held = std::mem::take(&mut self.held);
                match was {
                    Some(t) if !held && now.duration_since(t) < RESET_HOLD => Some(Gesture::Press),
                    _ => None,
                }
            }
        }
    }

    fn tick(&mut self, now: Instant) -> Option<Gesture> {
        match self.down_since {
            Some(t) if !self.held && now.duration_since(t) >= RESET_HOLD => {
                self.held = true;
                Some(Gesture::Hold)
            }
            _ => None,
        }
    }

    /// When [`Gestures::tick`] next has something to say.
    fn next_due(&self) -> Option<Instant> {
        match self.down_since {
            Some(t) if !self.held => Some(t + RESET_HOLD),
            _ => None,
        }
    }
}

/// The LED and the button, and what they show.
#[derive(Default)]
pub struct Hardware {
    view: std::sync::Mutex<HardwareView>,
    ready: std::sync::atomic::AtomicBool,
}

enum ButtonMessage {
    Edge(KeyEdge),
    Gone,
}

impl Hardware {
    pub fn view(&self) -> HardwareView {
        self.view.lock().map(|v| v.clone()).unwrap_or_default()
    }

    fn update(&self, change: impl FnOnce(&mut HardwareView)) {
        if let Ok(mut v) = self.view.lock() {
            change(&mut v);
        }
    }

    /// The node has started its streams and serves: the LED stops showing "booting".
    pub fn set_ready(&self) {
        self.ready.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// What the box is doing, from the node's own state.
    fn assess(&self, node: &Node, identify_until: Option<Instant>, armed: bool) -> BoxState {
        if armed {
            return BoxState::ResetArmed;
        }
        if identify_until.is_some_and(|t| Instant::now() < t) {
            return BoxState::Identifying;
        }
        if node.updater.job().state.active() {
            return BoxState::Updating;
        }
        if !self.ready.load(std::sync::atomic::Ordering::SeqCst) {
            return BoxState::Booting;
        }
        let failed = match node.list() {
            Ok(streams) => streams
                .iter()
                .any(|s| s.status.state == crate::views::StreamState::Failed),
            Err(_) => true,
        };
        if failed || node.encoders().working().is_empty() {
            return BoxState::Fault;
        }
        match node.setup_required() {
            Ok(true) => BoxState::NeedsSetup,
            Ok(false) => BoxState::Running,
            Err(_) => BoxState::Fault,
        }
    }

    /// Drives the LED and listens to the button until `stop`; the LED is left off.
    pub async fn run(self: Arc<Self>, node: Arc<Node>, mut stop: watch::Receiver<bool>) {
        let wanted = node.cfg.hardware.clone();
        let (tx, mut rx) = mpsc::channel::<ButtonMessage>(64);
        let mut led: Option<Led> = None;
        let mut shown: Option<bool> = None;
        let mut listening = false;
        let mut gestures = Gestures::default();
        let mut identify_until: Option<Instant> = None;
        let mut armed_until: Option<Instant> = None;
        let mut state = BoxState::Booting;
        let mut state_since = Instant::now();
        let (mut next_scan, mut next_assess) = (Instant::now(), Instant::now());
        loop {
            let now = Instant::now();
            if now >= next_scan {
                if led.is_none() {
                    led = find_led(&wanted.status_led);
                    shown = None;
                    let name = led.as_ref().map(Led::name);
                    self.update(|v| v.status_led = name);
                }
                if !listening && let Some(button) = find_button(&wanted.button, wanted.button_key) {
                    tracing::info!(
                        "the button is {} ({})",
                        button.name(),
                        button.path().display()
                    );
                    let name = button.name().to_string();
                    self.update(|v| v.button = Some(name));
                    listen(button, tx.clone());
                    listening = true;
                }
                next_scan = now + RESCAN;
            }
            if armed_until.is_some_and(|t| now >= t) {
                tracing::warn!("factory reset not confirmed: nothing was erased");
                armed_until = None;
                self.update(|v| v.reset_armed_until_ms = None);
                next_assess = now;
            }
            if let Some(Gesture::Hold) = gestures.tick(now) {
                armed_until = Some(self.arm_reset(now));
                next_assess = now;
            }
            if now >= next_assess {
                let node = Arc::clone(&node);
                let me = Arc::clone(&self);
                let armed = armed_until.is_some();
                let assessed =
                    tokio::task::spawn_blocking(move || me.assess(&node, identify_until, armed))
                        .await
                        .unwrap_or(BoxState::Fault);
                if assessed != state {
                    state = assessed;
                    state_since = now;
                    self.update(|v| v.showing = state);
                }
                next_assess = now + REASSESS;
            }
            let elapsed = now.duration_since(state_since).as_millis() as u64;
            let (on, left_ms) = state.pattern().at(elapsed);
            if shown != Some(on)
                && let Some(l) = &led
            {
                match l.set(on) {
                    Ok(()) => shown = Some(on),
                    Err(e) => {
                        tracing::warn!("the status LED {} went away: {e}", l.name());
                        led = None;
                        self.update(|v| v.status_led = None);
                    }
                }
            }
            let mut wake = (now + Duration::from_millis(left_ms))
                .min(next_assess)
                .min(next_scan);
            if let Some(t) = gestures.next_due() {
                wake = wake.min(t);
            }
            if let Some(t) = armed_until {
                wake = wake.min(t);
            }
            tokio::select! {
                _ = tokio::time::sleep_until(wake.into()) => {}
                message = rx.recv() => match message {
                    Some(ButtonMessage::Edge(edge)) => match gestures.edge(edge, Instant::now()) {
                        Some(Gesture::Press) if armed_until.is_some() => {
                            self.confirm_reset(&node).await;
                            armed_until = None;
                            self.update(|v| v.reset_armed_until_ms = None);
                            next_assess = Instant::now();
                        }
                        Some(Gesture::Press) => {
                            identify_until = Some(Instant::now() + IDENTIFY);
                            // The setup code again, or where the box is.
                            node.announce_setup(true).await;
                            next_assess = Instant::now();
                        }
                        Some(Gesture::Hold) => {
                            armed_until = Some(self.arm_reset(Instant::now()));
                            next_assess = Instant::now();
                        }
                        None => {}
                    },
                    Some(ButtonMessage::Gone) => {
                        tracing::warn!("the button went away");
                        listening = false;
                        gestures = Gestures::default();
                        self.update(|v| v.button = None);
                    }
                    None => {}
                },
                _ = stop.changed() => {
                    if let Some(l) = &led {
                        let _ = l.set(false);
                    }
                    return;
                }
            }
        }
    }

    fn arm_reset(&self, now: Instant) -> Instant {
        tracing::warn!(
            "factory reset armed by the button: press it again within {} s to erase this box's data",
            RESET_CONFIRM.as_secs()
        );
        let until_ms = lpe_core::events::now_ms() + RESET_CONFIRM.as_millis() as u64;
        self.update(|v| v.reset_armed_until_ms = Some(until_ms));
        now + RESET_CONFIRM
    }

    async fn confirm_reset(&self, node: &Node) {
        tracing::warn!("factory reset confirmed at the button: erasing this box's data");
        use crate::command::{Actor, Command, Envelope};
        let reset = Envelope::once(Actor::Button, Command::FactoryReset { keep_keys: true });
        if let Err(e) = node.submit(reset, |_| {}).await {
            tracing::error!("the factory reset failed: {e}");
        }
    }
}

fn find_led(wanted: &str) -> Option<Led> {
    let led = Led::find(std::path::Path::new(lpe_drivers::led::CLASS_DIR), wanted)?;
    match led.claim() {
        Ok(()) => {
            tracing::info!("the status LED is {}", led.name());
            Some(led)
        }
        Err(e) => {
            // Seen once per scan would flood the log; this is worth seeing once per start.
            static SAID: std::sync::Once = std::sync::Once::new();
            SAID.call_once(|| {
                tracing::warn!("the status LED {} cannot be driven: {e}", led.name());
            });
            None
        }
    }
}

fn find_button(wanted: &str, key: u16) -> Option<Button> {
    Button::find(
        std::path::Path::new(lpe_drivers::button::CLASS_DIR),
        std::path::Path::new(lpe_drivers::button::DEV_DIR),
        wanted,
        (key != 0).then_some(key),
    )
}

/// Reads the button on a thread of its own (a blocking read, for as long as the device is
/// there); its edges go to the hardware task.
fn listen(mut button: Button, tx: mpsc::Sender<ButtonMessage>) {
    let spawned = std::thread::Builder::new()
        .name("button".into())
        .spawn(move || {
            loop {
                let message = match button.next_edge() {
                    Ok(edge) => ButtonMessage::Edge(edge),
                    Err(_) => ButtonMessage::Gone,
                };
                let gone = matches!(message, ButtonMessage::Gone);
                if tx.blocking_send(message).is_err() || gone {
                    return;
                }
            }
        });
    if let Err(e) = spawned {
        tracing::error!("cannot read the button: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presses_and_holds() {
        let t0 = Instant::now();
        let mut g = Gestures::default();
        assert_eq!(g.edge(KeyEdge::Down, t0), None);
        assert_eq!(g.next_due(), Some(t0 + RESET_HOLD));
        assert_eq!(
            g.edge(KeyEdge::Up, t0 + Duration::from_millis(300)),
            Some(Gesture::Press)
        );
        assert_eq!(g.next_due(), None);

        // A hold fires once, while held; letting go after it is not a press.
        g.edge(KeyEdge::Down, t0);
        assert_eq!(g.tick(t0 + Duration::from_secs(9)), None);
        assert_eq!(
            g.edge(KeyEdge::Repeat, t0 + Duration::from_secs(10)),
            Some(Gesture::Hold)
        );
        assert_eq!(g.tick(t0 + Duration::from_secs(11)), None);
        assert_eq!(g.next_due(), None);
        assert_eq!(g.edge(KeyEdge::Up, t0 + Duration::from_secs(12)), None);

        // Without repeats (a gpio-keys button), the tick sees the hold.
        g.edge(KeyEdge::Down, t0);
        assert_eq!(g.tick(t0 + RESET_HOLD), Some(Gesture::Hold));
        assert_eq!(g.edge(KeyEdge::Up, t0 + Duration::from_secs(15)), None);

        // An up without a down (the node started with the key held) means nothing.
        assert_eq!(g.edge(KeyEdge::Up, t0), None);
    }

    #[test]
    fn every_state_has_its_own_pattern() {
        let states = [
            BoxState::ResetArmed,
            BoxState::Identifying,
            BoxState::Updating,
            BoxState::Booting,
            BoxState::Fault,
            BoxState::NeedsSetup,
            BoxState::Running,
        ];
        for (i, a) in states.iter().enumerate() {
            for b in &states[i + 1..] {
                assert_ne!(a.pattern(), b.pattern(), "{a:?} and {b:?}");
            }
        }
    }
}
