//! The API's OpenAPI document: served to anyone as OpenAPI 3.1 JSON, it lists
//! the contract of SPEC §7 and every route it lists answers as it says; then
//! schemathesis sends the API hostile input generated from it
//! (`tests/peers/hostile_http.sh`) and carteiro must neither fail nor fall.

use std::path::Path;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::peers::python;
use crate::helpers::*;

/// The calls of SPEC §7 that acceptance checks use.
const CONTRACT: &[(&str, &str)] = &[
    ("post", "/api/v1/login"),
    ("get", "/api/v1/settings/global"),
    ("put", "/api/v1/settings/global"),
    ("post", "/api/v1/companies"),
    ("get", "/api/v1/companies/{slug}/settings"),
    ("put", "/api/v1/companies/{slug}/settings"),
    ("get", "/api/v1/companies/{slug}/users/{user_id}/settings"),
    ("put", "/api/v1/companies/{slug}/users/{user_id}/settings"),
    ("get", "/api/v1/companies/{slug}/effective-settings"),
    ("post", "/api/v1/companies/{slug}/api-keys"),
    ("post", "/api/v1/test-connection"),
    ("post", "/api/v1/messages"),
    ("post", "/api/v1/messages/batch"),
    ("get", "/api/v1/messages/{id}"),
    ("post", "/api/v1/messages/{id}/cancel"),
];

/// The document as anyone gets it: no credential.
async fn document(app: &Carteiro) -> Value {
    let response = app.http.get(app.url("/api/v1/openapi.json")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let content_type = response.headers()["content-type"].to_str().unwrap().to_owned();
    assert_eq!(content_type, "application/json");
    serde_json::from_str(&response.text().await.unwrap()).expect("the document is JSON")
}

/// Every operation: method, path and the operation object.
fn operations(document: &Value) -> Vec<(String, String, Value)> {
    let mut all = Vec::new();
    for (path, item) in document["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().expect("a path item") {
            all.push((method.clone(), path.clone(), operation.clone()));
        }
    }
    all
}

#[tokio::test]
async fn the_document_is_openapi_3_1_and_lists_the_contract_with_its_credentials() {
    let app = Carteiro::start().await;
    let document = document(&app).await;
    assert_eq!(document["openapi"], "3.1.0");
    assert_eq!(document["info"]["title"], "carteiro");
    for (method, path) in CONTRACT {
        let operation = &document["paths"][path][method];
        assert!(operation.is_object(), "{method} {path} is not in the document");
        assert!(operation["responses"].as_object().is_some_and(|r| !r.is_empty()), "{method} {path}: no responses");
    }
    for scheme in ["admin_token", "api_key"] {
        let scheme = &document["components"]["securitySchemes"][scheme];
        assert_eq!((&scheme["type"], &scheme["scheme"]), (&json!("http"), &json!("bearer")));
    }
    let submit = &document["paths"]["/api/v1/messages"]["post"];
    assert_eq!(submit["security"], json!([{"api_key": []}]));
    assert_eq!(
        submit["requestBody"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/MessageIn"
    );
    assert!(submit["responses"]["202"].is_object());
    assert_eq!(document["paths"]["/api/v1/companies"]["post"]["security"], json!([{"admin_token": []}]));
    assert!(document["paths"]["/api/v1/login"]["post"]["security"].is_null());
}

/// A value for a path parameter: a company that exists, anything else unknown.
fn fill(path: &str) -> String {
    path.replace("{slug}", "acme").replace("{user_id}", "42").replace("{id}", "0").replace("{selector}", "s1")
}

#[tokio::test]
async fn every_documented_route_answers_an_anonymous_call_as_the_document_says() {
    let app = Carteiro::start().await;
    app.create_company("acme").await;
    let document = document(&app).await;
    let operations = operations(&document);
    assert!(operations.len() >= 34, "only {} operations in the document", operations.len());
    for (method, path, operation) in &operations {
        let mut request = app.http.request(method.to_uppercase().parse::<Method>().unwrap(), app.url(&fill(path)));
        if operation["requestBody"].is_object() {
            request = request.json(&json!({}));
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let body: Value = serde_json::from_str(&response.text().await.unwrap()).unwrap_or(Value::Null);
        assert!(!status.is_server_error(), "{method} {path}: {status} {body}");
        assert!(
            operation["responses"][status.as_str()].is_object(),
            "{method} {path} answered {status}, which the document does not list: {body}"
        );
        if operation["security"].is_array() {
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path} without a credential: {body}");
            assert_eq!(body["error"]["code"], "unauthorized", "{method} {path}");
        }
    }
}

#[tokio::test]
async fn a_path_segment_that_is_not_utf8_answers_the_json_404_not_a_text_400() {
    let app = Carteiro::start().await;
    let company = app.create_company("acme").await;
    let calls = [
        (Method::GET, "/api/v1/companies/%FF", app.token.as_str()),
        (Method::PUT, "/api/v1/companies/acme/users/%C0%AF/settings", app.token.as_str()),
        (Method::DELETE, "/api/v1/companies/acme/webhooks/%FF", app.token.as_str()),
        (Method::GET, "/api/v1/messages/%FF", company.key.as_str()),
        (Method::POST, "/api/v1/messages/%FF%FE/cancel", company.key.as_str()),
    ];
    for (method, path, bearer) in calls {
        let body = (method == Method::PUT).then(|| json!({}));
        let (status, answer) = app.call(method.clone(), path, Some(bearer), body).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}: {answer}");
        assert_eq!(answer["error"]["code"], "not_found", "{method} {path}: {answer}");
    }
}

#[tokio::test]
async fn schemathesis_finds_no_server_error_nor_any_answer_the_document_does_not_describe() {
    // A real SMTP server, so that the messages it submits are queued and sent.
    let peer = SmtpPeer::plain().await;
    let app = Carteiro::start().await;
    app.use_server(peer.port).await;
    let company = app.create_company("acme").await;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/hostile_http.sh");
    let scratch = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let run = tokio::process::Command::new("bash")
        .arg(script)
        .args([&app.base, &app.token, &company.key])
        .env("PYTHON", python())
        .current_dir(scratch.path())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(600), run).await.expect("schemathesis finishes").unwrap();
    let report = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "schemathesis found failures ({}):\n{report}", output.status);
    eprintln!("schemathesis ran in {:.1?}:\n{report}", started.elapsed());

    // Still up, and nothing panicked on the way.
    let health = app.http.get(app.url("/healthz")).send().await.expect("carteiro still answers");
    assert_eq!(health.status(), StatusCode::OK);
    assert_eq!(health.text().await.unwrap(), "ok");
    assert!(!app.logs().contains("panicked"), "carteiro panicked:\n{}", app.logs());
}
