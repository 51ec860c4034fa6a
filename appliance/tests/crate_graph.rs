//! The planes are crates, and the compiler keeps them apart only as far as their manifests
//! allow: this test holds the manifests (through `cargo metadata`) to the architecture's rules,
//! and the modules inside each crate to "no import circles".

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Crates doing I/O that the pure or plane-bound crates must not reach for.
const IO_CRATES: &[&str] = &[
    "tokio",
    "rusqlite",
    "gstreamer",
    "alloy",
    "reqwest",
    "hyper",
    "axum",
    "rumqttc",
    "v4l",
];

/// For each workspace crate: the workspace crates it may depend on, and crates it must not.
fn rules() -> BTreeMap<&'static str, (&'static [&'static str], &'static [&'static str])> {
    BTreeMap::from([
        // Pure: no I/O, no clock, no randomness of its own.
        ("lpe-pm", (&[][..], IO_CRATES)),
        // Inference: frames in, detections out; the library is loaded, nothing else is done.
        ("lpe-ai", (&[][..], IO_CRATES)),
        // Hardware access knows nothing of the node.
        (
            "lpe-drivers",
            (
                &[][..],
                &["tokio", "rusqlite", "gstreamer", "alloy", "axum"][..],
            ),
        ),
        // A sans-IO protocol.
        ("lpe-rtmp", (&[][..], IO_CRATES)),
        // System updates: RAUC over D-Bus and bundle downloads; knows nothing of the node.
        (
            "lpe-update",
            (
                &[][..],
                &["rusqlite", "gstreamer", "alloy", "axum", "hyper", "rumqttc"][..],
            ),
        ),
        (
            "lpe-core",
            (
                &[][..],
                &["rusqlite", "gstreamer", "alloy", "axum", "hyper", "rumqttc"][..],
            ),
        ),
        (
            "lpe-store",
            (
                &["lpe-core", "lpe-pm"][..],
                &["gstreamer", "alloy", "axum", "rumqttc"][..],
            ),
        ),
        // Media knows nothing of money, the store or the transports.
        (
            "lpe-media",
            (
                &["lpe-core", "lpe-drivers", "lpe-rtmp"][..],
                &["rusqlite", "alloy", "axum", "hyper", "rumqttc"][..],
            ),
        ),
        // Money knows nothing of media or the transports.
        (
            "lpe-money",
            (
                &["lpe-core", "lpe-pm", "lpe-store"][..],
                &["gstreamer", "axum", "hyper", "rumqttc"][..],
            ),
        ),
        // The node executes commands; it speaks no transport's protocol.
        (
            "lpe-node",
            (
                &[
                    "lpe-ai",
                    "lpe-core",
                    "lpe-drivers",
                    "lpe-media",
                    "lpe-money",
                    "lpe-pm",
                    "lpe-store",
                    "lpe-update",
                ][..],
                &["axum", "hyper", "rumqttc", "rusqlite", "gstreamer"][..],
            ),
        ),
        // Transports reach the planes only through the node's command and query API.
        (
            "lpe-control",
            (
                &[
                    "lpe-core",
                    "lpe-drivers",
                    "lpe-http",
                    "lpe-node",
                    "lpe-pm",
                    "lpe-update",
                ][..],
                &["rusqlite", "gstreamer", "alloy"][..],
            ),
        ),
        // Listeners: serve whatever router they are given; know no plane.
        (
            "lpe-http",
            (
                &["lpe-core"][..],
                &["rusqlite", "gstreamer", "alloy", "rumqttc"][..],
            ),
        ),
        // The peer-facing transport: the wire protocol, reaching the planes through the node.
        (
            "lpe-net",
            (
                &["lpe-core", "lpe-http", "lpe-node", "lpe-pm"][..],
                &["rusqlite", "gstreamer", "alloy"][..],
            ),
        ),
        // The binary wires everything.
        (
            "livepeer-edge",
            (
                &[
                    "lpe-ai",
                    "lpe-control",
                    "lpe-core",
                    "lpe-drivers",
                    "lpe-http",
                    "lpe-media",
                    "lpe-money",
                    "lpe-net",
                    "lpe-node",
                    "lpe-pm",
                    "lpe-store",
                ][..],
                &[][..],
            ),
        ),
    ])
}

struct Package {
    name: String,
    /// Normal and build dependencies (dev-dependencies are the tests' business).
    deps: BTreeSet<String>,
    src: PathBuf,
}

fn workspace() -> Vec<Package> {
    let out = std::process::Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).expect("metadata JSON");
    meta["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .map(|p| Package {
            name: p["name"].as_str().expect("name").to_string(),
            deps: p["dependencies"]
                .as_array()
                .expect("dependencies")
                .iter()
                .filter(|d| d["kind"].as_str() != Some("dev"))
                .map(|d| d["name"].as_str().expect("dep name").to_string())
                .collect(),
            src: Path::new(p["manifest_path"].as_str().expect("manifest"))
                .parent()
                .expect("package dir")
                .join("src"),
        })
        .collect()
}

/// Every rule broken by the workspace's manifests, one line each.
fn violations(packages: &[Package]) -> Vec<String> {
    let rules = rules();
    let ours: BTreeSet<&str> = packages.iter().map(|p| p.name.as_str()).collect();
    let mut found = Vec::new();
    for p in packages {
        let Some((allowed, forbidden)) = rules.get(p.name.as_str()) else {
            found.push(format!(
                "{}: a workspace crate with no rule in crate_graph.rs",
                p.name
            ));
            continue;
        };
        for d in &p.deps {
            if ours.contains(d.as_str()) && !allowed.contains(&d.as_str()) {
                found.push(format!("{} must not depend on {d}", p.name));
            }
            if forbidden.contains(&d.as_str()) {
                found.push(format!("{} must not use {d}", p.name));
            }
        }
    }
    found
}

#[test]
fn crates_depend_only_as_the_architecture_allows() {
    let packages = workspace();
    let found = violations(&packages);
    assert!(
        found.is_empty(),
        "forbidden dependencies:\n{}",
        found.join("\n")
    );
}

#[test]
fn a_forbidden_dependency_is_caught() {
    let mut packages = workspace();
    let media = packages
        .iter_mut()
        .find(|p| p.name == "lpe-media")
        .expect("lpe-media is a workspace crate");
    media.deps.insert("lpe-money".into());
    media.deps.insert("rusqlite".into());
    let pm = packages
        .iter_mut()
        .find(|p| p.name == "lpe-pm")
        .expect("lpe-pm");
    pm.deps.insert("tokio".into());
    assert_eq!(
        violations(&packages),
        [
            "lpe-media must not depend on lpe-money",
            "lpe-media must not use rusqlite",
            "lpe-pm must not use tokio",
        ]
    );
}

/// The top-level modules of a crate that `file` names (`crate::x`, or `super::x` from a
/// top-level module), test modules left out.
fn referenced_modules(text: &str, top_level: bool) -> BTreeSet<String> {
    let text = text.split("#[cfg(test)]\nmod tests").next().unwrap_or(text);
    let mut found = BTreeSet::new();
    let prefixes: &[&str] = if top_level {
        &["crate::", "super::"]
    } else {
        &["crate::"]
    };
    for prefix in prefixes {
        for (i, _) in text.match_indices(prefix) {
            let before = text[..i].chars().next_back();
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                continue;
            }
            let name: String = text[i + prefix.len()..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
                .collect();
            if !name.is_empty() {
                found.insert(name);
            }
        }
    }
    found
}

/// Edges between a crate's top-level modules (the crate root is everyone's parent and left
/// out).
fn module_graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut modules: BTreeMap<String, Vec<(PathBuf, bool)>> = BTreeMap::new();
    for entry in std::fs::read_dir(src).expect("src dir").flatten() {
        let path = entry.path();
        let name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("")
            .to_string();
        if ["lib", "main"].contains(&name.as_str()) {
            continue;
        }
        if path.is_dir() {
            let mut stack = vec![path];
            while let Some(dir) = stack.pop() {
                for f in std::fs::read_dir(&dir).expect("module dir").flatten() {
                    let p = f.path();
                    if p.is_dir() {
                        stack.push(p);
                    } else if p.extension().is_some_and(|e| e == "rs") {
                        let top =
                            p.file_name().is_some_and(|n| n == "mod.rs") && dir == src.join(&name);
                        modules.entry(name.clone()).or_default().push((p, top));
                    }
                }
            }
        } else if path.extension().is_some_and(|e| e == "rs") {
            modules.entry(name).or_default().push((path, true));
        }
    }
    let names: BTreeSet<String> = modules.keys().cloned().collect();
    modules
        .into_iter()
        .map(|(name, files)| {
            let mut to = BTreeSet::new();
            for (file, top) in files {
                let text = std::fs::read_to_string(&file).expect("source");
                to.extend(
                    referenced_modules(&text, top)
                        .into_iter()
                        .filter(|m| names.contains(m) && *m != name),
                );
            }
            (name, to)
        })
        .collect()
}

/// One circle, if the graph has any.
fn circle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut c = path[at..].to_vec();
            c.push(node.to_string());
            return Some(c);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(c) = visit(next, graph, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|n| visit(n, graph, &mut Vec::new(), &mut done))
}

#[test]
fn no_crate_has_an_import_circle_between_its_modules() {
    let mut found = Vec::new();
    for p in workspace() {
        if let Some(c) = circle(&module_graph(&p.src)) {
            found.push(format!("{}: {}", p.name, c.join(" → ")));
        }
    }
    assert!(found.is_empty(), "import circles:\n{}", found.join("\n"));
}

#[test]
fn a_module_circle_is_caught() {
    let graph = BTreeMap::from([
        ("api".to_string(), BTreeSet::from(["auth".to_string()])),
        ("auth".to_string(), BTreeSet::from(["store".to_string()])),
        ("store".to_string(), BTreeSet::from(["api".to_string()])),
        ("tls".to_string(), BTreeSet::new()),
    ]);
    assert_eq!(
        circle(&graph).map(|c| c.join(" → ")),
        Some("api → auth → store → api".to_string())
    );
    assert_eq!(
        referenced_modules("use crate::store::X; super::tls::y(); lpe_crate::z", true),
        BTreeSet::from(["store".to_string(), "tls".to_string()])
    );
}
