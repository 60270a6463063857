//! The shipped alerts and dashboard (`deploy/`), checked with Debian's `prometheus`
//! package (`./scripts/setup-prometheus` installs it; missing, these tests fail): the
//! rules pass `promtool check rules`; every alert has `promtool test rules` fixtures
//! where it fires and where it stays quiet, and they pass; and a real Prometheus scraping
//! the real binary (on Redis, with a permanent budget and `[[clients]]`, as in
//! production) finds every series the rules and the dashboard name, and evaluates every
//! one of their expressions without an error.

mod common;

use std::{
    collections::BTreeSet,
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use common::{binary::Binary, now, redis_server::RedisServer, scan_xml, signed_query};
use sha2::{Digest, Sha256};
use tonic::Request;
use wechat_qr::pb::{self, create_ticket_request::Scene};

const APP: &str = "wxalerts0000000a01";
const SECRET: &str = "alerts-app-secret";
const TOKEN: &str = "alerts-webhook-token";
const CALLER: &str = "alerts-caller-token";

fn deploy(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy")
        .join(path)
}

fn promtool(args: &[&str]) -> String {
    let output = Command::new("promtool")
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("promtool runs (./scripts/setup-prometheus installs Debian's prometheus)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "promtool {args:?}:\n{text}");
    text
}

/// The alert names of `alerts.yml`.
fn alert_names(rules: &str) -> Vec<String> {
    rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
        .map(|name| name.trim().to_owned())
        .collect()
}

/// Every `expr:` of a rules file, block scalars (`expr: |`) joined.
fn rule_exprs(rules: &str) -> Vec<String> {
    let lines: Vec<&str> = rules.lines().collect();
    let mut exprs = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let Some(rest) = line.trim_start().strip_prefix("expr:") else {
            continue;
        };
        let rest = rest.trim();
        if rest != "|" {
            exprs.push(rest.to_owned());
            continue;
        }
        let indent = line.len() - line.trim_start().len();
        let block: Vec<&str> = lines[i + 1..]
            .iter()
            .take_while(|l| l.trim().is_empty() || l.len() - l.trim_start().len() > indent)
            .map(|l| l.trim())
            .collect();
        exprs.push(block.join(" ").trim().to_owned());
    }
    exprs
}

/// Every `expr` of the dashboard's panels.
fn dashboard_exprs(dashboard: &serde_json::Value) -> Vec<String> {
    let mut exprs = Vec::new();
    let mut stack = vec![dashboard];
    while let Some(value) = stack.pop() {
        match value {
            serde_json::Value::Object(map) => {
                if let Some(serde_json::Value::String(expr)) = map.get("expr") {
                    exprs.push(expr.clone());
                }
                stack.extend(map.values());
            }
            serde_json::Value::Array(items) => stack.extend(items),
            _ => {}
        }
    }
    exprs
}

/// The metric names an expression reads: every `wechat_qr_…` identifier, and `up`.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = expr.as_bytes();
    let ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b':';
    let mut i = 0;
    while i < bytes.len() {
        if ident(bytes[i]) && (i == 0 || !ident(bytes[i - 1])) {
            let end = (i..bytes.len())
                .find(|&j| !ident(bytes[j]))
                .unwrap_or(bytes.len());
            let word = &expr[i..end];
            if word.starts_with("wechat_qr_") || (word == "up" && expr[end..].starts_with('{')) {
                names.insert(word.to_owned());
            }
            i = end;
        } else {
            i += 1;
        }
    }
    names
}

#[test]
fn the_rules_pass_promtool_check() {
    let out = promtool(&["check", "rules", "deploy/prometheus/alerts.yml"]);
    let rules = std::fs::read_to_string(deploy("prometheus/alerts.yml")).unwrap();
    assert!(
        out.contains(&format!(
            "SUCCESS: {} rules found",
            alert_names(&rules).len()
        )),
        "{out}"
    );
}

#[test]
fn every_alert_fires_and_stays_quiet_in_promtool_fixtures() {
    let rules = std::fs::read_to_string(deploy("prometheus/alerts.yml")).unwrap();
    let names = alert_names(&rules);
    assert!(names.len() >= 10, "{names:?}");
    let mut fixtures: Vec<PathBuf> = std::fs::read_dir(deploy("prometheus/tests"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yml"))
        .collect();
    fixtures.sort();
    // Which alerts each fixture expects firing (`exp_alerts:` with entries) and quiet
    // (`exp_alerts: []`).
    let (mut firing, mut quiet) = (BTreeSet::new(), BTreeSet::new());
    for fixture in &fixtures {
        let text = std::fs::read_to_string(fixture).unwrap();
        let mut current = None;
        for line in text.lines().map(str::trim) {
            if let Some(name) = line.strip_prefix("alertname: ") {
                current = Some(name.to_owned());
            } else if line == "exp_alerts: []" {
                quiet.insert(current.clone().unwrap());
            } else if line == "exp_alerts:" {
                firing.insert(current.clone().unwrap());
            }
        }
    }
    for name in &names {
        assert!(firing.contains(name), "no fixture where {name} fires");
        assert!(quiet.contains(name), "no fixture where {name} stays quiet");
    }
    let mut args = vec!["test".to_owned(), "rules".to_owned()];
    args.extend(fixtures.iter().map(|p| p.display().to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = promtool(&args);
    assert_eq!(out.matches("SUCCESS").count(), fixtures.len(), "{out}");
}

/// A real Prometheus on a free loopback port with its own data directory, killed when
/// dropped.
struct Prometheus {
    child: std::process::Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    /// Scrapes `target` (host:port, `/metrics`) every second as job `wechat-qr`, with
    /// the shipped rules loaded. Prometheus takes no port 0, so a port the kernel just
    /// handed out is tried, and another if that was taken meanwhile.
    async fn start(target: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\nscrape_configs:\n  - job_name: wechat-qr\n    static_configs:\n      - targets: ['{target}']\n",
                deploy("prometheus/alerts.yml").display()
            ),
        )
        .unwrap();
        for _ in 0..10 {
            let port = TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let mut child = Command::new("prometheus")
                .arg(format!("--config.file={}", config.display()))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.path().join("tsdb").display()
                ))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("prometheus runs (./scripts/setup-prometheus installs it)");
            let url = format!("http://127.0.0.1:{port}");
            let deadline = Instant::now() + Duration::from_secs(30);
            // Exited: the port was taken meanwhile; try another.
            while child.try_wait().unwrap().is_none() {
                let ready = http()
                    .get(format!("{url}/-/ready"))
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success());
                if ready {
                    return Self {
                        child,
                        url,
                        _dir: dir,
                    };
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("prometheus on port {port} not ready within 30 s");
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        panic!("prometheus did not start on any of 10 free ports");
    }

    /// An instant query: `Ok(result)` or Prometheus's error.
    async fn query(&self, expr: &str) -> Result<Vec<serde_json::Value>, String> {
        let answer: serde_json::Value = http()
            .get(format!(
                "{}/api/v1/query?query={}",
                self.url,
                url::form_urlencoded::byte_serialize(expr.as_bytes()).collect::<String>()
            ))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if answer["status"] != "success" {
            return Err(answer.to_string());
        }
        Ok(answer["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default())
    }
}

fn as_caller<T>(message: T) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {CALLER}").parse().unwrap());
    request
}

fn http() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

#[tokio::test]
async fn a_real_prometheus_scraping_the_service_finds_every_series_of_the_rules_and_dashboard() {
    let rules = std::fs::read_to_string(deploy("prometheus/alerts.yml")).unwrap();
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(deploy("grafana/wechat-qr.json")).unwrap())
            .unwrap();
    let mut exprs = rule_exprs(&rules);
    assert_eq!(exprs.len(), alert_names(&rules).len(), "{exprs:#?}");
    exprs.extend(dashboard_exprs(&dashboard));
    let names: BTreeSet<String> = exprs.iter().flat_map(|e| metric_names(e)).collect();
    assert!(names.len() >= 20, "{names:?}");

    // The service as deployed: Redis, a permanent budget, callers that identify.
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("wechat-qr.toml");
    std::fs::write(
        &config_path,
        format!(
            r#"grpc_addr = "127.0.0.1:0"
http_addr = "127.0.0.1:0"
admin_addr = "127.0.0.1:0"
simulator_addr = "127.0.0.1:0"
data_dir = "{data}"
redis_url = "{redis}"
simulator = true

[[accounts]]
app_id = "{APP}"
app_secret = "{SECRET}"
token = "{TOKEN}"
permanent_budget = 10

[[clients]]
name = "alerts"
token_sha256 = "{caller}"
permanent = true
"#,
            data = dir.path().join("data").display(),
            redis = redis.url(),
            caller = hex::encode(Sha256::digest(CALLER.as_bytes())),
        ),
    )
    .unwrap();
    let binary = Binary::start(&config_path, &[]).await;
    let mut client = binary.client().await;
    let mut events = client
        .stream_events(as_caller(pb::StreamEventsRequest::default()))
        .await
        .unwrap()
        .into_inner();
    let ticket = client
        .create_ticket(as_caller(pb::CreateTicketRequest {
            scene: Some(Scene::SceneStr("alerts".into())),
            expire_seconds: 600,
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner()
        .ticket;
    client
        .create_ticket(as_caller(pb::CreateTicketRequest {
            scene: Some(Scene::SceneId(7)),
            permanent: true,
            ..Default::default()
        }))
        .await
        .unwrap();
    client
        .get_image(as_caller(pb::GetImageRequest {
            ticket,
            ..Default::default()
        }))
        .await
        .unwrap();
    let query = signed_query(TOKEN, &now().to_string(), "alerts-nonce");
    let pushed = http()
        .post(format!("{}?{query}", binary.webhook_url))
        .body(scan_xml("SCAN", "o-alerts", "alerts", "T-alerts", now()))
        .send()
        .await
        .unwrap();
    assert_eq!(pushed.status(), 200);
    assert_eq!(
        events
            .message()
            .await
            .unwrap()
            .unwrap()
            .event
            .unwrap()
            .openid,
        "o-alerts"
    );

    let target = binary.admin_url.trim_start_matches("http://").to_owned();
    let prometheus = Prometheus::start(&target).await;
    // Every series, as Prometheus has scraped it.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut missing: Vec<String> = names.iter().cloned().collect();
    while !missing.is_empty() {
        let mut still = Vec::new();
        for name in &missing {
            let found = prometheus
                .query(&format!("count({{__name__=\"{name}\"}})"))
                .await
                .unwrap();
            if found.is_empty() {
                still.push(name.clone());
            }
        }
        missing = still;
        if missing.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus never found {missing:?} scraping {target}:\n{}",
            binary.metrics().await
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Every expression evaluates (the dashboard's variables as Grafana fills them).
    for expr in &exprs {
        let expr = expr
            .replace("$__rate_interval", "1m")
            .replace("$instance", ".*")
            .replace("$app_id", ".*");
        if let Err(e) = prometheus.query(&expr).await {
            panic!("{expr}: {e}");
        }
    }
    // The rules loaded, and none of them fails to evaluate.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let answer: serde_json::Value = http()
            .get(format!("{}/api/v1/rules", prometheus.url))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let loaded: Vec<&serde_json::Value> = answer["data"]["groups"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|g| g["rules"].as_array().unwrap())
            .collect();
        assert_eq!(loaded.len(), alert_names(&rules).len());
        if loaded.iter().all(|r| r["health"] == "ok") {
            break;
        }
        assert!(
            Instant::now() < deadline && loaded.iter().all(|r| r["health"] != "err"),
            "{loaded:#?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // A healthy service sets off no alert.
    let firing = prometheus
        .query("ALERTS{alertstate=\"firing\"}")
        .await
        .unwrap();
    assert!(firing.is_empty(), "{firing:#?}");
    drop(prometheus);
    binary.stop().await;
    drop(redis);
}
