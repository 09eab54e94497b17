//! `hubforge docs`: a static, self-contained site of the project: the DAG
//! (searchable), per model its SQL (source and rendered), header, columns with
//! types, column-level lineage across the whole graph, products and
//! destinations, and, when a warehouse exists, built intervals and last runs.
//!
//! The site opens from `file://` without a network: data are JavaScript files
//! that assign JSON (loaded with `<script>` tags, which need no server). The
//! graph is one file; model details come in chunks and column lineage in its
//! own file, each loaded when first needed, so that 10,000 models open fast.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::engine::Session;
use crate::error::{Error, Result};
use crate::graph::{NodeId, NodeKind};
use crate::workspace::Workspace;

/// Models per chunk of details.
pub const CHUNK: usize = 200;

const INDEX: &str = include_str!("../templates/docs/index.html");
const APP_JS: &str = include_str!("../templates/docs/app.js");
const STYLE: &str = include_str!("../templates/docs/style.css");
const CYTOSCAPE: &str = include_str!("../templates/docs/vendor/cytoscape.min.js");
const CYTOSCAPE_DAGRE: &str = include_str!("../templates/docs/vendor/cytoscape-dagre.min.js");
const VENDOR_LICENSES: &str = include_str!("../templates/docs/vendor/LICENSES.txt");

/// What the warehouse adds to the site, when there is one.
#[derive(Default)]
pub struct Built {
    /// View (lowercase) → columns with their types, as published.
    pub types: BTreeMap<String, Vec<(String, String)>>,
    /// Model (lowercase) → its history ranges (JSON of `hubforge intervals`).
    pub intervals: BTreeMap<String, Value>,
    /// The latest runs, newest first.
    pub runs: Vec<crate::state::RunLog>,
}

/// Column types of every published view.
pub fn published_types(s: &dyn Session) -> Result<BTreeMap<String, Vec<(String, String)>>> {
    let rows = s.query(
        "SELECT lower(table_name), column_name, data_type FROM information_schema.columns \
         WHERE table_schema = 'main' ORDER BY table_name, ordinal_position",
    )?;
    let mut out: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    for row in rows.rows {
        let text = |i: usize| row[i].to_text().unwrap_or_default();
        out.entry(text(0)).or_default().push((text(1), text(2)));
    }
    Ok(out)
}

/// Write the site into `out`; returns the number of files written.
pub fn generate(
    ws: &Workspace,
    versions: &[crate::fingerprint::ModelVersion],
    built: &Built,
    now: chrono::NaiveDateTime,
    out: &Path,
) -> Result<usize> {
    let write = |rel: &str, text: &str| -> Result<()> {
        let path = out.join(rel);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        }
        std::fs::write(&path, text).map_err(|e| Error::io(format!("writing {}", path.display()), e))
    };
    // Chunks of the old site would be read by the new one: start clean.
    let data = out.join("data");
    if data.exists() {
        std::fs::remove_dir_all(&data)
            .map_err(|e| Error::io(format!("removing {}", data.display()), e))?;
    }
    let order: &[NodeId] = &ws.dag.order;
    let position: BTreeMap<NodeId, usize> =
        order.iter().enumerate().map(|(i, &n)| (n, i)).collect();
    let runs_by_model = runs_by_model(&built.runs);
    // The graph: every node, compact.
    let nodes: Vec<Value> = order
        .iter()
        .enumerate()
        .map(|(i, &id)| {
            let node = &ws.dag.nodes[id];
            let config = node.model.map(|m| &ws.project.models[m].config);
            let mut v = json!({
                "n": node.name.as_str(),
                "k": kind(ws, id),
                "c": i / CHUNK,
                "p": ws.dag.parents(id).iter().map(|p| position[p]).collect::<Vec<_>>(),
            });
            if let Some(c) = config {
                if !c.tags.is_empty() {
                    v["t"] = json!(c.tags);
                }
                if c.product {
                    v["pr"] = json!(true);
                }
            }
            v
        })
        .collect();
    let graph = json!({
        "project": ws.project.config.project.name,
        "nodes": nodes,
        "chunk": CHUNK,
        "warehouse": !built.types.is_empty() || !built.runs.is_empty(),
        "runs": built.runs.iter().take(20).map(|r| crate::runs::run_json(r, false)).collect::<Vec<_>>(),
    });
    let mut files = 0;
    write("data/graph.js", &format!("window.HF_GRAPH = {};\n", graph))?;
    files += 1;
    // Column lineage: each column's direct inputs; the page walks it both ways.
    let mut lineage: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for &id in order {
        let v = &versions[id];
        for c in &v.columns {
            if c.inputs.is_empty() {
                continue;
            }
            lineage.insert(
                format!("{}.{}", v.name.key(), c.name.to_lowercase()),
                c.inputs
                    .iter()
                    .map(|(n, col)| format!("{}.{}", n.to_lowercase(), col.to_lowercase()))
                    .collect(),
            );
        }
    }
    write(
        "data/lineage.js",
        &format!("HF_LOADED_LINEAGE({});\n", json!(lineage)),
    )?;
    files += 1;
    // Details, one chunk at a time.
    for (chunk, ids) in order.chunks(CHUNK).enumerate() {
        let mut models = serde_json::Map::new();
        for &id in ids {
            let node = &ws.dag.nodes[id];
            let key = node.name.key().to_string();
            models.insert(
                key.clone(),
                details(ws, id, &versions[id], built, &runs_by_model, now),
            );
        }
        write(
            &format!("data/chunk-{chunk}.js"),
            &format!("HF_LOADED_CHUNK({chunk}, {});\n", Value::Object(models)),
        )?;
        files += 1;
    }
    let env = {
        let mut env = minijinja::Environment::new();
        env.add_template("index.html", INDEX)
            .map_err(|e| Error::Engine(format!("docs template: {e}")))?;
        env
    };
    let models = order
        .iter()
        .filter(|&&id| ws.dag.nodes[id].kind.is_model())
        .count();
    let index = env
        .get_template("index.html")
        .and_then(|t| {
            t.render(minijinja::context! {
                project => ws.project.config.project.name.as_str(),
                models => models,
                nodes => order.len(),
                version => env!("CARGO_PKG_VERSION"),
            })
        })
        .map_err(|e| Error::Engine(format!("docs template: {e}")))?;
    write("index.html", &index)?;
    write("assets/app.js", APP_JS)?;
    write("assets/style.css", STYLE)?;
    write("assets/vendor/cytoscape.min.js", CYTOSCAPE)?;
    write("assets/vendor/cytoscape-dagre.min.js", CYTOSCAPE_DAGRE)?;
    write("assets/vendor/LICENSES.txt", VENDOR_LICENSES)?;
    Ok(files + 6)
}

fn kind(ws: &Workspace, id: NodeId) -> &'static str {
    ws.dag.nodes[id].kind.as_str()
}

/// Model (lowercase) → the runs whose plan built it, newest first.
fn runs_by_model(runs: &[crate::state::RunLog]) -> BTreeMap<String, Vec<Value>> {
    let mut out: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for r in runs {
        for m in r.plan["models"].as_array().into_iter().flatten() {
            let Some(name) = m["name"].as_str() else {
                continue;
            };
            let list = out.entry(name.to_lowercase()).or_default();
            if list.len() < 10 {
                list.push(json!({
                    "run": r.seq,
                    "outcome": r.status,
                    "started_at": r.started_at,
                    "user": r.user,
                    "change": m["change"],
                    "intervals": m["intervals"],
                    "full": m["full"],
                    "rows": r.summary["rows_by_model"][name],
                }));
            }
        }
    }
    out
}

fn details(
    ws: &Workspace,
    id: NodeId,
    version: &crate::fingerprint::ModelVersion,
    built: &Built,
    runs: &BTreeMap<String, Vec<Value>>,
    now: chrono::NaiveDateTime,
) -> Value {
    let node = &ws.dag.nodes[id];
    let key = node.name.key();
    let mut types: BTreeMap<String, String> = built
        .types
        .get(key)
        .into_iter()
        .flatten()
        .map(|(c, t)| (c.to_lowercase(), t.clone()))
        .collect();
    // A source's declared schema gives its types without a warehouse.
    if let Some(declared) = ws
        .project
        .config
        .sources
        .get(node.name.as_str())
        .and_then(|c| c.columns.as_ref())
    {
        for (c, t) in declared {
            types.entry(c.to_lowercase()).or_insert_with(|| t.clone());
        }
    }
    let columns: Vec<Value> = if version.columns.is_empty() {
        built
            .types
            .get(key)
            .into_iter()
            .flatten()
            .map(|(c, t)| json!({ "name": c, "type": t, "inputs": [] }))
            .collect()
    } else {
        version
            .columns
            .iter()
            .map(|c| {
                json!({
                    "name": c.name,
                    "type": types.get(&c.name.to_lowercase()),
                    "inputs": c.inputs.iter().map(|(n, col)| format!("{n}.{col}")).collect::<Vec<_>>(),
                })
            })
            .collect()
    };
    let mut v = json!({
        "name": node.name.as_str(),
        "kind": kind(ws, id),
        "path": crate::diagnostics::display_path(&node.file),
        "columns": columns,
        "parents": ws.dag.parents(id).iter().map(|&p| ws.dag.nodes[p].name.as_str()).collect::<Vec<_>>(),
        "children": ws.dag.children(id).iter().map(|&c| ws.dag.nodes[c].name.as_str()).collect::<Vec<_>>(),
        "filters": version.row_inputs.iter().map(|(n, c)| format!("{n}.{c}")).collect::<Vec<_>>(),
        "lineage_unknown": version.lineage_unknown,
        "fingerprint": version.fingerprint,
        "runs": runs.get(key).cloned().unwrap_or_default(),
        "intervals": built.intervals.get(key),
    });
    match node.kind {
        NodeKind::Source => {
            if let Some(c) = ws.project.config.sources.get(node.name.as_str()) {
                v["description"] = json!(c.description);
                v["header"] = json!({
                    "path": c.path, "table": c.table, "time_column": c.time_column,
                    "unit": c.unit.as_str(),
                });
            }
        }
        NodeKind::Seed => {}
        NodeKind::Model(_) => {
            let (file, _) = ws.model(id).expect("model");
            let c = &file.config;
            let mut destinations: Vec<String> = c.destinations.clone();
            for d in &ws.project.config.destinations {
                if d.products
                    .iter()
                    .any(|p| p.eq_ignore_ascii_case(node.name.as_str()))
                    && !destinations.contains(&d.name)
                {
                    destinations.push(d.name.clone());
                }
            }
            let history = crate::plan::history(ws, id, now);
            let rendered = ws
                .templates
                .render(
                    &file.path,
                    &file.text,
                    &file.body,
                    &crate::template::Window::new(history.start(), history.end(), c.unit),
                )
                .map(|s| s.trim().to_string())
                .unwrap_or_else(|d| format!("-- does not render: {}", d.message));
            v["description"] = json!(c.description);
            v["header"] = json!({
                "kind": c.kind.as_str(),
                "time_column": c.time_column,
                "unit": c.unit.map(|u| u.as_str()),
                "window": c.window,
                "grain": c.grain,
                "batch": c.batch,
                "product": c.product,
                "tags": c.tags,
                "audits": c.audits,
                "forward_only": c.forward_only,
                "start": c.start.map(|d| d.to_string()),
            });
            v["product"] = json!(c.product);
            v["destinations"] = json!(destinations);
            v["sql"] = json!(file.body.trim());
            v["rendered"] = json!(rendered);
        }
    }
    v
}

/// Serve `dir` on 127.0.0.1:`port` until interrupted (GET only, no listing).
pub fn serve(dir: &Path, port: u16, ready: &mut dyn Write) -> Result<()> {
    let listener = std::net::TcpListener::bind(("127.0.0.1", port))
        .map_err(|e| Error::io(format!("listening on 127.0.0.1:{port}"), e))?;
    let addr = listener
        .local_addr()
        .map_err(|e| Error::io("listening", e))?;
    let _ = writeln!(
        ready,
        "Serving {} on http://{addr}/ (Ctrl-C to stop)",
        dir.display()
    );
    let _ = ready.flush();
    for stream in listener.incoming() {
        let Ok(mut stream) = stream else { continue };
        let mut line = String::new();
        if BufReader::new(&stream).read_line(&mut line).is_err() {
            continue;
        }
        let path = line.split_whitespace().nth(1).unwrap_or("/");
        let path = path.split(['?', '#']).next().unwrap_or("/");
        let rel = path.trim_start_matches('/');
        let rel = if rel.is_empty() { "index.html" } else { rel };
        let file: Option<PathBuf> = (!rel.split('/').any(|p| p == ".." || p.is_empty()))
            .then(|| dir.join(rel))
            .filter(|p| p.is_file());
        let response = match file.and_then(|p| std::fs::read(&p).ok().map(|b| (p, b))) {
            Some((p, body)) => {
                let mime = match p.extension().and_then(|e| e.to_str()) {
                    Some("html") => "text/html; charset=utf-8",
                    Some("js") => "text/javascript; charset=utf-8",
                    Some("css") => "text/css; charset=utf-8",
                    Some("png") => "image/png",
                    _ => "text/plain; charset=utf-8",
                };
                let mut r = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: {mime}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                )
                .into_bytes();
                r.extend_from_slice(&body);
                r
            }
            None => {
                b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\nConnection: close\r\n\r\nnot found"
                    .to_vec()
            }
        };
        let _ = stream.write_all(&response);
    }
    Ok(())
}
