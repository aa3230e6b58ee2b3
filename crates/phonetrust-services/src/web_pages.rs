//! The web administration's management pages: Certificate Management (own certificates
//! with their details, Regenerate with the seeds' warning and the count of phones that
//! reset, Generate CSR, a CA-signed certificate or chain uploaded, PEM/DER downloads;
//! the trust stores with upload and delete behind the lifecycle guards), Mixed Mode and
//! ITL recovery, phones added and deleted, and the CAPF report. Each handler is a shell
//! over [`phonetrust_rules::certs`], [`phonetrust_rules::security`] and
//! [`phonetrust_rules::reports`]; a change that alters what phones trust needs its
//! confirmation box ticked, and every change is audited with the account's name.

use axum::extract::{Multipart, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use phonetrust_pki::profiles::OwnCert;
use phonetrust_proto::rand::OsRandom;
use phonetrust_rules::accounts::Role;
use phonetrust_rules::certs;
use phonetrust_rules::security::SecurityAction;
use phonetrust_store::identity;
use phonetrust_store::model::{TrustStore, format_time};
use serde::Deserialize;

use super::{Ctx, Shared, Web, csrf_refused, now, redirect, same};

/// Most bytes of an uploaded certificate file or CSV.
pub const MAX_UPLOAD: usize = 1024 * 1024;

/// A page shown again with an error is a refusal.
fn status_of(error: &Option<String>) -> StatusCode {
    if error.is_some() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    }
}

impl Web {
    pub(super) fn message(
        &self,
        c: &Ctx,
        status: StatusCode,
        title: &str,
        message: String,
    ) -> Response {
        let ctx = self.base(c, title);
        self.render(
            status,
            "message.html",
            minijinja::context! { message => message, ..ctx },
        )
    }

    /// The result of an action: its lines, and a block of text (a CSR) when there is one.
    pub(super) fn lines(
        &self,
        c: &Ctx,
        title: &str,
        lines: Vec<String>,
        pre: Option<String>,
    ) -> Response {
        let ctx = self.base(c, title);
        self.render(
            StatusCode::OK,
            "lines.html",
            minijinja::context! { lines => lines, pre => pre, ..ctx },
        )
    }
}

/// A multipart form's fields: text fields by name, and the one file.
#[derive(Default)]
pub(super) struct Upload {
    pub(super) fields: std::collections::HashMap<String, String>,
    pub(super) file: Vec<u8>,
}

async fn read_upload(m: Multipart) -> Result<Upload, String> {
    read_upload_max(m, MAX_UPLOAD, "give the certificate (or chain) alone").await
}

/// A multipart form whose file may be `max` bytes (`fix` says what to do when larger).
pub(super) async fn read_upload_max(
    mut m: Multipart,
    max: usize,
    fix: &str,
) -> Result<Upload, String> {
    let mut u = Upload::default();
    loop {
        let f = match m.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => return Err(format!("the form could not be read: {e}")),
        };
        let name = f.name().unwrap_or("").to_string();
        let is_file = f.file_name().is_some();
        let bytes = f
            .bytes()
            .await
            .map_err(|e| format!("the form could not be read: {e}"))?;
        if bytes.len() > max {
            return Err(format!("the file is larger than {max} bytes: {fix}"));
        }
        if is_file || name == "file" {
            if !bytes.is_empty() {
                u.file = bytes.to_vec();
            }
        } else if u.fields.len() < 16 {
            u.fields
                .insert(name, String::from_utf8_lossy(&bytes).into_owned());
        }
    }
    Ok(u)
}

#[derive(Deserialize, Default)]
pub(super) struct FindQuery {
    find: Option<String>,
    store: Option<String>,
}

/// Certificate Management: "Find Certificate List where Certificate is exactly …".
pub(super) async fn certificates(
    State(w): State<Shared>,
    h: HeaderMap,
    Query(q): Query<FindQuery>,
) -> Response {
    let c = match w.gate(&h, Role::ReadOnly).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let find = q.find.clone().unwrap_or_default();
    let id = match identity::load(&w.data_dir) {
        Ok(id) => id,
        Err(e) => return w.message(&c, StatusCode::SERVICE_UNAVAILABLE, "Error", e.to_string()),
    };
    let own: Vec<_> = certs::own_rows(&id)
        .into_iter()
        .filter(|r| find.trim().is_empty() || r.name.eq_ignore_ascii_case(find.trim()))
        .map(|r| {
            minijinja::context! { name => r.name, cn => r.common_name, signed => r.signed,
            key => r.key_type, until => format_time(r.not_after), serial => r.serial }
        })
        .collect();
    let store: Option<TrustStore> = q.store.as_deref().and_then(|s| s.parse().ok());
    let trust: Vec<_> =
        w.db.trust_list(store)
            .await
            .unwrap_or_default()
            .into_iter()
            .filter(|t| {
                find.trim().is_empty()
                    || t.store.as_str().eq_ignore_ascii_case(find.trim())
                    || t.name.eq_ignore_ascii_case(find.trim())
            })
            .map(|t| {
                minijinja::context! { store => t.store.as_str(), name => t.name,
                subject => t.subject, until => format_time(t.not_after) }
            })
            .collect();
    let stores: Vec<&str> = TrustStore::ALL.iter().map(|s| s.as_str()).collect();
    let ctx = w.base(&c, "Certificate Management");
    w.render(
        StatusCode::OK,
        "certs.html",
        minijinja::context! { own => own, trust => trust, find => find, stores => stores,
        can_change => c.role.allows(Role::Admin), ..ctx },
    )
}

fn own_of(name: &str) -> Result<OwnCert, String> {
    name.parse()
}

/// The details of one own certificate, with its actions.
pub(super) async fn own_cert(
    State(w): State<Shared>,
    h: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    let c = match w.gate(&h, Role::ReadOnly).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    own_page(&w, &c, &name, None).await
}

async fn own_page(w: &Web, c: &Ctx, name: &str, error: Option<String>) -> Response {
    let which = match own_of(name) {
        Ok(x) => x,
        Err(e) => return w.message(c, StatusCode::NOT_FOUND, "Not found", e),
    };
    let id = match identity::load(&w.data_dir) {
        Ok(id) => id,
        Err(e) => return w.message(c, StatusCode::SERVICE_UNAVAILABLE, "Error", e.to_string()),
    };
    let Some(ck) = id.get(which) else {
        return w.message(
            c,
            StatusCode::NOT_FOUND,
            "Not found",
            format!("no {which} certificate in the identity"),
        );
    };
    let details = certs::own_details(&w.data_dir, which, &ck.cert);
    let (regen, replace) = match phonetrust_store::own::impact(&w.data_dir, &w.db, which).await {
        Ok(i) => (
            certs::impact_warning(which, &i, "regenerates"),
            certs::impact_warning(which, &i, "replaces"),
        ),
        Err(e) => (e.to_string(), e.to_string()),
    };
    let ctx = w.base(c, &format!("{which} certificate"));
    w.render(
        status_of(&error),
        "cert.html",
        minijinja::context! { name => which.name(), details => details, regen_warning => regen,
        replace_warning => replace, confirm => certs::needs_confirmation(which), error => error,
        can_change => c.role.allows(Role::Admin), ..ctx },
    )
}

#[derive(Deserialize)]
pub(super) struct FormQuery {
    form: Option<String>,
}

/// Download an own certificate as PEM (default) or DER.
pub(super) async fn own_download(
    State(w): State<Shared>,
    h: HeaderMap,
    Path(name): Path<String>,
    Query(q): Query<FormQuery>,
) -> Response {
    let c = match w.gate(&h, Role::ReadOnly).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let which = match own_of(&name) {
        Ok(x) => x,
        Err(e) => return w.message(&c, StatusCode::NOT_FOUND, "Not found", e),
    };
    let cert = identity::load(&w.data_dir)
        .ok()
        .and_then(|id| id.get(which).map(|c| c.cert.clone()));
    let Some(cert) = cert else {
        return w.message(
            &c,
            StatusCode::NOT_FOUND,
            "Not found",
            format!("no {which} certificate in the identity"),
        );
    };
    download(&cert, which.name(), q.form.as_deref())
}

fn download(cert: &openssl::x509::X509Ref, base: &str, form: Option<&str>) -> Response {
    let der = form == Some("der");
    let bytes = if der { cert.to_der() } else { cert.to_pem() };
    match bytes {
        Ok(b) => (
            [
                (
                    header::CONTENT_TYPE,
                    if der {
                        "application/pkix-cert".to_string()
                    } else {
                        "application/x-pem-file".to_string()
                    },
                ),
                (
                    header::CONTENT_DISPOSITION,
                    format!(
                        "attachment; filename=\"{}.{}\"",
                        base.replace(['"', '\\', '/'], "_"),
                        if der { "der" } else { "pem" }
                    ),
                ),
            ],
            b,
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

#[derive(Deserialize)]
pub(super) struct ConfirmForm {
    pub(super) csrf: String,
    #[serde(default)]
    pub(super) confirm: Option<String>,
    #[serde(default)]
    pub(super) force: Option<String>,
}

/// Regenerate an own certificate (administrators; the warning's box ticked).
pub(super) async fn own_regenerate(
    State(w): State<Shared>,
    h: HeaderMap,
    Path(name): Path<String>,
    axum::Form(f): axum::Form<ConfirmForm>,
) -> Response {
    let c = match w.gate_form(&h, Role::Admin, &f.csrf).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let which = match own_of(&name) {
        Ok(x) => x,
        Err(e) => return w.message(&c, StatusCode::NOT_FOUND, "Not found", e),
    };
    if certs::needs_confirmation(which) && f.confirm.as_deref() != Some("yes") {
        return own_page(
            &w,
            &c,
            &name,
            Some(format!(
                "Aborted: the {which} certificate is unchanged. Tick the box under the warning to regenerate it."
            )),
        )
        .await;
    }
    let r = certs::regenerate(&w.data_dir, &w.db, which, now(), &OsRandom).await;
    w.audit(
        &c.account,
        "web set cert regen",
        which.name().to_string(),
        &r,
    )
    .await;
    match r {
        Ok(r) => {
            let mut l = vec![format!("Successfully Regenerated Certificate for {which}.")];
            l.extend(certs::change_lines(&r));
            w.lines(&c, &format!("{which} regenerated"), l, None)
        }
        Err(e) => own_page(&w, &c, &name, Some(e.to_string())).await,
    }
}

/// Generate a CSR for an own certificate (administrators).
pub(super) async fn own_csr(
    State(w): State<Shared>,
    h: HeaderMap,
    Path(name): Path<String>,
    axum::Form(f): axum::Form<ConfirmForm>,
) -> Response {
    let c = match w.gate_form(&h, Role::Admin, &f.csrf).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let which = match own_of(&name) {
        Ok(x) => x,
        Err(e) => return w.message(&c, StatusCode::NOT_FOUND, "Not found", e),
    };
    let r = phonetrust_store::own::csr_generate(&w.data_dir, which);
    w.audit(&c.account, "web set csr gen", which.name().to_string(), &r)
        .await;
    match r {
        Ok(r) => w.lines(
            &c,
            &format!("CSR for {which}"),
            vec![
                format!("Successfully Generated CSR for {which} ({})", r.subject),
                format!("CSR file: {}", r.path.display()),
            ],
            Some(r.pem),
        ),
        Err(e) => own_page(&w, &c, &name, Some(e.to_string())).await,
    }
}

/// Upload a CA-signed certificate (or chain) for an own certificate (administrators).
pub(super) async fn own_import(
    State(w): State<Shared>,
    h: HeaderMap,
    Path(name): Path<String>,
    m: Multipart,
) -> Response {
    let c = match w.gate(&h, Role::Admin).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let u = match read_upload(m).await {
        Ok(u) => u,
        Err(e) => return own_page(&w, &c, &name, Some(e)).await,
    };
    if !same(u.fields.get("csrf").map_or("", |s| s.as_str()), &c.csrf) {
        return csrf_refused();
    }
    let which = match own_of(&name) {
        Ok(x) => x,
        Err(e) => return w.message(&c, StatusCode::NOT_FOUND, "Not found", e),
    };
    if u.file.is_empty() {
        return own_page(
            &w,
            &c,
            &name,
            Some("choose the CA-signed certificate (PEM or DER, or a PEM chain) to upload".into()),
        )
        .await;
    }
    if certs::needs_confirmation(which)
        && u.fields.get("confirm").map(String::as_str) != Some("yes")
    {
        return own_page(
            &w,
            &c,
            &name,
            Some(format!(
                "Aborted: the {which} certificate is unchanged. Tick the box under the warning to replace it."
            )),
        )
        .await;
    }
    let r = certs::import_signed(&w.data_dir, &w.db, which, &u.file, now()).await;
    w.audit(
        &c.account,
        "web set cert import own",
        which.name().to_string(),
        &r,
    )
    .await;
    match r {
        Ok(r) => {
            let mut l = vec![format!(
                "Successfully imported the CA-signed certificate for {which}."
            )];
            l.extend(certs::change_lines(&r));
            w.lines(&c, &format!("{which} replaced"), l, None)
        }
        Err(e) => own_page(&w, &c, &name, Some(e.to_string())).await,
    }
}

fn store_of(s: &str) -> Result<TrustStore, String> {
    s.parse().map_err(|_| {
        format!(
            "no trust store '{s}': CallManager-trust, CAPF-trust, Phone-SAST-trust or tomcat-trust"
        )
    })
}

/// One trust certificate, with the delete form.
pub(super) async fn trust_cert(
    State(w): State<Shared>,
    h: HeaderMap,
    Path((store, name)): Path<(String, String)>,
    Query(q): Query<FormQuery>,
) -> Response {
    let c = match w.gate(&h, Role::ReadOnly).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    trust_page(&w, &c, &store, &name, q.form.as_deref(), None).await
}

async fn trust_page(
    w: &Web,
    c: &Ctx,
    store: &str,
    name: &str,
    form: Option<&str>,
    error: Option<String>,
) -> Response {
    let s = match store_of(store) {
        Ok(s) => s,
        Err(e) => return w.message(c, StatusCode::NOT_FOUND, "Not found", e),
    };
    let t = match w.db.trust_get(s, name).await {
        Ok(t) => t,
        Err(e) => return w.message(c, StatusCode::NOT_FOUND, "Not found", e.to_string()),
    };
    let x = match openssl::x509::X509::from_pem(t.pem.as_bytes()) {
        Ok(x) => x,
        Err(e) => return w.message(c, StatusCode::INTERNAL_SERVER_ERROR, "Error", e.to_string()),
    };
    if form.is_some() {
        return download(&x, &t.name, form);
    }
    let guard = certs::trust_delete_guard(&w.data_dir, &w.db, s, &t.name, now())
        .await
        .unwrap_or_else(|e| Some(e.to_string()));
    let details = format!(
        "Certificate Details for {}, {s}\nSHA-256 Fingerprint: {}\nImported: {}\n\n{}",
        t.name,
        t.fingerprint,
        format_time(t.imported_at),
        phonetrust_pki::details::details(&x)
    );
    let ctx = w.base(c, &format!("{} in {s}", t.name));
    w.render(
        status_of(&error),
        "trust.html",
        minijinja::context! { store => s.as_str(), name => t.name, details => details,
        warning => certs::trust_delete_warning(s, &t.name), guard => guard, error => error,
        can_change => c.role.allows(Role::Admin), ..ctx },
    )
}

/// Delete a certificate from a trust store (administrators): refused while phones depend
/// on it for CAPF unless forced; the confirmation box when TVS vouches for the store.
pub(super) async fn trust_delete(
    State(w): State<Shared>,
    h: HeaderMap,
    Path((store, name)): Path<(String, String)>,
    axum::Form(f): axum::Form<ConfirmForm>,
) -> Response {
    let c = match w.gate_form(&h, Role::Admin, &f.csrf).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let s = match store_of(&store) {
        Ok(s) => s,
        Err(e) => return w.message(&c, StatusCode::NOT_FOUND, "Not found", e),
    };
    let mut lines = Vec::new();
    match certs::trust_delete_guard(&w.data_dir, &w.db, s, &name, now()).await {
        Ok(Some(m)) if f.force.as_deref() != Some("yes") => {
            return trust_page(
                &w,
                &c,
                &store,
                &name,
                None,
                Some(format!(
                    "{m}; nothing was deleted: renew their LSCs first (Reports, CAPF rollover), or tick \"delete anyway\""
                )),
            )
            .await;
        }
        Ok(Some(m)) => lines.push(format!("warning: {m}")),
        Ok(None) => {}
        Err(e) => return trust_page(&w, &c, &store, &name, None, Some(e.to_string())).await,
    }
    if s.vouched_to_phones() && f.confirm.as_deref() != Some("yes") {
        return trust_page(
            &w,
            &c,
            &store,
            &name,
            None,
            Some(format!(
                "Aborted: {s} is unchanged. Tick the box under the warning to delete it."
            )),
        )
        .await;
    }
    let r = w.db.trust_delete(s, &name).await;
    w.audit(
        &c.account,
        "web set cert delete trust",
        format!("{s} {name}"),
        &r,
    )
    .await;
    match r {
        Ok(d) => {
            lines.push(format!("Deleted {} ({}) from {s}", d.name, d.subject));
            w.lines(&c, "Deleted", lines, None)
        }
        Err(e) => trust_page(&w, &c, &store, &name, None, Some(e.to_string())).await,
    }
}

/// Upload certificates into a trust store (administrators; confirmation when TVS vouches
/// for the store).
pub(super) async fn trust_upload(State(w): State<Shared>, h: HeaderMap, m: Multipart) -> Response {
    let c = match w.gate(&h, Role::Admin).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let u = match read_upload(m).await {
        Ok(u) => u,
        Err(e) => return w.message(&c, StatusCode::BAD_REQUEST, "Upload refused", e),
    };
    if !same(u.fields.get("csrf").map_or("", |s| s.as_str()), &c.csrf) {
        return csrf_refused();
    }
    let s = match store_of(u.fields.get("store").map_or("", |s| s.as_str())) {
        Ok(s) => s,
        Err(e) => return w.message(&c, StatusCode::BAD_REQUEST, "Upload refused", e),
    };
    if u.file.is_empty() {
        return w.message(
            &c,
            StatusCode::BAD_REQUEST,
            "Upload refused",
            "choose the certificate file (PEM or DER, or a PEM bundle) to upload".into(),
        );
    }
    if let Some(warn) = certs::trust_import_warning(s)
        && u.fields.get("confirm").map(String::as_str) != Some("yes")
    {
        return w.message(
            &c,
            StatusCode::BAD_REQUEST,
            "Upload refused",
            format!("{warn} Aborted: {s} is unchanged. Tick the confirmation box to upload."),
        );
    }
    let r = w.db.trust_import(s, &u.file, now()).await;
    w.audit(
        &c.account,
        "web set cert import trust",
        s.as_str().to_string(),
        &r,
    )
    .await;
    match r {
        Ok(out) => w.lines(
            &c,
            &format!("Uploaded to {s}"),
            certs::import_lines(s, &out),
            None,
        ),
        Err(e) => w.message(&c, StatusCode::BAD_REQUEST, "Upload refused", e.to_string()),
    }
}

/// Mixed Mode and ITL recovery: the cluster security mode, the CTL's checksum, and the
/// `utils ctl`/`utils itl` actions with their confirmation.
pub(super) async fn security(State(w): State<Shared>, h: HeaderMap) -> Response {
    let c = match w.gate(&h, Role::ReadOnly).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    security_page(&w, &c, None).await
}

async fn security_page(w: &Web, c: &Ctx, error: Option<String>) -> Response {
    let mode = match w.db.security_mode().await {
        Ok(phonetrust_store::ctlfile::ClusterSecurityMode::Mixed) => "Mixed (1)",
        Ok(_) => "Non-secure (0)",
        Err(_) => "unknown (database unavailable)",
    };
    let ctl = match w.db.ctl().await {
        Ok(Some(b)) => format!("{} bytes, SHA-256 {}", b.bytes.len(), b.sha256),
        Ok(None) => "CTL File not found".into(),
        Err(e) => e.to_string(),
    };
    let actions: Vec<_> = SecurityAction::ALL
        .iter()
        .map(|a| {
            minijinja::context! { id => a.as_str(), command => a.command(),
            what => format!("This operation {}.", a.what()) }
        })
        .collect();
    let ctx = w.base(c, "Mixed Mode and ITL Recovery");
    w.render(
        status_of(&error),
        "security.html",
        minijinja::context! { mode => mode, ctl => ctl, actions => actions, error => error,
        can_change => c.role.allows(Role::Admin), ..ctx },
    )
}

/// Run one security action (administrators; the box ticked).
pub(super) async fn security_action(
    State(w): State<Shared>,
    h: HeaderMap,
    Path(action): Path<String>,
    axum::Form(f): axum::Form<ConfirmForm>,
) -> Response {
    let c = match w.gate_form(&h, Role::Admin, &f.csrf).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let Some(a) = SecurityAction::parse(&action) else {
        return w.message(
            &c,
            StatusCode::NOT_FOUND,
            "Not found",
            format!("no action '{action}'"),
        );
    };
    match a.precheck(&w.data_dir, &w.db).await {
        Ok(Some(m)) => return w.lines(&c, a.command(), vec![m.to_string()], None),
        Ok(None) => {}
        Err(e) => return security_page(&w, &c, Some(e.to_string())).await,
    }
    if f.confirm.as_deref() != Some("yes") {
        return security_page(
            &w,
            &c,
            Some(format!(
                "Aborted: {} Tick the box of the action to run it.",
                a.unchanged()
            )),
        )
        .await;
    }
    let r = a.run(&w.data_dir, &w.db, now()).await;
    w.audit(
        &c.account,
        &format!("web {}", a.command()),
        String::new(),
        &r,
    )
    .await;
    match r {
        Ok(l) => w.lines(&c, a.command(), l, None),
        Err(e) => security_page(&w, &c, Some(e.to_string())).await,
    }
}

#[derive(Deserialize)]
pub(super) struct ReportQuery {
    csv: Option<String>,
    days: Option<u32>,
}

/// How far ahead the expiry report looks, and how far back the audit log goes, unless
/// the page's `days` says otherwise.
pub const REPORT_DAYS: u32 = 30;

/// A report (`/reports/capf|itl|expiry|audit`), as a page or as CSV
/// (`?csv=1`); `?days=` for the expiry report and the audit log.
pub(super) async fn report(
    State(w): State<Shared>,
    h: HeaderMap,
    Path(kind): Path<String>,
    Query(q): Query<ReportQuery>,
) -> Response {
    use phonetrust_rules::reports::{ReportKind, csv};
    let c = match w.gate(&h, Role::ReadOnly).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let Some(k) = ReportKind::parse(&kind) else {
        return w.message(
            &c,
            StatusCode::NOT_FOUND,
            "Not found",
            format!("no report {kind:?}: the reports are capf, itl, expiry and audit"),
        );
    };
    let days = q.days.unwrap_or(REPORT_DAYS).min(36_500);
    let rows = match k.rows(&w.db, &w.data(), &w.node, days, now()).await {
        Ok(r) => r,
        Err(e) => return w.message(&c, StatusCode::SERVICE_UNAVAILABLE, "Error", e),
    };
    if q.csv.is_some() {
        return (
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
                (
                    header::CONTENT_DISPOSITION,
                    format!("attachment; filename=\"{}-report.csv\"", k.as_str()),
                ),
            ],
            csv(k.header(), &rows),
        )
            .into_response();
    }
    let total = rows.len();
    let shown: Vec<_> = rows.into_iter().take(super::PAGE * 10).collect();
    let reports: Vec<_> = ReportKind::ALL
        .iter()
        .map(|r| minijinja::context! { path => r.as_str(), title => r.title() })
        .collect();
    let ctx = w.base(&c, k.title());
    w.render(
        StatusCode::OK,
        "report.html",
        minijinja::context! { header => k.header(), rows => shown, total => total,
        kind => k.as_str(), days => days,
        with_days => matches!(k, ReportKind::Expiry | ReportKind::Audit),
        reports => reports, ..ctx },
    )
}

#[derive(Deserialize)]
pub(super) struct AddForm {
    csrf: String,
    name: String,
    #[serde(default)]
    model: String,
    #[serde(default)]
    protocol: String,
    #[serde(default)]
    profile: String,
    #[serde(default)]
    description: String,
}

/// Add a phone (operators and administrators), with the store's checks.
pub(super) async fn phone_add(
    State(w): State<Shared>,
    h: HeaderMap,
    axum::Form(f): axum::Form<AddForm>,
) -> Response {
    let c = match w.gate_form(&h, Role::Operator, &f.csrf).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let t = now();
    let protocol = if f.protocol.trim().is_empty() {
        Ok(phonetrust_store::model::Protocol::Sip)
    } else {
        f.protocol.trim().parse()
    };
    let r = match protocol {
        Ok(protocol) => {
            let d = phonetrust_store::devices::NewDevice {
                name: f.name.trim().to_string(),
                model: if f.model.trim().is_empty() {
                    "Universal".into()
                } else {
                    f.model.trim().to_string()
                },
                protocol,
                profile: (!f.profile.trim().is_empty()).then(|| f.profile.trim().to_string()),
                description: f.description.clone(),
            };
            w.db.add_devices(std::slice::from_ref(&d), t)
                .await
                .map_err(|e| e.to_string())
        }
        Err(e) => Err(format!("protocol: {e}")),
    };
    w.audit(&c.account, "web phone add", f.name.trim().to_string(), &r)
        .await;
    match r {
        Ok(_) => redirect(&format!("/phones/{}", f.name.trim().to_ascii_uppercase())),
        Err(e) => w.message(&c, StatusCode::BAD_REQUEST, "Phone not added", e),
    }
}

/// Delete a phone and what CAPF recorded of it (operators and administrators; the box
/// ticked).
pub(super) async fn phone_delete(
    State(w): State<Shared>,
    h: HeaderMap,
    Path(name): Path<String>,
    axum::Form(f): axum::Form<ConfirmForm>,
) -> Response {
    let c = match w.gate_form(&h, Role::Operator, &f.csrf).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    if f.confirm.as_deref() != Some("yes") {
        return w.message(
            &c,
            StatusCode::BAD_REQUEST,
            "Phone not deleted",
            format!("Aborted: {name} is unchanged. Tick the box to delete it."),
        );
    }
    let r = w.db.delete_device(&name).await;
    w.audit(&c.account, "web phone delete", name.clone(), &r)
        .await;
    match r {
        Ok(()) => w.lines(
            &c,
            "Deleted",
            vec![format!("Deleted {}", name.to_ascii_uppercase())],
            None,
        ),
        Err(e) => w.message(
            &c,
            StatusCode::BAD_REQUEST,
            "Phone not deleted",
            e.to_string(),
        ),
    }
}
