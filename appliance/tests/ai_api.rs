//! The AI plane through the API of a real node: the ONNX Runtime it loaded and its
//! providers, the shipped CenterFace, and model uploads — a YOLO graph the test builds is
//! checked and kept (0600), models that cannot work are refused with the reason, and removal.

mod common;

use common::NodeProc;

#[test]
fn models_are_listed_checked_at_upload_and_removed() {
    let graphs = common::test_graphs();
    let dir = tempfile::tempdir().expect("tempdir");
    let node = NodeProc::start(dir.path());

    let (status, ai) = node.get("/api/ai");
    assert_eq!(status, 200, "{ai}");
    assert_eq!(ai["runtime"]["version"], "1.32.0", "{ai}");
    assert!(ai["runtime"]["error"].is_null(), "{ai}");
    let providers = ai["runtime"]["providers"].as_array().expect("providers");
    let names: Vec<&str> = providers
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert_eq!(names, ["TensorRT", "CUDA", "CPU"]);
    assert!(
        providers
            .iter()
            .any(|p| p["name"] == "CPU" && p["compiled_in"] == true)
    );
    let models = ai["models"].as_array().expect("models");
    assert_eq!(models.len(), 1, "{ai}");
    assert_eq!(models[0]["id"], "centerface");
    assert_eq!(models[0]["builtin"], true);
    assert_eq!(ai["object_detector"], false, "none ships");

    // A YOLO model: checked, kept, listed.
    let yolo = std::fs::read(graphs.path().join("yolov8.onnx")).expect("graph");
    let (status, m) = node.upload_model(
        "name=Test%20YOLO&kind=yolo&width=320&height=320&labels=person,car",
        &yolo,
    );
    assert_eq!(status, 201, "{m}");
    assert_eq!(m["layout"], "v8", "{m}");
    assert_eq!(
        m["descriptor"]["labels"],
        serde_json::json!(["person", "car"])
    );
    let id = m["id"].as_str().expect("id").to_string();
    let file = dir.path().join("data/models").join(&id).join("model.onnx");
    let file = if file.is_file() {
        file
    } else {
        dir.path().join("models").join(&id).join("model.onnx")
    };
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&file).expect("kept").permissions().mode() & 0o777,
        0o600
    );
    let (_, ai) = node.get("/api/ai");
    assert_eq!(ai["models"].as_array().map(Vec::len), Some(2));
    assert_eq!(ai["object_detector"], true);

    // Refused, with the reason, nothing kept.
    for (query, body, says) in [
        (
            "name=x&kind=yolo&width=320&height=320",
            b"\x08\x07not a model".to_vec(),
            "",
        ),
        (
            "name=x&kind=yolo&width=320&height=320&labels=a,b,c",
            yolo.clone(),
            "3 labels",
        ),
        ("name=x&kind=yolo&width=640&height=640", yolo.clone(), "640"),
        (
            "name=x&kind=centerface&width=320&height=320",
            yolo.clone(),
            "CenterFace",
        ),
        (
            "name=x&kind=yolo&width=320&height=320",
            std::fs::read(graphs.path().join("gray_input.onnx")).expect("graph"),
            "[1, 3, 320, 320]",
        ),
        ("name=x&kind=yolo&width=320&height=320", Vec::new(), "empty"),
    ] {
        let (status, e) = node.upload_model(query, &body);
        assert_eq!(status, 422, "{query}: {e}");
        assert_eq!(e["error"]["field"], "file", "{e}");
        let msg = e["error"]["message"].as_str().unwrap_or("");
        assert!(msg.contains(says), "{query}: {msg}");
    }
    let (status, e) = node.upload_model("name=x&kind=yolo&width=100&height=320", &yolo);
    assert_eq!(
        (status, e["error"]["field"].as_str()),
        (422, Some("descriptor")),
        "{e}"
    );
    let (status, _) = node.upload_model("kind=yolo", &yolo);
    assert_eq!(status, 400);
    let (_, ai) = node.get("/api/ai");
    assert_eq!(
        ai["models"].as_array().map(Vec::len),
        Some(2),
        "refused models are not kept: {ai}"
    );

    let (status, _) = node.send("DELETE", &format!("/api/ai/models/{id}"), None);
    assert_eq!(status, 204);
    let (status, _) = node.send("DELETE", "/api/ai/models/centerface", None);
    assert_eq!(status, 404, "the shipped model stays");
    let (_, ai) = node.get("/api/ai");
    assert_eq!(ai["models"].as_array().map(Vec::len), Some(1));
    assert!(node.healthy());
}
