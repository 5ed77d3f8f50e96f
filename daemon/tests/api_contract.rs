//! The OpenAPI document a node serves tells the truth. Requests generated from the
//! served document (its paths, parameters, bodies and their patterns and ranges) are
//! sent to a running renter node with a provider behind it: none is answered 5xx, none
//! that matches the document is refused for its shape (400), every 2xx JSON answer
//! matches its documented schema, and every server-sent event of an execution's log
//! matches the documented `LogEvent`.
//!
//! Seeded: `ORIEN_API_SEED=<n>` replays a run, `ORIEN_API_CASES=<n>` sets its length.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod support;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use orien_daemon::client::{encode_component as encode, encode_path};
use proptest::prelude::*;
use proptest::strategy::{Union, ValueTree};
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use reqwest::Method;
use serde_json::{Value, json};
use support::{NodeProcess, example_config, parse_sse};

const LONG: Duration = Duration::from_secs(90);

/// Values the generator mixes in for a schema component, so generated requests also
/// name things that exist (a live session, its execution, the provider's offer).
type Known = BTreeMap<&'static str, Vec<String>>;

/// Builds a strategy for the values `schema` admits. `doc` resolves `$ref`s.
fn strategy(schema: &Value, doc: &Value, known: &Known, depth: u32) -> BoxedStrategy<Value> {
    if let Some(reference) = schema["$ref"].as_str() {
        let name = reference.rsplit('/').next().unwrap();
        let target = strategy(&doc["components"]["schemas"][name], doc, known, depth);
        return match known.get(name) {
            Some(values) if !values.is_empty() => {
                let known: Vec<BoxedStrategy<Value>> = values
                    .iter()
                    .map(|v| Just(Value::String(v.clone())).boxed())
                    .collect();
                prop_oneof![Union::new(known), target].boxed()
            }
            _ => target,
        };
    }
    for combinator in ["oneOf", "anyOf"] {
        if let Some(items) = schema[combinator].as_array() {
            let branches: Vec<BoxedStrategy<Value>> = items
                .iter()
                .filter(|s| s["type"] != "null")
                .map(|s| strategy(s, doc, known, depth))
                .collect();
            return Union::new(branches).boxed();
        }
    }
    if let Some(values) = schema["enum"].as_array() {
        let values: Vec<BoxedStrategy<Value>> =
            values.iter().map(|v| Just(v.clone()).boxed()).collect();
        return Union::new(values).boxed();
    }
    // `type` is a name or a list of them (`["string", "null"]`); null is left out.
    let kind = match &schema["type"] {
        Value::String(kind) => kind.clone(),
        Value::Array(kinds) => kinds
            .iter()
            .filter_map(Value::as_str)
            .find(|k| *k != "null")
            .unwrap_or("null")
            .to_owned(),
        _ if schema.get("properties").is_some() => "object".into(),
        _ => "string".into(),
    };
    match kind.as_str() {
        "string" => match schema["pattern"].as_str() {
            Some(pattern) => {
                let inner = pattern.trim_start_matches('^').trim_end_matches('$');
                let max = schema["maxLength"]
                    .as_u64()
                    .map_or(usize::MAX, |m| m as usize);
                proptest::string::string_regex(inner)
                    .unwrap_or_else(|e| panic!("the document's pattern {pattern}: {e}"))
                    .prop_filter("longer than maxLength", move |s| s.len() <= max)
                    .prop_map(Value::String)
                    .boxed()
            }
            None => "[ -~]{0,12}".prop_map(Value::String).boxed(),
        },
        "integer" => {
            let min = schema["minimum"].as_i64().unwrap_or(0);
            let max = schema["maximum"].as_i64().unwrap_or(1 << 40);
            (min..=max).prop_map(|n| json!(n)).boxed()
        }
        "number" => (0.0..1e9f64).prop_map(|n| json!(n)).boxed(),
        "boolean" => any::<bool>().prop_map(Value::Bool).boxed(),
        "array" if depth < 3 => {
            proptest::collection::vec(strategy(&schema["items"], doc, known, depth + 1), 0..3)
                .prop_map(Value::Array)
                .boxed()
        }
        "object" if depth < 3 => object(schema, doc, known, depth),
        _ => Just(Value::Null).boxed(),
    }
}

/// An object with every required property and each optional one half the time; an
/// object without declared properties (a tool's arguments) gets a few of its own.
fn object(schema: &Value, doc: &Value, known: &Known, depth: u32) -> BoxedStrategy<Value> {
    let Some(properties) = schema["properties"].as_object() else {
        return proptest::collection::btree_map("[a-z]{1,8}", "[ -~]{0,8}", 0..3)
            .prop_map(|m| json!(m))
            .boxed();
    };
    let required: Vec<&str> = schema["required"]
        .as_array()
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let fields: Vec<BoxedStrategy<Option<(String, Value)>>> = properties
        .iter()
        .map(|(name, property)| {
            let name = name.clone();
            let value = strategy(property, doc, known, depth + 1);
            if required.contains(&name.as_str()) {
                value.prop_map(move |v| Some((name.clone(), v))).boxed()
            } else {
                proptest::option::of(value)
                    .prop_map(move |v| v.map(|v| (name.clone(), v)))
                    .boxed()
            }
        })
        .collect();
    fields
        .prop_map(|fields| Value::Object(fields.into_iter().flatten().collect()))
        .boxed()
}

fn sample(strategy: &BoxedStrategy<Value>, runner: &mut TestRunner) -> Value {
    draw(strategy, runner)
}

fn draw<S: Strategy>(strategy: &S, runner: &mut TestRunner) -> S::Value {
    strategy.new_tree(runner).unwrap().current()
}

fn text_of(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// One generated request.
#[derive(Debug)]
struct Generated {
    method: Method,
    path: String,
    headers: Vec<(String, String)>,
    json: Option<Value>,
    bytes: Option<Vec<u8>>,
}

impl Generated {
    /// The request in a few lines: long paths and bodies cut.
    fn brief(&self) -> String {
        let cut = |text: String| match text.char_indices().nth(400) {
            Some((end, _)) => format!("{}… ({} bytes)", &text[..end], text.len()),
            None => text,
        };
        format!(
            "{} {} headers {:?} json {} bytes {:?}",
            self.method,
            cut(self.path.clone()),
            self.headers,
            cut(self.json.as_ref().map(Value::to_string).unwrap_or_default()),
            self.bytes.as_ref().map(Vec::len)
        )
    }
}

fn generate(
    method: &str,
    template: &str,
    operation: &Value,
    doc: &Value,
    known: &Known,
    runner: &mut TestRunner,
) -> Generated {
    let mut path = template.to_owned();
    let mut query = Vec::new();
    let mut headers = Vec::new();
    for parameter in operation["parameters"].as_array().into_iter().flatten() {
        let name = parameter["name"].as_str().unwrap();
        let required = parameter["required"].as_bool().unwrap_or(false);
        if !required && !draw(&any::<bool>(), runner) {
            continue;
        }
        let value = text_of(&sample(
            &strategy(&parameter["schema"], doc, known, 0),
            runner,
        ));
        match parameter["in"].as_str().unwrap() {
            // A workspace path keeps its `/`s.
            "path" => path = path.replace(&format!("{{{name}}}"), &encode_path(&value)),
            "query" => query.push(format!("{name}={}", encode(&value))),
            "header" => headers.push((name.to_owned(), value)),
            other => panic!("a parameter in {other}"),
        }
    }
    if !query.is_empty() {
        path = format!("{path}?{}", query.join("&"));
    }
    let content = &operation["requestBody"]["content"];
    let json = content
        .get("application/json")
        .map(|c| sample(&strategy(&c["schema"], doc, known, 0), runner));
    let bytes = content
        .get("application/octet-stream")
        .map(|_| draw(&proptest::collection::vec(any::<u8>(), 0..2048), runner));
    Generated {
        method: method.to_uppercase().parse().unwrap(),
        path,
        headers,
        json,
        bytes,
    }
}

/// A validator of the document's schema `schema` (its `$ref`s resolved in `doc`).
fn validator(schema: &Value, doc: &Value) -> jsonschema::Validator {
    let mut root = schema.clone();
    root["components"] = doc["components"].clone();
    jsonschema::draft202012::new(&root).unwrap()
}

/// An SSE event as the document describes it: `{"event": name, "data": data}`, with
/// the data of `exit` read as JSON.
fn event_document(name: &str, data: &str) -> Value {
    let data = if name == "exit" {
        serde_json::from_str(data).unwrap_or(Value::String(data.to_owned()))
    } else {
        Value::String(data.to_owned())
    };
    json!({"event": name, "data": data})
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_generated_from_the_served_document_get_no_5xx_and_no_refusal_of_their_shape() {
    let bootstrap = NodeProcess::start(&[]);
    let config = example_config();
    let provider = NodeProcess::start_with(&[&bootstrap], &["--provider-config", &config]);
    // The provider's containers go with the test, however it ends.
    let _containers = Containers(provider.id.clone());
    let renter = NodeProcess::start(&[&bootstrap]);
    let path = format!("/v1/offers?tool=sha256&provider={}", provider.id);
    let offers = renter
        .wait_for(&path, LONG, |o| o.as_array().is_some_and(|a| !a.is_empty()))
        .await;
    let offer = offers[0]["id"].as_str().unwrap().to_owned();
    // The provider's signed profile reached the renter, which started after it.
    let providers = renter
        .wait_for("/v1/providers?tool=sha256", LONG, |p| {
            p["providers"].as_array().is_some_and(|a| !a.is_empty())
        })
        .await;
    assert_eq!(providers["providers"][0]["id"], provider.id.as_str());
    assert_eq!(
        providers["providers"][0]["display_name"],
        "An example provider"
    );
    let one = renter
        .get_json(&format!("/v1/providers/{}", provider.id))
        .await;
    assert!(
        one["tools"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["tool"] == "sha256"),
        "{one}"
    );
    // The same through the CLI: one line per provider, and one in full.
    let listed = support::run_ok(renter.data_dir(), &["providers", "--tool", "sha256"]);
    assert!(
        listed.contains(&provider.id) && listed.contains("An example provider"),
        "{listed}"
    );
    let full = support::run_ok(renter.data_dir(), &["providers", "--id", &provider.id]);
    assert!(
        full.contains("sha256") && full.contains("completed sessions"),
        "{full}"
    );

    // A live session with a file and a finished execution, for ids that exist.
    let session = renter
        .post_json("/v1/sessions", json!({"offer": offer, "budget": "0.5"}))
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let put = reqwest::Client::new()
        .put(format!(
            "{}/v1/sessions/{session}/files/data/in.txt",
            renter.api
        ))
        .bearer_auth(&renter.token)
        .body(b"known\n".to_vec())
        .send()
        .await
        .unwrap();
    assert!(put.status().is_success(), "{}", put.status());
    let exec = renter
        .post_json(
            &format!("/v1/sessions/{session}/executions"),
            json!({"args": {"file": "data/in.txt"}}),
        )
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    renter
        .wait_for(&format!("/v1/executions/{exec}"), LONG, |e| {
            e["state"] == "completed" || e["state"] == "failed"
        })
        .await;

    let doc = renter.get_json("/v1/openapi.json").await;
    let log_event = validator(&json!({"$ref": "#/components/schemas/LogEvent"}), &doc);
    // The live execution's log, as documented: output chunks, then its exit as JSON.
    let log = renter.get(&format!("/v1/executions/{exec}/logs")).await;
    assert!(log.status().is_success(), "{}", log.status());
    let events = parse_sse(&log.text().await.unwrap());
    assert_eq!(
        events.last().map(|(_, name, _)| name.as_str()),
        Some("exit"),
        "{events:?}"
    );
    for (_, name, data) in &events {
        let event = event_document(name, data);
        let errors: Vec<String> = log_event
            .iter_errors(&event)
            .map(|e| e.to_string())
            .collect();
        assert!(
            errors.is_empty(),
            "a log event outside its schema: {event}: {errors:?}"
        );
    }
    let known: Known = BTreeMap::from([
        ("Id", vec![session.clone(), exec.clone()]),
        ("OfferId", vec![offer.clone()]),
        ("ToolName", vec!["sha256".to_owned(), "wc".to_owned()]),
        ("PeerId", vec![provider.id.clone(), renter.id.clone()]),
        ("WorkspacePath", vec!["data/in.txt".to_owned()]),
    ]);
    let seed = env_u64("ORIEN_API_SEED").unwrap_or_else(rand_seed);
    let cases = env_u64("ORIEN_API_CASES").unwrap_or(2_000);
    let mut seed_bytes = [0u8; 32];
    seed_bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes),
    );
    let replay = format!(
        "replay: ORIEN_API_SEED={seed} ORIEN_API_CASES={cases} cargo test --workspace --locked --test api_contract"
    );

    let mut operations = Vec::new();
    for (template, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            operations.push((method.clone(), template.clone(), operation.clone()));
        }
    }
    // Closing the live session ends what the rest can do with it: closes come last,
    // once each.
    let (closes, operations): (Vec<_>, Vec<_>) = operations
        .into_iter()
        .partition(|(_, template, _)| template.ends_with("/close"));
    let schedule = (0..cases as usize)
        .map(|case| &operations[case % operations.len()])
        .chain(&closes);

    let started = Instant::now();
    let mut answered: BTreeMap<u16, u64> = BTreeMap::new();
    let mut events_checked = 0usize;
    // Paced under the API's rate limit (200 requests/s), so answers are the handlers'.
    let mut next = tokio::time::Instant::now();
    for (case, (method, template, operation)) in schedule.enumerate() {
        tokio::time::sleep_until(next).await;
        next += Duration::from_millis(6);
        let request = generate(method, template, operation, &doc, &known, &mut runner);
        let mut send = reqwest::Client::new()
            .request(
                request.method.clone(),
                format!("{}{}", renter.api, request.path),
            )
            .bearer_auth(&renter.token)
            .timeout(Duration::from_secs(120));
        for (name, value) in &request.headers {
            send = send.header(name, value);
        }
        if let Some(json) = &request.json {
            send = send.json(json);
        }
        if let Some(bytes) = &request.bytes {
            send = send.body(bytes.clone());
        }
        let response = send.send().await.unwrap();
        let status = response.status();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let text = response.text().await.unwrap();
        *answered.entry(status.as_u16()).or_default() += 1;
        assert!(
            !status.is_server_error() && status.as_u16() != 400,
            "case {case}: {} answered {status}: {text}\n{replay}",
            request.brief()
        );
        if status.is_success() && content_type.starts_with("application/json") {
            let documented =
                &operation["responses"][status.as_str()]["content"]["application/json"]["schema"];
            if !documented.is_null() {
                let body: Value = serde_json::from_str(&text).unwrap();
                let check = validator(documented, &doc);
                let errors: Vec<String> = check.iter_errors(&body).map(|e| e.to_string()).collect();
                assert!(
                    errors.is_empty(),
                    "case {case}: {}: the {status} answer does not match its schema: {errors:?}\n{body}\n{replay}",
                    request.brief()
                );
            }
        }
        if status.is_success() && content_type.starts_with("text/event-stream") {
            for (_, name, data) in parse_sse(&text) {
                let event = event_document(&name, &data);
                assert!(
                    log_event.is_valid(&event),
                    "case {case}: a log event outside its schema: {event}\n{replay}"
                );
                events_checked += 1;
            }
        }
    }
    eprintln!(
        "{cases} generated requests in {:?} (seed {seed}): answers by status {answered:?}, {events_checked} log events checked",
        started.elapsed()
    );
    assert!(
        answered.keys().any(|s| (200..300).contains(s)),
        "some generated requests succeed: {answered:?}"
    );

    // Close what the generated requests opened, so no container outlives the test.
    let sessions = renter.get_json("/v1/sessions").await;
    for s in sessions.as_array().unwrap() {
        if s["state"] == "active" {
            let id = s["id"].as_str().unwrap();
            let _ = renter
                .send(Method::POST, &format!("/v1/sessions/{id}/close"), None, &[])
                .await;
        }
    }
    drop(renter);
    drop(provider);
    drop(bootstrap);
}

/// Removes the containers of the provider `0` when dropped.
struct Containers(String);

impl Drop for Containers {
    fn drop(&mut self) {
        let _ = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "docker ps -aq --filter label=orien.node={} | xargs -r docker rm -f -v >/dev/null 2>&1",
                self.0
            ))
            .status();
    }
}

fn rand_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}
