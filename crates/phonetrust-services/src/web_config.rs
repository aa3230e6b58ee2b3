//! The web administration's configuration pages: Phone Security Profiles (list, add,
//! change — "TFTP Encrypted Config" among them —, delete), Enterprise Parameters (each
//! with its default, range and help; a change that alters what phones trust needs its
//! box ticked), and the cluster: nodes as `show network cluster` lists them (add on the
//! publisher, remove behind its question), call manager groups (add, change behind its
//! question, remove) and device pools. Each handler is a shell over the store's checked
//! changes and [`phonetrust_rules::cluster`] / [`phonetrust_rules::groups`]; changes
//! are for administrators and go to the audit log with the account's name.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use phonetrust_rules::accounts::Role;
use phonetrust_rules::cluster::{self, NewNode, Services};
use phonetrust_rules::groups;
use phonetrust_store::devices::ProfileChange;
use phonetrust_store::model::{
    AuthMode, EcCurve, KeyOrder, SecurityMode, SecurityProfile, format_time,
};
use serde::Deserialize;

use super::pages::ConfirmForm;
use super::{Ctx, Shared, Web, now, redirect, urlencode};

/// The choices of one of the store's enums, as (value, label) for a `<select>`.
macro_rules! choices {
    ($t:ty) => {
        <$t>::ALL
            .iter()
            .map(|v| (v.as_str(), v.label()))
            .collect::<Vec<_>>()
    };
}

fn profile_ctx(p: &SecurityProfile) -> minijinja::Value {
    minijinja::context! {
        name => p.name, description => p.description, mode => p.mode.as_str(),
        mode_label => p.mode.label(), encrypted_config => p.encrypted_config,
        auth => p.auth_mode.as_str(), auth_label => p.auth_mode.label(),
        key_order => p.key_order.as_str(), key_order_label => p.key_order.label(),
        rsa_bits => p.rsa_bits, ec_curve => p.ec_curve.as_str(), ec_label => p.ec_curve.label(),
    }
}

fn choice_ctx() -> minijinja::Value {
    minijinja::context! {
        modes => choices!(SecurityMode), auths => choices!(AuthMode),
        key_orders => choices!(KeyOrder), curves => choices!(EcCurve),
    }
}

async fn profiles_page(w: &Web, c: &Ctx, status: StatusCode, error: Option<String>) -> Response {
    let list = match w.db.profiles().await {
        Ok(l) => l,
        Err(e) => return w.message(c, StatusCode::SERVICE_UNAVAILABLE, "Error", e.to_string()),
    };
    let rows: Vec<_> = list.iter().map(profile_ctx).collect();
    let ctx = w.base(c, "Phone Security Profiles");
    w.render(
        status,
        "profiles.html",
        minijinja::context! { rows => rows, error => error, choices => choice_ctx(),
        can_change => c.role.allows(Role::Admin), ..ctx },
    )
}

/// `/profiles`: every Phone Security Profile, and the form that adds one.
pub(super) async fn profiles(State(w): State<Shared>, h: HeaderMap) -> Response {
    match w.gate(&h, Role::ReadOnly).await {
        Ok(c) => profiles_page(&w, &c, StatusCode::OK, None).await,
        Err(r) => r,
    }
}

/// A profile's form, every field given (a box left unticked is "Off").
#[derive(Deserialize)]
pub(super) struct ProfileForm {
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    description: String,
    mode: String,
    #[serde(default)]
    encrypted_config: Option<String>,
    auth: String,
    key_order: String,
    rsa_bits: String,
    ec_curve: String,
}

impl ProfileForm {
    fn change(&self) -> Result<ProfileChange, String> {
        let e = |e: phonetrust_store::StoreError| e.to_string();
        Ok(ProfileChange {
            description: Some(self.description.trim().to_string()),
            mode: Some(self.mode.parse().map_err(e)?),
            encrypted_config: Some(self.encrypted_config.as_deref() == Some("on")),
            auth_mode: Some(self.auth.parse().map_err(e)?),
            key_order: Some(self.key_order.parse().map_err(e)?),
            rsa_bits: Some(self.rsa_bits.trim().parse().map_err(|_| {
                format!(
                    "'{}' is not a valid RSA key size: give the bits, e.g. 2048",
                    self.rsa_bits
                )
            })?),
            ec_curve: Some(self.ec_curve.parse().map_err(e)?),
        })
    }

    fn profile(&self) -> Result<SecurityProfile, String> {
        let ch = self.change()?;
        Ok(SecurityProfile {
            name: self.name.trim().to_string(),
            description: ch.description.unwrap_or_default(),
            mode: ch.mode.unwrap_or(SecurityMode::NonSecure),
            encrypted_config: ch.encrypted_config.unwrap_or(false),
            auth_mode: ch.auth_mode.unwrap_or(AuthMode::NullString),
            key_order: ch.key_order.unwrap_or(KeyOrder::Rsa),
            rsa_bits: ch.rsa_bits.unwrap_or(2048),
            ec_curve: ch.ec_curve.unwrap_or(EcCurve::P256),
        })
    }
}

/// POST `/profiles`: add a profile (the store's checks: a name in use is refused).
pub(super) async fn profile_add(
    State(w): State<Shared>,
    h: HeaderMap,
    axum::Form(f): axum::Form<ProfileForm>,
) -> Response {
    let c = match w.gate_form(&h, Role::Admin, &f.csrf).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let r = match f.profile() {
        Ok(p) => w.db.add_profile(&p, now()).await.map_err(|e| e.to_string()),
        Err(e) => Err(e),
    };
    w.audit(&c.account, "web profile add", f.name.trim().to_string(), &r)
        .await;
    match r {
        Ok(()) => redirect(&format!("/profiles/{}", urlencode(f.name.trim()))),
        Err(e) => profiles_page(&w, &c, StatusCode::BAD_REQUEST, Some(e)).await,
    }
}

async fn profile_page(
    w: &Web,
    c: &Ctx,
    name: &str,
    status: StatusCode,
    error: Option<String>,
) -> Response {
    let p = match w.db.profile(name).await {
        Ok(p) => p,
        Err(e) => return w.message(c, StatusCode::NOT_FOUND, "Not found", e.to_string()),
    };
    let ctx = w.base(c, &format!("Phone Security Profile: {}", p.name));
    w.render(
        status,
        "profile.html",
        minijinja::context! { p => profile_ctx(&p), error => error, choices => choice_ctx(),
        can_change => c.role.allows(Role::Admin), ..ctx },
    )
}

/// `/profiles/{name}`: the Phone Security Profile page.
pub(super) async fn profile(
    State(w): State<Shared>,
    h: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    match w.gate(&h, Role::ReadOnly).await {
        Ok(c) => profile_page(&w, &c, &name, StatusCode::OK, None).await,
        Err(r) => r,
    }
}

/// POST `/profiles/{name}`: save the profile's form.
pub(super) async fn profile_change(
    State(w): State<Shared>,
    h: HeaderMap,
    Path(name): Path<String>,
    axum::Form(f): axum::Form<ProfileForm>,
) -> Response {
    let c = match w.gate_form(&h, Role::Admin, &f.csrf).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let r = match f.change() {
        Ok(ch) => {
            w.db.change_profile(&name, &ch, now())
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        }
        Err(e) => Err(e),
    };
    w.audit(
        &c.account,
        "web profile set",
        format!(
            "{name} --mode {} --encrypted-config {} --auth {} --key-order {}",
            f.mode,
            f.encrypted_config.is_some(),
            f.auth,
            f.key_order
        ),
        &r,
    )
    .await;
    match r {
        Ok(()) => redirect(&format!("/profiles/{}", urlencode(&name))),
        Err(e) => profile_page(&w, &c, &name, StatusCode::BAD_REQUEST, Some(e)).await,
    }
}

/// POST `/profiles/{name}/delete`: with its box (the store refuses while phones use it).
pub(super) async fn profile_delete(
    State(w): State<Shared>,
    h: HeaderMap,
    Path(name): Path<String>,
    axum::Form(f): axum::Form<ConfirmForm>,
) -> Response {
    let c = match w.gate_form(&h, Role::Admin, &f.csrf).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    if f.confirm.as_deref() != Some("yes") {
        return profile_page(
            &w,
            &c,
            &name,
            StatusCode::BAD_REQUEST,
            Some(format!(
                "Aborted: profile '{name}' is unchanged. Tick the box to delete it."
            )),
        )
        .await;
    }
    let r = w.db.delete_profile(&name).await;
    w.audit(&c.account, "web profile delete", name.clone(), &r)
        .await;
    match r {
        Ok(()) => redirect("/profiles"),
        Err(e) => profile_page(&w, &c, &name, StatusCode::BAD_REQUEST, Some(e.to_string())).await,
    }
}

async fn params_page(w: &Web, c: &Ctx, status: StatusCode, error: Option<String>) -> Response {
    let list = match w.db.params().await {
        Ok(l) => l,
        Err(e) => return w.message(c, StatusCode::SERVICE_UNAVAILABLE, "Error", e.to_string()),
    };
    let rows: Vec<_> = list
        .iter()
        .map(|(d, v)| {
            minijinja::context! {
                name => d.name, label => d.label, value => v, default => d.default,
                min => d.min, max => d.max, help => d.help, alters_trust => d.alters_trust,
            }
        })
        .collect();
    let ctx = w.base(c, "Enterprise Parameters");
    w.render(
        status,
        "params.html",
        minijinja::context! { rows => rows, error => error,
        can_change => c.role.allows(Role::Admin), ..ctx },
    )
}

/// `/parameters`: the Enterprise Parameters.
pub(super) async fn params(State(w): State<Shared>, h: HeaderMap) -> Response {
    match w.gate(&h, Role::ReadOnly).await {
        Ok(c) => params_page(&w, &c, StatusCode::OK, None).await,
        Err(r) => r,
    }
}

#[derive(Deserialize)]
pub(super) struct ParamForm {
    csrf: String,
    value: String,
    #[serde(default)]
    confirm: Option<String>,
}

/// POST `/parameters/{name}`: `set param NAME VALUE`, the box needed when the parameter
/// alters what phones trust.
pub(super) async fn param_set(
    State(w): State<Shared>,
    h: HeaderMap,
    Path(name): Path<String>,
    axum::Form(f): axum::Form<ParamForm>,
) -> Response {
    let c = match w.gate_form(&h, Role::Admin, &f.csrf).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let d = match phonetrust_store::params::def(&name) {
        Ok(d) => d,
        Err(e) => return params_page(&w, &c, StatusCode::NOT_FOUND, Some(e.to_string())).await,
    };
    if d.alters_trust && f.confirm.as_deref() != Some("yes") {
        return params_page(
            &w,
            &c,
            StatusCode::BAD_REQUEST,
            Some(format!(
                "Aborted: {} ({}) changes what phones trust and is unchanged. Tick its box to change it.",
                d.label, d.name
            )),
        )
        .await;
    }
    let r = w.db.set_param(&name, &f.value, now()).await;
    w.audit(
        &c.account,
        "web set param",
        format!("{name} {}", f.value.trim()),
        &r,
    )
    .await;
    match r {
        Ok((old, new)) => w.lines(
            &c,
            "Enterprise Parameters",
            vec![format!(
                "{} ({}) changed from {old} to {new}",
                d.label, d.name
            )],
            None,
        ),
        Err(e) => params_page(&w, &c, StatusCode::BAD_REQUEST, Some(e.to_string())).await,
    }
}

async fn cluster_page(w: &Web, c: &Ctx, status: StatusCode, error: Option<String>) -> Response {
    let t = now();
    let (view, groups, pools) = match (
        cluster::cluster_view(&w.db, t).await,
        groups::list(&w.db).await,
        w.db.pools().await,
    ) {
        (Ok(v), Ok(g), Ok(p)) => (v, g, p),
        (Err(e), _, _) => {
            return w.message(c, StatusCode::SERVICE_UNAVAILABLE, "Error", e.to_string());
        }
        (_, Err(e), _) | (_, _, Err(e)) => {
            return w.message(c, StatusCode::SERVICE_UNAVAILABLE, "Error", e.to_string());
        }
    };
    let nodes: Vec<_> = view
        .iter()
        .map(|v| {
            minijinja::context! {
                name => v.name, host => v.host,
                role => v.role.map_or("unknown", |r| r.as_str()),
                services => v.services.map_or("unknown".into(), |s| s.to_string()),
                status => v.status(),
                heartbeat => if v.heartbeat_at > 0 { format_time(v.heartbeat_at) } else { "never".into() },
                callmanager => v.serial("CallManager"), tvs => v.serial("TVS"), capf => v.serial("CAPF"),
            }
        })
        .collect();
    let groups: Vec<_> = groups
        .iter()
        .map(|g| minijinja::context! { name => g.name, members => g.members.join(", "), phones => g.phones })
        .collect();
    let pools: Vec<_> = pools
        .iter()
        .map(|p| minijinja::context! { name => p.name, group => p.group })
        .collect();
    let ctx = w.base(c, "Cluster");
    w.render(
        status,
        "cluster.html",
        minijinja::context! { nodes => nodes, groups => groups, pools => pools, error => error,
        can_change => c.role.allows(Role::Admin), ..ctx },
    )
}

/// `/cluster`: nodes, call manager groups and device pools.
pub(super) async fn cluster_get(State(w): State<Shared>, h: HeaderMap) -> Response {
    match w.gate(&h, Role::ReadOnly).await {
        Ok(c) => cluster_page(&w, &c, StatusCode::OK, None).await,
        Err(r) => r,
    }
}

#[derive(Deserialize)]
pub(super) struct NodeForm {
    csrf: String,
    name: String,
    host: String,
    #[serde(default)]
    services: String,
}

/// POST `/cluster/nodes`: `cluster add-node NAME --host HOST [--services …]`, on the
/// publisher only.
pub(super) async fn node_add(
    State(w): State<Shared>,
    h: HeaderMap,
    axum::Form(f): axum::Form<NodeForm>,
) -> Response {
    let c = match w.gate_form(&h, Role::Admin, &f.csrf).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let r = async {
        let services = match f.services.trim() {
            "" => None,
            s => Some(Services::parse(s)?),
        };
        let id = phonetrust_store::identity::load(&w.data_dir)
            .map_err(|e| cluster::ClusterError::Itl(e.to_string()))?;
        cluster::add_node(
            &w.db,
            &id,
            &NewNode {
                name: f.name.trim(),
                host: f.host.trim(),
                services,
            },
            now(),
        )
        .await
    }
    .await;
    w.audit(
        &c.account,
        "web cluster add-node",
        format!("{} --host {} --services {}", f.name, f.host, f.services),
        &r,
    )
    .await;
    match r {
        Ok(rec) => w.lines(
            &c,
            "Cluster",
            vec![
                format!(
                    "Node {} defined as {} at {} (services {}). Start it on its own machine with:",
                    rec.name, rec.role, rec.host, rec.services
                ),
                format!(
                    "phonetrust init --join {} --database <this cluster's database URL>",
                    rec.name
                ),
            ],
            None,
        ),
        Err(e) => cluster_page(&w, &c, StatusCode::BAD_REQUEST, Some(e.to_string())).await,
    }
}

/// POST `/cluster/nodes/{name}/delete`: `cluster remove-node`, behind its question.
pub(super) async fn node_remove(
    State(w): State<Shared>,
    h: HeaderMap,
    Path(name): Path<String>,
    axum::Form(f): axum::Form<ConfirmForm>,
) -> Response {
    let c = match w.gate_form(&h, Role::Admin, &f.csrf).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    if f.confirm.as_deref() != Some("yes") {
        return cluster_page(
            &w,
            &c,
            StatusCode::BAD_REQUEST,
            Some(format!(
                "Aborted: this {}; the node stays defined. Tick the box to remove it.",
                cluster::remove_question(&name)
            )),
        )
        .await;
    }
    let r = cluster::remove_node(&w.db, &name).await;
    w.audit(&c.account, "web cluster remove-node", name.clone(), &r)
        .await;
    match r {
        Ok(()) => w.lines(
            &c,
            "Cluster",
            vec![format!("Node {name} removed from the cluster")],
            None,
        ),
        Err(e) => cluster_page(&w, &c, StatusCode::BAD_REQUEST, Some(e.to_string())).await,
    }
}

#[derive(Deserialize)]
pub(super) struct GroupForm {
    csrf: String,
    #[serde(default)]
    name: String,
    /// Node names, comma-separated, first the primary.
    nodes: String,
    #[serde(default)]
    confirm: Option<String>,
}

fn node_list(s: &str) -> Vec<String> {
    s.split([',', ' '])
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .map(String::from)
        .collect()
}

/// POST `/cluster/groups`: `cluster group add NAME NODE…`.
pub(super) async fn group_add(
    State(w): State<Shared>,
    h: HeaderMap,
    axum::Form(f): axum::Form<GroupForm>,
) -> Response {
    let c = match w.gate_form(&h, Role::Admin, &f.csrf).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let nodes = node_list(&f.nodes);
    let r = groups::define_group(&w.db, f.name.trim(), &nodes, now()).await;
    w.audit(
        &c.account,
        "web cluster group add",
        format!("{} {}", f.name.trim(), nodes.join(" ")),
        &r,
    )
    .await;
    match r {
        Ok(()) => redirect("/cluster"),
        Err(e) => cluster_page(&w, &c, StatusCode::BAD_REQUEST, Some(e.to_string())).await,
    }
}

/// POST `/cluster/groups/{name}`: `cluster group set NAME NODE…`, behind its question
/// (its phones are told other call managers and TVS servers).
pub(super) async fn group_set(
    State(w): State<Shared>,
    h: HeaderMap,
    Path(name): Path<String>,
    axum::Form(f): axum::Form<GroupForm>,
) -> Response {
    let c = match w.gate_form(&h, Role::Admin, &f.csrf).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let nodes = node_list(&f.nodes);
    if f.confirm.as_deref() != Some("yes") {
        let q = groups::set_question(&w.db, &name, &nodes)
            .await
            .unwrap_or_else(|e| e.to_string());
        return cluster_page(
            &w,
            &c,
            StatusCode::BAD_REQUEST,
            Some(format!(
                "Aborted: this {q}; the group is unchanged. Tick its box to change it."
            )),
        )
        .await;
    }
    let r = groups::set_group(&w.db, &name, &nodes).await;
    w.audit(
        &c.account,
        "web cluster group set",
        format!("{name} {}", nodes.join(" ")),
        &r,
    )
    .await;
    match r {
        Ok(()) => redirect("/cluster"),
        Err(e) => cluster_page(&w, &c, StatusCode::BAD_REQUEST, Some(e.to_string())).await,
    }
}

/// POST `/cluster/groups/{name}/delete`: `cluster group remove NAME` (refused while
/// phones or pools use it).
pub(super) async fn group_remove(
    State(w): State<Shared>,
    h: HeaderMap,
    Path(name): Path<String>,
    axum::Form(f): axum::Form<ConfirmForm>,
) -> Response {
    let c = match w.gate_form(&h, Role::Admin, &f.csrf).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let r = groups::remove_group(&w.db, &name).await;
    w.audit(&c.account, "web cluster group remove", name.clone(), &r)
        .await;
    match r {
        Ok(()) => redirect("/cluster"),
        Err(e) => cluster_page(&w, &c, StatusCode::BAD_REQUEST, Some(e.to_string())).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_list_takes_commas_and_spaces() {
        assert_eq!(node_list(" a.x, b.x  c.x,,"), vec!["a.x", "b.x", "c.x"]);
        assert!(node_list(" , ").is_empty());
    }
}
