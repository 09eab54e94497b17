//! `hubforge docs`: the generated site opened in a real headless Chromium (the
//! Debian package), a column clicked, the lineage it highlights checked; the
//! site served on localhost; and 10,000 models generated quickly and lazily.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::{built_example, hubforge, stderr, stdout};

/// The Chromium binary; the test fails (never skips) without it.
fn chromium() -> PathBuf {
    let candidates = [
        std::env::var("HUBFORGE_CHROMIUM").ok(),
        Some("/usr/bin/chromium".to_string()),
        Some("/usr/bin/chromium-browser".to_string()),
    ];
    candidates
        .into_iter()
        .flatten()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .expect(
            "headless Chromium is needed for the docs browser test: `apt-get install -y chromium` \
             (or set HUBFORGE_CHROMIUM to its binary)",
        )
}

/// Chromium headless on `url`, with `args` (e.g. --dump-dom): its stdout. The
/// virtual time budget lets the page load its lazy data files first.
fn browse(url: &str, args: &[&str]) -> String {
    let profile = tempfile::tempdir().expect("profile dir");
    let out = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--hide-scrollbars",
            "--virtual-time-budget=10000",
            "--window-size=1400,900",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .arg(url)
        .output()
        .expect("run chromium");
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The value of `attr` on the element with `id` in a dumped DOM.
fn attribute(dom: &str, id: &str, attr: &str) -> Option<String> {
    let at = dom.find(&format!("id=\"{id}\""))?;
    let tag_start = dom[..at].rfind('<')?;
    let tag_end = at + dom[at..].find('>')?;
    let tag = &dom[tag_start..tag_end];
    let key = format!("{attr}=\"");
    let v = tag.find(&key)? + key.len();
    Some(tag[v..v + tag[v..].find('"')?].to_string())
}

/// The `data-col` values of the list with `id`.
fn listed(dom: &str, id: &str) -> Vec<String> {
    let Some(start) = dom.find(&format!("<ul id=\"{id}\"")) else {
        return Vec::new();
    };
    let list = &dom[start..start + dom[start..].find("</ul>").expect("list end")];
    list.split("data-col=\"")
        .skip(1)
        .map(|s| s[..s.find('"').expect("quote")].to_string())
        .collect()
}

fn generate(project: &Path, site: &Path) {
    let out = hubforge(
        project,
        &["docs", "--out", site.to_str().expect("utf-8 path")],
    );
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("index.html"), "{}", stdout(&out));
}

fn url(site: &Path, hash: &str) -> String {
    format!("file://{}#{hash}", site.join("index.html").display())
}

#[test]
fn a_click_on_a_column_highlights_its_lineage_across_the_graph() {
    let dir = built_example();
    let site = dir.path().join("site");
    generate(dir.path(), &site);
    // Nothing the page loads is fetched from a network.
    for rel in ["index.html", "assets/app.js", "assets/style.css"] {
        let text = std::fs::read_to_string(site.join(rel)).expect("site file");
        assert!(
            !text.contains("http://") && !text.contains("https://"),
            "{rel} refers to the network"
        );
    }
    assert!(site.join("assets/vendor/LICENSES.txt").is_file());

    // The page clicks the column itself (the `click` hook of the page).
    let dom = browse(
        &url(&site, "model=revenue_daily&click=net_revenue"),
        &["--dump-dom"],
    );
    assert_eq!(
        attribute(&dom, "graph-highlight", "data-selected").as_deref(),
        Some("revenue_daily"),
        "{dom}"
    );
    assert!(
        dom.contains("data-state=\"ready\""),
        "the page did not finish: {dom}"
    );
    assert_eq!(
        attribute(&dom, "lineage", "data-column").as_deref(),
        Some("revenue_daily.net_revenue")
    );
    let up = listed(&dom, "lineage-upstream");
    let down = listed(&dom, "lineage-downstream");
    // Upstream across the whole graph, down to the sources it reads...
    for c in [
        "int_order_revenue.net_revenue",
        "int_order_lines_priced.line_net_amount",
        "product_prices.price",
        "raw_order_lines.quantity",
        "legacy_orders.qty",
    ] {
        assert!(up.contains(&c.to_string()), "{c} not upstream: {up:?}");
    }
    // ...and only what it reads: VAT and gross are other columns.
    assert!(
        !up.contains(&"int_order_revenue.vat_amount".to_string()),
        "{up:?}"
    );
    assert!(
        !up.iter().any(|c| c.starts_with("revenue_daily.")),
        "{up:?}"
    );
    assert_eq!(down, ["revenue_monthly.net_revenue"]);
    // The graph highlights the models those columns live in.
    let upstream_models = attribute(&dom, "graph-highlight", "data-upstream").expect("upstream");
    assert!(
        upstream_models
            .split(',')
            .any(|m| m == "int_order_lines_priced"),
        "{upstream_models}"
    );
    assert!(
        !upstream_models.split(',').any(|m| m == "payments_daily"),
        "{upstream_models}"
    );
    assert_eq!(
        attribute(&dom, "graph-highlight", "data-downstream").as_deref(),
        Some("revenue_monthly")
    );
    // The details: types from the warehouse, SQL, built intervals.
    assert!(dom.contains("DECIMAL(18,2)"), "column types missing");
    assert!(dom.contains("id=\"sql-rendered\""));
    assert!(dom.contains("status-current"), "built intervals missing");

    // A screenshot, kept as a test artifact.
    let shot =
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("docs-revenue_daily-net_revenue.png");
    let _ = std::fs::remove_file(&shot);
    browse(
        &url(&site, "model=revenue_daily&click=net_revenue"),
        &[&format!("--screenshot={}", shot.display())],
    );
    let png = std::fs::read(&shot).expect("screenshot written");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 20_000,
        "{}",
        shot.display()
    );
}

#[test]
fn the_site_is_served_on_localhost_only() {
    let dir = built_example();
    let site = dir.path().join("site");
    let mut child = Command::new(env!("CARGO_BIN_EXE_hubforge"))
        .args(["docs", "--serve", "--port", "0", "--out"])
        .arg(&site)
        .current_dir(dir.path())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start hubforge docs --serve");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let serving = lines
        .by_ref()
        .map(|l| l.expect("line"))
        .find(|l| l.starts_with("Serving"))
        .expect("a Serving line");
    let addr = serving
        .split("http://")
        .nth(1)
        .and_then(|s| s.split('/').next())
        .expect("address")
        .to_string();
    assert!(addr.starts_with("127.0.0.1:"), "{serving}");
    let get = |path: &str| {
        let mut s = std::net::TcpStream::connect(&addr).expect("connect");
        write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").expect("send");
        let mut response = String::new();
        s.read_to_string(&mut response).expect("read");
        response
    };
    let index = get("/");
    assert!(index.starts_with("HTTP/1.1 200"), "{index}");
    assert!(index.contains("<title>acme_hub"), "{index}");
    let graph = get("/data/graph.js");
    assert!(graph.contains("text/javascript") && graph.contains("window.HF_GRAPH"));
    assert!(get("/../hubforge.toml").starts_with("HTTP/1.1 404"));
    assert!(get("/nothing.js").starts_with("HTTP/1.1 404"));
    child.kill().expect("stop the server");
    child.wait().expect("wait");
}

#[test]
fn ten_thousand_models_generate_quickly_and_load_lazily() {
    let dir = tempfile::tempdir().expect("tempdir");
    let project = dir.path().join("synth");
    let out = Command::new(env!("CARGO_BIN_EXE_hubforge-bench"))
        .args([
            "generate",
            "--models",
            "10000",
            "--days",
            "3",
            "--rows-per-day",
            "2",
            "--out",
        ])
        .arg(&project)
        .output()
        .expect("generate");
    assert!(out.status.success(), "{}", stderr(&out));
    let site = dir.path().join("site");
    let started = std::time::Instant::now();
    generate(&project, &site);
    let took = started.elapsed();
    // Dev profile on a shared 2-core machine: generous, but catches a blow-up.
    assert!(took.as_secs() < 120, "docs for 10,000 models took {took:?}");
    // The page loads the graph only; details come in chunks of 200 models.
    let index = std::fs::read_to_string(site.join("index.html")).expect("index");
    assert!(index.contains("data/graph.js") && !index.contains("chunk-"));
    let chunks = std::fs::read_dir(site.join("data"))
        .expect("data dir")
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.file_name().to_string_lossy().starts_with("chunk-"))
        })
        .count();
    assert_eq!(chunks, 10_010_usize.div_ceil(200));
    let graph = std::fs::metadata(site.join("data/graph.js"))
        .expect("graph")
        .len();
    assert!(graph < 2_000_000, "graph.js is {graph} bytes");
    // In the browser: a model deep in the graph opens with its neighbourhood
    // and the lineage of one of its columns.
    let graph = std::fs::read_to_string(site.join("data/graph.js")).expect("graph");
    let model = graph
        .rsplit("\"n\":\"")
        .find(|s| s.starts_with("mart_"))
        .and_then(|s| s.split('"').next())
        .expect("a mart model")
        .to_string();
    let dom = browse(&url(&site, &format!("model={model}")), &["--dump-dom"]);
    assert!(
        dom.contains("data-state=\"ready\""),
        "{}",
        &dom[..dom.len().min(2000)]
    );
    assert_eq!(
        attribute(&dom, "graph-highlight", "data-selected"),
        Some(model.clone())
    );
    let caption_at = dom.find("id=\"graph-caption\"").expect("caption");
    assert!(
        dom[caption_at..].contains("Neighbourhood of"),
        "the full graph was drawn"
    );
    let column = dom
        .split("data-column=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("a column")
        .to_string();
    let dom = browse(
        &url(&site, &format!("model={model}&click={column}")),
        &["--dump-dom"],
    );
    assert!(
        !listed(&dom, "lineage-upstream").is_empty(),
        "no upstream lineage for {model}.{column}"
    );
}
