//! The vectors' schema check, shared by the two vector runners (`tests/vectors.rs`,
//! `tests/write_vectors.rs`): the check that `tests/vectors/schema/vectors.schema.json`
//! (what other languages validate vectors with) and the runner's own typed reading of a vector
//! accept exactly the same files.
//!
//! Both are run on mutants of every vector: an unknown key added to, and each key removed from,
//! every object of the vector format. The schema is applied by `tests/vectors_py/schema.py` (the
//! standard-library validator CI also runs), so this test needs python3, as CI has.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// Vectors larger than this (the 1 MiB cases) are not mutated: their keys are those of others.
const MAX_MUTATED_BYTES: u64 = 64 * 1024;

pub fn vector_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    files
}

fn obj_at<'a>(v: &'a mut Value, path: &str) -> Option<&'a mut serde_json::Map<String, Value>> {
    let mut o = v;
    for k in path.split('.').filter(|k| !k.is_empty()) {
        o = o.get_mut(k)?;
    }
    o.as_object_mut()
}

/// Mutants of one vector: (label, text). `objects` are the paths of the format's own objects
/// ("" is the vector itself), so records inside a vector are never mutated.
fn mutants(v: &Value, objects: &[&str]) -> Vec<(String, String)> {
    let mut out = vec![("original".to_string(), v.to_string())];
    for path in objects {
        let mut m = v.clone();
        let Some(obj) = obj_at(&mut m, path) else {
            continue;
        };
        let keys: Vec<String> = obj.keys().cloned().collect();
        obj.insert("zz_unknown".into(), Value::from(1));
        out.push((format!("{path}+zz_unknown"), m.to_string()));
        for k in keys {
            let mut m = v.clone();
            obj_at(&mut m, path).unwrap().remove(&k);
            out.push((format!("{path}-{k}"), m.to_string()));
        }
    }
    out
}

/// Runs the schema validator on `files`; true for each file it accepts.
fn schema_accepts(files: &[PathBuf]) -> Vec<bool> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors_py/schema.py");
    let out = Command::new("python3")
        .arg(&script)
        .args(files)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "python3 {}: {e} (the schema check needs python3)",
                script.display()
            )
        });
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines.len(),
        files.len(),
        "schema.py printed {} lines for {} files; stderr: {}",
        lines.len(),
        files.len(),
        String::from_utf8_lossy(&out.stderr)
    );
    lines.iter().map(|l| l.ends_with(": ok")).collect()
}

/// Asserts that the schema and `runner_accepts` agree on every mutant of every vector in `dir`.
pub fn schema_agrees(
    dir: &Path,
    objects: &[&str],
    runner_accepts: impl Fn(&str) -> Result<(), String>,
) {
    let tmp = tempfile::tempdir().unwrap();
    let mut cases = Vec::new();
    for file in vector_files(dir) {
        if std::fs::metadata(&file).unwrap().len() > MAX_MUTATED_BYTES {
            continue;
        }
        let v: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
        let stem = file.file_stem().unwrap().to_string_lossy().into_owned();
        for (label, text) in mutants(&v, objects) {
            let path = tmp.path().join(format!("{}.json", cases.len()));
            std::fs::write(&path, &text).unwrap();
            cases.push((format!("{stem} {label}"), path, text));
        }
    }
    let paths: Vec<PathBuf> = cases.iter().map(|c| c.1.clone()).collect();
    let schema = schema_accepts(&paths);
    let mut disagree = Vec::new();
    for ((label, _, text), schema_ok) in cases.iter().zip(schema) {
        let runner = runner_accepts(text);
        if runner.is_ok() != schema_ok {
            disagree.push(format!(
                "{label}: schema {}, runner {runner:?}",
                if schema_ok { "accepts" } else { "rejects" }
            ));
        }
        if label.ends_with(" original") && !schema_ok {
            disagree.push(format!("{label}: the vector itself fails the schema"));
        }
    }
    assert!(
        disagree.is_empty(),
        "schema and runner disagree on {} of {} mutants:\n  {}",
        disagree.len(),
        cases.len(),
        disagree.join("\n  ")
    );
}
