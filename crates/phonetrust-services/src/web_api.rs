//! The REST API under `/api/v1`: JSON, bearer tokens (`phonetrust user token create`)
//! with their account's role, errors as `{"error": "…"}` with the same messages as the
//! CLI, paging on lists, and the OpenAPI document at `/api/v1/openapi.json` generated
//! from these handlers (`utoipa`), so it cannot drift from them.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use phonetrust_rules::accounts::{self, Role};
use phonetrust_store::model::format_time;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, OpenApi, ToSchema};

use super::{Shared, now};

/// Most items in one page of a list.
pub const MAX_LIMIT: usize = 1_000;

/// An error: the same message the CLI prints.
#[derive(Serialize, ToSchema)]
pub struct ApiError {
    /// What went wrong and what to do.
    pub error: String,
}

fn error(status: StatusCode, msg: impl Into<String>) -> Response {
    (status, Json(ApiError { error: msg.into() })).into_response()
}

/// The account and role of the request's bearer token, with at least `need`.
async fn auth(w: &super::Web, h: &HeaderMap, need: Role) -> Result<(String, Role), Response> {
    let token = h
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if token.is_empty() {
        return Err(error(
            StatusCode::UNAUTHORIZED,
            "a bearer token is needed: `phonetrust user token create NAME`, then `Authorization: Bearer <token>`",
        ));
    }
    let (name, role) = accounts::token_account(&w.db, token, now())
        .await
        .map_err(|e| error(StatusCode::UNAUTHORIZED, e.to_string()))?;
    if !role.allows(need) {
        return Err(error(StatusCode::FORBIDDEN, role.refusal(need)));
    }
    Ok((name, role))
}

/// A phone.
#[derive(Serialize, ToSchema)]
pub struct PhoneJson {
    /// `SEP<MAC>`.
    pub name: String,
    /// Model.
    pub model: String,
    /// SIP or SCCP.
    pub protocol: String,
    /// Phone security profile.
    pub profile: String,
    /// Description.
    pub description: String,
    /// Certificate operation (e.g. "Install/Upgrade").
    pub operation: String,
    /// Authentication mode.
    pub auth_mode: String,
    /// Key order.
    pub key_order: String,
    /// RSA key size.
    pub rsa_bits: u32,
    /// EC key size.
    pub ec_curve: String,
    /// Operation completes by (RFC 3339), if scheduled.
    pub completes_by: Option<String>,
    /// "Certificate Operation Status".
    pub status: String,
    /// Whether an LSC is recorded.
    pub lsc: bool,
}

/// One page of phones.
#[derive(Serialize, ToSchema)]
pub struct PhonePage {
    /// Phones matching.
    pub total: usize,
    /// Of the first item.
    pub offset: usize,
    /// Items at most.
    pub limit: usize,
    /// The page.
    pub items: Vec<PhoneJson>,
}

/// Filters and paging of the phone list.
#[derive(Deserialize, IntoParams)]
pub struct PhoneQuery {
    /// `installed` or `none`.
    pub lsc: Option<String>,
    /// `none`, `pending`, `success`, `failed`.
    pub status: Option<String>,
    /// Security profile.
    pub profile: Option<String>,
    /// Model.
    pub model: Option<String>,
    /// First item (default 0).
    pub offset: Option<usize>,
    /// Items (default 100, at most 1000).
    pub limit: Option<usize>,
}

fn phone_json(d: &phonetrust_store::model::Device, lsc: bool) -> PhoneJson {
    let c = &d.capf;
    PhoneJson {
        name: d.name.clone(),
        model: d.model.clone(),
        protocol: d.protocol.to_string(),
        profile: d.profile.clone(),
        description: d.description.clone(),
        operation: c.operation.to_string(),
        auth_mode: c.auth_mode.to_string(),
        key_order: c.key_order.to_string(),
        rsa_bits: c.rsa_bits,
        ec_curve: c.ec_curve.to_string(),
        completes_by: c.completes_by.map(format_time),
        status: c.status.clone(),
        lsc,
    }
}

/// List phones (the CLI's `phone list` filters), paged.
#[utoipa::path(get, path = "/api/v1/phones", params(PhoneQuery),
    responses((status = 200, body = PhonePage), (status = 401, body = ApiError)),
    security(("bearer" = [])))]
pub(super) async fn list_phones(
    State(w): State<Shared>,
    h: HeaderMap,
    Query(q): Query<PhoneQuery>,
) -> Response {
    if let Err(r) = auth(&w, &h, Role::ReadOnly).await {
        return r;
    }
    let f = phonetrust_store::devices::DeviceFilter {
        lsc: match q.lsc.as_deref() {
            Some("installed") => Some(phonetrust_store::devices::LscFilter::Installed),
            Some("none") => Some(phonetrust_store::devices::LscFilter::None),
            Some(other) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("lsc={other}: installed or none"),
                );
            }
            None => None,
        },
        state: match q.status.as_deref().map(str::parse) {
            Some(Ok(s)) => Some(s),
            Some(Err(e)) => return error(StatusCode::BAD_REQUEST, format!("status: {e}")),
            None => None,
        },
        profile: q.profile.clone(),
        model: q.model.clone(),
        ..Default::default()
    };
    let offset = q.offset.unwrap_or(0);
    let limit = q.limit.unwrap_or(100).clamp(1, MAX_LIMIT);
    let (page, total) = match w.db.devices_page(&f, offset as u64, limit as u64).await {
        Ok(v) => v,
        Err(e) => return error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    };
    let names: Vec<String> = page.iter().map(|d| d.name.clone()).collect();
    let with_lsc = match w.db.lsc_among(&names).await {
        Ok(v) => v,
        Err(e) => return error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    };
    let items = page
        .iter()
        .map(|d| phone_json(d, with_lsc.contains(&d.name)))
        .collect();
    Json(PhonePage {
        total: total.max(0) as usize,
        offset,
        limit,
        items,
    })
    .into_response()
}

/// One phone.
#[utoipa::path(get, path = "/api/v1/phones/{name}", params(("name" = String, Path, description = "SEP<MAC>")),
    responses((status = 200, body = PhoneJson), (status = 404, body = ApiError), (status = 401, body = ApiError)),
    security(("bearer" = [])))]
pub(super) async fn get_phone(
    State(w): State<Shared>,
    h: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    if let Err(r) = auth(&w, &h, Role::ReadOnly).await {
        return r;
    }
    match w.db.device(&name).await {
        Ok(d) => {
            let lsc =
                w.db.device_certs(&d.name)
                    .await
                    .unwrap_or_default()
                    .iter()
                    .any(|c| c.kind == phonetrust_store::model::DeviceCertKind::Lsc);
            Json(phone_json(&d, lsc)).into_response()
        }
        Err(e @ phonetrust_store::StoreError::NotFound(_)) => {
            error(StatusCode::NOT_FOUND, e.to_string())
        }
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

/// A CAPF operation to schedule or change (the values `phone capf` takes).
#[derive(Deserialize, ToSchema)]
pub struct CapfRequest {
    /// install, delete, troubleshoot, none.
    pub operation: Option<String>,
    /// null-string, auth-string, lsc, mic.
    pub auth: Option<String>,
    /// 4 to 16 digits, for auth-string.
    pub auth_string: Option<String>,
    /// rsa, ec, ec-rsa, rsa-ec.
    pub key_order: Option<String>,
    /// 1024, 2048, 3072, 4096.
    pub rsa_bits: Option<u32>,
    /// p256, p384, p521.
    pub ec_curve: Option<String>,
    /// e.g. 2026-12-01T10:00Z.
    pub completes_by: Option<String>,
}

impl CapfRequest {
    /// The change these values ask for, checked as `phone capf` checks its options.
    pub fn change(
        &self,
    ) -> Result<phonetrust_store::devices::CapfChange, phonetrust_store::StoreError> {
        fn opt<T: std::str::FromStr<Err = phonetrust_store::StoreError>>(
            s: &Option<String>,
        ) -> Result<Option<T>, phonetrust_store::StoreError> {
            s.as_deref().map(str::parse).transpose()
        }
        Ok(phonetrust_store::devices::CapfChange {
            operation: opt(&self.operation)?,
            auth_mode: opt(&self.auth)?,
            auth_string: self.auth_string.clone(),
            key_order: opt(&self.key_order)?,
            rsa_bits: self.rsa_bits,
            ec_curve: opt(&self.ec_curve)?,
            completes_by: self
                .completes_by
                .as_deref()
                .map(phonetrust_store::model::parse_time)
                .transpose()?,
        })
    }
}

/// Schedule or change a phone's CAPF operation (operator).
#[utoipa::path(post, path = "/api/v1/phones/{name}/capf", params(("name" = String, Path, description = "SEP<MAC>")),
    request_body = CapfRequest,
    responses((status = 200, body = PhoneJson), (status = 400, body = ApiError), (status = 403, body = ApiError)),
    security(("bearer" = [])))]
pub(super) async fn set_phone_capf(
    State(w): State<Shared>,
    h: HeaderMap,
    Path(name): Path<String>,
    Json(r): Json<CapfRequest>,
) -> Response {
    let (account, _) = match auth(&w, &h, Role::Operator).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let ch = r.change();
    let t = now();
    let result = match ch {
        Ok(ch) => w.db.set_capf(&name, &ch, t).await,
        Err(e) => Err(e),
    };
    w.audit(
        &account,
        "api phone capf",
        format!(
            "{name} operation={} auth={}",
            r.operation.as_deref().unwrap_or("-"),
            r.auth.as_deref().unwrap_or("-")
        ),
        &result,
    )
    .await;
    match result {
        Ok(d) => Json(phone_json(&d, d.md5hash.is_some())).into_response(),
        Err(e @ phonetrust_store::StoreError::NotFound(_)) => {
            error(StatusCode::NOT_FOUND, e.to_string())
        }
        Err(e) => error(StatusCode::BAD_REQUEST, e.to_string()),
    }
}

/// One of the node's own certificates.
#[derive(Serialize, ToSchema)]
pub struct OwnCertJson {
    /// CAPF, CallManager, CallManager-ECDSA, TVS, ITLRecovery, tomcat.
    pub name: String,
    /// Subject.
    pub subject: String,
    /// Serial, hex.
    pub serial: String,
    /// Valid until (RFC 3339).
    pub not_after: String,
}

/// The node's own certificates.
#[utoipa::path(get, path = "/api/v1/certificates/own",
    responses((status = 200, body = Vec<OwnCertJson>), (status = 401, body = ApiError)),
    security(("bearer" = [])))]
pub(super) async fn own_certs(State(w): State<Shared>, h: HeaderMap) -> Response {
    if let Err(r) = auth(&w, &h, Role::ReadOnly).await {
        return r;
    }
    let id = match phonetrust_store::identity::load(&w.data()) {
        Ok(i) => i,
        Err(e) => return error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    };
    let list: Vec<OwnCertJson> = phonetrust_rules::certs::own_rows(&id)
        .into_iter()
        .map(|r| OwnCertJson {
            name: r.name.to_string(),
            subject: r.subject,
            serial: r.serial,
            not_after: format_time(r.not_after),
        })
        .collect();
    Json(list).into_response()
}

/// The bearer-token security scheme.
struct Bearer;

impl utoipa::Modify for Bearer {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let c = api.components.get_or_insert_with(Default::default);
        c.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The API's OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    info(title = "phonetrust", description = "The REST API of a phonetrust node."),
    paths(list_phones, get_phone, set_phone_capf, own_certs),
    components(schemas(ApiError, PhoneJson, PhonePage, CapfRequest, OwnCertJson)),
    modifiers(&Bearer)
)]
pub struct ApiDoc;

/// `/api/v1/openapi.json` (no token: it describes, it holds no data).
pub async fn openapi() -> Response {
    Json(ApiDoc::openapi()).into_response()
}

/// Unknown API routes: JSON, not the HTML of the pages.
pub async fn not_found() -> Response {
    error(
        StatusCode::NOT_FOUND,
        "no such API route: see /api/v1/openapi.json",
    )
}

/// The API's routes.
pub(super) fn routes() -> axum::Router<Shared> {
    axum::Router::new()
        .route("/api/v1/phones", axum::routing::get(list_phones))
        .route("/api/v1/phones/{name}", axum::routing::get(get_phone))
        .route(
            "/api/v1/phones/{name}/capf",
            axum::routing::post(set_phone_capf),
        )
        .route("/api/v1/certificates/own", axum::routing::get(own_certs))
        .route("/api/v1/openapi.json", axum::routing::get(openapi))
        .route("/api/v1/{*rest}", axum::routing::any(not_found))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_lists_every_route() {
        let doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or_default();
        let mut paths: Vec<(String, String)> = Vec::new();
        for (p, ops) in doc["paths"].as_object().cloned().unwrap_or_default() {
            for m in ops.as_object().cloned().unwrap_or_default().keys() {
                paths.push((m.clone(), p.clone()));
            }
        }
        paths.sort();
        let want = [
            ("get", "/api/v1/certificates/own"),
            ("get", "/api/v1/phones"),
            ("get", "/api/v1/phones/{name}"),
            ("post", "/api/v1/phones/{name}/capf"),
        ];
        let want: Vec<(String, String)> = want
            .iter()
            .map(|(m, p)| (m.to_string(), p.to_string()))
            .collect();
        assert_eq!(paths, want);
        assert_eq!(
            doc["openapi"].as_str().map(|v| v.starts_with("3.")),
            Some(true)
        );
        assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    }
}
