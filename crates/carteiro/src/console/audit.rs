//! The audit log: who changed what and when (field names, never values).

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::ConsoleError;
use super::page::Page;
use super::session::Session;
use crate::service::{ServiceError, tenants};
use crate::state::{AppState, rfc3339};
use crate::store::AuditRow;

const SHOWN: i64 = 500;

#[derive(Template, WebTemplate)]
#[template(path = "audit.html")]
struct AuditPage {
    page: Page,
    /// A platform administrator's choice of company ("" for everything).
    companies: Vec<(String, String)>,
    company: String,
    entries: Vec<AuditRow>,
}

impl AuditPage {
    fn at(&self, entry: &AuditRow) -> String {
        rfc3339(entry.at)
    }
}

#[derive(Deserialize)]
pub struct AuditQuery {
    #[serde(default)]
    company: String,
}

pub async fn list(
    State(state): State<AppState>,
    session: Session,
    Query(query): Query<AuditQuery>,
) -> Result<Response, ConsoleError> {
    let (companies, company) = match &session.admin.scope {
        crate::service::auth::AdminScope::Company(own) => (Vec::new(), Some(own.clone())),
        crate::service::auth::AdminScope::Platform => {
            let all = tenants::companies(&state).await?.into_iter().map(|c| (c.slug, c.name)).collect();
            let chosen = query.company.trim();
            (all, if chosen.is_empty() { None } else { Some(session.require_company(chosen)?) })
        }
    };
    let entries = state.store.audit_log(company.as_ref(), SHOWN).await.map_err(ServiceError::from)?;
    let page = session.page(session.t().audit_title);
    let company = company.map(|c| c.as_str().to_owned()).unwrap_or_default();
    Ok(AuditPage { page, companies, company, entries }.into_response())
}
