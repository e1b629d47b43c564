//! The monitoring we ship in `monitoring/`: the Prometheus alert rules pass `promtool check rules`
//! and their unit tests (`promtool test rules`), every alert is tested firing and stays silent on
//! a healthy cluster, the example prometheus.yml loads them, and the Grafana dashboard is a
//! valid, importable dashboard whose queries parse as PromQL. The rules and the dashboard name
//! only metrics from `monitoring/metrics.txt`, the one list of what the daemon exports, and the
//! dashboard shows every one of them. A running daemon exports exactly that list, in the
//! Prometheus text format (clean under `promtool check metrics`) and in OpenMetrics.

#[path = "../lab/cluster.rs"]
mod cluster;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

fn monitoring(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("monitoring")
        .join(file)
}

fn read(file: &str) -> String {
    let path = monitoring(file);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// One metric of `metrics.txt`.
#[derive(Debug)]
struct Metric {
    kind: String,
    labels: Vec<String>,
    help: String,
}

/// `metrics.txt`: NAME TYPE LABELS HELP per line, `#` comments.
fn metrics() -> BTreeMap<String, Metric> {
    let mut out = BTreeMap::new();
    for (n, line) in read("metrics.txt").lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut words = line.splitn(4, ' ');
        let (name, kind, labels, help) = (
            words.next().unwrap_or(""),
            words.next().unwrap_or(""),
            words.next().unwrap_or(""),
            words.next().unwrap_or("").trim(),
        );
        let at = format!("metrics.txt:{}", n + 1);
        assert!(name.starts_with("jenkins_ha_"), "{at}: {name:?}");
        assert!(
            name.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
            "{at}: {name:?} is not a Prometheus metric name"
        );
        assert!(
            ["gauge", "counter", "histogram"].contains(&kind),
            "{at}: type {kind:?}"
        );
        assert_eq!(
            kind == "counter",
            name.ends_with("_total"),
            "{at}: counters, and only they, end in _total"
        );
        assert!(!help.is_empty(), "{at}: no help text");
        let labels: Vec<String> = match labels {
            "-" => Vec::new(),
            l => l.split(',').map(str::to_string).collect(),
        };
        let old = out.insert(
            name.to_string(),
            Metric {
                kind: kind.to_string(),
                labels,
                help: help.to_string(),
            },
        );
        assert!(old.is_none(), "{at}: {name} listed twice");
    }
    out
}

fn promtool() -> &'static str {
    ["/usr/bin/promtool", "/usr/local/bin/promtool"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("promtool is not installed: run scripts/install-deps (Debian's prometheus package)")
}

/// Runs promtool in `monitoring/`; panics with everything it printed when it fails.
fn run_promtool(args: &[&str]) -> String {
    let out = Command::new(promtool())
        .args(args)
        .current_dir(monitoring(""))
        .output()
        .expect("run promtool");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "promtool {} failed:\n{text}",
        args.join(" ")
    );
    text
}

/// The metric names a PromQL expression selects: every identifier that is not a function, an
/// aggregation, a keyword, a label (in `{...}`, `by (...)`, `on (...)` and the like), a string, a
/// number, a duration or a Grafana variable (`$job`, `$__rate_interval`).
fn metric_names(expr: &str) -> BTreeSet<String> {
    // Blank out strings, label matchers and range selectors.
    let mut plain = String::new();
    let (mut quote, mut braces, mut brackets) = (None, 0usize, 0usize);
    let mut escaped = false;
    for c in expr.chars() {
        if let Some(q) = quote {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == q {
                quote = None;
            }
            plain.push(' ');
            continue;
        }
        match c {
            '"' | '\'' | '`' => quote = Some(c),
            '{' => braces += 1,
            '}' => braces = braces.saturating_sub(1),
            '[' => brackets += 1,
            ']' => brackets = brackets.saturating_sub(1),
            _ if braces == 0 && brackets == 0 => {
                plain.push(c);
                continue;
            }
            _ => {}
        }
        plain.push(' ');
    }
    const LABEL_LISTS: [&str; 6] = [
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
    ];
    const KEYWORDS: [&str; 8] = [
        "and", "or", "unless", "bool", "offset", "inf", "nan", "atan2",
    ];
    let chars: Vec<char> = plain.chars().collect();
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    let mut names = BTreeSet::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '$' {
            i += 1;
            while i < chars.len() && ident(chars[i]) {
                i += 1;
            }
            continue;
        }
        if !ident(c) {
            i += 1;
            continue;
        }
        let start = i;
        while i < chars.len() && ident(chars[i]) {
            i += 1;
        }
        let word: String = chars[start..i].iter().collect();
        let mut next = i;
        while next < chars.len() && chars[next].is_whitespace() {
            next += 1;
        }
        // A call, or an aggregation whose `by (...)`/`without (...)` comes first.
        let next_word: String = chars[next..].iter().take_while(|c| ident(**c)).collect();
        let call = chars.get(next) == Some(&'(')
            || (matches!(next_word.as_str(), "by" | "without")
                && !LABEL_LISTS.contains(&word.as_str()));
        if LABEL_LISTS.contains(&word.as_str()) && call {
            // Skip the label list.
            while i < chars.len() && chars[i] != ')' {
                i += 1;
            }
            continue;
        }
        if call
            || KEYWORDS.contains(&word.as_str())
            || LABEL_LISTS.contains(&word.as_str())
            || word.starts_with(|c: char| c.is_ascii_digit())
        {
            continue;
        }
        names.insert(word);
    }
    names
}

/// The listed metric a series name belongs to (`NAME_bucket` and the like for a histogram).
fn listed<'a>(metrics: &'a BTreeMap<String, Metric>, name: &str) -> Option<&'a str> {
    if let Some((n, _)) = metrics.get_key_value(name) {
        return Some(n);
    }
    ["_bucket", "_sum", "_count"].iter().find_map(|suffix| {
        let base = name.strip_suffix(suffix)?;
        let (n, m) = metrics.get_key_value(base)?;
        (m.kind == "histogram").then_some(n.as_str())
    })
}

fn yaml(file: &str) -> serde_yaml::Value {
    serde_yaml::from_str(&read(file)).unwrap_or_else(|e| panic!("{file}: {e}"))
}

fn str_at<'a>(v: &'a serde_yaml::Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(|x| x.as_str())
}

/// Every alerting rule of the rule file: (name, expr, the rule itself).
fn alert_rules() -> Vec<(String, String, serde_yaml::Value)> {
    let doc = yaml("jenkins-ha.rules.yml");
    let groups = doc
        .get("groups")
        .and_then(|g| g.as_sequence())
        .expect("groups");
    let mut out = Vec::new();
    for g in groups {
        for r in g.get("rules").and_then(|r| r.as_sequence()).expect("rules") {
            let name = str_at(r, "alert").expect("only alerting rules");
            let expr = str_at(r, "expr").expect("expr");
            out.push((name.to_string(), expr.to_string(), r.clone()));
        }
    }
    out
}

#[test]
fn the_metric_name_parser_finds_metrics_and_nothing_else() {
    let names = |e: &str| metric_names(e).into_iter().collect::<Vec<_>>();
    assert_eq!(
        names(r#"max by (job) (count_values by (job) ("term", a_b and (c == 1))) > 1"#),
        ["a_b", "c"]
    );
    assert_eq!(
        names(
            r#"histogram_quantile(0.99, sum by (le, instance) (rate(x_bucket{job="$job", instance=~"$instance"}[$__rate_interval])))"#
        ),
        ["x_bucket"]
    );
    assert_eq!(
        names(
            r#"(x > y) and on (job, instance) (z{role="standby"} == 1) unless ignoring(op) w offset 5m"#
        ),
        ["w", "x", "y", "z"]
    );
    assert_eq!(names(r#"absent(up{job=~"jenkins-ha.*"})"#), ["up"]);
}

#[test]
fn metrics_txt_lists_each_exported_metric_once() {
    let m = metrics();
    // The names the alerts and the dashboard are written against.
    for name in [
        "jenkins_ha_role",
        "jenkins_ha_serving",
        "jenkins_ha_cluster_has_active",
        "jenkins_ha_term",
        "jenkins_ha_lease_age_seconds",
        "jenkins_ha_lease_timeout_seconds",
        "jenkins_ha_interval_seconds",
        "jenkins_ha_peer_up",
        "jenkins_ha_peer_heartbeat_age_seconds",
        "jenkins_ha_jenkins_up",
        "jenkins_ha_jenkins_reload_failed",
        "jenkins_ha_jenkins_restart_needed",
        "jenkins_ha_paused",
        "jenkins_ha_timing_mismatch",
        "jenkins_ha_build_info",
        "jenkins_ha_failovers_total",
        "jenkins_ha_haproxy_writes_total",
        "jenkins_ha_haproxy_write_errors_total",
        "jenkins_ha_lease_errors_total",
        "jenkins_ha_jenkins_reloads_total",
        "jenkins_ha_lease_read_duration_seconds",
        "jenkins_ha_lease_write_duration_seconds",
        "jenkins_ha_jenkins_reload_duration_seconds",
        "jenkins_ha_peer_rtt_seconds",
        "jenkins_ha_watch_mode",
        "jenkins_ha_promotions_total",
        "jenkins_ha_watch_scan_duration_seconds",
    ] {
        assert!(m.contains_key(name), "metrics.txt lacks {name}");
    }
    assert_eq!(m.len(), 27, "{:?}", m.keys().collect::<Vec<_>>());
    assert_eq!(m["jenkins_ha_peer_up"].labels, ["peer"]);
    assert_eq!(m["jenkins_ha_lease_errors_total"].labels, ["op"]);
}

#[test]
fn promtool_check_rules_is_clean() {
    let text = run_promtool(&["check", "rules", "jenkins-ha.rules.yml"]);
    assert!(text.contains("SUCCESS"), "{text}");
}

#[test]
fn promtool_unit_tests_of_the_rules_pass() {
    let text = run_promtool(&["test", "rules", "jenkins-ha.rules.test.yml"]);
    assert!(text.contains("SUCCESS"), "{text}");
}

#[test]
fn the_example_prometheus_config_is_valid_and_loads_the_rules() {
    let text = run_promtool(&["check", "config", "prometheus.example.yml"]);
    assert!(text.contains("1 rule files found"), "{text}");
    assert!(text.contains("jenkins-ha.rules.yml"), "{text}");
}

#[test]
fn every_alert_names_listed_metrics_has_a_severity_and_tells_what_to_run() {
    let m = metrics();
    let rules = alert_rules();
    assert!(rules.len() >= 13, "{} rules", rules.len());
    for (name, expr, rule) in &rules {
        assert!(name.starts_with("JenkinsHa"), "{name}");
        for metric in metric_names(expr) {
            assert!(
                metric == "up" || listed(&m, &metric).is_some(),
                "{name}: {metric} is not in metrics.txt (nor Prometheus' own `up`)"
            );
        }
        let labels = rule.get("labels").expect("labels");
        let severity = str_at(labels, "severity").unwrap_or("");
        assert!(
            ["critical", "warning"].contains(&severity),
            "{name}: severity {severity:?}"
        );
        let annotations = rule.get("annotations").expect("annotations");
        for key in ["summary", "description", "runbook"] {
            assert!(
                str_at(annotations, key).is_some_and(|v| !v.trim().is_empty()),
                "{name}: no {key}"
            );
        }
        let description = str_at(annotations, "description").unwrap_or("");
        assert!(
            description.matches('`').count() >= 2,
            "{name}: the description names no command to run: {description}"
        );
        assert!(
            str_at(annotations, "runbook").is_some_and(|r| r.starts_with("README: ")),
            "{name}: the runbook names a README section"
        );
        // ... and that section exists.
        let readme = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"),
        )
        .expect("README.md");
        let section = str_at(annotations, "runbook")
            .unwrap_or("")
            .trim_start_matches("README: ");
        assert!(
            readme
                .lines()
                .any(|l| l.starts_with('#') && l.trim_start_matches('#').trim() == section),
            "{name}: the README has no section {section:?}"
        );
    }
}

#[test]
fn every_alert_is_tested_firing_and_silent_on_a_healthy_cluster() {
    let alerts: BTreeSet<String> = alert_rules().into_iter().map(|r| r.0).collect();
    let doc = yaml("jenkins-ha.rules.test.yml");
    let tests = doc
        .get("tests")
        .and_then(|t| t.as_sequence())
        .expect("tests");
    let mut fired = BTreeSet::new();
    let mut healthy_silent = BTreeSet::new();
    for t in tests {
        let healthy = str_at(t, "name") == Some("a healthy cluster fires nothing");
        for case in t
            .get("alert_rule_test")
            .and_then(|a| a.as_sequence())
            .into_iter()
            .flatten()
        {
            let name = str_at(case, "alertname").expect("alertname").to_string();
            let expected = case
                .get("exp_alerts")
                .and_then(|e| e.as_sequence())
                .map_or(0, |e| e.len());
            if expected > 0 {
                assert!(!healthy, "the healthy cluster expects {name}");
                fired.insert(name);
            } else if healthy {
                healthy_silent.insert(name);
            }
        }
    }
    for a in &alerts {
        assert!(fired.contains(a), "no test shows {a} firing");
        assert!(
            healthy_silent.contains(a),
            "the healthy-cluster test does not check that {a} stays silent"
        );
    }
    assert!(
        fired.is_subset(&alerts),
        "tests of unknown alerts: {fired:?}"
    );
}

/// Every panel, the panels of rows included.
fn panels(dash: &serde_json::Value) -> Vec<&serde_json::Value> {
    let mut out = Vec::new();
    for p in dash["panels"].as_array().expect("panels") {
        out.push(p);
        if let Some(nested) = p["panels"].as_array() {
            out.extend(nested);
        }
    }
    out
}

/// A dashboard query with Grafana's variables replaced by values Prometheus accepts.
fn as_promql(expr: &str) -> String {
    expr.replace("$__rate_interval", "1m")
        .replace("$__interval", "1m")
        .replace("$__range", "1h")
        .replace("$job", "jenkins-ha")
        .replace("$instance", ".*")
}

#[test]
fn the_grafana_dashboard_is_valid_and_shows_only_and_every_listed_metric() {
    let m = metrics();
    let text = read("grafana-dashboard.json");
    let dash: serde_json::Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("grafana-dashboard.json: {e}"));
    // What an import into Grafana 9 or 10 needs.
    assert!(dash["title"].as_str().is_some_and(|t| !t.is_empty()));
    assert!(dash["uid"]
        .as_str()
        .is_some_and(|u| !u.is_empty() && u.len() <= 40));
    assert!(
        dash["schemaVersion"].as_u64().is_some_and(|v| v >= 36),
        "schemaVersion {} is older than Grafana 9's",
        dash["schemaVersion"]
    );
    let variables: BTreeSet<&str> = dash["templating"]["list"]
        .as_array()
        .expect("templating.list")
        .iter()
        .map(|v| v["name"].as_str().expect("variable name"))
        .collect();
    for v in ["datasource", "job", "instance"] {
        assert!(variables.contains(v), "no ${v} variable");
    }

    let mut exprs: Vec<(String, String)> = Vec::new();
    let mut ids = BTreeSet::new();
    for p in panels(&dash) {
        let title = p["title"].as_str().expect("panel title").to_string();
        assert!(
            p["id"].as_u64().is_some_and(|id| ids.insert(id)),
            "{title}: panel ids are unique numbers"
        );
        let kind = p["type"].as_str().expect("panel type");
        assert!(
            ["row", "stat", "timeseries", "state-timeline"].contains(&kind),
            "{title}: panel type {kind} (a core panel of Grafana 9+)"
        );
        let g = &p["gridPos"];
        let (x, w, h) = (g["x"].as_u64(), g["w"].as_u64(), g["h"].as_u64());
        assert!(
            matches!((x, w, h), (Some(x), Some(w), Some(h)) if w > 0 && h > 0 && x + w <= 24)
                && g["y"].as_u64().is_some(),
            "{title}: gridPos {g}"
        );
        if kind == "row" {
            continue;
        }
        assert_eq!(
            p["datasource"]["uid"], "${datasource}",
            "{title}: queries the chosen Prometheus"
        );
        let targets = p["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{title}: no query");
        let mut refs = BTreeSet::new();
        for t in targets {
            assert!(
                t["refId"]
                    .as_str()
                    .is_some_and(|r| refs.insert(r.to_string())),
                "{title}: refIds are unique"
            );
            let expr = t["expr"].as_str().expect("expr");
            assert!(
                expr.contains("$job"),
                "{title}: the query follows the cluster picked in $job: {expr}"
            );
            exprs.push((title.clone(), expr.to_string()));
        }
    }
    for a in dash["annotations"]["list"].as_array().expect("annotations") {
        if let Some(expr) = a["expr"].as_str() {
            exprs.push(("annotation".into(), expr.to_string()));
        }
    }

    let mut shown = BTreeSet::new();
    for (title, expr) in &exprs {
        for name in metric_names(expr) {
            let metric = listed(&m, &name)
                .unwrap_or_else(|| panic!("{title}: {name} is not in metrics.txt: {expr}"));
            shown.insert(metric.to_string());
        }
    }
    for v in dash["templating"]["list"].as_array().expect("variables") {
        if let Some(q) = v["query"]["query"].as_str() {
            // label_values(METRIC{...}, LABEL): the metric is the first argument.
            let inner = q
                .strip_prefix("label_values(")
                .and_then(|r| r.strip_suffix(')'))
                .expect("a label_values() variable");
            let metric = inner.split(['{', ',']).next().unwrap_or("").trim();
            assert!(
                listed(&m, metric).is_some(),
                "variable {}: {metric} is not in metrics.txt",
                v["name"]
            );
        }
    }
    let missing: Vec<&String> = m.keys().filter(|k| !shown.contains(*k)).collect();
    assert!(
        missing.is_empty(),
        "the dashboard does not show {missing:?}"
    );

    // Every query parses as PromQL: promtool checks them as recording rules.
    let dir = tempfile::tempdir().expect("temp dir");
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (n, (_, expr)) in exprs.iter().enumerate() {
        rules.push_str(&format!(
            "      - record: dashboard:query_{n}\n        expr: {}\n",
            serde_json::to_string(&as_promql(expr)).expect("a JSON string is a YAML string")
        ));
    }
    let file = dir.path().join("dashboard.rules.yml");
    std::fs::write(&file, rules).expect("write the queries");
    let out = Command::new(promtool())
        .args(["check", "rules"])
        .arg(&file)
        .output()
        .expect("run promtool");
    assert!(
        out.status.success(),
        "a dashboard query is not valid PromQL:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// One metric family as a scrape showed it: its type, its help, the label names of its samples
/// (`le` aside), and its samples (series, value).
#[derive(Debug, Default)]
struct Family {
    kind: String,
    help: String,
    labels: BTreeSet<String>,
    samples: Vec<(String, String)>,
}

/// The families of a `/metrics` answer, by the name metrics.txt uses. In OpenMetrics a counter
/// family is named without `_total` (its samples have it); in the text format its `# TYPE`
/// names the samples.
fn families(body: &str, openmetrics: bool) -> BTreeMap<String, Family> {
    let mut out: BTreeMap<String, Family> = BTreeMap::new();
    let mut current = String::new();
    for line in body.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').expect("a help text");
            current = name.to_string();
            out.entry(current.clone()).or_default().help = help.to_string();
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("a type");
            assert_eq!(
                name, current,
                "# TYPE {name} follows the # HELP of {current}"
            );
            out.entry(current.clone()).or_default().kind = kind.to_string();
        } else if line == "# EOF" {
            assert!(openmetrics, "# EOF in the text format");
        } else if line.starts_with('#') || line.is_empty() {
            panic!("unexpected line {line:?}");
        } else {
            let (series, value) = line.rsplit_once(' ').expect("a sample");
            let name = series.split('{').next().unwrap_or("");
            let family = out
                .get_mut(&current)
                .unwrap_or_else(|| panic!("{name} comes before any # TYPE"));
            let base = ["_bucket", "_sum", "_count", "_total"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .unwrap_or(name);
            assert!(
                name == current || base == current || base == current.trim_end_matches("_total"),
                "sample {name} under the family {current}"
            );
            if let Some((_, labels)) = series.split_once('{') {
                for pair in labels.trim_end_matches('}').split(',') {
                    let key = pair.split_once('=').expect("label=value").0;
                    if key != "le" {
                        family.labels.insert(key.to_string());
                    }
                }
            }
            family.samples.push((series.to_string(), value.to_string()));
        }
    }
    if openmetrics {
        // Back to the names PromQL queries: NAME_total for a counter.
        out = out
            .into_iter()
            .map(|(name, f)| {
                if f.kind == "counter" {
                    (format!("{name}_total"), f)
                } else {
                    (name, f)
                }
            })
            .collect();
    }
    out
}

/// `GET /metrics` of node `i` with `accept`: (Content-Type, body).
async fn scrape(c: &cluster::Cluster, i: usize, accept: Option<&str>) -> (String, String) {
    let url = format!("{}/metrics", c.api_url(i));
    let headers: Vec<(hyper::header::HeaderName, hyper::header::HeaderValue)> = accept
        .map(|a| {
            vec![(
                hyper::header::ACCEPT,
                hyper::header::HeaderValue::from_str(a).expect("an Accept value"),
            )]
        })
        .unwrap_or_default();
    let r = c
        .http
        .send(
            hyper::Method::GET,
            &url,
            &headers,
            bytes::Bytes::new(),
            Duration::from_secs(3),
        )
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    assert_eq!(r.status.as_u16(), 200, "GET {url}");
    (
        r.header("content-type").unwrap_or("").to_string(),
        String::from_utf8(r.body.to_vec()).expect("UTF-8 metrics"),
    )
}

/// `promtool check metrics` on `body`: what it printed, and whether it exited 0.
fn promtool_check_metrics(body: &str) -> (String, bool) {
    let mut child = Command::new(promtool())
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(body.as_bytes())
        .expect("feed promtool");
    let out = child.wait_with_output().expect("promtool's answer");
    (
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
        out.status.success(),
    )
}

/// The value of one series (`name{labels}` as printed) in a scrape.
fn value(families: &BTreeMap<String, Family>, family: &str, series: &str) -> Option<f64> {
    families
        .get(family)?
        .samples
        .iter()
        .find(|(s, _)| s == series)
        .and_then(|(_, v)| v.parse().ok())
}

/// What a user's Prometheus sees: both nodes of a running cluster export exactly the metrics of
/// metrics.txt (names, types, labels, help), whichever format they are asked for; the text
/// format passes `promtool check metrics` without a remark; every counter is there at 0 for
/// every label value known at start; the lease's calls are timed as they happen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_daemon_exports_exactly_the_listed_metrics_in_both_formats() {
    let (c, active) = cluster::Cluster::start_settled(cluster::Spec::default()).await;
    let standby = 1 - active;
    // Ten intervals of a settled cluster before the scrape: every node has read its lease
    // each tick by then (a node that settled last may have read it only a few times).
    tokio::time::sleep(c.spec.interval * 10).await;
    let listed = metrics();
    let sockets: Vec<String> = c
        .haproxies
        .iter()
        .map(|h| h.socket.display().to_string())
        .collect();
    for i in [active, standby] {
        let node = cluster::NAMES[i];
        let mut scrapes = Vec::new();
        for accept in [
            None,
            Some("text/plain"),
            Some("text/plain;version=0.0.4;q=1,*/*;q=0.1"),
        ] {
            let (content_type, body) = scrape(&c, i, accept).await;
            assert_eq!(
                content_type, "text/plain; version=0.0.4; charset=utf-8",
                "{node}, Accept {accept:?}"
            );
            let (said, ok) = promtool_check_metrics(&body);
            assert!(
                ok && said.trim().is_empty(),
                "promtool check metrics on {node}'s text output:\n{said}\n{body}"
            );
            scrapes.push((families(&body, false), body));
        }
        // What Prometheus 2.x sends.
        let (content_type, body) = scrape(
            &c,
            i,
            Some("application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"),
        )
        .await;
        assert_eq!(
            content_type, "application/openmetrics-text; version=1.0.0; charset=utf-8",
            "{node}"
        );
        assert!(body.ends_with("# EOF\n"), "{node}:\n{body}");
        scrapes.push((families(&body, true), body));

        for (exported, body) in &scrapes {
            let names: BTreeSet<&String> = exported.keys().collect();
            let want: BTreeSet<&String> = listed.keys().collect();
            assert_eq!(
                names, want,
                "{node} exports other metrics than metrics.txt:\n{body}"
            );
            for (name, m) in &listed {
                let f = &exported[name];
                assert_eq!(f.kind, m.kind, "{node}: the type of {name}");
                assert_eq!(f.help, m.help, "{node}: the help of {name}");
                let labels: BTreeSet<String> = m.labels.iter().cloned().collect();
                assert_eq!(f.labels, labels, "{node}: the labels of {name}\n{body}");
                assert!(!f.samples.is_empty(), "{node}: {name} has no sample");
            }
        }

        // Counters at 0 from the start for every label value known then (a standby has never
        // claimed nor written HAProxy nor reloaded for a promotion).
        let (text, _) = &scrapes[0];
        let version = env!("CARGO_PKG_VERSION");
        assert_eq!(
            value(
                text,
                "jenkins_ha_build_info",
                &format!("jenkins_ha_build_info{{version=\"{version}\"}}")
            ),
            Some(1.0)
        );
        assert_eq!(
            value(
                text,
                "jenkins_ha_interval_seconds",
                "jenkins_ha_interval_seconds"
            ),
            Some(0.2)
        );
        assert_eq!(
            value(
                text,
                "jenkins_ha_lease_timeout_seconds",
                "jenkins_ha_lease_timeout_seconds"
            ),
            Some(2.0)
        );
        assert_eq!(
            value(
                text,
                "jenkins_ha_timing_mismatch",
                "jenkins_ha_timing_mismatch"
            ),
            Some(0.0)
        );
        for op in ["read", "write", "claim"] {
            assert_eq!(
                value(
                    text,
                    "jenkins_ha_lease_errors_total",
                    &format!("jenkins_ha_lease_errors_total{{op=\"{op}\"}}")
                ),
                Some(0.0),
                "{node}: lease errors of {op}"
            );
        }
        for reason in [
            "first",
            "released",
            "lease_expired",
            "planned",
            "forced",
            "restart",
        ] {
            let n = value(
                text,
                "jenkins_ha_failovers_total",
                &format!("jenkins_ha_failovers_total{{reason=\"{reason}\"}}"),
            );
            let want = if i == active && reason == "first" {
                1.0
            } else {
                0.0
            };
            assert_eq!(n, Some(want), "{node}: failovers of {reason}");
        }
        for socket in &sockets {
            for family in [
                "jenkins_ha_haproxy_writes_total",
                "jenkins_ha_haproxy_write_errors_total",
            ] {
                let n = value(text, family, &format!("{family}{{socket=\"{socket}\"}}"));
                assert!(
                    n.is_some(),
                    "{node}: {family} of {socket}\n{}",
                    scrapes[0].1
                );
                if i == standby {
                    assert_eq!(n, Some(0.0), "{node}: {family} of {socket}");
                }
            }
        }
        for kind in ["item", "full", "full_promotion", "full_switchover"] {
            assert!(
                value(
                    text,
                    "jenkins_ha_jenkins_reloads_total",
                    &format!("jenkins_ha_jenkins_reloads_total{{kind=\"{kind}\"}}")
                )
                .is_some(),
                "{node}: reloads of {kind}"
            );
        }
        for kind in ["incremental", "full"] {
            assert!(
                value(
                    text,
                    "jenkins_ha_promotions_total",
                    &format!("jenkins_ha_promotions_total{{kind=\"{kind}\"}}")
                )
                .is_some(),
                "{node}: promotions of {kind}"
            );
        }
        // The lease is read every tick (and peeked at by the standby), and renewed by the holder.
        let reads = value(
            text,
            "jenkins_ha_lease_read_duration_seconds",
            "jenkins_ha_lease_read_duration_seconds_count",
        );
        assert!(
            reads.is_some_and(|n| n > 5.0),
            "{node}: {reads:?} lease reads"
        );
        let writes = value(
            text,
            "jenkins_ha_lease_write_duration_seconds",
            "jenkins_ha_lease_write_duration_seconds_count",
        );
        if i == active {
            assert!(
                writes.is_some_and(|n| n > 2.0),
                "{node}: {writes:?} lease writes"
            );
        }
    }
}
