//! Who may do what, route by route: every route of the admin API, of the
//! sending API and of the console, called as each role (nobody, an API key,
//! the administrator of another company, of the company, of the platform).
//! Nobody reads or changes what is not theirs: another company's things
//! answer 404 as if they did not exist, the platform's 403, and a refused
//! call changes nothing.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::app::{ADMIN_PASSWORD, system_message};
use crate::helpers::console::Browser;
use crate::helpers::*;

/// Whose a route is: acme's (its administrators and the platform's) or the platform's alone.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Reach {
    Acme,
    Platform,
}

/// An admin API route, called on acme's things.
struct Call {
    method: Method,
    path: String,
    /// The body; `ROLE` in it is replaced by the caller's name, so that what each creates is its own.
    body: Option<Value>,
    reach: Reach,
    /// Deletes what it names: called once, by acme's administrator, after everything else.
    destructive: bool,
}

fn call(method: Method, path: &str, body: Option<Value>, reach: Reach) -> Call {
    Call { method, path: path.to_owned(), body, reach, destructive: false }
}

fn deleting(path: &str) -> Call {
    Call { method: Method::DELETE, path: path.to_owned(), body: None, reach: Reach::Acme, destructive: true }
}

/// Acme's things that the routes name.
struct Acme {
    company: Company,
    message: String,
    webhook: String,
    api_key: String,
}

fn admin_routes(acme: &Acme) -> Vec<Call> {
    let (message, webhook, key) = (&acme.message, &acme.webhook, &acme.api_key);
    use Reach::*;
    vec![
        call(Method::GET, "/api/v1/companies/acme", None, Acme),
        call(Method::GET, "/api/v1/companies/acme/settings", None, Acme),
        call(
            Method::PUT,
            "/api/v1/companies/acme/settings",
            Some(json!({"policy": {"default_sender_name": "ROLE"}})),
            Acme,
        ),
        call(Method::GET, "/api/v1/companies/acme/users/42/settings", None, Acme),
        call(
            Method::PUT,
            "/api/v1/companies/acme/users/42/settings",
            Some(json!({"policy": {"send_as_others": "rewrite"}})),
            Acme,
        ),
        call(Method::GET, "/api/v1/companies/acme/effective-settings?user=42", None, Acme),
        call(Method::GET, "/api/v1/companies/acme/api-keys", None, Acme),
        call(Method::POST, "/api/v1/companies/acme/api-keys", Some(json!({"name": "ROLE"})), Acme),
        call(Method::GET, "/api/v1/companies/acme/dkim-keys", None, Acme),
        call(
            Method::POST,
            "/api/v1/companies/acme/dkim-keys",
            Some(json!({"selector": "ROLE", "domain": "acme.example"})),
            Acme,
        ),
        call(Method::GET, "/api/v1/companies/acme/webhooks", None, Acme),
        call(
            Method::POST,
            "/api/v1/companies/acme/webhooks",
            Some(json!({"url": "https://hooks.acme.example/ROLE"})),
            Acme,
        ),
        call(Method::GET, &format!("/api/v1/companies/acme/webhooks/{webhook}/deliveries"), None, Acme),
        call(Method::GET, "/api/v1/companies/acme/messages", None, Acme),
        call(Method::GET, &format!("/api/v1/companies/acme/messages/{message}"), None, Acme),
        call(Method::GET, &format!("/api/v1/companies/acme/messages/{message}/raw"), None, Acme),
        call(Method::POST, "/api/v1/test-connection", Some(json!({"company": "acme", "to": "ROLE@example.com"})), Acme),
        call(Method::GET, "/api/v1/audit?company=acme", None, Acme),
        call(Method::GET, "/api/v1/settings/global", None, Platform),
        call(Method::PUT, "/api/v1/settings/global", None, Platform),
        call(Method::POST, "/api/v1/companies", Some(json!({"slug": "new-ROLE", "name": "New"})), Platform),
        call(
            Method::POST,
            "/api/v1/companies/acme/admins",
            Some(json!({"username": "ROLE.acme", "password": "a-long-enough-password"})),
            Platform,
        ),
        call(Method::POST, "/api/v1/test-connection", Some(json!({"to": "ROLE@example.com"})), Platform),
        call(Method::GET, "/api/v1/audit", None, Platform),
        deleting(&format!("/api/v1/companies/acme/api-keys/{key}")),
        deleting("/api/v1/companies/acme/dkim-keys/s1"),
        deleting(&format!("/api/v1/companies/acme/webhooks/{webhook}")),
    ]
}

/// The callers of the admin API: a name, and the bearer token they send (none: anonymous).
struct Caller {
    name: &'static str,
    bearer: Option<String>,
}

async fn company_admin(app: &Carteiro, slug: &str) -> (String, String) {
    let username = format!("gerente.{slug}");
    let password = format!("senha-do-gerente-{slug}");
    let (status, body) = app
        .admin(
            Method::POST,
            &format!("/api/v1/companies/{slug}/admins"),
            Some(json!({"username": username, "password": password})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    (username, password)
}

/// Everything a refused call could change, read as the platform.
async fn snapshot(app: &Carteiro, acme: &Acme) -> Vec<Value> {
    let mut seen = Vec::new();
    for path in [
        "/api/v1/settings/global",
        "/api/v1/companies",
        "/api/v1/companies/acme/settings",
        "/api/v1/companies/acme/users/42/settings",
        "/api/v1/companies/acme/api-keys",
        "/api/v1/companies/acme/dkim-keys",
        "/api/v1/companies/acme/webhooks",
        &format!("/api/v1/companies/acme/messages/{}", acme.message),
    ] {
        let (status, body) = app.admin(Method::GET, path, None).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
        seen.push(body);
    }
    seen
}

/// Two companies, an administrator of each, and acme's things: a sent message, a webhook, a DKIM key, a spare API key.
async fn two_companies() -> (Carteiro, Acme, Company, [(String, String); 2], SmtpSink) {
    let app = Carteiro::start().await;
    let sink = SmtpSink::start().await;
    app.use_server(sink.port).await;
    let company = app.create_company("acme").await;
    let beta = app.create_company("beta").await;
    let admins = [company_admin(&app, "acme").await, company_admin(&app, "beta").await];
    let message = app.send(&company, system_message(&["cliente@example.com"])).await;
    app.wait_for_status(&company, &message, "sent", std::time::Duration::from_secs(20)).await;
    let (_, webhook) = app
        .admin(Method::POST, "/api/v1/companies/acme/webhooks", Some(json!({"url": "https://hooks.acme.example/"})))
        .await;
    let (_, dkim) = app
        .admin(
            Method::POST,
            "/api/v1/companies/acme/dkim-keys",
            Some(json!({"selector": "s1", "domain": "acme.example"})),
        )
        .await;
    assert!(dkim["selector"] == "s1", "{dkim}");
    let (_, key) = app.admin(Method::POST, "/api/v1/companies/acme/api-keys", Some(json!({"name": "spare"}))).await;
    let acme = Acme {
        company,
        message,
        webhook: webhook["id"].as_str().unwrap().to_owned(),
        api_key: key["id"].as_str().unwrap().to_owned(),
    };
    (app, acme, beta, admins, sink)
}

async fn call_as(app: &Carteiro, caller: &Caller, call: &Call, global: &Value) -> (StatusCode, Value) {
    let body = match (&call.body, call.method == Method::PUT && call.path.ends_with("/settings/global")) {
        // The global level written back as it is: allowed or not, nothing changes.
        (_, true) => Some(global.clone()),
        (Some(body), _) => Some(serde_json::from_str(&body.to_string().replace("ROLE", caller.name)).unwrap()),
        (None, _) => None,
    };
    app.call(call.method.clone(), &call.path, caller.bearer.as_deref(), body).await
}

#[tokio::test]
async fn every_admin_route_answers_each_role_as_its_reach_says_and_a_refusal_changes_nothing() {
    let (app, acme, _beta, [(acme_user, acme_password), (beta_user, beta_password)], _sink) = two_companies().await;
    let acme_admin = app.login(&acme_user, &acme_password).await.unwrap();
    let beta_admin = app.login(&beta_user, &beta_password).await.unwrap();
    let global = app.admin(Method::GET, "/api/v1/settings/global", None).await.1;
    let routes = admin_routes(&acme);
    let anonymous = Caller { name: "anonymous", bearer: None };
    let api_key = Caller { name: "apikey", bearer: Some(acme.company.key.clone()) };
    let wrong_token = Caller { name: "forged", bearer: Some("not-a-token".to_owned()) };
    let beta = Caller { name: "beta", bearer: Some(beta_admin) };
    let acme_caller = Caller { name: "acme", bearer: Some(acme_admin) };
    let platform = Caller { name: "platform", bearer: Some(app.token.clone()) };

    let before = snapshot(&app, &acme).await;
    let mut wrong = Vec::new();
    for route in &routes {
        let mut refused = vec![(&anonymous, StatusCode::UNAUTHORIZED), (&api_key, StatusCode::UNAUTHORIZED)];
        refused.push((&wrong_token, StatusCode::UNAUTHORIZED));
        match route.reach {
            Reach::Acme => refused.push((&beta, StatusCode::NOT_FOUND)),
            Reach::Platform => {
                refused.push((&beta, StatusCode::FORBIDDEN));
                refused.push((&acme_caller, StatusCode::FORBIDDEN));
            }
        }
        for (caller, expected) in refused {
            let (status, body) = call_as(&app, caller, route, &global).await;
            if status != expected {
                wrong.push(format!(
                    "{} {} as {}: {status} (not {expected}) {body}",
                    route.method, route.path, caller.name
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "refusals not as the route's reach says:\n{}", wrong.join("\n"));
    assert_eq!(snapshot(&app, &acme).await, before, "a refused call changed something");

    let mut allowed: Vec<(&Call, &Caller)> = Vec::new();
    for route in routes.iter().filter(|r| !r.destructive) {
        allowed.push((route, &platform));
        if route.reach == Reach::Acme {
            allowed.push((route, &acme_caller));
        }
    }
    allowed.extend(routes.iter().filter(|r| r.destructive).map(|r| (r, &acme_caller)));
    for (route, caller) in allowed {
        let (status, body) = call_as(&app, caller, route, &global).await;
        if !status.is_success() {
            wrong.push(format!("{} {} as {}: {status} {body}", route.method, route.path, caller.name));
        }
    }
    assert!(wrong.is_empty(), "calls refused to those whose they are:\n{}", wrong.join("\n"));

    let (_, listed) = app.call(Method::GET, "/api/v1/companies", beta.bearer.as_deref(), None).await;
    let slugs: Vec<&str> = listed.as_array().unwrap().iter().filter_map(|c| c["slug"].as_str()).collect();
    assert_eq!(slugs, ["beta"], "a company administrator lists only its own company");
}

/// The sending API's routes that name a message.
fn message_routes(message: &str) -> [(Method, String); 3] {
    [
        (Method::GET, format!("/api/v1/messages/{message}")),
        (Method::GET, format!("/api/v1/messages/{message}/raw")),
        (Method::POST, format!("/api/v1/messages/{message}/cancel")),
    ]
}

/// The sending API's routes that name none, with a body each takes.
fn company_routes() -> [(Method, &'static str, Option<Value>); 3] {
    [
        (Method::GET, "/api/v1/messages", None),
        (Method::POST, "/api/v1/messages", Some(system_message(&["x@example.com"]))),
        (Method::POST, "/api/v1/messages/batch", Some(json!({"messages": [system_message(&["x@example.com"])]}))),
    ]
}

#[tokio::test]
async fn the_matrices_cover_every_route_the_api_document_lists() {
    let app = Carteiro::start().await;
    let (_, document) = app.call(Method::GET, "/api/v1/openapi.json", None, None).await;
    let documented: std::collections::BTreeSet<String> = document["paths"]
        .as_object()
        .expect("the document lists paths")
        .iter()
        .flat_map(|(path, operations)| {
            operations.as_object().unwrap().keys().map(move |method| format!("{} {path}", method.to_uppercase()))
        })
        .collect();
    let acme = Acme {
        company: Company { slug: "acme".into(), key: String::new() },
        message: "MESSAGE".into(),
        webhook: "WEBHOOK".into(),
        api_key: "KEY".into(),
    };
    // Each concrete path written back as the document's template.
    let template = |method: &Method, path: &str| {
        let path = path.split('?').next().unwrap();
        let path = path.replace("/companies/acme", "/companies/{slug}").replace("/users/42/", "/users/{user_id}/");
        let path = path.replace("/dkim-keys/s1", "/dkim-keys/{selector}");
        let path = ["MESSAGE", "WEBHOOK", "KEY"].iter().fold(path, |p, id| p.replace(id, "{id}"));
        format!("{method} {path}")
    };
    let mut covered: std::collections::BTreeSet<String> =
        admin_routes(&acme).iter().map(|c| template(&c.method, &c.path)).collect();
    covered.extend(message_routes("MESSAGE").iter().map(|(m, p)| template(m, p)));
    covered.extend(company_routes().iter().map(|(m, p, _)| template(m, p)));
    // Open to all, or judged per company in their own tests: logging in, the document, the list of companies.
    covered.extend(["POST /api/v1/login", "GET /api/v1/openapi.json", "GET /api/v1/companies"].map(String::from));

    let missing: Vec<&String> = documented.difference(&covered).collect();
    assert!(missing.is_empty(), "routes of the document that no access matrix calls: {missing:?}");
    let unknown: Vec<&String> = covered.difference(&documented).collect();
    assert!(unknown.is_empty(), "the matrices call routes the document does not list: {unknown:?}");
}

#[tokio::test]
async fn the_sending_api_answers_only_the_key_of_the_messages_company() {
    let (app, acme, beta, _admins, _sink) = two_companies().await;
    let message = &acme.message;
    let mut wrong = Vec::new();
    for (method, path) in &message_routes(message) {
        for (name, bearer, expected) in [
            ("anonymous", None, StatusCode::UNAUTHORIZED),
            ("the platform's token", Some(app.token.as_str()), StatusCode::UNAUTHORIZED),
            ("a revoked-looking key", Some("ck_not_a_key"), StatusCode::UNAUTHORIZED),
            ("beta's key", Some(beta.key.as_str()), StatusCode::NOT_FOUND),
        ] {
            let (status, answer) = app.call(method.clone(), path, bearer, None).await;
            if status != expected {
                wrong.push(format!("{method} {path} as {name}: {status} (not {expected}) {answer}"));
            }
        }
        let (status, answer) = app.call(method.clone(), path, Some(&acme.company.key), None).await;
        // Cancelling a sent message is a conflict, not a refusal of the caller.
        if !(status.is_success() || status == StatusCode::CONFLICT) {
            wrong.push(format!("{method} {path} as acme's key: {status} {answer}"));
        }
    }
    for (method, path, body) in company_routes() {
        for (name, bearer) in [("anonymous", None), ("the platform's token", Some(app.token.as_str()))] {
            let (status, answer) = app.call(method.clone(), path, bearer, body.clone()).await;
            if status != StatusCode::UNAUTHORIZED {
                wrong.push(format!("{method} {path} as {name}: {status} (not 401) {answer}"));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    let (_, listed) = app.call(Method::GET, "/api/v1/messages", Some(&beta.key), None).await;
    assert!(!listed.to_string().contains(message.as_str()), "beta's list holds none of acme's messages");
    assert_eq!(app.message(&acme.company, message).await["status"], "sent", "nothing was cancelled");
}

#[tokio::test]
async fn every_console_page_and_form_answers_each_role_as_its_reach_says() {
    let (app, acme, _beta, [(acme_user, acme_password), (beta_user, beta_password)], _sink) = two_companies().await;
    let message = &acme.message;
    let pages = [
        ("/companies/acme", Reach::Acme),
        ("/companies/acme/email", Reach::Acme),
        ("/companies/acme/users", Reach::Acme),
        ("/companies/acme/users/42", Reach::Acme),
        ("/companies/acme/effective", Reach::Acme),
        ("/companies/acme/api-keys", Reach::Acme),
        ("/companies/acme/dkim", Reach::Acme),
        (&format!("/companies/acme/messages/{message}"), Reach::Acme),
        (&format!("/companies/acme/messages/{message}/raw"), Reach::Acme),
        ("/settings/email", Reach::Platform),
        ("/companies/new", Reach::Platform),
        ("/companies/acme/admins", Reach::Platform),
    ];
    let forms = [
        ("/companies/acme", Reach::Acme),
        ("/companies/acme/email", Reach::Acme),
        ("/companies/acme/users/42", Reach::Acme),
        ("/companies/acme/api-keys", Reach::Acme),
        (&format!("/companies/acme/api-keys/{}/revoke", acme.api_key), Reach::Acme),
        ("/companies/acme/dkim", Reach::Acme),
        ("/companies/acme/dkim/s1/remove", Reach::Acme),
        (&format!("/companies/acme/messages/{message}/cancel"), Reach::Acme),
        (&format!("/companies/acme/messages/{message}/retry"), Reach::Acme),
        ("/settings/email", Reach::Platform),
        ("/companies/new", Reach::Platform),
        ("/companies/acme/admins", Reach::Platform),
    ];
    let mut anonymous = Browser::new(&app);
    let mut beta = Browser::logged_in(&app, &beta_user, &beta_password).await;
    let mut acme_admin = Browser::logged_in(&app, &acme_user, &acme_password).await;
    let mut platform = Browser::logged_in(&app, "admin", ADMIN_PASSWORD).await;
    let before = snapshot(&app, &acme).await;
    let mut wrong = Vec::new();

    for (path, reach) in pages {
        let shown = anonymous.get(path).await;
        if shown.status != StatusCode::SEE_OTHER || !shown.location.as_deref().unwrap_or_default().starts_with("/login")
        {
            wrong.push(format!("GET {path} anonymously: {} to {:?}", shown.status, shown.location));
        }
        let expectations = match reach {
            Reach::Acme => [(&mut beta, "beta", StatusCode::NOT_FOUND), (&mut acme_admin, "acme", StatusCode::OK)],
            Reach::Platform => {
                [(&mut beta, "beta", StatusCode::FORBIDDEN), (&mut acme_admin, "acme", StatusCode::FORBIDDEN)]
            }
        };
        for (browser, name, expected) in expectations {
            let status = browser.get(path).await.status;
            if status != expected {
                wrong.push(format!("GET {path} as {name}: {status} (not {expected})"));
            }
        }
        let shown = platform.get(path).await;
        if shown.status != StatusCode::OK {
            wrong.push(format!("GET {path} as the platform: {}", shown.status));
        }
        for (header, value) in [
            ("content-security-policy", "frame-ancestors 'none'"),
            ("content-security-policy", "default-src 'self'"),
            ("x-content-type-options", "nosniff"),
        ] {
            let got = shown.headers.get(header).and_then(|v| v.to_str().ok()).unwrap_or_default();
            if !got.contains(value) {
                wrong.push(format!("GET {path}: {header} is {got:?}, without {value}"));
            }
        }
    }

    for (path, reach) in forms {
        let status = anonymous.post(path, &[("action", "save")]).await.status;
        if !matches!(status, StatusCode::SEE_OTHER | StatusCode::FORBIDDEN) {
            wrong.push(format!("POST {path} anonymously: {status}"));
        }
        // Each with a valid token of its own session: what refuses it is the reach, not the CSRF check.
        beta.get("/companies").await;
        acme_admin.get("/companies").await;
        let mut refusals =
            vec![(&mut beta, "beta", if reach == Reach::Acme { StatusCode::NOT_FOUND } else { StatusCode::FORBIDDEN })];
        if reach == Reach::Platform {
            refusals.push((&mut acme_admin, "acme", StatusCode::FORBIDDEN));
        }
        for (browser, name, expected) in refusals {
            let status = browser.post(path, &[("action", "save")]).await.status;
            if status != expected {
                wrong.push(format!("POST {path} as {name}: {status} (not {expected})"));
            }
        }
    }
    // Even those whose the form is need their session's token.
    for (path, _) in forms {
        for csrf in ["forged", ""] {
            let status = platform.post(path, &[("action", "save"), ("csrf", csrf)]).await.status;
            if status != StatusCode::FORBIDDEN {
                wrong.push(format!("POST {path} by the platform with the token {csrf:?}: {status}"));
            }
        }
    }
    assert!(wrong.is_empty(), "console answers not as the reach says:\n{}", wrong.join("\n"));
    assert_eq!(snapshot(&app, &acme).await, before, "a refused form changed something");
}

#[tokio::test]
async fn a_scripted_brute_force_gets_five_guesses_and_then_waits_even_with_the_right_password() {
    let app = Carteiro::start().await;
    let mut guesses = tokio::task::JoinSet::new();
    for n in 0..100 {
        let (http, url) = (app.http.clone(), app.url("/api/v1/login"));
        guesses.spawn(async move {
            let answer = http
                .post(url)
                .json(&json!({"username": "Admin", "password": format!("guess-{n}")}))
                .send()
                .await
                .unwrap();
            answer.status()
        });
    }
    let mut answers = std::collections::BTreeMap::new();
    while let Some(status) = guesses.join_next().await {
        *answers.entry(status.unwrap().as_u16()).or_insert(0) += 1;
    }
    assert_eq!(
        answers,
        [(401, 5), (429, 95)].into(),
        "a hundred guesses sent together: five are judged, the others wait"
    );
    assert!(app.login("admin", ADMIN_PASSWORD).await.is_none(), "the right password waits too");
    let (status, body) = app
        .call(Method::POST, "/api/v1/login", None, Some(json!({"username": "admin", "password": ADMIN_PASSWORD})))
        .await;
    assert_eq!((status, &body["error"]["code"]), (StatusCode::TOO_MANY_REQUESTS, &json!("throttled")), "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("seconds"), "it says how long: {body}");
}
