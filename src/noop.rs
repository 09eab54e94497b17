//! A build with nothing to do, answered without opening the warehouse.
//!
//! Opening a warehouse of 10,000 models (a view and a table each) takes DuckDB
//! about a second, and loading and planning the project another two. When a
//! plain `build` found nothing to do, hubforge writes down everything that
//! build read — the text of every project file, the size and modification
//! time of every source file and seed, the warehouse file's as the build left
//! it, the hour, the arguments, the binary — and what it printed. A later
//! `build` that finds all of it unchanged prints the same answer at once. Any
//! difference, however small (a model saved again, a source file touched, the
//! warehouse written by anything, the next hour, which can bring new
//! intervals), takes the normal path, which plans from state as always.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::project::Project;

/// Where the record of the last no-op build lives, under the project root.
const RECORD: &str = "target/.hubforge-noop.json";

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Record {
    /// What the build read, before it ran.
    inputs: String,
    /// The warehouse file (and its write-ahead log) as the build left it.
    warehouse: String,
    /// What the build printed.
    text: String,
}

/// What a build reads, before it starts.
pub struct Inputs {
    /// All of it, hashed.
    pub key: String,
    /// The warehouse file.
    pub warehouse: PathBuf,
}

/// What a build reads, hashed, before it starts: `None` when it cannot be
/// known cheaply (no project, a configuration that does not parse), and for
/// runs that must take the normal path (test pause points).
pub fn inputs(root: &Path, args: &[String], now: chrono::NaiveDateTime) -> Option<Inputs> {
    if std::env::var_os("HUBFORGE_PAUSE_AT").is_some() {
        return None;
    }
    let mut h = blake3::Hasher::new();
    let mut put = |part: &[u8]| {
        h.update(&(part.len() as u64).to_le_bytes());
        h.update(part);
    };
    put(b"hubforge no-op build 1");
    put(env!("CARGO_PKG_VERSION").as_bytes());
    let exe = std::env::current_exe().ok()?;
    put(signature(&exe)?.as_bytes());
    put(root.canonicalize().ok()?.to_string_lossy().as_bytes());
    // How much is printed is not part of the answer (a quiet build prints the
    // summary lines of the same text).
    for a in args
        .iter()
        .filter(|a| !matches!(a.as_str(), "-q" | "--quiet" | "-v" | "--verbose"))
    {
        put(a.as_bytes());
    }
    put(std::env::var("HUBFORGE_NOW").unwrap_or_default().as_bytes());
    put(now.format("%Y-%m-%dT%H").to_string().as_bytes());
    let (config_text, config) = Project::load_config(root).ok()?;
    put(config_text.as_bytes());
    // Every file under the directories the project is read from, by content.
    for dir in ["models", "macros", "audits", "seeds"] {
        for path in files(&root.join(dir)) {
            put(path.to_string_lossy().as_bytes());
            put(&std::fs::read(&path).ok()?);
        }
    }
    // Source files by size and time, as observing them decides whether to read them.
    for (name, source) in &config.sources {
        put(name.as_bytes());
        if let Some(pattern) = &source.path {
            for path in crate::sources::source_paths(root, pattern) {
                put(path.to_string_lossy().as_bytes());
                put(signature(&path)?.as_bytes());
            }
        }
    }
    Some(Inputs {
        key: h.finalize().to_hex().to_string(),
        warehouse: root.join(&config.warehouse.path),
    })
}

/// The text the last no-op build printed, when nothing it read has changed since.
pub fn answer(root: &Path, inputs: &Inputs) -> Option<String> {
    let record: Record = serde_json::from_slice(&std::fs::read(root.join(RECORD)).ok()?).ok()?;
    (record.inputs == inputs.key && record.warehouse == warehouse_signature(&inputs.warehouse)?)
        .then_some(record.text)
}

/// Keep what a build that found nothing to do read and printed (`text`),
/// once it has closed the warehouse; forget it after any other build.
pub fn remember(root: &Path, inputs: Option<&Inputs>, text: Option<&str>) {
    let path = root.join(RECORD);
    let record = match (inputs, text) {
        (Some(inputs), Some(text)) => match warehouse_signature(&inputs.warehouse) {
            Some(warehouse) => Record {
                inputs: inputs.key.clone(),
                warehouse,
                text: text.to_string(),
            },
            None => {
                let _ = std::fs::remove_file(&path);
                return;
            }
        },
        _ => {
            let _ = std::fs::remove_file(&path);
            return;
        }
    };
    // Written whole or not at all: a half-written record is never read back.
    let tmp = path.with_extension("json.tmp");
    let written = path
        .parent()
        .map(std::fs::create_dir_all)
        .transpose()
        .and_then(|_| {
            std::fs::write(
                &tmp,
                serde_json::to_vec(&record).expect("a record serialises"),
            )
        })
        .and_then(|_| std::fs::rename(&tmp, &path));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
        let _ = std::fs::remove_file(&path);
    }
}

/// The warehouse file and its write-ahead log, by size and time.
fn warehouse_signature(warehouse: &Path) -> Option<String> {
    let mut wal = warehouse.as_os_str().to_owned();
    wal.push(".wal");
    let wal = PathBuf::from(wal);
    Some(format!(
        "{} {}",
        signature(warehouse)?,
        signature(&wal).unwrap_or_else(|| "no log".to_string())
    ))
}

/// Size, modification time (ns) and inode of a file.
fn signature(path: &Path) -> Option<String> {
    let m = std::fs::metadata(path).ok()?;
    let modified = m
        .modified()
        .ok()?
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_nanos();
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(&m);
    #[cfg(not(unix))]
    let inode = 0u64;
    Some(format!("{} {modified} {inode}", m.len()))
}

/// Every file under `dir`, sorted.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .map(|e| e.into_path())
        .collect();
    out.sort();
    out
}
