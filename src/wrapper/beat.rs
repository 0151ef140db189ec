//! `tether beat`: one beat from inside a job, through whatever channel the surrounding `tether run`
//! set up.

use std::path::PathBuf;

use super::error::Error;

/// `extend`: the job declares a silence; in file mode the file then carries a JSON object
/// `{"message": ..., "extend": "10m"}` (see `heartbeat::FileBeat`).
pub fn beat(status: Option<&str>, extend: Option<std::time::Duration>) -> Result<(), Error> {
    if let Some(sock) = std::env::var_os("NOTIFY_SOCKET").filter(|s| !s.is_empty()) {
        let sock = sock.to_string_lossy().into_owned();
        return super::sd_notify::send(&sock, &super::sd_notify::beat_message(status, extend))
            .map_err(|e| Error::io(format!("cannot send the beat to NOTIFY_SOCKET {sock}: {e}")));
    }
    if let Some(p) = std::env::var_os("TETHER_HEARTBEAT_FILE").filter(|s| !s.is_empty()) {
        let p = PathBuf::from(p);
        let res = match (status, extend) {
            (_, Some(d)) => {
                let v = serde_json::json!({
                    "message": status,
                    "extend": humantime::format_duration(d).to_string(),
                });
                std::fs::write(&p, format!("{v}\n"))
            }
            (Some(s), None) => {
                let line: String = s
                    .chars()
                    .map(|c| if c == '\n' || c == '\r' { ' ' } else { c })
                    .collect();
                std::fs::write(&p, format!("{line}\n"))
            }
            (None, None) => std::fs::OpenOptions::new()
                .write(true)
                .open(&p)
                .and_then(|f| f.set_modified(std::time::SystemTime::now())),
        };
        return res.map_err(|e| {
            Error::io(format!(
                "cannot touch TETHER_HEARTBEAT_FILE {}: {e}",
                p.display()
            ))
        });
    }
    Err(Error::usage(
        "not inside a job that takes beats: run this under `tether run --heartbeat notify` or `--heartbeat file` (neither NOTIFY_SOCKET nor TETHER_HEARTBEAT_FILE is set)",
    ))
}
