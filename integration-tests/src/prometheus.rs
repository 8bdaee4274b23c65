//! A real Prometheus server (Debian's `prometheus` package) scraping a test daemon, queried
//! through its HTTP API; and the metric names a PromQL expression reads.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::http::default_agent;
use crate::ports::{reserve_ports, PortBlock};
use crate::process::last_lines;

/// Panics with a clear message unless `tool` runs here; `package` is the Debian package that
/// has it, which `scripts/install-deps.sh --test` installs.
pub fn require_tool(tool: &str, package: &str) {
    match Command::new(tool).arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status() {
        Ok(_) => {}
        Err(e) => panic!("{tool} cannot run ({e}): apt-get install {package} (scripts/install-deps.sh --test)"),
    }
}

/// A Prometheus server on a loopback port of its own, with its data in a temp dir, scraping one
/// target every second. Killed when dropped; its log is shown if the test is failing.
pub struct PromServer {
    child: Option<Child>,
    pub base_url: String,
    dir: tempfile::TempDir,
    _port: PortBlock,
}

impl PromServer {
    /// Starts Prometheus scraping `target` (`host:port`, `/metrics`, no token) as job
    /// `switchboard`, evaluating `rule_files`, and waits until it is ready.
    pub fn start(target: &str, rule_files: &[PathBuf]) -> PromServer {
        require_tool("prometheus", "prometheus");
        let port = reserve_ports();
        let dir = tempfile::Builder::new().prefix("switchboard-prom-").tempdir().expect("temp dir");
        let rules: Vec<String> = rule_files.iter().map(|p| format!("  - {}\n", p.display())).collect();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n  scrape_timeout: 1s\n\
             rule_files:\n{}\
             scrape_configs:\n  - job_name: switchboard\n    static_configs:\n      - targets: ['{target}']\n",
            rules.concat()
        );
        let config_path = dir.path().join("prometheus.yml");
        fs::write(&config_path, config).expect("write prometheus.yml");
        let log = fs::File::create(dir.path().join("prometheus.log")).expect("log file");
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{}", port.http))
            .arg("--log.level=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().expect("log file")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn prometheus");
        let server =
            PromServer { child: Some(child), base_url: format!("http://127.0.0.1:{}", port.http), dir, _port: port };
        server.wait_ready(Duration::from_secs(20));
        server
    }

    fn wait_ready(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let agent = default_agent();
        while Instant::now() < deadline {
            if let Ok(r) = agent.get(&format!("{}/-/ready", self.base_url)).call() {
                if r.status() == 200 {
                    return;
                }
            }
            thread::sleep(Duration::from_millis(100));
        }
        panic!("prometheus was not ready within {timeout:?}:\n{}", self.log());
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("prometheus.log")).map(|l| last_lines(&l, 40)).unwrap_or_default()
    }

    /// `GET /api/v1/<path>` with `params`: the response's `data`, or the error Prometheus gave.
    pub fn api(&self, path: &str, params: &[(&str, &str)]) -> Result<Value, String> {
        let mut req = default_agent().get(&format!("{}/api/v1/{path}", self.base_url));
        for (k, v) in params {
            req = req.query(k, v);
        }
        let body: Value = match req.call() {
            Ok(r) => r.into_json().map_err(|e| e.to_string())?,
            Err(ureq::Error::Status(s, r)) => {
                return Err(format!("{s}: {}", r.into_string().unwrap_or_default()));
            }
            Err(e) => return Err(e.to_string()),
        };
        match body["status"].as_str() {
            Some("success") => Ok(body["data"].clone()),
            _ => Err(body.to_string()),
        }
    }

    /// An instant query's result vector.
    pub fn query(&self, expr: &str) -> Result<Vec<Value>, String> {
        let data = self.api("query", &[("query", expr)])?;
        Ok(data["result"].as_array().cloned().unwrap_or_default())
    }

    /// The value of an instant query that yields one sample, `None` when it yields none.
    pub fn scalar(&self, expr: &str) -> Option<f64> {
        let result = self.query(expr).unwrap_or_else(|e| panic!("{expr}: {e}"));
        result.first().and_then(|s| s["value"][1].as_str()).and_then(|v| v.parse().ok())
    }
}

impl Drop for PromServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if thread::panicking() {
            eprintln!("---- prometheus log tail ----\n{}\n----", self.log());
        }
    }
}

/// What PromQL spells that is not a metric name: functions, aggregations, keywords.
const PROMQL_WORDS: &[&str] = &[
    "sum",
    "min",
    "max",
    "avg",
    "count",
    "stddev",
    "stdvar",
    "topk",
    "bottomk",
    "quantile",
    "rate",
    "irate",
    "increase",
    "delta",
    "idelta",
    "deriv",
    "histogram_quantile",
    "clamp_min",
    "clamp_max",
    "clamp",
    "abs",
    "max_over_time",
    "min_over_time",
    "avg_over_time",
    "sum_over_time",
    "absent",
    "vector",
    "scalar",
    "time",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "label_values",
    "label_replace",
    "humanize",
];

/// The metric names `expr` reads, or the first word that is neither a metric of `prefixes` nor
/// PromQL's. Strings, label matchers (`{...}`), ranges (`[...]`) and label lists (`by (...)`)
/// are skipped; Grafana's `$variables` are too.
pub fn promql_metric_names(expr: &str, prefixes: &[&str]) -> Result<BTreeSet<String>, String> {
    // Grafana's `label_values(metric, label)`: the label after the last comma is no metric.
    let expr = match expr.trim().strip_prefix("label_values(") {
        Some(inner) => inner.rsplit_once(',').map_or(inner, |(m, _)| m),
        None => expr,
    };
    let mut cleaned = String::new();
    let mut depth_brace = 0;
    let mut depth_bracket = 0;
    let mut in_string = false;
    for c in expr.chars() {
        match c {
            '"' => in_string = !in_string,
            _ if in_string => {}
            '{' => depth_brace += 1,
            '}' => depth_brace -= 1,
            '[' => depth_bracket += 1,
            ']' => depth_bracket -= 1,
            _ if depth_brace > 0 || depth_bracket > 0 => {}
            _ => cleaned.push(c),
        }
        if depth_brace > 0 || depth_bracket > 0 || in_string {
            cleaned.push(' ');
        }
    }
    // `by (le, kind)`: label names, not metrics.
    let mut words = Vec::new();
    let mut skip_list = false;
    let mut word = String::new();
    let mut last_word = String::new();
    for c in cleaned.chars().chain([' ']) {
        if c.is_ascii_alphanumeric() || c == '_' || c == ':' || c == '$' || c == '.' {
            word.push(c);
            continue;
        }
        if !word.is_empty() {
            if !skip_list {
                words.push(word.clone());
            }
            last_word = std::mem::take(&mut word);
        }
        if c == '(' && ["by", "without", "on", "ignoring", "group_left", "group_right"].contains(&last_word.as_str()) {
            skip_list = true;
        }
        if c == ')' {
            skip_list = false;
        }
        if !c.is_whitespace() {
            last_word.clear();
        }
    }
    let mut names = BTreeSet::new();
    for w in words {
        let numeric = w.chars().next().is_some_and(|c| c.is_ascii_digit());
        if numeric || w.starts_with('$') || PROMQL_WORDS.contains(&w.as_str()) {
            continue;
        }
        if !prefixes.iter().any(|p| w.starts_with(p)) {
            return Err(format!("{w:?} in {expr:?} is neither PromQL nor a metric of {prefixes:?}"));
        }
        names.insert(w);
    }
    Ok(names)
}

/// The metric names a `/metrics` text serves, histograms with their `_bucket`, `_sum` and
/// `_count` series.
pub fn served_metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut f = rest.split_whitespace();
            let (Some(name), Some(kind)) = (f.next(), f.next()) else { continue };
            if kind == "histogram" {
                for suffix in ["_bucket", "_sum", "_count"] {
                    names.insert(format!("{name}{suffix}"));
                }
            }
            names.insert(name.to_string());
        }
    }
    names
}

/// Every `expr` string anywhere in a JSON document (a Grafana dashboard's targets), and the
/// templating queries' `query` strings.
pub fn json_exprs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                match (k.as_str(), v) {
                    ("expr" | "definition", Value::String(s)) => out.push(s.clone()),
                    _ => json_exprs(v, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|v| json_exprs(v, out)),
        _ => {}
    }
}

/// A path under the workspace, for rule files and dashboards.
pub fn monitoring_file(rel: &str) -> PathBuf {
    let p = crate::paths::workspace_root().join("monitoring").join(rel);
    assert!(Path::new(&p).is_file(), "{} not found", p.display());
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_read_past_matchers_ranges_and_label_lists() {
        let expr = r#"histogram_quantile(0.95, sum by (le, kind) (rate(sb_join_bucket{job=~"$job", x="a{b}"}[$__rate_interval])))
            / on (instance) clamp_min(sb_ticks_total * sb_stages{stage="decoders"}, 1) > 0.05 and process_cpu_seconds_total"#;
        let got = promql_metric_names(expr, &["sb_", "process_"]).unwrap();
        let want: BTreeSet<String> =
            ["sb_join_bucket", "sb_ticks_total", "sb_stages", "process_cpu_seconds_total"].map(String::from).into();
        assert_eq!(got, want);
        let got = promql_metric_names("label_values(sb_info{job=~\"$job\"}, instance)", &["sb_"]).unwrap();
        assert_eq!(got, BTreeSet::from(["sb_info".to_string()]));
        let err = promql_metric_names("rate(up[5m])", &["sb_"]).unwrap_err();
        assert!(err.contains("\"up\""), "{err}");
    }

    #[test]
    fn histograms_serve_their_series() {
        let text = "# HELP h x\n# TYPE h histogram\nh_bucket{le=\"1\"} 0\n# TYPE g gauge\ng 1\n";
        let names = served_metric_names(text);
        assert!(names.contains("h_bucket") && names.contains("h_count") && names.contains("g"), "{names:?}");
    }
}
