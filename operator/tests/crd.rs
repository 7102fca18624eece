//! The committed CRD matches the Rust types, and the sample fits the CRD.

use std::path::PathBuf;
use std::process::Command;

use tps_operator::resource::{CRD_PATH, ThroughputService};

/// The checkout the test runs in. Cargo and nextest set `CARGO_MANIFEST_DIR` when they run a
/// test, which is right even when the binary was built in another checkout sharing the target
/// directory (cargo reuses artifacts across checkouts); the compile-time value is the fallback.
fn repo_root() -> PathBuf {
    let manifest =
        std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into());
    PathBuf::from(manifest).parent().unwrap().to_path_buf()
}

#[test]
fn committed_crd_matches_what_crdgen_generates() {
    let output = Command::new(env!("CARGO_BIN_EXE_crdgen")).output().expect("crdgen runs");
    assert!(output.status.success());
    let generated = String::from_utf8(output.stdout).unwrap();
    let committed = std::fs::read_to_string(repo_root().join(CRD_PATH)).expect("the CRD is committed");
    assert!(
        generated == committed,
        "{CRD_PATH} is stale: run `cargo run -p tps-operator --bin crdgen {CRD_PATH}` and commit it"
    );
}

/// Every key of `sample` must survive a round trip through the Rust types,
/// so a misspelt field in the sample fails here rather than being ignored.
fn assert_known_fields(path: &str, sample: &serde_json::Value, parsed: &serde_json::Value) {
    if let (serde_json::Value::Object(s), serde_json::Value::Object(p)) = (sample, parsed) {
        for (key, value) in s {
            let child = p.get(key).unwrap_or_else(|| panic!("unknown field {path}.{key}"));
            assert_known_fields(&format!("{path}.{key}"), value, child);
        }
    }
}

#[test]
fn sample_uses_only_known_fields_and_valid_values() {
    let text = std::fs::read_to_string(repo_root().join("config/samples/throughputservice.yaml")).unwrap();
    let sample: serde_json::Value = serde_yaml::from_str(&text).unwrap();
    let parsed: ThroughputService = serde_json::from_value(sample.clone()).expect("sample parses");
    assert_known_fields("spec", &sample["spec"], &serde_json::to_value(&parsed.spec).unwrap());
    let spec = &parsed.spec;
    assert!(spec.api.min_replicas <= spec.api.max_replicas);
    assert!(
        spec.worker.min_replicas <= spec.worker.max_replicas
            && spec.worker.max_replicas <= spec.worker.shards
    );
}
