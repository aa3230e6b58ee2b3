//! The web administration over HTTPS (port 8443 by default) with the node's tomcat
//! certificate: server-rendered pages (`minijinja`, every value escaped; templates and
//! the style sheet embedded in the binary), usable without JavaScript.
//!
//! Safe by default: until an account exists every route answers with the page that says
//! how to create one; every other route needs a session; sessions are random 256-bit
//! cookies (`Secure; HttpOnly; SameSite=Strict`) with an idle and an absolute timeout;
//! every form carries a CSRF token (the login form's is bound to a cookie, the others to
//! the session); logins are slowed per account ([`phonetrust_rules::accounts`]) and per
//! address; every response carries a strict Content-Security-Policy. Roles are checked on
//! every route, server side.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use openssl::ssl::{SslAcceptor, SslMethod, SslVersion};
use phonetrust_rules::accounts::{self, LoginRefused, Role};
use phonetrust_rules::doctor::{Finding, Severity};
use phonetrust_rules::reports;
use phonetrust_store::Db;
use phonetrust_store::layout::DataDir;
use phonetrust_store::model::format_time;
use serde::Deserialize;

use crate::ServiceError;
use crate::limits::Limiter;

#[path = "web_api.rs"]
pub mod api;
#[path = "web_config.rs"]
pub mod config;
#[path = "web_pages.rs"]
pub mod pages;

/// The Content-Security-Policy of every response: nothing but this origin's style sheet,
/// forms posting to this origin, no frames, no scripts.
pub const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";
/// Session cookie.
pub const SESSION_COOKIE: &str = "pt_session";
/// The login form's CSRF cookie.
pub const LOGIN_COOKIE: &str = "pt_login";
/// Failed logins from one address within [`ADDRESS_WINDOW_SECS`] before it must wait.
pub const ADDRESS_FAILURES: u32 = 20;
/// The window of [`ADDRESS_FAILURES`], and how long the address then waits.
pub const ADDRESS_WINDOW_SECS: i64 = 900;
/// Rows per page of a list.
pub const PAGE: usize = 100;

/// Settings of the web administration.
#[derive(Clone, Debug)]
pub struct WebConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// A session unused this long ends.
    pub idle: Duration,
    /// A session ends this long after login, used or not.
    pub absolute: Duration,
    /// Connections at once, and from one address.
    pub max_connections: usize,
    /// From one address.
    pub max_per_address: usize,
    /// Sessions at once (oldest ended beyond).
    pub max_sessions: usize,
    /// The bearer token `/metrics` requires; without one it answers without login (it
    /// holds counts only).
    pub metrics_token: Option<String>,
}

impl Default for WebConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 8443)),
            idle: Duration::from_secs(15 * 60),
            absolute: Duration::from_secs(8 * 3_600),
            max_connections: 256,
            max_per_address: 32,
            max_sessions: 1_000,
            metrics_token: None,
        }
    }
}

struct Session {
    account: String,
    role: Role,
    csrf: String,
    created: i64,
    last: i64,
}

/// What the handlers share.
struct Web {
    db: Db,
    data_dir: DataDir,
    node: String,
    cfg: WebConfig,
    env: minijinja::Environment<'static>,
    sessions: Mutex<HashMap<String, Session>>,
    failures: Mutex<HashMap<IpAddr, (u32, i64)>>,
    /// The node's doctor findings and when they were found.
    findings: tokio::sync::Mutex<Option<(i64, Vec<Finding>)>>,
}

/// How long the dashboard shows the same doctor findings before it checks again.
pub const FINDINGS_TTL_SECS: i64 = 60;

type Shared = Arc<Web>;

fn now() -> i64 {
    phonetrust_proto::clock::unix_now() as i64
}

fn random_token() -> String {
    let mut b = [0u8; 32];
    if openssl::rand::rand_bytes(&mut b).is_err() {
        // No randomness: no token that could be guessed either.
        return String::new();
    }
    phonetrust_proto::codec::hex(&b)
}

/// Constant-time comparison of two tokens.
fn same(a: &str, b: &str) -> bool {
    !a.is_empty() && a.len() == b.len() && openssl::memcmp::eq(a.as_bytes(), b.as_bytes())
}

fn cookie<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn set_cookie(name: &str, value: &str, max_age: Option<u64>) -> HeaderValue {
    let age = max_age
        .map(|a| format!("; Max-Age={a}"))
        .unwrap_or_default();
    HeaderValue::from_str(&format!(
        "{name}={value}; Path=/; Secure; HttpOnly; SameSite=Strict{age}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("invalid=1"))
}

/// Headers every response gets.
async fn secure_headers(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::STRICT_TRANSPORT_SECURITY,
        HeaderValue::from_static("max-age=31536000"),
    );
    r
}

/// A form whose CSRF token is missing or not the session's.
fn csrf_refused() -> Response {
    (
        StatusCode::FORBIDDEN,
        "the form's CSRF token is missing or wrong: reload the page",
    )
        .into_response()
}

/// `s` as one URL path segment or query value (everything but `A-Za-z0-9-_.` escaped).
fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn redirect(to: &str) -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, to.to_string())]).into_response()
}

/// A logged-in request.
struct Ctx {
    account: String,
    role: Role,
    csrf: String,
}

impl Web {
    fn render(&self, status: StatusCode, name: &str, ctx: minijinja::Value) -> Response {
        match self.env.get_template(name).and_then(|t| t.render(ctx)) {
            Ok(html) => (
                status,
                [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
                html,
            )
                .into_response(),
            Err(e) => {
                tracing::warn!(template = name, error = %e, "web: a page could not be rendered");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the page could not be rendered; see the node's log",
                )
                    .into_response()
            }
        }
    }

    /// The set-up page while no account exists; None once one does.
    async fn setup(&self) -> Option<Response> {
        match self.db.account_count().await {
            Ok(0) => Some(self.render(
                StatusCode::SERVICE_UNAVAILABLE,
                "setup.html",
                minijinja::context! { title => "Set-up", node => self.node },
            )),
            Ok(_) => None,
            Err(e) => Some(
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("the database cannot be read: {e}"),
                )
                    .into_response(),
            ),
        }
    }

    /// The session of this request, with at least `need`; else the answer to give.
    async fn gate(&self, h: &HeaderMap, need: Role) -> Result<Ctx, Response> {
        if let Some(r) = self.setup().await {
            return Err(r);
        }
        let t = now();
        let id = cookie(h, SESSION_COOKIE).unwrap_or("").to_string();
        let (account, role, csrf) = {
            let mut s = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
            let fresh = s.get(&id).is_some_and(|x| {
                t - x.last < self.cfg.idle.as_secs() as i64
                    && t - x.created < self.cfg.absolute.as_secs() as i64
            });
            if !fresh {
                s.remove(&id);
                return Err(redirect("/login"));
            }
            let Some(x) = s.get_mut(&id) else {
                return Err(redirect("/login"));
            };
            x.last = t;
            (x.account.clone(), x.role, x.csrf.clone())
        };
        // A disabled or deleted account loses its sessions at once; a changed role counts.
        let role = match self.db.account(&account).await {
            Ok(Some(a)) if !a.disabled => Role::parse(&a.role).unwrap_or(role),
            _ => {
                self.sessions
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&id);
                return Err(redirect("/login"));
            }
        };
        if !role.allows(need) {
            return Err(self.render(
                StatusCode::FORBIDDEN,
                "message.html",
                minijinja::context! { title => "Not allowed", node => self.node,
                message => role.refusal(need) },
            ));
        }
        Ok(Ctx {
            account,
            role,
            csrf,
        })
    }

    /// [`Self::gate`] for a form's POST: the session's CSRF token must be `given`.
    async fn gate_form(&self, h: &HeaderMap, need: Role, given: &str) -> Result<Ctx, Response> {
        let c = self.gate(h, need).await?;
        if !same(given, &c.csrf) {
            return Err(csrf_refused());
        }
        Ok(c)
    }

    /// Record a change made through the web or the API in the audit log; a log that cannot
    /// be written is reported in the node's log.
    async fn audit<T, E: std::fmt::Display>(
        &self,
        actor: &str,
        action: &str,
        detail: String,
        result: &Result<T, E>,
    ) {
        let e = phonetrust_store::audit::AuditEntry {
            at_ms: now() * 1_000,
            actor: actor.to_string(),
            node: self.node.clone(),
            action: action.to_string(),
            detail,
            result: match result {
                Ok(_) => "ok".into(),
                Err(e) => format!("failed: {e}"),
            },
        };
        if let Err(err) = self.db.audit(&e).await {
            tracing::warn!(actor, action, error = %err, "web: the change was not written to the audit log");
        }
    }

    fn base(&self, c: &Ctx, title: &str) -> minijinja::Value {
        minijinja::context! {
            title => title, node => self.node, account => c.account,
            role => c.role.as_str(), csrf => c.csrf,
        }
    }
}

/// The tab's icon, asked for by every browser without a login.
async fn favicon() -> Response {
    (
        [(header::CONTENT_TYPE, "image/svg+xml")],
        include_str!("../templates/favicon.svg"),
    )
        .into_response()
}

async fn style() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("../templates/style.css"),
    )
        .into_response()
}

async fn login_page(State(w): State<Shared>, h: HeaderMap) -> Response {
    if let Some(r) = w.setup().await {
        return r;
    }
    login_form(&w, &h, StatusCode::OK, None)
}

/// The login form. Its CSRF token is the browser's login cookie when it has one (so a
/// second login page — another tab, or a request the browser makes on its own that is
/// sent here — does not make the first one's form stale), else a new one.
fn login_form(w: &Web, h: &HeaderMap, status: StatusCode, error: Option<String>) -> Response {
    let token = cookie(h, LOGIN_COOKIE)
        .filter(|t| t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit()))
        .map(str::to_string)
        .unwrap_or_else(random_token);
    let mut r = w.render(
        status,
        "login.html",
        minijinja::context! { title => "Log in", node => w.node, csrf => token, error => error },
    );
    r.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(LOGIN_COOKIE, &token, Some(900)),
    );
    r
}

#[derive(Deserialize)]
struct LoginForm {
    csrf: String,
    name: String,
    password: String,
}

async fn login(
    State(w): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    h: HeaderMap,
    axum::Form(f): axum::Form<LoginForm>,
) -> Response {
    if let Some(r) = w.setup().await {
        return r;
    }
    if !same(&f.csrf, cookie(&h, LOGIN_COOKIE).unwrap_or("")) {
        return (
            StatusCode::FORBIDDEN,
            "the form's CSRF token is missing or wrong: reload the login page",
        )
            .into_response();
    }
    let t = now();
    let ip = peer.ip();
    {
        let f = w.failures.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((n, since)) = f.get(&ip)
            && *n >= ADDRESS_FAILURES
            && t - since < ADDRESS_WINDOW_SECS
        {
            tracing::warn!(%peer, "web: login refused: too many failures from this address");
            return login_form(
                &w,
                &h,
                StatusCode::TOO_MANY_REQUESTS,
                Some(format!(
                    "too many failed logins from this address: try again after {}",
                    format_time(since + ADDRESS_WINDOW_SECS)
                )),
            );
        }
    }
    match accounts::login(&w.db, &f.name, &f.password, t).await {
        Ok(role) => {
            w.failures
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&ip);
            let id = random_token();
            {
                let mut s = w.sessions.lock().unwrap_or_else(|p| p.into_inner());
                if s.len() >= w.cfg.max_sessions
                    && let Some(oldest) =
                        s.iter().min_by_key(|(_, x)| x.last).map(|(k, _)| k.clone())
                {
                    s.remove(&oldest);
                }
                s.insert(
                    id.clone(),
                    Session {
                        account: f.name.trim().to_string(),
                        role,
                        csrf: random_token(),
                        created: t,
                        last: t,
                    },
                );
            }
            tracing::info!(%peer, account = f.name.trim(), "web: logged in");
            w.audit(
                f.name.trim(),
                "web login",
                format!("from {ip}"),
                &Ok::<(), String>(()),
            )
            .await;
            let mut r = redirect("/");
            r.headers_mut()
                .append(header::SET_COOKIE, set_cookie(SESSION_COOKIE, &id, None));
            r.headers_mut()
                .append(header::SET_COOKIE, set_cookie(LOGIN_COOKIE, "", Some(0)));
            r
        }
        Err(e) => {
            {
                let mut m = w.failures.lock().unwrap_or_else(|p| p.into_inner());
                if m.len() > 10_000 {
                    m.retain(|_, (_, since)| t - *since < ADDRESS_WINDOW_SECS);
                }
                let x = m.entry(ip).or_insert((0, t));
                if t - x.1 >= ADDRESS_WINDOW_SECS {
                    *x = (0, t);
                }
                x.0 += 1;
            }
            tracing::warn!(%peer, account = f.name.trim(), reason = %e, "web: login refused");
            let status = match e {
                LoginRefused::Locked(_) => StatusCode::TOO_MANY_REQUESTS,
                _ => StatusCode::UNAUTHORIZED,
            };
            login_form(&w, &h, status, Some(e.to_string()))
        }
    }
}

#[derive(Deserialize)]
struct CsrfForm {
    csrf: String,
}

async fn logout(
    State(w): State<Shared>,
    h: HeaderMap,
    axum::Form(f): axum::Form<CsrfForm>,
) -> Response {
    let c = match w.gate(&h, Role::ReadOnly).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    if !same(&f.csrf, &c.csrf) {
        return (
            StatusCode::FORBIDDEN,
            "the form's CSRF token is missing or wrong",
        )
            .into_response();
    }
    if let Some(id) = cookie(&h, SESSION_COOKIE) {
        w.sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
    }
    let mut r = redirect("/login");
    r.headers_mut()
        .append(header::SET_COOKIE, set_cookie(SESSION_COOKIE, "", Some(0)));
    r
}

/// An inline SVG bar chart of `bars` (label, count) under its title.
fn bar_chart(title: &str, bars: &[(String, i64)]) -> String {
    let max = bars.iter().map(|b| b.1).max().unwrap_or(0).max(1);
    let esc = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
    };
    // The labels' column as wide as the longest label (about 7 px a character at 12 px).
    let left = bars
        .iter()
        .map(|b| b.0.chars().count())
        .max()
        .unwrap_or(0)
        .clamp(6, 40)
        * 7
        + 8;
    let mut s = format!(
        "<figure><figcaption>{t}</figcaption><svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{}\" role=\"img\" aria-label=\"{t}\">",
        left + 300,
        bars.len() * 20 + 4,
        t = esc(title)
    );
    for (i, (label, n)) in bars.iter().enumerate() {
        let w = 240 * n / max;
        let y = i * 20 + 2;
        s.push_str(&format!(
            "<text x=\"0\" y=\"{ty}\" font-size=\"12\">{}</text><rect x=\"{left}\" y=\"{y}\" width=\"{w}\" height=\"16\" fill=\"#1f3b57\"/><text x=\"{}\" y=\"{ty}\" font-size=\"12\">{n}</text>",
            esc(label),
            left as i64 + 5 + w,
            ty = y + 13,
        ));
    }
    s.push_str("</svg></figure>");
    s
}

async fn dashboard(State(w): State<Shared>, h: HeaderMap) -> Response {
    let c = match w.gate(&h, Role::ReadOnly).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let db = &w.db;
    let t = now();
    let mode = match db.security_mode().await {
        Ok(phonetrust_store::ctlfile::ClusterSecurityMode::Mixed) => "Mixed (1)",
        Ok(_) => "Non-secure (0)",
        Err(_) => "unknown (database unavailable)",
    };
    let mut nodes = Vec::new();
    for n in db.nodes().await.unwrap_or_default() {
        let itl = db
            .itl(&n.name)
            .await
            .ok()
            .flatten()
            .map(|i| i.sha256)
            .unwrap_or_default();
        nodes.push(minijinja::context! {
            name => n.name, role => n.role, services => n.services,
            alive => if phonetrust_rules::cluster::is_alive(n.heartbeat_at, t) { "yes" } else { "no" },
            itl => itl,
        });
    }
    let phones = db.device_count().await.unwrap_or(0);
    let times = db.lsc_times().await.unwrap_or_default();
    let with_lsc = times.len() as i64;
    let count = |s| {
        let db = db.clone();
        async move {
            db.devices_page(
                &phonetrust_store::devices::DeviceFilter {
                    state: Some(s),
                    ..Default::default()
                },
                0,
                0,
            )
            .await
            .map(|(_, n)| n)
            .unwrap_or(0)
        }
    };
    let pending = count(phonetrust_store::model::OpState::Pending).await;
    let failed = count(phonetrust_store::model::OpState::Failed).await;
    let expiring: Vec<_> = phonetrust_rules::monitor::findings(&w.data(), db, &w.node, 30, t)
        .await
        .unwrap_or_default()
        .into_iter()
        .take(50)
        .map(|n| minijinja::context! { kind => n.cert.kind, name => n.cert.name, until => format_time(n.cert.not_after) })
        .collect();
    let findings: Vec<_> = w
        .node_findings(t)
        .await
        .into_iter()
        .map(|f| minijinja::context! {
            severity => match f.severity { Severity::Error => "ERROR", Severity::Warning => "WARNING" },
            check => f.check, subject => f.subject, cause => f.cause, fix => f.fix,
        })
        .collect();
    let itl = phonetrust_rules::itlstatus::status(db)
        .await
        .unwrap_or_default();
    let by_month =
        reports::lsc_expiry_by_month(&times.iter().map(|x| x.1).collect::<Vec<_>>(), t, 12);
    let per_hour =
        reports::enrolments_per_hour(&times.iter().map(|x| x.0).collect::<Vec<_>>(), t, 24);
    let charts = [
        bar_chart(
            "Phones by LSC status",
            &[
                ("with an LSC".to_string(), with_lsc),
                ("without".to_string(), phones - with_lsc),
            ],
        ),
        bar_chart("LSCs by month of expiry", &by_month),
        bar_chart("Enrolments per hour (last 24 hours, UTC)", &per_hour),
        bar_chart(
            "Phones by ITL status",
            &reports::itl_counts(&itl)
                .into_iter()
                .map(|(l, n)| (l.to_string(), n))
                .collect::<Vec<_>>(),
        ),
    ];
    let mut ctx = w.base(&c, "Dashboard");
    ctx = minijinja::context! { mode => mode, nodes => nodes, phones => phones,
    with_lsc => with_lsc, pending => pending, failed => failed, expiring => expiring,
    findings => findings, charts => charts, ..ctx };
    w.render(StatusCode::OK, "dashboard.html", ctx)
}

#[derive(Deserialize, Default)]
struct PhoneQuery {
    lsc: Option<String>,
    status: Option<String>,
    profile: Option<String>,
    page: Option<usize>,
}

async fn phones(State(w): State<Shared>, h: HeaderMap, Query(q): Query<PhoneQuery>) -> Response {
    let c = match w.gate(&h, Role::ReadOnly).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let lsc = q.lsc.clone().unwrap_or_default();
    let status = q.status.clone().unwrap_or_default();
    let profile = q.profile.clone().unwrap_or_default();
    let f = phonetrust_store::devices::DeviceFilter {
        lsc: match lsc.as_str() {
            "installed" => Some(phonetrust_store::devices::LscFilter::Installed),
            "none" => Some(phonetrust_store::devices::LscFilter::None),
            _ => None,
        },
        state: status.parse().ok(),
        profile: (!profile.is_empty()).then(|| profile.clone()),
        ..Default::default()
    };
    let want = q.page.unwrap_or(1).max(1);
    let unavailable = |e: phonetrust_store::StoreError| {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the database cannot be read: {e}"),
        )
            .into_response()
    };
    let fetch = |page: usize| {
        w.db.devices_page(&f, ((page - 1) * PAGE) as u64, PAGE as u64)
    };
    let (mut rows, mut total) = match fetch(want).await {
        Ok(v) => v,
        Err(e) => return unavailable(e),
    };
    let pages = (total.max(0) as usize).div_ceil(PAGE).max(1);
    let page = want.min(pages);
    if page != want {
        // Past the end: the last page.
        (rows, total) = match fetch(page).await {
            Ok(v) => v,
            Err(e) => return unavailable(e),
        };
    }
    let rows: Vec<_> = rows
        .iter()
        .map(|d| minijinja::context! {
            name => d.name, model => d.model, description => d.description,
            profile => d.profile, operation => d.capf.operation.to_string(), status => d.capf.status,
        })
        .collect();
    let link = |p: usize| {
        let enc = urlencode;
        format!(
            "/phones?lsc={}&status={}&profile={}&page={p}",
            enc(&lsc),
            enc(&status),
            enc(&profile)
        )
    };
    let ctx = w.base(&c, "Phones");
    let ctx = minijinja::context! { rows => rows, total => total, page => page,
    can_change => c.role.allows(Role::Operator),
    pages => pages, lsc => lsc, status => status, profile => profile,
    prev => (page > 1).then(|| link(page - 1)), next => (page < pages).then(|| link(page + 1)), ..ctx };
    w.render(StatusCode::OK, "phones.html", ctx)
}

async fn phone(State(w): State<Shared>, h: HeaderMap, Path(name): Path<String>) -> Response {
    let c = match w.gate(&h, Role::ReadOnly).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    phone_page(&w, &c, &name, StatusCode::OK, None).await
}

async fn phone_page(
    w: &Web,
    c: &Ctx,
    name: &str,
    status: StatusCode,
    error: Option<String>,
) -> Response {
    let d = match w.db.device(name).await {
        Ok(d) => d,
        Err(e) => {
            return w.render(
                StatusCode::NOT_FOUND,
                "message.html",
                minijinja::context! { title => "Not found", node => w.node, message => e.to_string() },
            );
        }
    };
    let certs: Vec<_> = w
        .db
        .device_certs(&d.name)
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|x| minijinja::context! { kind => x.kind.as_str(), subject => x.subject, issuer => x.issuer, serial => x.serial, until => format_time(x.not_after) })
        .collect();
    let cap = &d.capf;
    let info = minijinja::context! {
        model => d.model, protocol => d.protocol.to_string(), profile => d.profile,
        description => d.description, operation => cap.operation.to_string(),
        auth_mode => cap.auth_mode.to_string(),
        // Operators and admins see the string they must give the user; read-only does not.
        auth_string => if c.role.allows(Role::Operator) { cap.auth_string.clone().unwrap_or_default() } else if cap.auth_string.is_some() { "(hidden)".to_string() } else { String::new() },
        key_order => cap.key_order.to_string(), rsa_bits => cap.rsa_bits, ec_curve => cap.ec_curve.to_string(),
        completes_by => cap.completes_by.map(format_time).unwrap_or_default(), status => cap.status,
    };
    let itl = match phonetrust_rules::itlstatus::of_phone(&w.db, &d.name).await {
        Ok(p) => minijinja::context! {
            state => p.state.label(),
            node => p.last.as_ref().map(|l| l.node.clone()),
            at => p.last.as_ref().map(|l| format_time(l.at)),
            sha => p.last.as_ref().map(|l| l.sha256.clone()),
            current => p.current,
        },
        Err(e) => minijinja::context! { state => format!("unknown: {e}") },
    };
    let (diagnosis, findings) = match phonetrust_rules::doctor::phone_checks(
        &w.db,
        &w.data_dir,
        &d.name,
        &crate::probe::Net,
        now(),
    )
    .await
    {
        Ok((lines, f)) => (lines, f),
        Err(e) => (
            vec![format!("the diagnosis could not run: {e}")],
            Vec::new(),
        ),
    };
    let findings: Vec<_> = findings
        .into_iter()
        .map(|f| minijinja::context! {
            severity => match f.severity { Severity::Error => "ERROR", Severity::Warning => "WARNING" },
            check => f.check, cause => f.cause, fix => f.fix,
        })
        .collect();
    let ctx = w.base(c, &d.name);
    w.render(
        status,
        "phone.html",
        minijinja::context! { d => info, certs => certs, name => d.name, error => error,
        itl => itl, diagnosis => diagnosis, findings => findings,
        can_change => c.role.allows(Role::Operator), ..ctx },
    )
}

#[derive(Deserialize)]
struct CapfForm {
    csrf: String,
    operation: String,
    auth: String,
    #[serde(default)]
    auth_string: String,
}

/// Schedule (or change) a phone's CAPF operation: operators and administrators.
async fn phone_capf(
    State(w): State<Shared>,
    h: HeaderMap,
    Path(name): Path<String>,
    axum::Form(f): axum::Form<CapfForm>,
) -> Response {
    let c = match w.gate_form(&h, Role::Operator, &f.csrf).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let parsed = api::CapfRequest {
        operation: Some(f.operation.clone()),
        auth: Some(f.auth.clone()),
        // The form's field left blank: no string.
        auth_string: (!f.auth_string.trim().is_empty()).then(|| f.auth_string.trim().to_string()),
        key_order: None,
        rsa_bits: None,
        ec_curve: None,
        completes_by: None,
    }
    .change();
    let t = now();
    let result = match parsed {
        Ok(ch) => w.db.set_capf(&name, &ch, t).await.map(|_| ()),
        Err(e) => Err(e),
    };
    w.audit(
        &c.account,
        "web phone capf",
        format!("{name} --operation {} --auth {}", f.operation, f.auth),
        &result,
    )
    .await;
    match result {
        Ok(()) => redirect(&format!("/phones/{name}")),
        Err(e) => phone_page(&w, &c, &name, StatusCode::BAD_REQUEST, Some(e.to_string())).await,
    }
}

/// `/metrics`: Prometheus text; a bearer token when one is configured.
async fn metrics(State(w): State<Shared>, h: HeaderMap) -> Response {
    if let Some(want) = &w.cfg.metrics_token {
        let given = h
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if !same(given, want) {
            return (
                StatusCode::UNAUTHORIZED,
                "metrics need the bearer token of [web] metrics_token_file\n",
            )
                .into_response();
        }
    }
    let body = crate::metrics::render(&w.db, &w.data(), now()).await;
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

impl Web {
    fn data(&self) -> DataDir {
        self.data_dir.clone()
    }

    /// The node's doctor findings, checked again when older than [`FINDINGS_TTL_SECS`]
    /// (one check at a time; the others wait for its result). A check that cannot run
    /// is a finding itself.
    async fn node_findings(&self, t: i64) -> Vec<Finding> {
        let mut cache = self.findings.lock().await;
        if let Some((at, f)) = cache.as_ref()
            && t - at < FINDINGS_TTL_SECS
        {
            return f.clone();
        }
        let f =
            phonetrust_rules::doctor::node_checks(&self.db, &self.data_dir, &crate::probe::Net, t)
                .await
                .unwrap_or_else(|e| {
                    vec![Finding {
                        check: "doctor-failed",
                        severity: Severity::Error,
                        subject: self.node.clone(),
                        cause: format!("the checks could not run: {e}"),
                        fix: "run `phonetrust doctor` on the node and see its log".into(),
                    }]
                });
        *cache = Some((t, f.clone()));
        f
    }
}

/// The web administration, bound.
pub struct WebServer {
    listener: tokio::net::TcpListener,
    acceptor: Arc<SslAcceptor>,
    app: axum::Router,
    limiter: Limiter,
}

fn environment() -> Result<minijinja::Environment<'static>, minijinja::Error> {
    let mut env = minijinja::Environment::new();
    for (name, text) in [
        ("base.html", include_str!("../templates/base.html")),
        ("setup.html", include_str!("../templates/setup.html")),
        ("message.html", include_str!("../templates/message.html")),
        ("login.html", include_str!("../templates/login.html")),
        (
            "dashboard.html",
            include_str!("../templates/dashboard.html"),
        ),
        ("phones.html", include_str!("../templates/phones.html")),
        ("phone.html", include_str!("../templates/phone.html")),
        ("certs.html", include_str!("../templates/certs.html")),
        ("cert.html", include_str!("../templates/cert.html")),
        ("trust.html", include_str!("../templates/trust.html")),
        ("lines.html", include_str!("../templates/lines.html")),
        ("security.html", include_str!("../templates/security.html")),
        ("report.html", include_str!("../templates/report.html")),
        ("profiles.html", include_str!("../templates/profiles.html")),
        ("profile.html", include_str!("../templates/profile.html")),
        (
            "profile_fields.html",
            include_str!("../templates/profile_fields.html"),
        ),
        ("params.html", include_str!("../templates/params.html")),
        ("cluster.html", include_str!("../templates/cluster.html")),
    ] {
        env.add_template(name, text)?;
    }
    Ok(env)
}

impl WebServer {
    /// Bind `cfg.listen` with the tomcat certificate `tls`.
    pub async fn bind(
        db: Db,
        data: DataDir,
        node: String,
        tls: &phonetrust_proto::cert::CertAndKey,
        cfg: WebConfig,
    ) -> Result<Self, ServiceError> {
        let mut b = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls())?;
        b.set_min_proto_version(Some(SslVersion::TLS1_2))?;
        // Level 1: a tomcat certificate with a 1024-bit key (older nodes) still serves.
        b.set_security_level(1);
        b.set_certificate(&tls.cert)?;
        b.set_private_key(&tls.key)?;
        let listener = tokio::net::TcpListener::bind(cfg.listen)
            .await
            .map_err(|e| ServiceError::Bind(cfg.listen, e))?;
        let env = environment().map_err(|e| ServiceError::Other(format!("templates: {e}")))?;
        let limiter = Limiter::new(cfg.max_connections, cfg.max_per_address);
        let web = Arc::new(Web {
            db,
            data_dir: data,
            node,
            cfg,
            env,
            sessions: Mutex::new(HashMap::new()),
            failures: Mutex::new(HashMap::new()),
            findings: tokio::sync::Mutex::new(None),
        });
        let app = api::routes()
            .route("/", axum::routing::get(dashboard))
            .route("/login", axum::routing::get(login_page).post(login))
            .route("/logout", axum::routing::post(logout))
            .route("/phones", axum::routing::get(phones).post(pages::phone_add))
            .route("/phones/{name}", axum::routing::get(phone))
            .route("/phones/{name}/capf", axum::routing::post(phone_capf))
            .route(
                "/phones/{name}/delete",
                axum::routing::post(pages::phone_delete),
            )
            .route("/certificates", axum::routing::get(pages::certificates))
            .route(
                "/certificates/own/{name}",
                axum::routing::get(pages::own_cert),
            )
            .route(
                "/certificates/own/{name}/download",
                axum::routing::get(pages::own_download),
            )
            .route(
                "/certificates/own/{name}/regenerate",
                axum::routing::post(pages::own_regenerate),
            )
            .route(
                "/certificates/own/{name}/csr",
                axum::routing::post(pages::own_csr),
            )
            .route(
                "/certificates/own/{name}/import",
                axum::routing::post(pages::own_import),
            )
            .route(
                "/certificates/trust",
                axum::routing::post(pages::trust_upload),
            )
            .route(
                "/certificates/trust/{store}/{name}",
                axum::routing::get(pages::trust_cert),
            )
            .route(
                "/certificates/trust/{store}/{name}/delete",
                axum::routing::post(pages::trust_delete),
            )
            .route("/security", axum::routing::get(pages::security))
            .route(
                "/security/{action}",
                axum::routing::post(pages::security_action),
            )
            .route("/reports/{kind}", axum::routing::get(pages::report))
            .route(
                "/profiles",
                axum::routing::get(config::profiles).post(config::profile_add),
            )
            .route(
                "/profiles/{name}",
                axum::routing::get(config::profile).post(config::profile_change),
            )
            .route(
                "/profiles/{name}/delete",
                axum::routing::post(config::profile_delete),
            )
            .route("/parameters", axum::routing::get(config::params))
            .route("/parameters/{name}", axum::routing::post(config::param_set))
            .route("/cluster", axum::routing::get(config::cluster_get))
            .route("/cluster/nodes", axum::routing::post(config::node_add))
            .route(
                "/cluster/nodes/{name}/delete",
                axum::routing::post(config::node_remove),
            )
            .route("/cluster/groups", axum::routing::post(config::group_add))
            .route(
                "/cluster/groups/{name}",
                axum::routing::post(config::group_set),
            )
            .route(
                "/cluster/groups/{name}/delete",
                axum::routing::post(config::group_remove),
            )
            .route("/static/style.css", axum::routing::get(style))
            .route("/favicon.ico", axum::routing::get(favicon))
            .route("/metrics", axum::routing::get(metrics))
            .fallback(|State(w): State<Shared>, h: HeaderMap| async move {
                match w.gate(&h, Role::ReadOnly).await {
                    Ok(_) => (StatusCode::NOT_FOUND, "no such page").into_response(),
                    Err(r) => r,
                }
            })
            .layer(axum::middleware::map_response(secure_headers))
            .with_state(web);
        Ok(Self {
            listener,
            acceptor: Arc::new(b.build()),
            app,
            limiter,
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> Result<SocketAddr, ServiceError> {
        self.listener.local_addr().map_err(ServiceError::Io)
    }

    /// Serve until the task is dropped.
    pub async fn run(self) {
        let mut h1 = hyper::server::conn::http1::Builder::new();
        h1.timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(Duration::from_secs(10))
            .max_buf_size(64 * 1024);
        let h1 = Arc::new(h1);
        loop {
            let (tcp, peer) = match self.listener.accept().await {
                Ok(x) => x,
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            };
            let Ok(slot) = self.limiter.admit(peer.ip()) else {
                continue; // dropped: the connection closes
            };
            let acceptor = self.acceptor.clone();
            let svc = hyper_util::service::TowerToHyperService::new(
                self.app
                    .clone()
                    .layer(axum::Extension(ConnectInfo(peer)))
                    .into_service(),
            );
            let h1 = h1.clone();
            tokio::spawn(async move {
                let _slot = slot;
                let Ok(ssl) = openssl::ssl::Ssl::new(acceptor.context()) else {
                    return;
                };
                let Ok(mut s) = tokio_openssl::SslStream::new(ssl, tcp) else {
                    return;
                };
                match tokio::time::timeout(
                    Duration::from_secs(10),
                    std::pin::Pin::new(&mut s).accept(),
                )
                .await
                {
                    Ok(Ok(())) => {}
                    _ => return,
                }
                let io = hyper_util::rt::TokioIo::new(s);
                let _ = h1.serve_connection(io, svc).await;
            });
        }
    }
}
