//! Typed configuration: `hubforge.toml` and the TOML header of each model.
//!
//! Every key a user may write is declared once here, next to the type it fills,
//! with its role: whether it changes data (and so the logic fingerprint) or only
//! metadata. Unknown keys are reported with the closest known key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use serde::{Deserialize, Deserializer, Serialize};

use crate::diagnostics::{Code, Diagnostic, Location, did_you_mean};
use crate::interval::Unit;

/// What a header key does when it changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyRole {
    /// Changes the data a model produces: part of the logic fingerprint.
    Data,
    /// Changes only how the model is described, checked or delivered: part of the
    /// metadata fingerprint; never rebuilds data.
    Metadata,
    /// Changes which intervals exist (the model's history), handled by the planner
    /// as missing or no longer wanted intervals, not as a change of logic.
    Scope,
}

/// The keys of a model header, in the order they are documented.
pub const MODEL_KEYS: &[(&str, KeyRole)] = &[
    ("kind", KeyRole::Data),
    ("time_column", KeyRole::Data),
    ("unit", KeyRole::Data),
    ("window", KeyRole::Data),
    ("grain", KeyRole::Data),
    ("batch", KeyRole::Metadata),
    ("product", KeyRole::Metadata),
    ("destinations", KeyRole::Metadata),
    ("audits", KeyRole::Metadata),
    ("validate", KeyRole::Metadata),
    ("tags", KeyRole::Metadata),
    ("description", KeyRole::Metadata),
    ("forward_only", KeyRole::Metadata),
    ("start", KeyRole::Scope),
];

/// How a model is materialised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    View,
    Table,
    Incremental,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::View => "view",
            Kind::Table => "table",
            Kind::Incremental => "incremental",
        }
    }
}

/// A model's header, with defaults applied.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelConfig {
    pub kind: Kind,
    pub time_column: Option<String>,
    pub unit: Option<Unit>,
    pub window: u32,
    pub grain: Vec<String>,
    pub batch: Option<u32>,
    pub product: bool,
    pub destinations: Vec<String>,
    pub audits: Vec<String>,
    /// Thresholds of before/after metrics, over the project's `[validate]`.
    pub validate: ValidateConfig,
    pub tags: Vec<String>,
    pub description: Option<String>,
    pub forward_only: bool,
    #[serde(deserialize_with = "de_opt_date", serialize_with = "ser_opt_date")]
    pub start: Option<NaiveDate>,
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            kind: Kind::Table,
            time_column: None,
            unit: None,
            window: 1,
            grain: Vec::new(),
            batch: None,
            product: false,
            destinations: Vec::new(),
            audits: Vec::new(),
            validate: ValidateConfig::default(),
            tags: Vec::new(),
            description: None,
            forward_only: false,
            start: None,
        }
    }
}

impl ModelConfig {
    /// The header's effective values of every key with `role`, as JSON, keyed by
    /// name. Fingerprints hash these, so an explicit default equals an omitted key.
    pub fn values_with_role(&self, role: KeyRole) -> BTreeMap<&'static str, serde_json::Value> {
        let all = serde_json::to_value(self).expect("model config serialises");
        MODEL_KEYS
            .iter()
            .filter(|(_, r)| *r == role)
            .map(|(k, _)| (*k, all.get(*k).cloned().unwrap_or(serde_json::Value::Null)))
            .collect()
    }

    /// Default batch size in units when backfilling.
    pub fn batch_size(&self) -> u32 {
        self.batch.unwrap_or(match self.unit {
            Some(Unit::Hour) => 24 * 7,
            Some(Unit::Day) => 31,
            Some(Unit::Week) => 13,
            Some(Unit::Month) => 12,
            Some(Unit::Year) => 1,
            None => 1,
        })
    }
}

/// `hubforge.toml`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProjectConfig {
    pub project: ProjectSection,
    #[serde(default)]
    pub warehouse: WarehouseSection,
    #[serde(default)]
    pub sources: BTreeMap<String, SourceConfig>,
    #[serde(default)]
    pub vars: BTreeMap<String, toml::Value>,
    #[serde(default)]
    pub destinations: Vec<DestinationConfig>,
    /// Default thresholds of before/after metrics for every model.
    #[serde(default)]
    pub validate: ValidateConfig,
}

/// Thresholds on what a rebuild may change, per unit of the time column (the
/// whole table for tables), compared with the rows it replaces.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ValidateConfig {
    /// Largest change of the row count, e.g. "5%".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_row_change: Option<Percent>,
    /// Largest change of a numeric column's sum, per column.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub max_sum_change: BTreeMap<String, Percent>,
    /// Largest increase of a column's share of NULLs, in points, e.g. "0%".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_null_increase: Option<Percent>,
    /// Whether a breach stops the publish (`error`) or is reported (`warn`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub severity: Option<ThresholdSeverity>,
}

impl ValidateConfig {
    /// These thresholds over `defaults`: a key set here wins.
    pub fn over(&self, defaults: &ValidateConfig) -> ValidateConfig {
        let mut sums = defaults.max_sum_change.clone();
        sums.extend(self.max_sum_change.clone());
        ValidateConfig {
            max_row_change: self.max_row_change.or(defaults.max_row_change),
            max_sum_change: sums,
            max_null_increase: self.max_null_increase.or(defaults.max_null_increase),
            severity: self.severity.or(defaults.severity),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.max_row_change.is_none()
            && self.max_sum_change.is_empty()
            && self.max_null_increase.is_none()
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ThresholdSeverity {
    #[default]
    Warn,
    Error,
}

/// A percentage written `"5%"` (or a plain number of percent).
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
pub struct Percent(pub f64);

impl Serialize for Percent {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{}%", self.0))
    }
}

impl<'de> Deserialize<'de> for Percent {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = toml::Value::deserialize(d)?;
        let n = match &value {
            toml::Value::String(s) => s
                .trim()
                .strip_suffix('%')
                .and_then(|n| n.trim().parse::<f64>().ok()),
            toml::Value::Integer(i) => Some(*i as f64),
            toml::Value::Float(f) => Some(*f),
            _ => None,
        };
        match n {
            Some(n) if n >= 0.0 && n.is_finite() => Ok(Percent(n)),
            _ => Err(serde::de::Error::custom(format!(
                "expected a percentage such as \"5%\", found {value}"
            ))),
        }
    }
}

static VALIDATE_TABLE: Schema = Schema::Table(VALIDATE_KEYS);

/// The keys of `[validate]` (in hubforge.toml and in model headers).
const VALIDATE_KEYS: &[(&str, Schema)] = &[
    ("max_row_change", Schema::Leaf),
    ("max_sum_change", Schema::Leaf),
    ("max_null_increase", Schema::Leaf),
    ("severity", Schema::Leaf),
];

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProjectSection {
    pub name: String,
    #[serde(deserialize_with = "de_date")]
    pub start: NaiveDate,
    /// Exclusive end of history; by default the last complete unit before now.
    #[serde(default, deserialize_with = "de_opt_date")]
    pub end: Option<NaiveDate>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WarehouseSection {
    /// The engine holding the warehouse: embedded DuckDB (`path`) or Spark.
    pub engine: EngineKind,
    pub path: PathBuf,
    pub threads: Option<usize>,
    pub memory_limit: Option<String>,
    /// Rows of sources a batch of a model without `batch` reads at most:
    /// batches of the unit's default size are joined up to it.
    pub batch_rows: Option<i64>,
    /// Spark: the Spark Connect URL, `sc://host:port[/;token=...;use_ssl=true]`.
    pub url: Option<String>,
    /// Spark: the catalog holding the project's schemas (the session's by default).
    pub catalog: Option<String>,
    /// Spark: the schema published models appear in; hubforge's own data,
    /// sources and state live in schemas named after it.
    pub schema: Option<String>,
}

impl WarehouseSection {
    /// The Spark Connect URL (checked present when the engine is Spark).
    pub fn spark_url(&self) -> &str {
        self.url.as_deref().unwrap_or_default()
    }
}

impl Default for WarehouseSection {
    fn default() -> Self {
        WarehouseSection {
            engine: EngineKind::Duckdb,
            path: PathBuf::from("warehouse.duckdb"),
            threads: None,
            memory_limit: None,
            batch_rows: None,
            url: None,
            catalog: None,
            schema: None,
        }
    }
}

/// The engine a project is built on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EngineKind {
    Duckdb,
    Spark,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// A file or glob relative to the project (CSV or Parquet).
    pub path: Option<String>,
    /// Or an existing table of the warehouse, e.g. `legacy.orders`.
    pub table: Option<String>,
    pub time_column: Option<String>,
    /// Granularity at which late or repaired data is detected.
    #[serde(default = "default_source_unit")]
    pub unit: Unit,
    pub format: Option<SourceFormat>,
    pub description: Option<String>,
    /// A declared schema: column → DuckDB type; the files are read with these types.
    pub columns: Option<BTreeMap<String, String>>,
    /// CSV: the field separator, e.g. ";" or "\t".
    pub delimiter: Option<String>,
    /// CSV: whether the first line holds the column names.
    pub header: Option<bool>,
    /// CSV: the quote character.
    pub quote: Option<String>,
    /// CSV: how dates are written, e.g. "%d/%m/%Y".
    pub dateformat: Option<String>,
    /// CSV: how timestamps are written, e.g. "%d/%m/%Y %H:%M".
    pub timestampformat: Option<String>,
    /// CSV: "utf-8", "utf-16" or "latin-1".
    pub encoding: Option<String>,
    /// CSV: the strings that mean NULL, e.g. ["", "NA"].
    pub null: Option<Vec<String>>,
    /// What to do with rows that cannot be read with the declared types.
    #[serde(default)]
    pub on_bad_rows: OnBadRows,
}

/// The CSV reading options of a source, by their `hubforge.toml` names.
pub const CSV_OPTIONS: &[&str] = &[
    "delimiter",
    "header",
    "quote",
    "dateformat",
    "timestampformat",
    "encoding",
    "null",
];

/// Whether a source path is a URL only the engine's cluster reads
/// (`s3a://bucket/orders/*.csv`, `hdfs://…`, `abfss://…`, `file:///…`) rather
/// than files of this machine, relative to the project.
pub fn is_cluster_path(path: &str) -> bool {
    path.split_once("://").is_some_and(|(scheme, _)| {
        scheme.len() >= 2
            && scheme.starts_with(|c: char| c.is_ascii_alphabetic())
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
    })
}

impl SourceConfig {
    /// The path of a source whose files only the cluster reads (see
    /// [`is_cluster_path`]).
    pub fn cluster_path(&self) -> Option<&str> {
        self.path.as_deref().filter(|p| is_cluster_path(p))
    }

    /// The format the source is read with: declared, or implied by its path.
    pub fn effective_format(&self) -> Option<SourceFormat> {
        self.format
            .or_else(|| self.path.as_deref().and_then(SourceFormat::from_path))
    }

    /// How the files are read, as JSON, when anything differs from the defaults
    /// (`None` otherwise, so that fingerprints recorded before stay valid).
    pub fn read_options(&self) -> Option<serde_json::Value> {
        let options = serde_json::json!({
            "columns": self.columns,
            "delimiter": self.delimiter,
            "header": self.header,
            "quote": self.quote,
            "dateformat": self.dateformat,
            "timestampformat": self.timestampformat,
            "encoding": self.encoding,
            "null": self.null,
            "on_bad_rows": (self.on_bad_rows != OnBadRows::Fail).then_some("quarantine"),
        });
        let any = options
            .as_object()
            .is_some_and(|o| o.values().any(|v| !v.is_null()));
        any.then_some(options)
    }

    /// Which CSV options are set.
    pub fn csv_options_set(&self) -> Vec<&'static str> {
        let set = [
            self.delimiter.is_some(),
            self.header.is_some(),
            self.quote.is_some(),
            self.dateformat.is_some(),
            self.timestampformat.is_some(),
            self.encoding.is_some(),
            self.null.is_some(),
        ];
        CSV_OPTIONS
            .iter()
            .zip(set)
            .filter(|(_, s)| *s)
            .map(|(k, _)| *k)
            .collect()
    }
}

/// What a build does with source rows that cannot be read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnBadRows {
    /// Stop, naming the file, line, column and value.
    #[default]
    Fail,
    /// Keep them out of the build, in `_hubforge_rejects.<source>`.
    Quarantine,
}

/// DuckDB type names a declared column may have (parameters such as
/// `DECIMAL(18,2)` or `VARCHAR(10)` allowed, and `[]` for lists).
pub const COLUMN_TYPES: &[&str] = &[
    "BOOLEAN",
    "BOOL",
    "TINYINT",
    "SMALLINT",
    "INTEGER",
    "INT",
    "BIGINT",
    "HUGEINT",
    "UTINYINT",
    "USMALLINT",
    "UINTEGER",
    "UBIGINT",
    "UHUGEINT",
    "FLOAT",
    "REAL",
    "DOUBLE",
    "DECIMAL",
    "NUMERIC",
    "VARCHAR",
    "TEXT",
    "STRING",
    "CHAR",
    "BLOB",
    "DATE",
    "TIME",
    "TIMESTAMP",
    "TIMESTAMPTZ",
    "DATETIME",
    "INTERVAL",
    "UUID",
    "JSON",
];

/// Whether `ty` is a type a declared column may have.
pub fn is_column_type(ty: &str) -> bool {
    let mut t = ty.trim().to_uppercase();
    while let Some(inner) = t.strip_suffix("[]") {
        t = inner.trim_end().to_string();
    }
    let (base, params) = match t.split_once('(') {
        Some((b, rest)) => (b.trim().to_string(), Some(rest)),
        None => (t.clone(), None),
    };
    let base = match base.as_str() {
        "TIMESTAMP WITH TIME ZONE" => "TIMESTAMPTZ".to_string(),
        _ => base,
    };
    let params_ok = params.is_none_or(|p| {
        p.strip_suffix(')').is_some_and(|p| {
            p.split(',')
                .all(|n| !n.trim().is_empty() && n.trim().bytes().all(|b| b.is_ascii_digit()))
        })
    });
    COLUMN_TYPES.contains(&base.as_str()) && params_ok
}

fn default_source_unit() -> Unit {
    Unit::Day
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceFormat {
    Csv,
    Parquet,
    Json,
}

impl SourceFormat {
    /// The format a path's extension implies.
    pub fn from_path(path: &str) -> Option<SourceFormat> {
        let lower = path.to_lowercase();
        if lower.ends_with(".csv") || lower.ends_with(".csv.gz") || lower.ends_with(".tsv") {
            Some(SourceFormat::Csv)
        } else if lower.ends_with(".parquet") {
            Some(SourceFormat::Parquet)
        } else if lower.ends_with(".json")
            || lower.ends_with(".jsonl")
            || lower.ends_with(".ndjson")
        {
            Some(SourceFormat::Json)
        } else {
            None
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DestinationConfig {
    pub name: String,
    #[serde(default)]
    pub products: Vec<String>,
    #[serde(default = "default_destination_format")]
    pub format: DestinationFormat,
    pub path: Option<String>,
    #[serde(default)]
    pub paused: bool,
    pub max_intervals_per_delivery: Option<u32>,
}

fn default_destination_format() -> DestinationFormat {
    DestinationFormat::Parquet
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DestinationFormat {
    Parquet,
    Csv,
    Duckdb,
}

/// The keys `hubforge.toml` accepts, for unknown-key reporting.
const PROJECT_SCHEMA: Schema = Schema::Table(&[
    (
        "project",
        Schema::Table(&[
            ("name", Schema::Leaf),
            ("start", Schema::Leaf),
            ("end", Schema::Leaf),
        ]),
    ),
    (
        "warehouse",
        Schema::Table(&[
            ("engine", Schema::Leaf),
            ("path", Schema::Leaf),
            ("threads", Schema::Leaf),
            ("memory_limit", Schema::Leaf),
            ("batch_rows", Schema::Leaf),
            ("url", Schema::Leaf),
            ("catalog", Schema::Leaf),
            ("schema", Schema::Leaf),
        ]),
    ),
    (
        "sources",
        Schema::MapOf(&Schema::Table(&[
            ("path", Schema::Leaf),
            ("table", Schema::Leaf),
            ("time_column", Schema::Leaf),
            ("unit", Schema::Leaf),
            ("format", Schema::Leaf),
            ("description", Schema::Leaf),
            ("columns", Schema::Leaf),
            ("delimiter", Schema::Leaf),
            ("header", Schema::Leaf),
            ("quote", Schema::Leaf),
            ("dateformat", Schema::Leaf),
            ("timestampformat", Schema::Leaf),
            ("encoding", Schema::Leaf),
            ("null", Schema::Leaf),
            ("on_bad_rows", Schema::Leaf),
        ])),
    ),
    ("vars", Schema::Any),
    ("validate", Schema::Table(VALIDATE_KEYS)),
    (
        "destinations",
        Schema::ArrayOf(&Schema::Table(&[
            ("name", Schema::Leaf),
            ("products", Schema::Leaf),
            ("format", Schema::Leaf),
            ("path", Schema::Leaf),
            ("paused", Schema::Leaf),
            ("max_intervals_per_delivery", Schema::Leaf),
        ])),
    ),
]);

/// The shape of accepted keys.
enum Schema {
    Table(&'static [(&'static str, Schema)]),
    /// A model header: the keys of [`MODEL_KEYS`], all plain values.
    ModelHeader,
    MapOf(&'static Schema),
    ArrayOf(&'static Schema),
    Leaf,
    Any,
}

/// A TOML document's text, where it sits inside a file, and the file's name, so
/// that errors point at the right line of the file.
pub struct TomlSource<'a> {
    pub file: &'a Path,
    /// The whole file's text.
    pub file_text: &'a str,
    /// Byte offset of the TOML inside the file (non-zero for model headers).
    pub offset: usize,
    pub toml: &'a str,
}

impl TomlSource<'_> {
    fn location(&self, span: std::ops::Range<usize>) -> Location {
        let width = self.toml[span.clone()]
            .lines()
            .next()
            .map_or(1, |l| l.chars().count());
        Location::at_offset(self.file, self.file_text, self.offset + span.start, width)
    }
}

/// Parse `hubforge.toml`.
pub fn parse_project_config(src: &TomlSource) -> Result<ProjectConfig, Vec<Diagnostic>> {
    let config: ProjectConfig = parse_checked(
        src,
        &PROJECT_SCHEMA,
        Code::ConfigSyntax,
        Code::ConfigUnknownKey,
        Code::ConfigInvalid,
    )?;
    let mut problems = Vec::new();
    for (name, source) in &config.sources {
        let what = match (&source.path, &source.table) {
            (Some(_), Some(_)) => Some("has both `path` and `table`; give one"),
            (None, None) => Some("needs `path` (a file or glob) or `table` (an existing table)"),
            _ => None,
        };
        if let Some(what) = what {
            problems.push(
                Diagnostic::error(Code::ConfigInvalid, format!("source `{name}` {what}"))
                    .at(section_location(src, &format!("sources.{name}")))
                    .with_help(
                        "for example: path = \"data/orders/*.csv\" or table = \"legacy.orders\"",
                    ),
            );
        }
        if let (Some(path), None) = (&source.path, source.format)
            && SourceFormat::from_path(path).is_none()
        {
            problems.push(
                Diagnostic::error(
                    Code::ConfigInvalid,
                    format!("cannot tell the format of source `{name}` from its path `{path}`"),
                )
                .at(section_location(src, &format!("sources.{name}")))
                .with_help("add format = \"csv\", \"parquet\" or \"json\""),
            );
        }
        check_source_options(src, name, source, config.warehouse.engine, &mut problems);
    }
    check_warehouse(src, &config.warehouse, &mut problems);
    let mut seen = BTreeMap::new();
    for d in &config.destinations {
        if seen.insert(d.name.clone(), ()).is_some() {
            problems.push(
                Diagnostic::error(
                    Code::ConfigInvalid,
                    format!("destination `{}` is declared twice", d.name),
                )
                .at(Location::file(src.file))
                .with_help("give each [[destinations]] entry a unique name"),
            );
        }
    }
    if problems.is_empty() {
        Ok(config)
    } else {
        Err(problems)
    }
}

/// The Spark engine needs a URL; Spark's settings mean nothing to DuckDB.
fn check_warehouse(src: &TomlSource, w: &WarehouseSection, problems: &mut Vec<Diagnostic>) {
    let at = |key: &str| {
        value_location(src, &["warehouse", key])
            .unwrap_or_else(|| section_location(src, "warehouse"))
    };
    match w.engine {
        EngineKind::Spark => {
            if w.url.is_none() {
                problems.push(
                    Diagnostic::error(
                        Code::ConfigInvalid,
                        "the Spark engine needs the URL of a Spark Connect server",
                    )
                    .at(at("engine"))
                    .with_help("add url = \"sc://localhost:15002\" to [warehouse]"),
                );
            }
            for (key, value) in [("catalog", &w.catalog), ("schema", &w.schema)] {
                if let Some(v) = value
                    && !spark_name_ok(v)
                {
                    problems.push(
                        Diagnostic::error(
                            Code::ConfigInvalid,
                            format!("warehouse.{key} `{v}` is not a plain Spark name"),
                        )
                        .at(at(key))
                        .with_help("use letters, digits and underscores, starting with a letter"),
                    );
                }
            }
        }
        EngineKind::Duckdb => {
            for (key, set) in [
                ("url", w.url.is_some()),
                ("catalog", w.catalog.is_some()),
                ("schema", w.schema.is_some()),
            ] {
                if set {
                    problems.push(
                        Diagnostic::error(
                            Code::ConfigInvalid,
                            format!("warehouse.{key} is a setting of the Spark engine"),
                        )
                        .at(at(key))
                        .with_help("add engine = \"spark\" to [warehouse], or remove it"),
                    );
                }
            }
        }
    }
}

/// A Spark catalog or schema name hubforge can build other names from.
fn spark_name_ok(name: &str) -> bool {
    name.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Declared column types and CSV options of one source.
fn check_source_options(
    src: &TomlSource,
    name: &str,
    source: &SourceConfig,
    engine: EngineKind,
    problems: &mut Vec<Diagnostic>,
) {
    let at = |keys: &[&str]| {
        let mut path = vec!["sources", name];
        path.extend_from_slice(keys);
        value_location(src, &path)
            .unwrap_or_else(|| section_location(src, &format!("sources.{name}")))
    };
    if let Some(path) = source.cluster_path() {
        let refused = match engine {
            EngineKind::Duckdb => Some((
                "path",
                format!(
                    "source `{name}` is read from `{path}`, a path only a Spark cluster reads; \
                     embedded DuckDB reads files of this machine"
                ),
                "build on Spark ([warehouse] engine = \"spark\"), or give a path relative to \
                 the project, e.g. path = \"data/orders/*.csv\"",
            )),
            EngineKind::Spark if source.on_bad_rows == OnBadRows::Quarantine => Some((
                "on_bad_rows",
                format!(
                    "source `{name}`: bad rows are quarantined on this machine, but the files \
                     at `{path}` are read by the cluster only"
                ),
                "remove on_bad_rows (a bad row then stops the build, named by Spark), or copy \
                 the files under the project",
            )),
            EngineKind::Spark
                if source.columns.is_some()
                    && source.effective_format() != Some(SourceFormat::Csv) =>
            {
                Some((
                    "columns",
                    format!(
                        "source `{name}`: files at `{path}` are read with the types they carry; \
                         only CSV files take declared `columns`"
                    ),
                    "remove `columns` from the source",
                ))
            }
            EngineKind::Spark => None,
        };
        if let Some((key, message, help)) = refused {
            problems.push(
                Diagnostic::error(Code::ConfigInvalid, message)
                    .at(at(&[key]))
                    .with_help(help),
            );
        }
    }
    for (column, ty) in source.columns.iter().flatten() {
        if !is_column_type(ty) {
            let base = ty.split('(').next().unwrap_or(ty).trim().to_uppercase();
            let help = match did_you_mean(&base, COLUMN_TYPES.iter().copied()) {
                Some(s) => format!("did you mean \"{s}\"?"),
                None => "use a DuckDB type such as VARCHAR, BIGINT, DOUBLE, DECIMAL(18,2), DATE or TIMESTAMP".to_string(),
            };
            problems.push(
                Diagnostic::error(
                    Code::ConfigInvalid,
                    format!("unknown type \"{ty}\" for column `{column}` of source `{name}`"),
                )
                .at(at(&["columns", column]))
                .with_help(help),
            );
        }
    }
    if source.table.is_some()
        || source
            .effective_format()
            .is_some_and(|f| f != SourceFormat::Csv)
    {
        for key in source.csv_options_set() {
            problems.push(
                Diagnostic::error(
                    Code::ConfigInvalid,
                    format!("`{key}` only applies to CSV files, but source `{name}` is not read from CSV"),
                )
                .at(at(&[key]))
                .with_help(format!("remove `{key}`")),
            );
        }
    }
    for (key, value) in [("delimiter", &source.delimiter), ("quote", &source.quote)] {
        if value
            .as_ref()
            .is_some_and(|v| v.chars().count() != 1 && v != "\\t")
        {
            problems.push(
                Diagnostic::error(
                    Code::ConfigInvalid,
                    format!("`{key}` must be one character"),
                )
                .at(at(&[key]))
                .with_help(format!(
                    "for example: {key} = \"{}\"",
                    if key == "quote" { "\\\"" } else { ";" }
                )),
            );
        }
    }
    if let Some(encoding) = &source.encoding
        && !["utf-8", "utf8", "utf-16", "latin-1", "latin1"]
            .contains(&encoding.to_lowercase().as_str())
    {
        problems.push(
            Diagnostic::error(
                Code::ConfigInvalid,
                format!("unknown encoding \"{encoding}\""),
            )
            .at(at(&["encoding"]))
            .with_help("encoding is \"utf-8\", \"utf-16\" or \"latin-1\""),
        );
    }
}

/// Where a source's `[sources.NAME]` table is declared in `hubforge.toml`.
pub fn source_location(config_text: &str, name: &str) -> Location {
    let src = TomlSource {
        file: Path::new(crate::project::CONFIG_FILE),
        file_text: config_text,
        offset: 0,
        toml: config_text,
    };
    section_location(&src, &format!("sources.{name}"))
}

/// The location of a value's key, by its path of keys from the document's top.
fn value_location(src: &TomlSource, path: &[&str]) -> Option<Location> {
    let doc = toml::de::DeTable::parse(src.toml).ok()?;
    let mut table = doc.get_ref();
    let (last, parents) = path.split_last()?;
    for key in parents {
        let (_, value) = table.iter().find(|(k, _)| k.get_ref() == key)?;
        match value.get_ref() {
            toml::de::DeValue::Table(t) => table = t,
            _ => return None,
        }
    }
    let (k, _) = table.iter().find(|(k, _)| k.get_ref() == last)?;
    Some(src.location(k.span()))
}

/// Parse a model's header TOML and check its combination of keys.
pub fn parse_model_config(src: &TomlSource) -> Result<ModelConfig, Vec<Diagnostic>> {
    let config: ModelConfig = parse_checked(
        src,
        &Schema::ModelHeader,
        Code::HeaderSyntax,
        Code::HeaderUnknownKey,
        Code::HeaderInvalid,
    )?;
    let mut problems = Vec::new();
    let key_loc = |key: &str| key_location(src, key).unwrap_or_else(|| Location::file(src.file));
    if config.kind == Kind::Incremental {
        for (key, missing) in [
            ("time_column", config.time_column.is_none()),
            ("unit", config.unit.is_none()),
        ] {
            if missing {
                problems.push(
                    Diagnostic::error(Code::HeaderInvalid, format!("an incremental model needs `{key}`"))
                        .at(key_location(src, "kind").unwrap_or_else(|| Location::file(src.file)))
                        .with_help(match key {
                            "time_column" => "add time_column = \"<the DATE or TIMESTAMP column the model is partitioned by>\"",
                            _ => "add unit = \"day\" (or hour, week, month, year)",
                        }),
                );
            }
        }
    } else {
        let only_incremental = [
            ("unit", config.unit.is_some()),
            ("window", config.window != 1),
            ("batch", config.batch.is_some()),
            ("forward_only", config.forward_only),
        ];
        for (key, set) in only_incremental {
            if set && key_location(src, key).is_some() {
                problems.push(
                    Diagnostic::error(
                        Code::HeaderInvalid,
                        format!(
                            "`{key}` only applies to incremental models, but kind is \"{}\"",
                            config.kind.as_str()
                        ),
                    )
                    .at(key_loc(key))
                    .with_help(format!("remove `{key}` or set kind = \"incremental\"")),
                );
            }
        }
    }
    for (key, value) in [("window", Some(config.window)), ("batch", config.batch)] {
        if value == Some(0) {
            problems.push(
                Diagnostic::error(Code::HeaderInvalid, format!("`{key}` must be at least 1"))
                    .at(key_loc(key)),
            );
        }
    }
    if problems.is_empty() {
        Ok(config)
    } else {
        Err(problems)
    }
}

/// Parse TOML text into `T`, reporting syntax errors, unknown keys (with a
/// suggestion) and invalid values, each at its line in the file.
fn parse_checked<T: serde::de::DeserializeOwned>(
    src: &TomlSource,
    schema: &Schema,
    syntax: Code,
    unknown: Code,
    invalid: Code,
) -> Result<T, Vec<Diagnostic>> {
    let doc = match toml::de::DeTable::parse(src.toml) {
        Ok(doc) => doc,
        Err(e) => return Err(vec![toml_error(src, &e, syntax)]),
    };
    let mut problems = Vec::new();
    check_keys(src, doc.get_ref(), schema, "", unknown, &mut problems);
    if !problems.is_empty() {
        return Err(problems);
    }
    toml::from_str::<T>(src.toml).map_err(|e| vec![toml_error(src, &e, invalid)])
}

fn toml_error(src: &TomlSource, e: &toml::de::Error, code: Code) -> Diagnostic {
    let message = e.message().trim().to_string();
    let help = match code {
        Code::HeaderSyntax => {
            "the model header (between `/* @hubforge` and `*/`) is TOML: key = value, strings in double quotes"
        }
        Code::HeaderInvalid => {
            "header keys: kind, time_column, unit, window, grain, batch, product, destinations, audits, tags, description, forward_only, start"
        }
        Code::ConfigSyntax => {
            "hubforge.toml is TOML: [sections], key = value, strings in double quotes"
        }
        _ => {
            "hubforge.toml sections: [project], [warehouse], [sources.NAME], [vars], [[destinations]]"
        }
    };
    let d = Diagnostic::error(code, message).with_help(help);
    match e.span() {
        Some(span) => d.at(src.location(span)),
        None => d.at(Location::file(src.file)),
    }
}

fn check_keys(
    src: &TomlSource,
    table: &toml::de::DeTable,
    schema: &Schema,
    path: &str,
    code: Code,
    problems: &mut Vec<Diagnostic>,
) {
    let known: Vec<(&str, &Schema)> = match schema {
        Schema::Table(keys) => keys.iter().map(|(k, s)| (*k, s)).collect(),
        Schema::ModelHeader => MODEL_KEYS
            .iter()
            .map(|(k, _)| match *k {
                "validate" => (*k, &VALIDATE_TABLE),
                _ => (*k, &Schema::Leaf),
            })
            .collect(),
        _ => return,
    };
    for (key, value) in table.iter() {
        let name: &str = key.get_ref();
        let full = if path.is_empty() {
            name.to_string()
        } else {
            format!("{path}.{name}")
        };
        match known.iter().find(|(k, _)| *k == name) {
            None => {
                let names = known.iter().map(|(k, _)| *k);
                let help = match did_you_mean(name, names.clone()) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => format!("known keys here: {}", names.collect::<Vec<_>>().join(", ")),
                };
                problems.push(
                    Diagnostic::error(code, format!("unknown key `{full}`"))
                        .at(src.location(key.span()))
                        .with_help(help),
                );
            }
            Some((_, inner)) => check_value(src, value.get_ref(), inner, &full, code, problems),
        }
    }
}

fn check_value(
    src: &TomlSource,
    value: &toml::de::DeValue,
    schema: &Schema,
    path: &str,
    code: Code,
    problems: &mut Vec<Diagnostic>,
) {
    use toml::de::DeValue;
    match (schema, value) {
        (Schema::Table(_) | Schema::ModelHeader, DeValue::Table(t)) => {
            check_keys(src, t, schema, path, code, problems)
        }
        (Schema::MapOf(inner), DeValue::Table(t)) => {
            for (k, v) in t.iter() {
                check_value(
                    src,
                    v.get_ref(),
                    inner,
                    &format!("{path}.{}", k.get_ref()),
                    code,
                    problems,
                );
            }
        }
        (Schema::ArrayOf(inner), DeValue::Array(items)) => {
            for item in items.iter() {
                check_value(src, item.get_ref(), inner, path, code, problems);
            }
        }
        // Type mismatches are reported by the typed parse that follows.
        _ => {}
    }
}

/// The location of `key = ...` at the top level of a TOML document.
pub fn key_location(src: &TomlSource, key: &str) -> Option<Location> {
    let doc = toml::de::DeTable::parse(src.toml).ok()?;
    let (k, _) = doc.get_ref().iter().find(|(k, _)| k.get_ref() == key)?;
    Some(src.location(k.span()))
}

/// The location of a `[a.b]` section header (or the file when absent).
fn section_location(src: &TomlSource, section: &str) -> Location {
    let mut offset = 0;
    for line in src.toml.split_inclusive('\n') {
        let t = line.trim();
        if t.starts_with('[') && t.trim_matches(|c| c == '[' || c == ']').trim() == section {
            let start = offset + (line.len() - line.trim_start().len());
            return Location::at_offset(
                src.file,
                src.file_text,
                src.offset + start,
                t.chars().count(),
            );
        }
        offset += line.len();
    }
    Location::file(src.file)
}

/// Dates may be written as TOML dates (`2024-01-01`) or strings (`"2024-01-01"`).
fn de_date<'de, D: Deserializer<'de>>(d: D) -> Result<NaiveDate, D::Error> {
    let value = toml::Value::deserialize(d)?;
    date_from_toml(&value).map_err(serde::de::Error::custom)
}

fn de_opt_date<'de, D: Deserializer<'de>>(d: D) -> Result<Option<NaiveDate>, D::Error> {
    de_date(d).map(Some)
}

fn ser_opt_date<S: serde::Serializer>(v: &Option<NaiveDate>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(d) => s.serialize_str(&d.to_string()),
        None => s.serialize_none(),
    }
}

fn date_from_toml(value: &toml::Value) -> Result<NaiveDate, String> {
    let text = match value {
        toml::Value::String(s) => s.clone(),
        toml::Value::Datetime(dt) => dt.to_string(),
        other => {
            return Err(format!(
                "expected a date like \"2024-01-01\", found {}",
                other.type_str()
            ));
        }
    };
    NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d")
        .map_err(|_| format!("expected a date like \"2024-01-01\", found \"{text}\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src(text: &str) -> TomlSource<'_> {
        TomlSource {
            file: Path::new("hubforge.toml"),
            file_text: text,
            offset: 0,
            toml: text,
        }
    }

    #[test]
    fn every_model_config_field_has_a_declared_role() {
        let json = serde_json::to_value(ModelConfig::default()).unwrap();
        let fields: Vec<&str> = json
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        for f in &fields {
            assert!(
                MODEL_KEYS.iter().any(|(k, _)| k == f),
                "`{f}` has no role in MODEL_KEYS"
            );
        }
        assert_eq!(fields.len(), MODEL_KEYS.len());
    }

    #[test]
    fn unknown_project_key_suggests_the_closest() {
        let text =
            "[project]\nname = \"x\"\nstart = \"2024-01-01\"\n\n[warehouse]\npaht = \"w.duckdb\"\n";
        let errs = parse_project_config(&src(text)).unwrap_err();
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].message, "unknown key `warehouse.paht`");
        assert_eq!(errs[0].help.as_deref(), Some("did you mean `path`?"));
        assert_eq!(errs[0].location.as_ref().unwrap().line, 6);
    }

    #[test]
    fn a_cluster_path_is_read_by_spark_only() {
        for (path, cluster) in [
            ("s3a://bucket/orders/*.csv", true),
            ("hdfs://nn:8020/raw/orders.parquet", true),
            ("file:///mnt/raw/orders.csv", true),
            ("data/orders/*.csv", false),
            ("/srv/data/orders.csv", false),
            ("C://orders.csv", false),
        ] {
            assert_eq!(is_cluster_path(path), cluster, "{path}");
        }
        let head = "[project]\nname = \"x\"\nstart = \"2024-01-01\"\n\n";
        let source = "[sources.orders]\npath = \"s3a://bucket/orders/*.csv\"\n";
        let errs = parse_project_config(&src(&format!("{head}{source}"))).unwrap_err();
        assert_eq!(
            errs[0].message,
            "source `orders` is read from `s3a://bucket/orders/*.csv`, a path only a Spark \
             cluster reads; embedded DuckDB reads files of this machine"
        );
        assert_eq!(errs[0].location.as_ref().unwrap().line, 6);
        let spark = "[warehouse]\nengine = \"spark\"\nurl = \"sc://h\"\n\n";
        parse_project_config(&src(&format!("{head}{spark}{source}"))).unwrap();
        let errs = parse_project_config(&src(&format!(
            "{head}{spark}{source}on_bad_rows = \"quarantine\"\n"
        )))
        .unwrap_err();
        assert_eq!(errs[0].location.as_ref().unwrap().line, 11);
        assert!(errs[0].message.contains("read by the cluster only"));
    }

    #[test]
    fn the_spark_engine_needs_a_url_and_its_settings_need_it() {
        let head = "[project]\nname = \"x\"\nstart = \"2024-01-01\"\n\n[warehouse]\n";
        let ok = parse_project_config(&src(&format!(
            "{head}engine = \"spark\"\nurl = \"sc://localhost:15002\"\nschema = \"acme\"\n"
        )))
        .unwrap();
        assert_eq!(ok.warehouse.engine, EngineKind::Spark);
        assert_eq!(ok.warehouse.schema.as_deref(), Some("acme"));

        let errs = parse_project_config(&src(&format!("{head}engine = \"spark\"\n"))).unwrap_err();
        assert_eq!(
            errs[0].message,
            "the Spark engine needs the URL of a Spark Connect server"
        );
        assert_eq!(errs[0].location.as_ref().unwrap().line, 6);

        let errs = parse_project_config(&src(&format!(
            "{head}engine = \"spark\"\nurl = \"sc://h\"\nschema = \"my-schema\"\n"
        )))
        .unwrap_err();
        assert_eq!(
            errs[0].message,
            "warehouse.schema `my-schema` is not a plain Spark name"
        );
        assert_eq!(errs[0].location.as_ref().unwrap().line, 8);

        let errs = parse_project_config(&src(&format!("{head}url = \"sc://localhost:15002\"\n")))
            .unwrap_err();
        assert_eq!(
            errs[0].message,
            "warehouse.url is a setting of the Spark engine"
        );
        assert_eq!(
            errs[0].help.as_deref(),
            Some("add engine = \"spark\" to [warehouse], or remove it")
        );
    }

    #[test]
    fn dates_as_strings_or_toml_dates() {
        let a =
            parse_project_config(&src("[project]\nname = \"x\"\nstart = 2024-01-01\n")).unwrap();
        let b = parse_project_config(&src("[project]\nname = \"x\"\nstart = \"2024-01-01\"\n"))
            .unwrap();
        assert_eq!(a.project.start, b.project.start);
    }

    #[test]
    fn incremental_model_needs_time_column_and_unit() {
        let errs = parse_model_config(&src("kind = \"incremental\"\n")).unwrap_err();
        let messages: Vec<_> = errs.iter().map(|d| d.message.as_str()).collect();
        assert_eq!(
            messages,
            [
                "an incremental model needs `time_column`",
                "an incremental model needs `unit`"
            ]
        );
    }

    #[test]
    fn explicit_default_and_omitted_key_have_the_same_data_values() {
        let a = parse_model_config(&src("kind = \"table\"\n")).unwrap();
        let b = parse_model_config(&src("kind = \"table\"\ngrain = []\n")).unwrap();
        assert_eq!(
            a.values_with_role(KeyRole::Data),
            b.values_with_role(KeyRole::Data)
        );
    }
}
