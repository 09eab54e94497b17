//! `hubforge init`: a new project from the files under `templates/init/`.

use std::io::Write;
use std::path::Path;

use crate::diagnostics::{Code, Diagnostic, display_path};
use crate::error::{Error, Result};
use crate::project::CONFIG_FILE;

/// The starter project: (path, contents). `__PROJECT_NAME__` is replaced.
const FILES: &[(&str, &str)] = &[
    (
        "hubforge.toml",
        include_str!("../templates/init/hubforge.toml"),
    ),
    (
        "models/staging/stg_events.sql",
        include_str!("../templates/init/models/staging/stg_events.sql"),
    ),
    (
        "models/marts/daily_events.sql",
        include_str!("../templates/init/models/marts/daily_events.sql"),
    ),
    (
        "seeds/event_types.csv",
        include_str!("../templates/init/seeds/event_types.csv"),
    ),
    (
        "data/events/2025-01.csv",
        include_str!("../templates/init/data/events/2025-01.csv"),
    ),
    (".gitignore", include_str!("../templates/init/gitignore")),
];

/// Create the starter project in `dir`, refusing to overwrite a project.
pub fn init(dir: &Path, out: &mut dyn Write) -> Result<()> {
    if dir.join(CONFIG_FILE).exists() {
        return Err(Diagnostic::error(
            Code::InvalidArgument,
            format!("{} already has a {CONFIG_FILE}", display_path(dir)),
        )
        .with_help("choose an empty directory: hubforge init DIR")
        .into());
    }
    let name = project_name(dir);
    for (rel, contents) in FILES {
        let path = dir.join(rel);
        if path.exists() {
            continue;
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| Error::io(format!("creating {}", parent.display()), e))?;
        }
        std::fs::write(&path, contents.replace("__PROJECT_NAME__", &name))
            .map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
    }
    writeln!(
        out,
        "Created project `{name}` in {}.\nNext: hubforge --project {} check",
        display_path(dir),
        display_path(dir)
    )
    .map_err(|e| Error::io("writing output", e))
}

/// A project name from the directory's name: lowercase letters, digits and `_`.
fn project_name(dir: &Path) -> String {
    let base = std::fs::canonicalize(dir)
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .or_else(|| dir.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "my_hub".to_string());
    let cleaned: String = base
        .to_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    if cleaned.trim_matches('_').is_empty() {
        "my_hub".to_string()
    } else {
        cleaned
    }
}
