//! A detector in a process of its own. A model is untrusted input parsed by a large C++
//! library; run in a worker process, a model that crashes ONNX Runtime (or a provider that
//! aborts) ends that process, never the node, and the node notices at once (the pipe closes)
//! instead of waiting on a hung call.
//!
//! The wire, over the worker's stdin and stdout:
//! - worker → node, once: a JSON line, `{"ready": {"provider", "attempts"}}` or
//!   `{"error": "..."}` (then it exits);
//! - node → worker, per frame: a 16-byte header (`width`, `height` as little-endian u32,
//!   the frame's timestamp in nanoseconds as a u64) and `width × height × 3` bytes of packed
//!   RGB;
//! - worker → node, per frame: a JSON line, `{"detections": [...], "inference_us",
//!   "total_us"}` or `{"error": "..."}` (then it exits).
//!
//! End of input ends the worker.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::detect::{Detection, Frame};
use crate::session::{AiError, Descriptor, Detector, ProviderAttempt};

/// Frames larger than this (either side) are refused by the worker.
pub const MAX_SIDE: u32 = 4096;
/// The longest answer line read from a worker.
const MAX_LINE: u64 = 4 << 20;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ready {
    pub provider: String,
    pub attempts: Vec<ProviderAttempt>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Answer {
    pub detections: Vec<Detection>,
    /// The session's run alone.
    pub inference_us: u64,
    /// Letterbox, run, decoding and suppression.
    pub total_us: u64,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Line {
    Ready(Ready),
    Answer(Answer),
    Error(String),
}

/// The worker's side: answers frames read from `input` until it ends. Returns an error only
/// when the detector failed (after telling the node).
pub fn serve(mut detector: Detector, input: impl Read, output: impl Write) -> Result<(), String> {
    let mut input = std::io::BufReader::with_capacity(1 << 20, input);
    let mut output = std::io::LineWriter::new(output);
    let ready = Line::Ready(Ready {
        provider: detector.provider.clone(),
        attempts: detector.attempts.clone(),
    });
    write_line(&mut output, &ready)?;
    let mut rgb = Vec::new();
    loop {
        let mut header = [0u8; 16];
        match input.read_exact(&mut header) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e.to_string()),
        }
        let word =
            |i: usize| u32::from_le_bytes([header[i], header[i + 1], header[i + 2], header[i + 3]]);
        let (width, height) = (word(0), word(4));
        if width == 0 || height == 0 || width > MAX_SIDE || height > MAX_SIDE {
            let why = format!("a {width}×{height} frame is refused");
            let _ = write_line(&mut output, &Line::Error(why.clone()));
            return Err(why);
        }
        rgb.resize(width as usize * height as usize * 3, 0);
        input.read_exact(&mut rgb).map_err(|e| e.to_string())?;
        let started = Instant::now();
        let answer = Frame::packed(width, height, &rgb)
            .ok_or_else(|| AiError::Run("short frame".into()))
            .and_then(|f| detector.detect(&f));
        match answer {
            Ok(detections) => {
                let line = Line::Answer(Answer {
                    detections,
                    inference_us: detector.last_inference.as_micros() as u64,
                    total_us: started.elapsed().as_micros() as u64,
                });
                write_line(&mut output, &line)?;
            }
            Err(e) => {
                let why = e.to_string();
                let _ = write_line(&mut output, &Line::Error(why.clone()));
                return Err(why);
            }
        }
    }
}

fn write_line(output: &mut impl Write, line: &Line) -> Result<(), String> {
    let mut s = serde_json::to_string(line).map_err(|e| e.to_string())?;
    s.push('\n');
    output.write_all(s.as_bytes()).map_err(|e| e.to_string())
}

/// How to start a worker: the node's own executable with its worker subcommand.
#[derive(Debug, Clone)]
pub struct WorkerCommand {
    pub program: PathBuf,
    /// Arguments before the worker's own (the subcommand).
    pub args: Vec<String>,
}

/// What a worker is asked to open.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerSpec {
    pub model: PathBuf,
    pub descriptor: Descriptor,
    /// `ai.onnxruntime_path` (empty: searched).
    pub onnxruntime: PathBuf,
    pub threads: usize,
    /// Providers that failed while running this model (not tried again).
    #[serde(default)]
    pub avoid_providers: Vec<String>,
}

/// The node's side of a worker process. Dropping it ends the process.
pub struct Worker {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<std::io::Take<ChildStdout>>,
    header: Vec<u8>,
    pub ready: Ready,
    pub pid: u32,
}

impl Worker {
    /// Starts a worker and waits until its model is open (which, on TensorRT, can take
    /// minutes: the engine is built).
    pub fn spawn(cmd: &WorkerCommand, spec: &WorkerSpec) -> Result<Worker, AiError> {
        let spec_json =
            serde_json::to_string(spec).map_err(|e| AiError::Unavailable(e.to_string()))?;
        let mut child = Command::new(&cmd.program)
            .args(&cmd.args)
            .arg(spec_json)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| {
                AiError::Unavailable(format!("cannot start {}: {e}", cmd.program.display()))
            })?;
        let pid = child.id();
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(AiError::Unavailable("the worker has no pipes".into()));
        };
        let mut worker = Worker {
            child,
            stdin,
            stdout: BufReader::new(stdout.take(MAX_LINE)),
            header: Vec::with_capacity(16),
            ready: Ready {
                provider: String::new(),
                attempts: Vec::new(),
            },
            pid,
        };
        match worker.read_line()? {
            Line::Ready(r) => {
                worker.ready = r;
                Ok(worker)
            }
            Line::Error(e) => Err(AiError::Model(e)),
            Line::Answer(_) => Err(AiError::Run("the worker answered out of turn".into())),
        }
    }

    fn read_line(&mut self) -> Result<Line, AiError> {
        self.stdout.get_mut().set_limit(MAX_LINE);
        let mut line = String::new();
        let n = self
            .stdout
            .read_line(&mut line)
            .map_err(|e| AiError::Run(format!("the worker's answer: {e}")))?;
        if n == 0 {
            return Err(AiError::Run(self.ended()));
        }
        serde_json::from_str(&line)
            .map_err(|e| AiError::Run(format!("the worker's answer is not understood: {e}")))
    }

    /// Why the worker's output ended.
    fn ended(&mut self) -> String {
        let status = (0..20).find_map(|_| match self.child.try_wait() {
            Ok(Some(s)) => Some(s.to_string()),
            Ok(None) => {
                std::thread::sleep(Duration::from_millis(10));
                None
            }
            Err(_) => None,
        });
        format!(
            "the detector process ended ({})",
            status.unwrap_or_else(|| "still running".into())
        )
    }

    /// Detects objects in a frame whose rows are `stride` bytes apart.
    pub fn detect(
        &mut self,
        pts: Duration,
        width: u32,
        height: u32,
        stride: usize,
        rgb: &[u8],
    ) -> Result<Answer, AiError> {
        let row = width as usize * 3;
        if Frame::new(width, height, stride, rgb).is_none() {
            return Err(AiError::Run("the frame is shorter than its size".into()));
        }
        self.header.clear();
        self.header.extend_from_slice(&width.to_le_bytes());
        self.header.extend_from_slice(&height.to_le_bytes());
        self.header
            .extend_from_slice(&(pts.as_nanos() as u64).to_le_bytes());
        let sent = (|| {
            self.stdin.write_all(&self.header)?;
            for y in 0..height as usize {
                self.stdin.write_all(&rgb[y * stride..y * stride + row])?;
            }
            self.stdin.flush()
        })();
        if let Err(e) = sent {
            return Err(AiError::Run(format!("{} ({e})", self.ended())));
        }
        match self.read_line()? {
            Line::Answer(a) => Ok(a),
            Line::Error(e) => Err(AiError::Run(e)),
            Line::Ready(_) => Err(AiError::Run("the worker answered out of turn".into())),
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The worker process's main: opens the model the spec names and serves stdin/stdout.
pub fn main(spec_json: &str) -> Result<(), String> {
    let spec: WorkerSpec = serde_json::from_str(spec_json).map_err(|e| e.to_string())?;
    let fail = |why: String| {
        let mut out = std::io::stdout().lock();
        let _ = write_line(&mut out, &Line::Error(why.clone()));
        why
    };
    let rt = crate::runtime::Runtime::load(Path::new(&spec.onnxruntime), spec.threads)
        .map_err(|r| fail(r.error.unwrap_or_default()))?;
    let detector =
        Detector::open(&rt, &spec.model, spec.descriptor).map_err(|e| fail(e.to_string()))?;
    serve(detector, std::io::stdin().lock(), std::io::stdout().lock())
}
