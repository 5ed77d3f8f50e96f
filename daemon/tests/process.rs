//! `orien-node` as users run it: separate processes, driven through the HTTP API.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod support;

use std::time::Duration;

use support::NodeProcess;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_start_connect_and_answer_through_the_api() {
    let bootstrap = NodeProcess::start(&[]);
    let node = NodeProcess::start(&[&bootstrap]);

    let health = reqwest::get(format!("{}/healthz", node.api)).await.unwrap();
    assert_eq!(health.status(), 200);
    let health: serde_json::Value = health.json().await.unwrap();
    assert_eq!(health["status"], "ok", "{health}");
    assert_eq!(health["active_sessions"], 0, "{health}");
    assert!(health["uptime_secs"].as_u64().is_some(), "{health}");
    let anonymous = reqwest::get(format!("{}/v1/node", node.api)).await.unwrap();
    assert_eq!(anonymous.status(), 401);
    assert_eq!(
        anonymous.headers()["content-type"],
        "application/problem+json"
    );

    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let info = loop {
        let info: serde_json::Value = node.get("/v1/node").await.json().await.unwrap();
        if info["peers"].as_u64() >= Some(1) || tokio::time::Instant::now() > deadline {
            break info;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(info["id"], node.id.as_str());
    assert!(
        info["peers"].as_u64() >= Some(1),
        "connected to the bootstrap node: {info}"
    );
    assert!(
        info["connected"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!(bootstrap.id)),
        "the bootstrap node among the connected peers: {info}"
    );

    let offers: serde_json::Value = node
        .get("/v1/offers?tool=sha256sum")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(offers, serde_json::json!([]));
    let bad = node.get("/v1/offers?max_price=abc").await;
    assert_eq!(bad.status(), 400);
    let metrics = node.get("/metrics").await.text().await.unwrap();
    assert!(metrics.contains("orien_network_peers"), "{metrics}");
    // libp2p's own families, named once: `libp2p_swarm_…`, never `libp2p_libp2p_…`.
    assert!(metrics.contains("# TYPE libp2p_swarm_"), "{metrics}");
    assert!(!metrics.contains("libp2p_libp2p_"), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_the_node_gracefully() {
    let mut node = NodeProcess::start(&[]);
    assert_eq!(node.get("/healthz").await.status(), 200);
    assert!(node.terminate(), "orien-node exits 0 on SIGTERM");
}

#[test]
fn the_api_refuses_a_public_address_without_the_explicit_flag() {
    let dir = tempfile::tempdir().unwrap();
    let bin = env!("CARGO_BIN_EXE_orien-node");
    assert!(
        std::process::Command::new(bin)
            .arg("--data-dir")
            .arg(dir.path())
            .arg("init")
            .status()
            .unwrap()
            .success()
    );
    let out = std::process::Command::new(bin)
        .arg("--data-dir")
        .arg(dir.path())
        .args([
            "run",
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--api",
            "0.0.0.0:0",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--api-allow-remote"));
}

/// Every route the running node documents, called the way a careless or hostile client
/// would: without a token, with a wrong one, and with malformed input. Each answer is a
/// problem document with a 4xx status, never a 5xx.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_route_refuses_bad_callers_with_a_4xx_problem() {
    let node = NodeProcess::start(&[]);
    let doc: serde_json::Value = node.get("/v1/openapi.json").await.json().await.unwrap();
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.len() >= 16, "{}", paths.len());
    let http = reqwest::Client::new();
    let mut checked = 0;
    for (path, item) in paths {
        for method in ["get", "post", "put"] {
            if item.get(method).is_none() {
                continue;
            }
            let public = matches!(path.as_str(), "/healthz" | "/readyz");
            // Malformed ids and paths, and bodies of the wrong shape.
            let uri = path
                .replace("{id}", "not-an-id")
                .replace("{path}", "..%2Fescape");
            let uri = if uri == "/v1/receipts" {
                format!("{uri}?session=zz")
            } else {
                uri
            };
            let request = |token: Option<&str>| {
                let mut r = http.request(
                    method.to_uppercase().parse().unwrap(),
                    format!("{}{uri}", node.api),
                );
                if let Some(token) = token {
                    r = r.bearer_auth(token);
                }
                if method != "get" {
                    r = r
                        .header("content-type", "application/json")
                        .body(r#"{"unexpected": true}"#);
                }
                r
            };
            if !public {
                for token in [None, Some("wrong-token-0123456789abcdef0123456789abcdef")] {
                    let response = request(token).send().await.unwrap();
                    assert_eq!(response.status(), 401, "{method} {uri} with {token:?}");
                    assert_eq!(
                        response.headers()["content-type"],
                        "application/problem+json"
                    );
                }
            }
            let response = request(Some(&node.token)).send().await.unwrap();
            let status = response.status();
            if public || path == "/v1/openapi.json" || path == "/metrics" {
                assert!(status.is_success(), "{method} {uri}: {status}");
            } else if !(path.starts_with("/v1/ledger")
                || path == "/v1/sessions" && method == "get"
                || path == "/v1/tools"
                || path == "/v1/node"
                || path == "/v1/offers"
                || path == "/v1/providers"
                || path == "/v1/executions" && method == "get"
                || path == "/v1/settlements" && method == "get"
                // Takes no input: any body is beside the point.
                || path == "/v1/dashboard/login-links")
            {
                assert!(status.is_client_error(), "{method} {uri}: {status}");
                let problem: serde_json::Value = response.json().await.unwrap();
                assert!(
                    problem["type"]
                        .as_str()
                        .unwrap()
                        .starts_with("urn:orien:problem:"),
                    "{method} {uri}: {problem}"
                );
            } else {
                assert!(!status.is_server_error(), "{method} {uri}: {status}");
            }
            checked += 1;
        }
    }
    assert!(checked >= 18, "{checked} operations checked");

    // Arguments that are not an object are refused here, not forwarded to a provider.
    let session = "00112233445566778899aabbccddeeff";
    let not_an_object = http
        .post(format!("{}/v1/sessions/{session}/executions", node.api))
        .bearer_auth(&node.token)
        .json(&serde_json::json!({ "args": "" }))
        .send()
        .await
        .unwrap();
    assert_eq!(not_an_object.status(), 400);
    let problem: serde_json::Value = not_an_object.json().await.unwrap();
    assert!(problem.to_string().contains("args"), "{problem}");
    // The scheme of `Authorization` is case-insensitive.
    let lowercase = http
        .get(format!("{}/v1/node", node.api))
        .header("authorization", format!("bearer {}", node.token))
        .send()
        .await
        .unwrap();
    assert_eq!(lowercase.status(), 200);
}

/// `config.toml` fills what flags and the environment leave unset, and a typo in it
/// stops the node with the key named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_config_file_is_layered_under_flags_and_typos_are_named() {
    let bootstrap = NodeProcess::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let bin = env!("CARGO_BIN_EXE_orien-node");
    let init = std::process::Command::new(bin)
        .arg("--data-dir")
        .arg(dir.path())
        .args(["init", "--role", "renter"])
        .output()
        .unwrap();
    assert!(init.status.success());
    let template = std::fs::read_to_string(dir.path().join("config.toml")).unwrap();
    assert!(
        template.contains("# provider_config"),
        "a renter's template leaves the whitelist out"
    );
    // The file names the bootstrap peer (no flag does) and a listen address (the
    // harness's --listen flag wins over it).
    std::fs::write(
        dir.path().join("config.toml"),
        format!(
            "bootstrap = [\"{}\"]\nlisten = [\"/ip4/127.0.0.1/tcp/1\"]\n",
            bootstrap.listen[0]
        ),
    )
    .unwrap();
    let node = NodeProcess::start_in(dir, &[], &[]);
    assert!(
        node.listen.iter().all(|a| !a.contains("/tcp/1/")),
        "{:?}",
        node.listen
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let info: serde_json::Value = node.get("/v1/node").await.json().await.unwrap();
        if info["peers"].as_u64() >= Some(1) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never reached the bootstrap from the file"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A file the node refuses to run with: what it says on stderr.
    let typo = tempfile::tempdir().unwrap();
    let refused = |name: &str, text: &str| {
        let file = typo.path().join(name);
        std::fs::write(&file, text).unwrap();
        let out = std::process::Command::new(bin)
            .arg("--data-dir")
            .arg(typo.path())
            .arg("--config")
            .arg(&file)
            .args(["run", "--api", "127.0.0.1:0"])
            .output()
            .unwrap();
        assert!(!out.status.success(), "{name} was accepted");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let err = refused("broken.toml", "bootstrapp = []\n");
    assert!(
        err.contains("bootstrapp") && err.contains("broken.toml"),
        "{err}"
    );
    // A connection budget too small for gossip is refused, with the key and the fix.
    let err = refused("few.toml", "max_peers = 6\n");
    assert!(
        err.contains("max_peers") && err.contains("12 or more"),
        "{err}"
    );
}

/// `tools prepare` builds a missing `orien/<name>` image with the recipe beside the
/// config (`images/<name>/build`), then finds it ready and leaves it alone.
#[test]
fn tools_prepare_builds_a_missing_image_with_its_recipe_then_finds_it_ready() {
    struct RemoveImage(String);
    impl Drop for RemoveImage {
        fn drop(&mut self) {
            let _ = std::process::Command::new("docker")
                .args(["rmi", "-f", &self.0])
                .output();
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let configs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs");
    std::fs::create_dir_all(dir.path().join("images/busybox")).unwrap();
    std::fs::copy(
        configs.join("images/busybox/build"),
        dir.path().join("images/busybox/build"),
    )
    .unwrap();
    let image = format!("orien/busybox:prepare-test-{}", std::process::id());
    let config = std::fs::read_to_string(configs.join("provider.example.toml"))
        .unwrap()
        .replace("orien/busybox:1", &image);
    let file = dir.path().join("provider.toml");
    std::fs::write(&file, config).unwrap();
    let _cleanup = RemoveImage(image.clone());
    let prepare = || {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_orien-node"))
            .args(["--json", "tools", "prepare"])
            .arg(&file)
            .env("ORIEN_LOG", "error")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(report.as_array().unwrap().len(), 1, "{report}");
        report[0].clone()
    };

    let first = prepare();
    assert_eq!(first["prepared"], "built", "{first}");
    assert_eq!(first["image"], image.as_str());
    assert_eq!(first["tools"].as_array().unwrap().len(), 4, "{first}");
    let inspect = std::process::Command::new("docker")
        .args(["image", "inspect", "--format", "{{.Id}}", &image])
        .output()
        .unwrap();
    assert!(inspect.status.success(), "the image exists after prepare");
    assert_eq!(
        String::from_utf8_lossy(&inspect.stdout).trim(),
        first["digest"].as_str().unwrap()
    );

    let second = prepare();
    assert_eq!(second["prepared"], "ready", "{second}");
    assert_eq!(second["digest"], first["digest"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_shows_the_operators_controls_of_peers() {
    let other = NodeProcess::start(&[]);
    let node = NodeProcess::start_with(
        &[&other],
        &[
            "--deny-renter",
            &other.id,
            "--allow-provider",
            &other.id,
            "--max-opens-per-minute-per-peer",
            "7",
        ],
    );
    let status = support::run_ok(node.data_dir(), &["status"]);
    assert!(
        status.contains(&format!("renters  anyone; denied: {};", other.id)),
        "{status}"
    );
    assert!(status.contains("7 opens a minute each"), "{status}");
    assert!(
        status.contains(&format!("providers only {}; denied: none", other.id)),
        "{status}"
    );
    let info: serde_json::Value = node.get("/v1/node").await.json().await.unwrap();
    assert_eq!(
        info["operator"]["deny_renters"][0],
        other.id.as_str(),
        "{info}"
    );
    assert_eq!(
        info["operator"]["max_opens_per_minute_per_peer"], 7,
        "{info}"
    );
}

#[test]
fn doctor_checks_the_provider_host_and_says_how_to_fix_what_fails() {
    let dir = tempfile::tempdir().unwrap();
    let example = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../configs/provider.example.toml");
    // This machine: the engine answers and the example tools' images are built.
    let report = support::run_ok(
        dir.path(),
        &[
            "doctor",
            "--provider-config",
            example.to_str().unwrap(),
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--api",
            "127.0.0.1:0",
        ],
    );
    for line in ["ok   engine", "ok   images", "disk", "ok   ports", "clock"] {
        assert!(report.contains(line), "{line}: {report}");
    }
    // A port another process holds is named, with how to find the owner.
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    let json = support::run_ok(
        dir.path(),
        &[
            "--json",
            "doctor",
            "--provider-config",
            example.to_str().unwrap(),
            "--listen",
            &format!("/ip4/127.0.0.1/tcp/{port}"),
            "--api",
            "127.0.0.1:0",
        ],
    );
    let findings: serde_json::Value = serde_json::from_str(&json).unwrap();
    let checks: Vec<&str> = findings
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["check"].as_str().unwrap())
        .collect();
    for check in [
        "engine",
        "seccomp",
        "cgroup freezer",
        "images",
        "disk",
        "clock",
        "ports",
    ] {
        assert!(checks.contains(&check), "{check}: {checks:?}");
    }
    let in_use = findings
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["check"] == "ports" && f["severity"] == "warn")
        .unwrap_or_else(|| panic!("the busy port is named: {findings}"));
    assert!(
        in_use["detail"]
            .as_str()
            .unwrap()
            .contains(&port.to_string()),
        "{in_use}"
    );
    drop(busy);
    for finding in findings.as_array().unwrap() {
        assert!(
            finding["severity"] == "ok" || finding["fix"].is_string(),
            "every problem has a fix: {finding}"
        );
    }

    // An engine that is not there: the provider cannot run, and the fix says why.
    let broken = dir.path().join("broken.toml");
    let text = std::fs::read_to_string(&example)
        .unwrap()
        .replace("/var/run/docker.sock", "/nonexistent/docker.sock");
    std::fs::write(&broken, text).unwrap();
    let out = std::process::Command::new(support::binary())
        .arg("--data-dir")
        .arg(dir.path())
        .args(["doctor", "--provider-config", broken.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success(), "a failed check fails the command");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("FAIL engine"), "{stdout}");
    assert!(stdout.contains("fix: start the engine"), "{stdout}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("1 check(s) failed"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_signs_a_browser_in_with_a_one_time_link_and_refuses_rebound_hosts() {
    let node = NodeProcess::start_with(&[], &["--api-host", "node.lan"]);
    let link: serde_json::Value =
        serde_json::from_str(&support::run_ok(node.data_dir(), &["--json", "dashboard"])).unwrap();
    let url = link["url"].as_str().unwrap();
    assert!(
        url.starts_with(&format!("{}/login?code=", node.api)),
        "{link}"
    );
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();

    // The page is served to anyone; it holds no data.
    let page = browser.get(format!("{}/", node.api)).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(
        page.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("default-src 'none'")
    );

    let signed_in = browser.get(url).send().await.unwrap();
    assert_eq!(signed_in.status(), 303);
    let cookie = signed_in.headers()["set-cookie"].to_str().unwrap();
    let cookie = cookie.split(';').next().unwrap().to_owned();
    assert_eq!(
        browser.get(url).send().await.unwrap().status(),
        401,
        "used once"
    );

    let address = node.api.trim_start_matches("http://").to_owned();
    let port = address.rsplit_once(':').unwrap().1.to_owned();
    let node_info = |host: &str| {
        browser
            .get(format!("{}/v1/node", node.api))
            .header("cookie", cookie.clone())
            .header("host", format!("{host}:{port}"))
            .send()
    };
    let own = browser
        .get(format!("{}/v1/node", node.api))
        .header("cookie", cookie.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(own.status(), 200);
    assert_eq!(node_info("node.lan").await.unwrap().status(), 200);
    // DNS rebinding: the same socket under another name.
    let rebound = node_info("evil.example").await.unwrap();
    assert_eq!(rebound.status(), 403);
    let problem: serde_json::Value = rebound.json().await.unwrap();
    assert!(
        problem["detail"].as_str().unwrap().contains("api_hosts"),
        "{problem}"
    );

    // Another site's page cannot make the browser settle or fund.
    let forged = browser
        .post(format!("{}/v1/settlements", node.api))
        .header("cookie", cookie.clone())
        .header("origin", "http://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);
    let own_origin = browser
        .post(format!("{}/v1/settlements", node.api))
        .header("cookie", cookie.clone())
        .header("origin", format!("http://{address}"))
        .send()
        .await
        .unwrap();
    assert_eq!(own_origin.status(), 409, "past the guard: no chain here");
}
