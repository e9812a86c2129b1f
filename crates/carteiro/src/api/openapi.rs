//! The API's OpenAPI 3.1 document, served at `/api/v1/openapi.json`. Its
//! paths come from the same `routes!` calls that build the router (see
//! `super::api`); this module adds what is not a route's: the document's
//! title, the bearer schemes, and the error answers the routes share.

use std::collections::BTreeMap;

use axum::Extension;
use axum::body::Bytes;
use axum::http::header;
use axum::response::IntoResponse;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi as Document, Ref, RefOr, Response, ResponseBuilder};
use utoipa::{IntoResponses, Modify, OpenApi, ToSchema};

use crate::error::ErrorDocument;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "carteiro",
        description = "The JSON API of carteiro, an outbound e-mail gateway: administration with a token from \
                       `POST /api/v1/login`, sending with a company's API key. Every error is \
                       `{\"error\": {\"code\", \"message\", \"field\"}}`."
    ),
    modifiers(&BearerSchemes),
    components(schemas(ErrorDocument)),
    tags(
        (name = "administration", description = "Settings, companies, keys, webhooks, audit: an administrator's token"),
        (name = "sending", description = "Submitting and following messages: a company's API key"),
        (name = "document", description = "This document"),
    )
)]
pub struct ApiDoc;

/// Both credentials travel as `Authorization: Bearer …`.
struct BearerSchemes;

impl Modify for BearerSchemes {
    fn modify(&self, openapi: &mut Document) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme("admin_token", bearer("A token from POST /api/v1/login"));
        components.add_security_scheme("api_key", bearer("A company's API key (ck_…)"));
    }
}

fn bearer(description: &str) -> SecurityScheme {
    SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).description(Some(description)).build())
}

/// The document as served, serialized once when the router is built.
#[derive(Clone)]
pub struct Served(Bytes);

impl Served {
    pub fn new(document: &Document) -> Self {
        Self(Bytes::from(document.to_json().expect("the OpenAPI document serializes")))
    }
}

/// This document
#[utoipa::path(
    get, path = "/openapi.json", tag = "document",
    responses(
        (status = 200, description = "The OpenAPI 3.1 document of this API", body = serde_json::Value),
    ),
)]
pub async fn document(Extension(Served(json)): Extension<Served>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], json)
}

/// An error answer shared by many routes: a status, what it means there, and the error document.
macro_rules! error_answer {
    ($name:ident, $status:literal, $description:literal) => {
        #[doc = $description]
        pub struct $name;

        impl IntoResponses for $name {
            fn responses() -> BTreeMap<String, RefOr<Response>> {
                BTreeMap::from([($status.to_owned(), error_response($description).into())])
            }
        }
    };
}

fn error_response(description: &str) -> Response {
    let schema = Ref::from_schema_name(<ErrorDocument as ToSchema>::name());
    ResponseBuilder::new()
        .description(description)
        .content("application/json", ContentBuilder::new().schema(Some(schema)).build())
        .build()
}

error_answer!(BadRequest, "400", "The body is not valid JSON");
error_answer!(Unauthorized, "401", "No bearer credential, or one that is unknown, expired or revoked");
error_answer!(
    Forbidden,
    "403",
    "Not this administrator's to do: a company administrator asking what only a platform administrator may"
);
error_answer!(NotFound, "404", "No such company (or not one this administrator manages), or no such item in it");
error_answer!(TooLarge, "413", "The body is over what carteiro reads for this route");
error_answer!(
    Invalid,
    "422",
    "A value of the wrong type, or one that breaks a rule: `field` names it, `details` lists them all when several"
);
error_answer!(
    Unavailable,
    "503",
    "carteiro cannot reach its database right now, or its disk is full (`storage_full`); nothing was changed"
);

#[cfg(test)]
mod tests {
    use serde_json::Value;

    /// The document as served, as JSON.
    fn document() -> Value {
        serde_json::to_value(super::super::api(1024 * 1024).1).unwrap()
    }

    /// Every operation: its path, method and object.
    fn operations(document: &Value) -> Vec<(String, String, Value)> {
        let paths = document["paths"].as_object().expect("paths");
        paths
            .iter()
            .flat_map(|(path, item)| {
                let methods = item.as_object().expect("a path item").iter();
                methods.map(move |(method, operation)| (path.clone(), method.clone(), operation.clone()))
            })
            .collect()
    }

    fn placeholders(path: &str) -> Vec<String> {
        path.split('/').filter_map(|s| s.strip_prefix('{')?.strip_suffix('}').map(str::to_owned)).collect()
    }

    #[test]
    fn every_path_parameter_is_declared_and_every_declared_one_is_in_the_path() {
        let document = document();
        for (path, method, operation) in operations(&document) {
            let empty = Vec::new();
            let declared: Vec<String> = operation["parameters"]
                .as_array()
                .unwrap_or(&empty)
                .iter()
                .filter(|p| p["in"] == "path")
                .map(|p| p["name"].as_str().unwrap().to_owned())
                .collect();
            assert_eq!(declared, placeholders(&path), "{method} {path}");
        }
    }

    #[test]
    fn each_route_names_the_credential_it_takes_and_documents_its_401() {
        let document = document();
        for (path, method, operation) in operations(&document) {
            let scheme = match path.as_str() {
                "/api/v1/login" | "/api/v1/openapi.json" => None,
                p if p.starts_with("/api/v1/messages") => Some("api_key"),
                _ => Some("admin_token"),
            };
            let declared = operation["security"][0].as_object().map(|s| s.keys().cloned().collect::<Vec<_>>());
            assert_eq!(declared, scheme.map(|s| vec![s.to_owned()]), "{method} {path}");
            if scheme.is_some() {
                assert!(operation["responses"]["401"].is_object(), "{method} {path} does not document its 401");
            }
        }
        let schemes = &document["components"]["securitySchemes"];
        for name in ["admin_token", "api_key"] {
            assert_eq!(schemes[name]["scheme"], "bearer", "{name}");
        }
    }

    #[test]
    fn a_route_that_reads_a_body_documents_the_refusals_of_a_body() {
        let document = document();
        let with_body: Vec<_> = operations(&document)
            .into_iter()
            .filter(|(_, _, operation)| operation["requestBody"].is_object())
            .collect();
        assert!(with_body.len() >= 10, "only {} routes read a body", with_body.len());
        for (path, method, operation) in with_body {
            for status in ["400", "413", "422"] {
                assert!(operation["responses"][status].is_object(), "{method} {path} does not document {status}");
            }
        }
    }

    #[test]
    fn every_error_answer_is_the_error_document_and_every_reference_resolves() {
        let document = document();
        for (path, method, operation) in operations(&document) {
            for (status, response) in operation["responses"].as_object().unwrap() {
                if status.starts_with('4') || status.starts_with('5') {
                    let schema = &response["content"]["application/json"]["schema"];
                    assert_eq!(schema["$ref"], "#/components/schemas/ErrorDocument", "{method} {path} {status}");
                }
            }
        }
        let text = document.to_string();
        let references: Vec<&str> =
            text.split("\"$ref\":\"").skip(1).map(|rest| rest.split('"').next().unwrap()).collect();
        assert!(references.len() > 30, "only {} references", references.len());
        for reference in references {
            let name = reference.strip_prefix("#/components/schemas/").expect("a schema reference");
            assert!(document["components"]["schemas"][name].is_object(), "{reference} is not in the document");
        }
    }
}
