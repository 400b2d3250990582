//! The `kart` binary, driven as a user drives it: as a process, over real
//! sockets, stopped with real signals.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use kart::SERVICE_NAMES as SERVICES;

fn kart() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_kart"));
    command
        .env_remove("KART_CONFIG")
        .env("KART__TELEMETRY__LOG_LEVEL", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

/// Every service on a port the OS picks.
fn on_free_ports(command: &mut Command) {
    for service in SERVICES {
        command.env(
            format!("KART__SERVICES__{}__PORT", service.to_uppercase()),
            "0",
        );
    }
}

/// Reads stdout lines until one satisfies `done`; returns all lines read.
async fn read_until(child: &mut Child, done: impl Fn(&str) -> bool) -> Vec<String> {
    let stdout = child.stdout.as_mut().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let mut seen = Vec::new();
    let read = async {
        while let Some(line) = lines.next_line().await.unwrap() {
            let finished = done(&line);
            seen.push(line);
            if finished {
                return;
            }
        }
    };
    if tokio::time::timeout(Duration::from_secs(60), read)
        .await
        .is_err()
    {
        panic!("kart did not get ready; it printed {seen:?}");
    }
    seen
}

fn signal(child: &Child, name: &str) {
    let pid = child.id().unwrap().to_string();
    let status = std::process::Command::new("kill")
        .args([&format!("-{name}"), &pid])
        .status()
        .unwrap();
    assert!(status.success());
}

/// Waits for exit; the issue asks for a clean exit within 5 seconds.
async fn exits_within_5s(child: &mut Child) -> ExitStatus {
    tokio::time::timeout(Duration::from_secs(5), child.wait())
        .await
        .expect("kart stops within 5 seconds")
        .unwrap()
}

async fn get(url: &str) -> reqwest::Response {
    reqwest::get(url)
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"))
}

/// The whole Kart in this process, embedded in `dir`, every port free.
async fn system_on_free_ports(dir: &std::path::Path) -> kart::System {
    let mut settings = kit::config::Settings::defaults(kit::config::Mode::Embedded);
    settings.data_dir = dir.to_owned();
    for name in SERVICES {
        settings
            .services
            .entry((*name).to_owned())
            .or_default()
            .port = Some(0);
    }
    kart::System::start(settings).await.unwrap()
}

/// What a failed start printed, and how it exited.
async fn run_to_failure(command: &mut Command) -> (ExitStatus, String) {
    let output = tokio::time::timeout(Duration::from_secs(30), command.output())
        .await
        .expect("kart gives up within 30 seconds")
        .unwrap();
    (
        output.status,
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn assert_one_line_error(stderr: &str, mentions: &[&str]) {
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line, got: {stderr}");
    assert!(lines[0].starts_with("error: "), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    for word in mentions {
        assert!(lines[0].contains(word), "`{word}` not in: {stderr}");
    }
}

/// The `  <service>  <url>` lines `kart up` prints once it is ready.
fn service_urls(lines: &[String]) -> Vec<(String, String)> {
    lines
        .iter()
        .filter_map(|l| {
            let mut parts = l.split_whitespace();
            let name = parts.next()?;
            let url = parts.next()?;
            url.starts_with("http://")
                .then(|| (name.to_owned(), url.to_owned()))
        })
        .collect()
}

#[tokio::test]
async fn kart_up_starts_every_service_and_stops_cleanly_on_ctrl_c() {
    let dir = tempfile::tempdir().unwrap();
    let mut command = kart();
    command.arg("up").arg("--data-dir").arg(dir.path());
    on_free_ports(&mut command);
    let mut child = command.spawn().unwrap();
    let lines = read_until(&mut child, |l| l.starts_with("Press Ctrl-C")).await;
    let urls = service_urls(&lines);
    let names: Vec<&str> = urls.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, SERVICES, "{lines:?}");
    for (name, url) in &urls {
        let response = get(&format!("{url}/healthz")).await;
        assert_eq!(response.status(), 200, "{name}");
        let response = get(&format!("{url}/readyz")).await;
        assert_eq!(response.status(), 200, "{name} ready");
        let metrics = get(&format!("{url}/metrics")).await.text().await.unwrap();
        assert!(
            metrics.contains(&format!("service=\"{name}\"")),
            "{name} metrics"
        );
    }
    let healthcheck = kart()
        .arg("healthcheck")
        .arg(format!("{}/readyz", urls[4].1))
        .output()
        .await
        .unwrap();
    assert!(
        healthcheck.status.success(),
        "kart healthcheck of a ready service"
    );
    let status: serde_json::Value = get(&format!("{}/api/v1/status", urls[0].1))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(status["ready"], true, "{status}");
    assert_eq!(status["services"].as_array().unwrap().len(), 7);

    // Each service keeps its own database file, beside the event log.
    for name in &SERVICES[1..] {
        assert!(dir.path().join(format!("{name}.db")).exists(), "{name}.db");
    }
    assert!(dir.path().join("bus.db").exists());

    signal(&child, "INT");
    let status = exits_within_5s(&mut child).await;
    assert!(status.success(), "{status:?}");

    let (status, stderr) = run_to_failure(
        kart()
            .arg("healthcheck")
            .arg(format!("{}/healthz", urls[0].1)),
    )
    .await;
    assert!(!status.success(), "nothing answers once stopped");
    assert_one_line_error(&stderr, &["unreachable"]);
}

/// What an operator exports before `docker compose up`: the variables the
/// Compose file requires (`${NAME:?message}`).
const OPERATOR_ENVIRONMENT: &[(&str, &str)] = &[(
    "KART_JWT_SECRET",
    "a-signing-key-an-operator-made-for-this-test",
)];

/// The environment `deploy/compose.yaml` gives `service`, with Compose's
/// `${NAME:-default}` and `${NAME:?message}` interpolation applied.
fn compose_environment(service: &str) -> Vec<(String, String)> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/compose.yaml");
    let mut compose: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    compose.apply_merge().unwrap();
    let mut environment = compose["services"][service]["environment"].clone();
    environment.apply_merge().unwrap();
    environment
        .as_mapping()
        .unwrap_or_else(|| panic!("compose: {service} has no environment"))
        .iter()
        .map(|(k, v)| {
            let value = match v {
                serde_yaml::Value::String(s) => s.clone(),
                other => serde_yaml::to_string(other).unwrap().trim().to_owned(),
            };
            // `${NAME:-default}` → default (optional variables are unset
            // here); `${NAME:?message}` → what the operator exported.
            let value = match value.strip_prefix("${").and_then(|v| v.strip_suffix('}')) {
                Some(inner) => match (inner.split_once(":-"), inner.split_once(":?")) {
                    (Some((_, default)), _) => default.to_owned(),
                    (None, Some((name, _))) => OPERATOR_ENVIRONMENT
                        .iter()
                        .find(|(key, _)| *key == name)
                        .unwrap_or_else(|| panic!("compose requires {name}: add it here"))
                        .1
                        .to_owned(),
                    (None, None) => String::new(),
                },
                None => value,
            };
            (k.as_str().unwrap().to_owned(), value)
        })
        .collect()
}

/// Distributed mode, started from the Compose file's environment: only the
/// container host names become this machine's (the test database server,
/// the test broker, loopback, the ports the OS gave each service), so what
/// Compose sets and what the suite runs cannot drift apart.
#[tokio::test]
async fn kart_serve_runs_each_service_on_postgres_and_the_broker_with_the_compose_environment() {
    let brokers = kit::testing::kafka_brokers();
    let run = kit::testing::unique("kart_test");
    let mut urls: Vec<(String, String)> = Vec::new();
    let mut children = Vec::new();
    // The gateway last: it is given where the others really listen.
    let order: Vec<&str> = SERVICES[1..]
        .iter()
        .chain(&SERVICES[..1])
        .copied()
        .collect();
    for service in order {
        let mut command = kart();
        command.arg("serve").arg(service);
        let environment = compose_environment(service);
        assert!(!environment.is_empty(), "{service}");
        for (key, value) in environment {
            let value = match key.as_str() {
                "KART__DATABASE__URL" => {
                    assert!(value.contains("{service}"), "a database per service");
                    kit::testing::postgres_url(&format!("{run}_{{service}}"))
                }
                "KART__HTTP__HOST" => "127.0.0.1".to_owned(),
                _ => {
                    let mut value = value.replace("kafka:9092", &brokers);
                    for (name, url) in &urls {
                        let compose_url = format!("http://{name}:");
                        if value.starts_with(&compose_url) {
                            value = url.clone();
                        }
                    }
                    value
                }
            };
            command.env(key, value);
        }
        on_free_ports(&mut command);
        let mut child = command.spawn().unwrap();
        let lines = read_until(&mut child, |l| l.contains("is serving at")).await;
        let url = lines.last().unwrap().rsplit(' ').next().unwrap().to_owned();
        urls.push((service.to_owned(), url));
        children.push((service, child));
    }
    for (service, url) in &urls {
        assert_eq!(
            get(&format!("{url}/healthz")).await.status(),
            200,
            "{service}"
        );
        assert_eq!(
            get(&format!("{url}/readyz")).await.status(),
            200,
            "{service} ready"
        );
    }
    // The gateway found every service where the rewritten Compose URLs said.
    let gateway = &urls.last().unwrap().1;
    let status: serde_json::Value = get(&format!("{gateway}/api/v1/status"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(status["ready"], true, "{status}");
    for (service, child) in &mut children {
        signal(child, "TERM");
        let status = exits_within_5s(child).await;
        assert!(status.success(), "{service}: {status:?}");
    }
}

#[tokio::test]
async fn kart_migrate_creates_and_migrates_every_service_database() {
    let run = kit::testing::unique("kart_test");
    let mut command = kart();
    command.arg("migrate").env(
        "KART__DATABASE__URL",
        kit::testing::postgres_url(&format!("{run}_{{service}}")),
    );
    let output = command.output().await.unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    for service in &SERVICES[1..] {
        assert!(stdout.contains(&format!("{service}: migrated")), "{stdout}");
    }
    // Twice is fine: nothing left to apply.
    let again = kart()
        .arg("migrate")
        .env(
            "KART__DATABASE__URL",
            kit::testing::postgres_url(&format!("{run}_{{service}}")),
        )
        .output()
        .await
        .unwrap();
    assert!(again.status.success());
}

#[tokio::test]
async fn an_unknown_service_is_refused_in_one_line() {
    let (status, stderr) = run_to_failure(kart().args(["serve", "shipping"])).await;
    assert!(!status.success());
    assert_one_line_error(&stderr, &["unknown service `shipping`", "orders"]);
}

#[tokio::test]
async fn an_unreachable_database_is_named_in_one_line() {
    let (status, stderr) = run_to_failure(
        kart()
            .args(["serve", "orders"])
            .env("KART__BUS__BROKERS", kit::testing::kafka_brokers())
            .env(
                "KART__DATABASE__URL",
                "postgres://kart:hunter2@127.0.0.1:1/kart_orders",
            )
            .env("KART__DATABASE__CONNECT_TIMEOUT_SECS", "2"),
    )
    .await;
    assert!(!status.success());
    assert_one_line_error(&stderr, &["orders", "database", "127.0.0.1:1"]);
    assert!(
        !stderr.contains("hunter2"),
        "the password never prints: {stderr}"
    );
}

#[tokio::test]
async fn a_malformed_broker_list_is_named_in_one_line() {
    let (status, stderr) = run_to_failure(
        kart()
            .args(["serve", "orders"])
            .env("KART__BUS__BROKERS", "127.0.0.1:9092,broker-without-port"),
    )
    .await;
    assert!(!status.success());
    assert_one_line_error(&stderr, &["bus.brokers", "broker-without-port"]);
}

#[tokio::test]
async fn an_unreachable_broker_is_named_in_one_line() {
    let (status, stderr) = run_to_failure(
        kart()
            .args(["serve", "gateway"])
            .env("KART__BUS__BROKERS", "127.0.0.1:1"),
    )
    .await;
    assert!(!status.success());
    assert_one_line_error(&stderr, &["Kafka", "127.0.0.1:1"]);
}

#[tokio::test]
async fn a_bad_config_value_is_named_by_its_key() {
    let (status, stderr) = run_to_failure(
        kart()
            .args(["up"])
            .env("KART__SERVICES__ORDERS__PORT", "eighty"),
    )
    .await;
    assert!(!status.success());
    assert_one_line_error(&stderr, &["services.orders.port"]);
}

#[tokio::test]
async fn the_whole_system_starts_in_process_on_free_ports() {
    let dir = tempfile::tempdir().unwrap();
    let system = system_on_free_ports(dir.path()).await;
    let gateway = system.url("gateway").unwrap();
    assert!(!gateway.ends_with(":8080"), "a free port, not the default");
    let status: serde_json::Value = get(&format!("{gateway}/api/v1/status"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(status["ready"], true, "{status}");
    system.stop().await;
    assert!(
        reqwest::get(format!("{gateway}/healthz")).await.is_err(),
        "stopped means stopped"
    );
}

#[tokio::test]
async fn request_logs_carry_the_service_the_request_id_and_the_callers_trace_id() {
    let dir = tempfile::tempdir().unwrap();
    let mut command = kart();
    command
        .arg("up")
        .arg("--data-dir")
        .arg(dir.path())
        .env("KART__TELEMETRY__LOG_LEVEL", "info")
        .env("KART__TELEMETRY__LOG_FORMAT", "json");
    on_free_ports(&mut command);
    let mut child = command.spawn().unwrap();
    // Read the log as it comes: a full pipe would stall the process.
    let mut stderr_pipe = child.stderr.take().unwrap();
    let log = tokio::spawn(async move {
        let mut log = String::new();
        tokio::io::AsyncReadExt::read_to_string(&mut stderr_pipe, &mut log)
            .await
            .unwrap();
        log
    });
    let lines = read_until(&mut child, |l| l.starts_with("Press Ctrl-C")).await;
    let orders = lines
        .iter()
        .find_map(|l| l.trim().strip_prefix("orders"))
        .unwrap()
        .trim()
        .to_owned();
    let response = reqwest::Client::new()
        .get(format!("{orders}/healthz"))
        .header("x-request-id", "req-from-the-test")
        .header(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.headers()["x-request-id"],
        "req-from-the-test",
        "echoed back"
    );

    signal(&child, "INT");
    assert!(exits_within_5s(&mut child).await.success());
    let stderr = log.await.unwrap();
    let request_log = stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|l| {
            l["message"] == "request finished" && l["span"]["request_id"] == "req-from-the-test"
        })
        .unwrap_or_else(|| panic!("no JSON request log in:\n{stderr}"));
    assert_eq!(request_log["span"]["service"], "orders");
    assert_eq!(
        request_log["span"]["trace_id"],
        "4bf92f3577b34da6a3ce929d0e0e4736"
    );
    assert_eq!(request_log["status"], 200);
}

#[tokio::test]
async fn kart_env_lists_what_a_deployment_of_a_service_must_set() {
    let orders = kart().args(["env", "orders"]).output().await.unwrap();
    assert!(orders.status.success());
    let orders = String::from_utf8_lossy(&orders.stdout);
    assert!(
        orders.lines().any(|l| l == "KART__DATABASE__URL"),
        "{orders}"
    );
    assert!(
        orders.lines().any(|l| l == "KART__BUS__BROKERS"),
        "{orders}"
    );

    let gateway = kart().args(["env", "gateway"]).output().await.unwrap();
    let gateway = String::from_utf8_lossy(&gateway.stdout);
    assert!(
        !gateway.contains("DATABASE"),
        "the gateway keeps nothing: {gateway}"
    );
    assert!(
        gateway.lines().any(|l| l == "KART__SERVICES__ORDERS__URL"),
        "{gateway}"
    );

    let (status, stderr) = run_to_failure(kart().args(["env", "shipping"])).await;
    assert!(!status.success());
    assert_one_line_error(&stderr, &["unknown service `shipping`"]);
}

#[tokio::test]
async fn every_service_answers_the_grpc_health_check_on_its_port() {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;

    let dir = tempfile::tempdir().unwrap();
    let system = system_on_free_ports(dir.path()).await;
    for name in SERVICES {
        let url = system.url(name).unwrap();
        let channel = tonic::transport::Channel::from_shared(url.clone())
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut client = HealthClient::new(channel);
        // The same trace context as on REST: gRPC metadata are HTTP/2 headers.
        let mut request = tonic::Request::new(HealthCheckRequest {
            service: String::new(),
        });
        request.metadata_mut().insert(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
                .parse()
                .unwrap(),
        );
        let response = client.check(request).await.unwrap().into_inner();
        assert_eq!(response.status(), ServingStatus::Serving, "{name}");
        // REST still answers on the same port.
        assert_eq!(get(&format!("{url}/healthz")).await.status(), 200, "{name}");
    }
    system.stop().await;
}

#[tokio::test]
async fn help_explains_the_commands() {
    let output = kart().arg("--help").output().await.unwrap();
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    for word in ["up", "serve", "migrate", "kart up", "KART__"] {
        assert!(help.contains(word), "`{word}` in help:\n{help}");
    }
}

#[tokio::test]
async fn kart_admin_create_makes_the_first_admin_without_a_default_password() {
    let dir = tempfile::tempdir().unwrap();
    let create = |password: &str| {
        let mut command = kart();
        command
            .args([
                "admin",
                "create",
                "--embedded",
                "--email",
                "Boss@Example.com",
            ])
            .arg("--data-dir")
            .arg(dir.path())
            .env("KART_ADMIN_PASSWORD", password);
        command
    };
    // The password policy holds for admins too, and a refusal is one line.
    let (status, stderr) = run_to_failure(&mut create("short")).await;
    assert!(!status.success());
    assert_one_line_error(&stderr, &["password"]);

    let output = create("a long admin passphrase").output().await.unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let said = String::from_utf8_lossy(&output.stdout);
    assert!(said.contains("boss@example.com created"), "{said}");
    assert!(
        !said.contains("a long admin passphrase"),
        "the password never prints"
    );
    let again = create("another passphrase entirely")
        .output()
        .await
        .unwrap();
    assert!(again.status.success());
    assert!(String::from_utf8_lossy(&again.stdout).contains("already an admin; nothing changed"));

    // The account works, with the first password, and is an admin.
    let system = system_on_free_ports(dir.path()).await;
    let gateway = system.url("gateway").unwrap();
    let client = reqwest::Client::new();
    let signin = |password: &'static str| {
        client
            .post(format!("{gateway}/api/v1/auth/signin"))
            .json(&serde_json::json!({"email": "boss@example.com", "password": password}))
            .send()
    };
    assert_eq!(
        signin("another passphrase entirely")
            .await
            .unwrap()
            .status(),
        401
    );
    let session: serde_json::Value = signin("a long admin passphrase")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(session["user"]["role"], "admin", "{session}");
    system.stop().await;
}

/// The text between `<!-- name:start -->` and `<!-- name:end -->` in the
/// README, inside its one fenced block.
fn readme_block(name: &str) -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md");
    let readme = std::fs::read_to_string(path).unwrap();
    let start = format!("<!-- {name}:start -->");
    let end = format!("<!-- {name}:end -->");
    let marked = readme
        .split_once(&start)
        .and_then(|(_, rest)| rest.split_once(&end))
        .unwrap_or_else(|| panic!("README marks no {name} block"))
        .0;
    let body = marked
        .trim()
        .strip_prefix("```sh")
        .and_then(|b| b.strip_suffix("```"))
        .unwrap_or_else(|| panic!("the {name} block is one ```sh fence"));
    body.to_owned()
}

/// The README's curl examples, run as written by bash against a fresh
/// `kart up` started the way the README says (with its first admin).
#[tokio::test]
async fn the_readmes_api_examples_run_as_written() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
    let email = "admin@example.com";
    let password = "a long admin passphrase";
    assert!(
        readme.contains(&format!("KART__AUTH__ADMIN_EMAIL={email}"))
            && readme.contains(&format!("KART__AUTH__ADMIN_PASSWORD='{password}'")),
        "the README starts Kart with the admin its examples sign in as"
    );
    let dir = tempfile::tempdir().unwrap();
    let mut command = kart();
    command
        .arg("up")
        .arg("--data-dir")
        .arg(dir.path())
        .env("KART__AUTH__ADMIN_EMAIL", email)
        .env("KART__AUTH__ADMIN_PASSWORD", password);
    on_free_ports(&mut command);
    let mut child = command.spawn().unwrap();
    let lines = read_until(&mut child, |l| l.starts_with("Press Ctrl-C")).await;
    let gateway = service_urls(&lines)
        .into_iter()
        .find(|(name, _)| name == "gateway")
        .unwrap()
        .1;

    let examples = readme_block("api-examples");
    let output = tokio::process::Command::new("bash")
        .args(["-euo", "pipefail", "-c", &examples])
        .env("KART", &gateway)
        .output()
        .await
        .expect("bash runs");
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the README's examples failed ({}):\n{printed}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    // What each step should have answered, in the order they ran.
    let mut rest = printed.as_ref();
    for expected in [
        r#""email":"ada@example.com""#,
        r#""display_name":"Ada""#,
        r#""payment_methods":["#,
        r#""last4":"4242""#,
        r#""category":"coffee""#,
        r#""name":"Ethiopia Yirgacheffe Beans""#,
        r#""sku":"BEANS-DECAF""#,
        r#""total":{"amount_minor":2980,"currency":"EUR"}"#,
        r#""history":["#,
        r#""sku":"MUG-ENAMEL""#,
        r#""on_hand":40"#,
        r#""reason":"first delivery""#,
    ] {
        let at = rest
            .find(expected)
            .unwrap_or_else(|| panic!("`{expected}` not printed next; printed:\n{printed}"));
        rest = &rest[at + expected.len()..];
    }
    signal(&child, "INT");
    assert!(exits_within_5s(&mut child).await.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kart_dlq_lists_and_replays_dead_letters_and_analytics_rebuilds() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = kit::config::Settings::defaults(kit::config::Mode::Embedded);
    settings.data_dir = dir.path().to_owned();
    for name in SERVICES {
        settings
            .services
            .entry((*name).to_owned())
            .or_default()
            .port = Some(0);
    }
    // A mail server that is not there, and one try: every mail dies.
    let closed_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let notifications = &mut settings.notifications;
    notifications.delivery = kit::config::DeliveryKind::Smtp;
    notifications.smtp.host = "127.0.0.1".into();
    notifications.smtp.port = closed_port;
    notifications.smtp.tls = kit::config::SmtpTls::None;
    notifications.max_attempts = 1;
    notifications.poll_ms = 50;
    let system = kart::System::start(settings).await.unwrap();
    let gateway = system.url("gateway").unwrap();
    let notifications_url = system.url("notifications").unwrap();
    let analytics_url = system.url("analytics").unwrap();
    let signup = reqwest::Client::new()
        .post(format!("{gateway}/api/v1/auth/signup"))
        .json(&serde_json::json!({"email": "dlq@example.com", "password": "correct horse battery", "display_name": "Dee"}))
        .send()
        .await
        .unwrap();
    assert_eq!(signup.status(), reqwest::StatusCode::CREATED);

    // The welcome mail becomes a dead letter; `kart dlq list` shows it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let listed = loop {
        let output = kart()
            .args(["dlq", "list", "--url", &notifications_url])
            .output()
            .await
            .unwrap();
        assert!(output.status.success(), "{output:?}");
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        if stdout.contains("welcome") {
            break stdout;
        }
        assert!(tokio::time::Instant::now() < deadline, "{stdout}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(listed.contains("1 dead letter(s)"), "{listed}");
    assert!(listed.contains("SMTP"), "the last error shows: {listed}");
    let id = listed
        .split_whitespace()
        .find(|w| w.starts_with("msg_"))
        .unwrap()
        .to_owned();

    let output = kart()
        .args(["dlq", "replay", "--url", &notifications_url, &id])
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{output:?}");
    assert!(stdout.contains(&format!("{id}  queued")), "{stdout}");

    let (status, stderr) =
        run_to_failure(kart().args(["dlq", "replay", "--url", &notifications_url])).await;
    assert!(!status.success());
    assert_one_line_error(&stderr, &["--all"]);
    let (status, stderr) =
        run_to_failure(kart().args(["dlq", "replay", "--url", &notifications_url, "msg_nope"]))
            .await;
    assert!(!status.success());
    assert_one_line_error(&stderr, &["do not exist"]);

    let output = kart()
        .args(["analytics", "rebuild", "--url", &analytics_url])
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{output:?}");
    assert!(stdout.contains("Rebuilt in"), "{stdout}");
    assert!(stdout.contains("0 orders created"), "{stdout}");

    let (status, stderr) =
        run_to_failure(kart().args(["dlq", "list", "--url", "http://127.0.0.1:9"])).await;
    assert!(!status.success());
    assert_one_line_error(&stderr, &["notifications", "does not answer"]);
    system.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kart_bench_checkout_and_browse_report_and_check_the_promises() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("checkout");
    let output = kart()
        .args([
            "bench",
            "checkout",
            "--orders",
            "40",
            "--shoppers",
            "4",
            "--concurrency",
            "4",
            "--max-secs",
            "120",
        ])
        .arg("--out")
        .arg(&out)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{output:?}");
    assert!(stdout.contains("settled orders/s"), "{stdout}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["paid"], 40, "{report:#}");
    assert_eq!(report["not_settled"], 0, "{report:#}");
    assert_eq!(report["promises"]["terminal"], 40, "{report:#}");
    assert_eq!(report["promises"]["stock_adds_up"], true, "{report:#}");
    assert!(report["settle"]["p99_ms"].as_f64().unwrap() > 0.0);
    assert!(report["cpu_seconds_per_1000"].as_f64().unwrap() > 0.0);
    assert!(report["peak_rss_mb"].as_f64().unwrap() > 0.0);
    for file in ["report.md", "latency.svg", "timeline.svg"] {
        let text = std::fs::read_to_string(out.join(file)).unwrap();
        assert!(!text.is_empty(), "{file}");
    }
    assert!(
        std::fs::read_to_string(out.join("latency.svg"))
            .unwrap()
            .starts_with("<svg")
    );

    let out = dir.path().join("browse");
    let output = kart()
        .args(["bench", "browse", "--requests", "300", "--concurrency", "8"])
        .arg("--out")
        .arg(&out)
        .output()
        .await
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["settled"], 300, "{report:#}");
    assert_eq!(report["errors"], serde_json::json!({}), "{report:#}");

    let (status, stderr) =
        run_to_failure(kart().args(["bench", "checkout", "--mode", "distributed"])).await;
    assert!(!status.success());
    assert_one_line_error(&stderr, &["--brokers"]);
}
