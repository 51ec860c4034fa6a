//! The detectors on the real ONNX Runtime: every YOLO layout through a session of a graph
//! built by tests/graphs.py (known outputs, pre-processing, decoding, suppression, mapping
//! back to the frame), refusals at open, and CenterFace finding the one face in scikit-image's
//! astronaut at its known place.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use lpe_ai::detect::{BoundingBox, Frame};
use lpe_ai::runtime::Runtime;
use lpe_ai::session::{AiError, Descriptor, Detector, ModelKind};
use lpe_ai::yolo::Layout;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The library the set-up installed (scripts/deps.sh), loaded once for the process.
fn runtime() -> &'static Runtime {
    static RT: OnceLock<Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        let lib = std::fs::read_dir(root().join("target/pyenv/lib"))
            .expect("target/pyenv (scripts/deps.sh)")
            .flatten()
            .map(|p| {
                p.path()
                    .join("site-packages/onnxruntime/capi/libonnxruntime.so.1.32.0")
            })
            .find(|p| p.is_file())
            .expect("the onnxruntime wheel's library (scripts/deps.sh)");
        let rt = Runtime::load(&lib, 1).unwrap_or_else(|r| panic!("{r:?}"));
        assert_eq!(rt.report.version.as_deref(), Some("1.32.0"));
        assert!(
            rt.report
                .providers
                .iter()
                .any(|p| p.name == "CPU" && p.compiled_in)
        );
        rt
    })
}

/// The graphs and the photo, built once.
fn graphs() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = std::process::Command::new(root().join("target/pyenv/bin/python"))
            .arg(root().join("ai/tests/graphs.py"))
            .arg(dir.path())
            .output()
            .expect("python");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        dir
    })
    .path()
}

fn yolo(name: &str) -> Descriptor {
    Descriptor {
        name: name.into(),
        kind: ModelKind::Yolo,
        width: 320,
        height: 320,
        labels: vec!["person".into(), "car".into()],
        min_score: 0.25,
        nms_iou: 0.45,
        layout: None,
    }
}

fn close(a: &BoundingBox, b: &BoundingBox) -> bool {
    [(a.x1, b.x1), (a.y1, b.y1), (a.x2, b.x2), (a.y2, b.y2)]
        .iter()
        .all(|(x, y)| (x - y).abs() < 0.01)
}

#[test]
fn every_yolo_layout_gives_the_same_detections_in_frame_pixels() {
    // A 640×360 frame: into 320×320 at half size, 70 px of border above and below.
    let rgb = vec![128u8; 640 * 360 * 3];
    let frame = Frame::packed(640, 360, &rgb).expect("frame");
    for (file, layout) in [
        ("yolov8", Layout::V8),
        ("yolov5", Layout::V5),
        ("yolox", Layout::X),
    ] {
        let mut d = Detector::open(
            runtime(),
            &graphs().join(format!("{file}.onnx")),
            yolo(file),
        )
        .unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(d.layout(), Some(layout), "{file}");
        assert_eq!(d.provider, "CPU");
        let found = d.detect(&frame).expect("detect");
        let summary: Vec<(&str, f32)> = found.iter().map(|f| (f.label.as_str(), f.score)).collect();
        assert_eq!(
            summary,
            [("person", 0.9), ("car", 0.8)],
            "{file}: {found:?}"
        );
        // (100, 120) 40×80 in the model's input → (160, 20)–(240, 180) in the frame.
        assert!(
            close(
                &found[0].bbox,
                &BoundingBox {
                    x1: 160.0,
                    y1: 20.0,
                    x2: 240.0,
                    y2: 180.0
                }
            ),
            "{file}: {found:?}"
        );
        assert!(
            close(
                &found[1].bbox,
                &BoundingBox {
                    x1: 340.0,
                    y1: 230.0,
                    x2: 460.0,
                    y2: 290.0
                }
            ),
            "{file}: {found:?}"
        );
        assert!(d.last_inference.as_nanos() > 0);
    }
}

#[test]
fn models_that_cannot_work_are_refused_at_open_with_the_reason() {
    let refused =
        |file: &str, d: Descriptor| match Detector::open(runtime(), &graphs().join(file), d) {
            Err(AiError::Model(why)) => why,
            Err(e) => panic!("{file}: {e}"),
            Ok(_) => panic!("{file} was accepted"),
        };
    let why = refused("two_outputs.onnx", yolo("two"));
    assert!(why.contains("2 outputs"), "{why}");
    let why = refused("gray_input.onnx", yolo("gray"));
    assert!(why.contains("[1, 3, 320, 320]"), "{why}");
    let mut wrong_size = yolo("size");
    wrong_size.width = 640;
    let why = refused("yolov8.onnx", wrong_size);
    assert!(why.contains("640"), "{why}");
    let mut labels = yolo("labels");
    labels.labels.push("bicycle".into());
    let why = refused("yolov8.onnx", labels);
    assert!(why.contains("3 labels for a model with 2 classes"), "{why}");
    let corrupt = graphs().join("corrupt.onnx");
    std::fs::write(&corrupt, b"\x08\x07not a model at all").expect("write");
    refused("corrupt.onnx", yolo("corrupt"));
    refused("missing.onnx", yolo("missing"));
    let mut odd = yolo("odd");
    odd.width = 100;
    let why = refused("yolov8.onnx", odd);
    assert!(why.contains("multiple of 32"), "{why}");
}

fn centerface() -> Descriptor {
    Descriptor {
        name: "CenterFace".into(),
        kind: ModelKind::Centerface,
        width: 512,
        height: 512,
        labels: Vec::new(),
        min_score: 0.5,
        nms_iou: 0.3,
        layout: None,
    }
}

#[test]
fn centerface_finds_the_astronauts_face_where_it_is() {
    let model = root().join("target/models/centerface.onnx");
    let mut d = Detector::open(runtime(), &model, centerface()).expect("CenterFace");
    let rgb = std::fs::read(graphs().join("astronaut.rgb")).expect("photo");
    let frame = Frame::packed(512, 512, &rgb).expect("frame");
    let faces = d.detect(&frame).expect("detect");
    assert_eq!(faces.len(), 1, "{faces:?}");
    let known = BoundingBox {
        x1: 181.0,
        y1: 58.0,
        x2: 270.0,
        y2: 178.0,
    };
    let f = &faces[0];
    assert_eq!(f.label, "face");
    assert!(f.bbox.iou(&known) >= 0.7, "{f:?}");
    assert!((f.score - 0.93).abs() < 0.02, "{f:?}");
    println!("CenterFace 512×512 on one thread: {:?}", d.last_inference);

    // The same photo at twice the size in a wider frame: the box comes back at twice the size,
    // shifted by where the photo sits.
    let (w, h) = (1280usize, 1024usize);
    let mut big = vec![0u8; w * h * 3];
    for y in 0..1024 {
        for x in 0..1024 {
            let s = ((y / 2) * 512 + x / 2) * 3;
            let t = (y * w + 128 + x) * 3;
            big[t..t + 3].copy_from_slice(&rgb[s..s + 3]);
        }
    }
    let frame = Frame::packed(w as u32, h as u32, &big).expect("frame");
    let faces = d.detect(&frame).expect("detect");
    assert_eq!(faces.len(), 1, "{faces:?}");
    let known = BoundingBox {
        x1: 128.0 + 362.0,
        y1: 116.0,
        x2: 128.0 + 540.0,
        y2: 356.0,
    };
    assert!(faces[0].bbox.iou(&known) >= 0.7, "{faces:?}");
}

#[test]
fn a_provider_that_failed_while_running_is_not_tried_again() {
    let model = root().join("target/models/centerface.onnx");
    let avoid = ["CPU".to_string()];
    match Detector::open_avoiding(runtime(), &model, centerface(), &avoid) {
        Err(AiError::Model(why)) => assert!(why.contains("no execution provider"), "{why}"),
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("opened on an avoided provider"),
    }
}

/// The worker process's loop, over in-memory pipes: a frame is answered with its detections;
/// a frame larger than the worker takes ends it with the reason; the end of input ends it.
#[test]
fn the_worker_answers_frames_and_refuses_oversized_ones() {
    use lpe_ai::worker::{Answer, serve};
    let model = root().join("target/models/centerface.onnx");
    let rgb = std::fs::read(graphs().join("astronaut.rgb")).expect("photo");
    let frame = |w: u32, h: u32, body: &[u8]| {
        let mut v = Vec::new();
        v.extend_from_slice(&w.to_le_bytes());
        v.extend_from_slice(&h.to_le_bytes());
        v.extend_from_slice(&42u64.to_le_bytes());
        v.extend_from_slice(body);
        v
    };
    let open = || Detector::open(runtime(), &model, centerface()).expect("CenterFace");

    let mut out = Vec::new();
    serve(open(), &frame(512, 512, &rgb)[..], &mut out).expect("served");
    let text = String::from_utf8(out).expect("utf-8");
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert_eq!(lines[0]["ready"]["provider"], "CPU");
    let answer: Answer = serde_json::from_value(lines[1]["answer"].clone()).expect("answer");
    assert_eq!(answer.detections.len(), 1, "{answer:?}");
    assert!(answer.inference_us > 0 && answer.total_us >= answer.inference_us);

    let mut out = Vec::new();
    let why = serve(open(), &frame(5000, 10, &[])[..], &mut out).expect_err("refused");
    assert!(why.contains("5000×10"), "{why}");
    assert!(String::from_utf8_lossy(&out).contains(r#""error""#));

    // A frame cut short: the worker ends without answering it.
    let mut out = Vec::new();
    assert!(serve(open(), &frame(512, 512, &rgb[..1000])[..], &mut out).is_err());
}

/// A real one-class detector (tests/graphs.py's ball.onnx: the box around the bright pixels)
/// through the whole path: a 640×360 frame letterboxed into 320×320, run, v8 decoding,
/// suppression of its 16 identical rows, mapped back to the frame.
#[test]
fn the_ball_detector_finds_a_white_square_where_it_is() {
    let mut d = Detector::open(
        runtime(),
        &graphs().join("ball.onnx"),
        Descriptor {
            name: "ball".into(),
            kind: ModelKind::Yolo,
            width: 320,
            height: 320,
            labels: vec!["ball".into()],
            min_score: 0.5,
            nms_iou: 0.45,
            layout: None,
        },
    )
    .expect("ball detector");
    assert_eq!(d.layout(), Some(Layout::V8));
    let (w, h) = (640usize, 360usize);
    let mut rgb = vec![0u8; w * h * 3];
    for y in 100..160 {
        for x in 400..460 {
            rgb[(y * w + x) * 3..(y * w + x) * 3 + 3].fill(255);
        }
    }
    let frame = Frame::packed(w as u32, h as u32, &rgb).expect("frame");
    let found = d.detect(&frame).expect("detect");
    assert_eq!(found.len(), 1, "{found:?}");
    let want = BoundingBox {
        x1: 400.0,
        y1: 100.0,
        x2: 460.0,
        y2: 160.0,
    };
    assert!(found[0].bbox.iou(&want) > 0.85, "{found:?}");
    assert_eq!(found[0].label, "ball");
    let black = vec![0u8; w * h * 3];
    let frame = Frame::packed(w as u32, h as u32, &black).expect("frame");
    assert!(d.detect(&frame).expect("detect").is_empty());
}
