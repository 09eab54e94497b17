//! Project loading: find `hubforge.toml`, read it, and read every model, seed and
//! macro file. Nothing here renders templates or parses SQL.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use walkdir::WalkDir;

use crate::config::{self, ModelConfig, ProjectConfig, TomlSource};
use crate::diagnostics::{Code, Diagnostic, Diagnostics, Location, display_path, line_col};

pub const CONFIG_FILE: &str = "hubforge.toml";
const HEADER_OPEN: &str = "/*";
const HEADER_TAG: &str = "@hubforge";

/// A project as read from disk.
#[derive(Debug, Clone)]
pub struct Project {
    pub root: PathBuf,
    pub config: ProjectConfig,
    pub config_text: String,
    /// Sorted by name.
    pub models: Vec<ModelFile>,
    /// Sorted by name.
    pub seeds: Vec<SeedFile>,
    /// Sorted by path.
    pub macros: Vec<MacroFile>,
}

/// One model file.
#[derive(Debug, Clone)]
pub struct ModelFile {
    /// The file stem, as written.
    pub name: String,
    /// Relative to the project root.
    pub path: PathBuf,
    pub text: String,
    pub config: ModelConfig,
    /// The template: the file with its header blanked out (newlines kept), so
    /// that lines and columns in it are those of the file.
    pub body: String,
}

#[derive(Debug, Clone)]
pub struct SeedFile {
    pub name: String,
    pub path: PathBuf,
}

#[derive(Debug, Clone)]
pub struct MacroFile {
    pub path: PathBuf,
    pub text: String,
}

impl Project {
    /// The directory holding `hubforge.toml`: `dir` itself when given, else the
    /// current directory or the nearest parent that has one.
    pub fn find_root(dir: Option<&Path>) -> Result<PathBuf, Diagnostic> {
        let not_found = |what: String| {
            Diagnostic::error(Code::ProjectNotFound, what).with_help(
                "run hubforge inside a project, pass --project DIR, or create one with `hubforge init DIR`",
            )
        };
        match dir {
            Some(dir) => {
                if dir.join(CONFIG_FILE).is_file() {
                    Ok(dir.to_path_buf())
                } else {
                    Err(not_found(format!(
                        "no {CONFIG_FILE} in {}",
                        display_path(dir)
                    )))
                }
            }
            None => {
                let cwd = std::env::current_dir()
                    .map_err(|e| not_found(format!("cannot read the current directory: {e}")))?;
                cwd.ancestors()
                    .find(|d| d.join(CONFIG_FILE).is_file())
                    .map(Path::to_path_buf)
                    .ok_or_else(|| {
                        not_found(format!(
                            "no {CONFIG_FILE} in {} or any parent directory",
                            display_path(&cwd)
                        ))
                    })
            }
        }
    }

    /// Read `hubforge.toml` alone: its text and what it says.
    pub fn load_config(root: &Path) -> Result<(String, ProjectConfig), Diagnostics> {
        let config_path = Path::new(CONFIG_FILE);
        let config_text = read_text(root, config_path).map_err(Diagnostics::from)?;
        let config = config::parse_project_config(&TomlSource {
            file: config_path,
            file_text: &config_text,
            offset: 0,
            toml: &config_text,
        })
        .map_err(Diagnostics)?;
        Ok((config_text, config))
    }

    /// Read the project at `root`, reporting every problem found.
    pub fn load(root: &Path) -> Result<Project, Diagnostics> {
        let mut problems = Diagnostics::default();
        let (config_text, config) = Self::load_config(root)?;

        let model_paths = files_under(root, "models", "sql");
        let results: Vec<Result<ModelFile, Vec<Diagnostic>>> = model_paths
            .par_iter()
            .map(|p| read_model(root, p))
            .collect();
        let mut models = Vec::with_capacity(results.len());
        for r in results {
            match r {
                Ok(m) => models.push(m),
                Err(ds) => problems.extend(ds),
            }
        }
        let seeds: Vec<SeedFile> = files_under(root, "seeds", "csv")
            .into_iter()
            .map(|path| SeedFile {
                name: stem(&path),
                path,
            })
            .collect();
        let mut macros = Vec::new();
        for path in files_under(root, "macros", "sql") {
            match read_text(root, &path) {
                Ok(text) => macros.push(MacroFile { path, text }),
                Err(d) => problems.push(d),
            }
        }

        check_unique_names(&config, &config_text, &models, &seeds, &mut problems);
        if problems.has_errors() {
            return Err(problems.sorted());
        }
        models.sort_by(|a, b| a.name.cmp(&b.name));
        let mut seeds = seeds;
        seeds.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(Project {
            root: root.to_path_buf(),
            config,
            config_text,
            models,
            seeds,
            macros,
        })
    }

    /// This project with some of its files replaced (another version of it,
    /// say at a git ref): `files` maps a path relative to the root to its
    /// text, or to `None` where the file is absent; `config_text` replaces
    /// `hubforge.toml`. Only the files given are read and parsed again.
    pub fn with_files(
        &self,
        config_text: Option<String>,
        files: &BTreeMap<PathBuf, Option<String>>,
    ) -> Result<Project, Diagnostics> {
        let mut problems = Diagnostics::default();
        let (config, config_text) = match config_text {
            Some(text) => {
                let config = config::parse_project_config(&TomlSource {
                    file: Path::new(CONFIG_FILE),
                    file_text: &text,
                    offset: 0,
                    toml: &text,
                })
                .map_err(Diagnostics)?;
                (config, text)
            }
            None => (self.config.clone(), self.config_text.clone()),
        };
        let kept = |p: &PathBuf| !files.contains_key(p);
        let mut models: Vec<ModelFile> = self
            .models
            .iter()
            .filter(|m| kept(&m.path))
            .cloned()
            .collect();
        let mut seeds: Vec<SeedFile> = self
            .seeds
            .iter()
            .filter(|s| kept(&s.path))
            .cloned()
            .collect();
        let mut macros: Vec<MacroFile> = self
            .macros
            .iter()
            .filter(|m| kept(&m.path))
            .cloned()
            .collect();
        for (path, text) in files {
            let Some(text) = text else { continue };
            match file_role(path) {
                Some(FileRole::Model) => match parse_model(path, text.clone()) {
                    Ok(m) => models.push(m),
                    Err(ds) => problems.extend(ds),
                },
                Some(FileRole::Seed) => seeds.push(SeedFile {
                    name: stem(path),
                    path: path.clone(),
                }),
                Some(FileRole::Macro) => macros.push(MacroFile {
                    path: path.clone(),
                    text: text.clone(),
                }),
                Some(FileRole::Config) | None => {}
            }
        }
        check_unique_names(&config, &config_text, &models, &seeds, &mut problems);
        if problems.has_errors() {
            return Err(problems.sorted());
        }
        models.sort_by(|a, b| a.name.cmp(&b.name));
        seeds.sort_by(|a, b| a.name.cmp(&b.name));
        macros.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(Project {
            root: self.root.clone(),
            config,
            config_text,
            models,
            seeds,
            macros,
        })
    }

    /// The seed called `name`.
    pub fn seed(&self, name: &str) -> Option<&SeedFile> {
        self.seeds.iter().find(|s| s.name == name)
    }

    /// The warehouse file, absolute.
    pub fn warehouse_path(&self) -> PathBuf {
        self.root.join(&self.config.warehouse.path)
    }
}

/// What a file is to a project, by its path relative to the root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileRole {
    Config,
    Model,
    Seed,
    Macro,
}

/// The role of the file at `rel` (relative to the project root), if it is
/// one hubforge reads: `hubforge.toml`, `models/**/*.sql`, `seeds/**/*.csv`,
/// `macros/**/*.sql`.
pub fn file_role(rel: &Path) -> Option<FileRole> {
    if rel == Path::new(CONFIG_FILE) {
        return Some(FileRole::Config);
    }
    let top = rel.components().next()?.as_os_str().to_str()?;
    let ext = |e: &str| rel.extension().is_some_and(|x| x.eq_ignore_ascii_case(e));
    match top {
        "models" if ext("sql") => Some(FileRole::Model),
        "seeds" if ext("csv") => Some(FileRole::Seed),
        "macros" if ext("sql") => Some(FileRole::Macro),
        _ => None,
    }
}

/// Files with extension `ext` under `root/dir`, relative to `root`, sorted.
fn files_under(root: &Path, dir: &str, ext: &str) -> Vec<PathBuf> {
    let base = root.join(dir);
    if !base.is_dir() {
        return Vec::new();
    }
    let mut out: Vec<PathBuf> = WalkDir::new(&base)
        .sort_by_file_name()
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .filter(|e| {
            e.path()
                .extension()
                .is_some_and(|x| x.eq_ignore_ascii_case(ext))
        })
        .filter_map(|e| e.path().strip_prefix(root).ok().map(Path::to_path_buf))
        .collect();
    out.sort();
    out
}

fn stem(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Read a file as UTF-8, with a diagnostic naming the first invalid byte otherwise.
pub fn read_text(root: &Path, rel: &Path) -> Result<String, Diagnostic> {
    let bytes = std::fs::read(root.join(rel)).map_err(|e| {
        Diagnostic::error(
            Code::FileRead,
            format!("cannot read {}: {e}", display_path(rel)),
        )
        .at(Location::file(rel))
    })?;
    String::from_utf8(bytes).map_err(|e| {
        let valid = e.utf8_error().valid_up_to();
        let prefix = String::from_utf8_lossy(&e.as_bytes()[..valid]).into_owned();
        let (line, column) = line_col(&prefix, prefix.len());
        let lossy = String::from_utf8_lossy(e.as_bytes()).into_owned();
        Diagnostic::error(
            Code::NotUtf8,
            format!("{} is not valid UTF-8 (byte {valid})", display_path(rel)),
        )
        .at(Location::in_text(rel, &lossy, line, column, 1))
        .with_help("save the file as UTF-8")
    })
}

fn read_model(root: &Path, rel: &Path) -> Result<ModelFile, Vec<Diagnostic>> {
    let text = read_text(root, rel).map_err(|d| vec![d])?;
    parse_model(rel, text)
}

/// A model file from its text.
fn parse_model(rel: &Path, text: String) -> Result<ModelFile, Vec<Diagnostic>> {
    let (config, body) = split_header(rel, &text)?;
    if is_blank_sql(&body) {
        return Err(vec![
            Diagnostic::error(
                Code::EmptyModel,
                format!("{} has no SQL", display_path(rel)),
            )
            .at(Location::file(rel))
            .with_help("write one SELECT statement after the header, or delete the file"),
        ]);
    }
    Ok(ModelFile {
        name: stem(rel),
        path: rel.to_path_buf(),
        text,
        config,
        body,
    })
}

/// Split a model file into its header config and its template body. The body is
/// the whole file with the header comment replaced by spaces, so positions match.
pub fn split_header(rel: &Path, text: &str) -> Result<(ModelConfig, String), Vec<Diagnostic>> {
    let trimmed = text.trim_start_matches('\u{feff}');
    let lead = text.len() - trimmed.len();
    let start = lead + (trimmed.len() - trimmed.trim_start().len());
    let rest = &text[start..];
    let Some(after_open) = rest.strip_prefix(HEADER_OPEN) else {
        return Ok((ModelConfig::default(), text.to_string()));
    };
    let tag_pos = after_open.len() - after_open.trim_start().len();
    if !after_open[tag_pos..].starts_with(HEADER_TAG) {
        return Ok((ModelConfig::default(), text.to_string()));
    }
    let toml_start = start + HEADER_OPEN.len() + tag_pos + HEADER_TAG.len();
    let Some(close) = text[toml_start..].find("*/") else {
        return Err(vec![
            Diagnostic::error(
                Code::HeaderSyntax,
                "the @hubforge header comment is never closed",
            )
            .at(Location::at_offset(rel, text, start, 2))
            .with_help("end the header with `*/` before the SQL"),
        ]);
    };
    let toml_end = toml_start + close;
    let config = config::parse_model_config(&TomlSource {
        file: rel,
        file_text: text,
        offset: toml_start,
        toml: &text[toml_start..toml_end],
    })?;
    let header_end = toml_end + 2;
    let mut body = String::with_capacity(text.len());
    // Same byte length as the header, so byte offsets in the body are file offsets.
    for c in text[..header_end].chars() {
        match c {
            '\n' | '\r' => body.push(c),
            _ => body.extend(std::iter::repeat_n(' ', c.len_utf8())),
        }
    }
    body.push_str(&text[header_end..]);
    Ok((config, body))
}

/// True when `sql` holds nothing but whitespace and SQL comments.
fn is_blank_sql(sql: &str) -> bool {
    let mut rest = sql;
    loop {
        rest = rest.trim_start();
        if rest.is_empty() {
            return true;
        }
        if let Some(r) = rest.strip_prefix("--") {
            rest = r.find('\n').map_or("", |i| &r[i..]);
        } else if let Some(r) = rest.strip_prefix("/*") {
            rest = r.find("*/").map_or("", |i| &r[i + 2..]);
        } else {
            return false;
        }
    }
}

/// Models, seeds and sources share one namespace (DuckDB matches names
/// case-insensitively); a clash is an error naming both places.
fn check_unique_names(
    config: &ProjectConfig,
    config_text: &str,
    models: &[ModelFile],
    seeds: &[SeedFile],
    problems: &mut Diagnostics,
) {
    let mut seen: BTreeMap<String, (String, Location)> = BTreeMap::new();
    let source_loc = |name: &str| {
        let header = format!("[sources.{name}]");
        match config_text.find(&header) {
            Some(off) => Location::at_offset(CONFIG_FILE, config_text, off, header.chars().count()),
            None => Location::file(CONFIG_FILE),
        }
    };
    let entries = config
        .sources
        .keys()
        .map(|n| (n.clone(), format!("source `{n}`"), source_loc(n)))
        .chain(seeds.iter().map(|s| {
            (
                s.name.clone(),
                format!("seed {}", display_path(&s.path)),
                Location::file(&s.path),
            )
        }))
        .chain(models.iter().map(|m| {
            (
                m.name.clone(),
                format!("model {}", display_path(&m.path)),
                Location::file(&m.path),
            )
        }));
    let mut all: Vec<_> = entries.collect();
    // Deterministic: the first definition is the one earlier in path order.
    all.sort_by(|a, b| a.2.file.cmp(&b.2.file).then(a.0.cmp(&b.0)));
    for (name, what, loc) in all {
        let key = name.to_lowercase();
        if let Some((first, _)) = seen.get(&key) {
            problems.push(
                Diagnostic::error(
                    Code::DuplicateName,
                    format!("the name `{name}` is defined twice: {first} and {what}"),
                )
                .at(loc)
                .with_help("models, seeds and sources share one namespace; rename one of them"),
            );
        } else {
            seen.insert(key, (what, loc));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_is_blanked_keeping_positions() {
        let text = "/* @hubforge\nkind = \"view\"\n*/\nSELECT 1";
        let (config, body) = split_header(Path::new("m.sql"), text).unwrap();
        assert_eq!(config.kind, crate::config::Kind::View);
        assert_eq!(body.len(), text.len());
        assert_eq!(body.lines().nth(3), Some("SELECT 1"));
        assert!(body.lines().take(3).all(|l| l.trim().is_empty()));
    }

    #[test]
    fn a_plain_leading_comment_is_not_a_header() {
        let text = "/* just a comment */ SELECT 1";
        let (config, body) = split_header(Path::new("m.sql"), text).unwrap();
        assert_eq!(config, ModelConfig::default());
        assert_eq!(body, text);
    }

    #[test]
    fn blank_sql_detection() {
        assert!(is_blank_sql("  -- nothing\n /* here */ \n"));
        assert!(!is_blank_sql("-- x\nSELECT 1"));
    }
}
