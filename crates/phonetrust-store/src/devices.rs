//! Phones, phone security profiles, CAPF information and the certificates CAPF learnt of
//! each phone. Every change is one transaction; a bulk import is one transaction for all
//! of its valid rows.

use sqlx::any::AnyRow;
use sqlx::{AssertSqlSafe, Row};

use crate::StoreError;
use crate::db::{Db, db_err};
use crate::model::{
    AuthMode, CapfInfo, CertOperation, Device, DeviceCert, DeviceCertKind, EcCurve, KeyOrder,
    OpState, Protocol, SecurityMode, SecurityProfile, auth_string, device_name, rsa_bits,
};

/// The profile a phone gets when none is named.
pub const DEFAULT_PROFILE: &str = "Standard Non-Secure Profile";

const PROFILE_COLUMNS: &str = "name, description, device_security_mode, tftp_encrypted_config, auth_mode, key_order, rsa_bits, ec_curve";

const DEVICE_COLUMNS: &str = "name, model, protocol, securityprofile, description, capf_operation, \
     capf_auth_mode, capf_auth_string, capf_key_order, capf_rsa_bits, capf_ec_curve, \
     capf_completes_by, capf_state, capf_status, capf_status_at, md5hash, created_at, updated_at";

const CERT_COLUMNS: &str =
    "kind, pem, md5, public_key, subject, issuer, serial, not_before, not_after, recorded_at";

fn get<'r, T>(r: &'r AnyRow, col: &str) -> Result<T, StoreError>
where
    T: sqlx::Decode<'r, sqlx::Any> + sqlx::Type<sqlx::Any>,
{
    r.try_get(col).map_err(db_err)
}

fn row_to_profile(r: &AnyRow) -> Result<SecurityProfile, StoreError> {
    Ok(SecurityProfile {
        name: get(r, "name")?,
        description: get(r, "description")?,
        mode: get::<String>(r, "device_security_mode")?.parse()?,
        encrypted_config: get::<i64>(r, "tftp_encrypted_config")? != 0,
        auth_mode: get::<String>(r, "auth_mode")?.parse()?,
        key_order: get::<String>(r, "key_order")?.parse()?,
        rsa_bits: u32::try_from(get::<i64>(r, "rsa_bits")?).unwrap_or(2048),
        ec_curve: get::<String>(r, "ec_curve")?.parse()?,
    })
}

/// A value bound to a filter's placeholder.
#[derive(Clone)]
enum FilterValue {
    Text(String),
    Int(i64),
}

/// The WHERE condition of `f` with `$1…` placeholders, and their values.
fn filter_sql(f: &DeviceFilter) -> (String, Vec<FilterValue>) {
    let mut sql = String::from("1 = 1");
    let mut values = Vec::new();
    // `cond` with `?` standing for the next placeholder.
    let mut when = |cond: &str, v: FilterValue| {
        values.push(v);
        sql.push_str(" AND ");
        sql.push_str(&cond.replace('?', &format!("${}", values.len())));
    };
    if let Some(s) = &f.auth_string {
        when("capf_auth_string = ?", FilterValue::Text(s.clone()));
    }
    if let Some(t) = f.lsc_expires_before {
        when(
            "name IN (SELECT device FROM devicecert WHERE kind = 'LSC' AND not_after < ?)",
            FilterValue::Int(t),
        );
    }
    if let Some(s) = f.state {
        when("capf_state = ?", FilterValue::Text(s.as_str().into()));
    }
    if let Some(p) = &f.profile {
        when("securityprofile = ?", FilterValue::Text(p.clone()));
    }
    if let Some(m) = &f.model {
        when("LOWER(model) = LOWER(?)", FilterValue::Text(m.clone()));
    }
    if let Some(i) = &f.lsc_issuer {
        when(
            "name IN (SELECT device FROM devicecert WHERE kind = 'LSC' AND LOWER(issuer) = LOWER(?))",
            FilterValue::Text(i.clone()),
        );
    }
    match f.lsc {
        Some(LscFilter::Installed) => {
            sql.push_str(" AND name IN (SELECT device FROM devicecert WHERE kind = 'LSC')")
        }
        Some(LscFilter::None) => {
            sql.push_str(" AND name NOT IN (SELECT device FROM devicecert WHERE kind = 'LSC')")
        }
        None => {}
    }
    (sql, values)
}

fn bind_all<'q>(
    mut q: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>,
    values: Vec<FilterValue>,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments> {
    for v in values {
        q = match v {
            FilterValue::Text(t) => q.bind(t),
            FilterValue::Int(i) => q.bind(i),
        };
    }
    q
}

fn row_to_device(r: &AnyRow) -> Result<Device, StoreError> {
    Ok(Device {
        name: get(r, "name")?,
        model: get(r, "model")?,
        protocol: get::<String>(r, "protocol")?.parse()?,
        profile: get(r, "securityprofile")?,
        description: get(r, "description")?,
        capf: CapfInfo {
            operation: get::<String>(r, "capf_operation")?.parse()?,
            auth_mode: get::<String>(r, "capf_auth_mode")?.parse()?,
            auth_string: get(r, "capf_auth_string")?,
            key_order: get::<String>(r, "capf_key_order")?.parse()?,
            rsa_bits: u32::try_from(get::<i64>(r, "capf_rsa_bits")?).unwrap_or(2048),
            ec_curve: get::<String>(r, "capf_ec_curve")?.parse()?,
            completes_by: get(r, "capf_completes_by")?,
            state: get::<String>(r, "capf_state")?.parse()?,
            status: get(r, "capf_status")?,
            status_at: get(r, "capf_status_at")?,
        },
        md5hash: get(r, "md5hash")?,
        created_at: get(r, "created_at")?,
        updated_at: get(r, "updated_at")?,
    })
}

fn row_to_cert(r: &AnyRow) -> Result<DeviceCert, StoreError> {
    Ok(DeviceCert {
        kind: get::<String>(r, "kind")?.parse()?,
        pem: get(r, "pem")?,
        md5: get(r, "md5")?,
        public_key: get(r, "public_key")?,
        subject: get(r, "subject")?,
        issuer: get(r, "issuer")?,
        serial: get(r, "serial")?,
        not_before: get(r, "not_before")?,
        not_after: get(r, "not_after")?,
        recorded_at: get(r, "recorded_at")?,
    })
}

/// A new phone: what `phone add` (or a CSV row) gives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewDevice {
    /// `SEP<MAC>` (checked, upper-cased).
    pub name: String,
    /// Model.
    pub model: String,
    /// Protocol.
    pub protocol: Protocol,
    /// Security profile name (`None`: [`DEFAULT_PROFILE`]).
    pub profile: Option<String>,
    /// Description.
    pub description: String,
}

/// The phone security profiles every node ships with (migration `0002_defaults`): they
/// can be changed, not deleted.
pub const SHIPPED_PROFILES: [&str; 3] = [
    "Standard Non-Secure Profile",
    "Standard Authenticated Profile",
    "Standard Encrypted Profile",
];

/// A change of a phone security profile; `None` fields keep their value.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProfileChange {
    /// Free text.
    pub description: Option<String>,
    /// Device security mode.
    pub mode: Option<SecurityMode>,
    /// TFTP encrypted configuration.
    pub encrypted_config: Option<bool>,
    /// CAPF authentication mode.
    pub auth_mode: Option<AuthMode>,
    /// Key order.
    pub key_order: Option<KeyOrder>,
    /// RSA key size.
    pub rsa_bits: Option<u32>,
    /// EC key size.
    pub ec_curve: Option<EcCurve>,
}

/// A change of a phone's CAPF information; `None` fields keep their value.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CapfChange {
    /// Operation.
    pub operation: Option<CertOperation>,
    /// Authentication mode.
    pub auth_mode: Option<AuthMode>,
    /// Authentication string.
    pub auth_string: Option<String>,
    /// Key order.
    pub key_order: Option<crate::model::KeyOrder>,
    /// RSA key size.
    pub rsa_bits: Option<u32>,
    /// EC curve.
    pub ec_curve: Option<crate::model::EcCurve>,
    /// Operation completes by.
    pub completes_by: Option<i64>,
}

/// A change of a phone's configuration; `None` fields keep their value.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeviceChange {
    /// Model.
    pub model: Option<String>,
    /// Protocol.
    pub protocol: Option<Protocol>,
    /// Security profile.
    pub profile: Option<String>,
    /// Description.
    pub description: Option<String>,
}

/// Filters of `phone list`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeviceFilter {
    /// Only phones whose LSC is in this state.
    pub lsc: Option<LscFilter>,
    /// Only phones with this authentication string.
    pub auth_string: Option<String>,
    /// Only phones whose LSC expires before this time (Unix seconds).
    pub lsc_expires_before: Option<i64>,
    /// Only phones whose operation is in this state.
    pub state: Option<OpState>,
    /// Only phones with this security profile.
    pub profile: Option<String>,
    /// Only phones of this model.
    pub model: Option<String>,
    /// Only phones whose LSC was issued by this issuer (its name as recorded, e.g.
    /// `CN=CAPF-1a2b3c4d, O=Example`; compared without case).
    pub lsc_issuer: Option<String>,
}

/// LSC states for filtering.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LscFilter {
    /// An LSC is recorded.
    Installed,
    /// No LSC is recorded.
    None,
}

/// Bounds of a phone's model and description.
const MAX_TEXT: usize = 128;

fn text_field(what: &str, s: &str) -> Result<String, StoreError> {
    if s.len() > MAX_TEXT || s.chars().any(char::is_control) {
        return Err(StoreError::Invalid(format!(
            "{what} must be at most {MAX_TEXT} printable characters"
        )));
    }
    Ok(s.trim().to_string())
}

/// What the CAPF status of a phone reads after `op` was scheduled over a status in
/// `state`: "Operation Pending" for an operation; for `None` the last outcome stays
/// visible (a cancelled pending operation reads "None").
pub fn pending_status(op: CertOperation, state: OpState) -> Option<(OpState, String)> {
    match (op, state) {
        (CertOperation::None, OpState::Pending) => Some((OpState::None, "None".into())),
        (CertOperation::None, _) => None,
        _ => Some((OpState::Pending, "Operation Pending".into())),
    }
}

/// Encrypted configs are encrypted to the phone's certificate with RSA: a profile that
/// encrypts the config needs a key order that gives the phone an RSA LSC.
pub fn check_key_order(profile: &SecurityProfile, order: KeyOrder) -> Result<(), StoreError> {
    if profile.encrypted_config && matches!(order, KeyOrder::Ec | KeyOrder::EcRsa) {
        return Err(StoreError::Invalid(format!(
            "key order '{}' with profile '{}': the profile encrypts the phone's config, which needs an RSA key (an EC LSC cannot decrypt it and the phone fails to boot); use key order rsa or rsa-ec, or a profile without encrypted config",
            order.as_str(),
            profile.name
        )));
    }
    Ok(())
}

/// Apply `ch` to `c` of a phone with `profile`: scheduling an operation sets the status to
/// "Operation Pending" and, without `completes_by`, the deadline to now plus
/// `expires_days`. Checks the result.
pub fn apply_capf_change(
    c: &mut CapfInfo,
    profile: &SecurityProfile,
    ch: &CapfChange,
    now: i64,
    expires_days: i64,
) -> Result<(), StoreError> {
    if let Some(m) = ch.auth_mode {
        c.auth_mode = m;
        if m != AuthMode::AuthString && ch.auth_string.is_none() {
            c.auth_string = None;
        }
    }
    if let Some(s) = &ch.auth_string {
        c.auth_string = Some(auth_string(s)?);
    }
    if let Some(k) = ch.key_order {
        c.key_order = k;
    }
    if let Some(b) = ch.rsa_bits {
        c.rsa_bits = rsa_bits(b)?;
    }
    if let Some(e) = ch.ec_curve {
        c.ec_curve = e;
    }
    if let Some(op) = ch.operation {
        c.operation = op;
        if let Some((state, status)) = pending_status(op, c.state) {
            c.state = state;
            c.status = status;
            c.status_at = now;
        }
        c.completes_by = match (op, ch.completes_by) {
            (CertOperation::None, _) => None,
            (_, Some(t)) => Some(t),
            (_, None) => Some(now + expires_days * 86_400),
        };
    } else if let Some(t) = ch.completes_by {
        c.completes_by = Some(t);
    }
    if c.operation != CertOperation::None
        && let Some(t) = c.completes_by
        && t <= now
    {
        return Err(StoreError::Invalid(
            "'Operation Completes By' is in the past: enter a date and time at least an hour in the future".into(),
        ));
    }
    check_capf(c)?;
    check_key_order(profile, c.key_order)
}

/// Check a CAPF information as a whole: the authentication string is there when the mode
/// needs it, the key sizes are allowed.
pub fn check_capf(c: &CapfInfo) -> Result<(), StoreError> {
    if c.auth_mode == AuthMode::AuthString && c.auth_string.is_none() {
        return Err(StoreError::MissingAuthString);
    }
    if let Some(s) = &c.auth_string {
        auth_string(s)?;
    }
    rsa_bits(c.rsa_bits)?;
    Ok(())
}

impl Db {
    /// Every phone security profile.
    pub async fn profiles(&self) -> Result<Vec<SecurityProfile>, StoreError> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {PROFILE_COLUMNS} FROM securityprofile ORDER BY name"
        )))
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        rows.iter().map(row_to_profile).collect()
    }

    /// One profile.
    pub async fn profile(&self, name: &str) -> Result<SecurityProfile, StoreError> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {PROFILE_COLUMNS} FROM securityprofile WHERE name = $1"
        )))
        .bind(name)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?;
        match row {
            Some(r) => row_to_profile(&r),
            None => Err(StoreError::NotFound(format!(
                "no phone security profile '{name}' (see `phonetrust profile list`)"
            ))),
        }
    }

    /// Add a new profile; refuses a name that exists (change it with
    /// [`Db::change_profile`]).
    pub async fn add_profile(&self, p: &SecurityProfile, now: i64) -> Result<(), StoreError> {
        if self.profile(p.name.trim()).await.is_ok() {
            return Err(StoreError::Conflict(format!(
                "phone security profile '{}' exists already: nothing was changed (change given settings with `phonetrust profile set`)",
                p.name.trim()
            )));
        }
        self.put_profile(p, now).await
    }

    /// Change the given settings of a profile, keep the others; returns the profile as
    /// saved.
    pub async fn change_profile(
        &self,
        name: &str,
        ch: &ProfileChange,
        now: i64,
    ) -> Result<SecurityProfile, StoreError> {
        let mut p = self.profile(name).await?;
        if let Some(v) = &ch.description {
            p.description = v.clone();
        }
        if let Some(v) = ch.mode {
            p.mode = v;
        }
        if let Some(v) = ch.encrypted_config {
            p.encrypted_config = v;
        }
        if let Some(v) = ch.auth_mode {
            p.auth_mode = v;
        }
        if let Some(v) = ch.key_order {
            p.key_order = v;
        }
        if let Some(v) = ch.rsa_bits {
            p.rsa_bits = v;
        }
        if let Some(v) = ch.ec_curve {
            p.ec_curve = v;
        }
        self.put_profile(&p, now).await?;
        Ok(p)
    }

    /// Add or replace a profile (all settings).
    pub async fn put_profile(&self, p: &SecurityProfile, now: i64) -> Result<(), StoreError> {
        let name = text_field("a profile name", &p.name)?;
        if name.is_empty() {
            return Err(StoreError::Invalid("a profile needs a name".into()));
        }
        rsa_bits(p.rsa_bits)?;
        check_key_order(p, p.key_order)?;
        let mut tx = self.begin().await?;
        if p.encrypted_config {
            let ec: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM device WHERE securityprofile = $1 AND capf_key_order IN ('ec', 'ec-rsa')",
            )
            .bind(&name)
            .fetch_one(&mut *tx)
            .await
            .map_err(db_err)?;
            if ec > 0 {
                return Err(StoreError::Invalid(format!(
                    "{ec} phone(s) with profile '{name}' have key order ec or ec-rsa: an encrypted config needs an RSA key; change their key order first (`phonetrust phone capf NAME --key-order rsa`)"
                )));
            }
        }
        sqlx::query(
            "INSERT INTO securityprofile (name, description, device_security_mode, tftp_encrypted_config, \
             auth_mode, key_order, rsa_bits, ec_curve, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9) \
             ON CONFLICT (name) DO UPDATE SET description = $2, device_security_mode = $3, \
             tftp_encrypted_config = $4, auth_mode = $5, key_order = $6, rsa_bits = $7, \
             ec_curve = $8, updated_at = $9",
        )
        .bind(&name)
        .bind(text_field("a description", &p.description)?)
        .bind(p.mode.as_str())
        .bind(i64::from(p.encrypted_config))
        .bind(p.auth_mode.as_str())
        .bind(p.key_order.as_str())
        .bind(i64::from(p.rsa_bits))
        .bind(p.ec_curve.as_str())
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        Ok(())
    }

    /// Delete a profile no phone uses; the shipped profiles ([`SHIPPED_PROFILES`]) stay.
    pub async fn delete_profile(&self, name: &str) -> Result<(), StoreError> {
        let p = self.profile(name).await?;
        if SHIPPED_PROFILES.contains(&p.name.as_str()) {
            return Err(StoreError::Invalid(format!(
                "'{}' is a standard profile shipped with every node and cannot be deleted (change its settings with `phonetrust profile set`)",
                p.name
            )));
        }
        let mut tx = self.begin().await?;
        let users: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM device WHERE securityprofile = $1")
                .bind(name)
                .fetch_one(&mut *tx)
                .await
                .map_err(db_err)?;
        if users > 0 {
            return Err(StoreError::Invalid(format!(
                "profile '{name}' is used by {users} phone(s); give them another profile first"
            )));
        }
        sqlx::query("DELETE FROM securityprofile WHERE name = $1")
            .bind(name)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        Ok(())
    }

    /// Add phones in one transaction. Each must be new and valid; its CAPF information
    /// starts from its profile's settings.
    pub async fn add_devices(&self, devs: &[NewDevice], now: i64) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        for d in devs {
            insert_device(&mut tx, d, now).await?;
        }
        tx.commit().await.map_err(db_err)?;
        for d in devs {
            tracing::info!(device = d.name, model = d.model, "phone added");
        }
        Ok(())
    }

    /// One phone.
    pub async fn device(&self, name: &str) -> Result<Device, StoreError> {
        let name = device_name(name)?;
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {DEVICE_COLUMNS} FROM device WHERE name = $1"
        )))
        .bind(&name)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?;
        match row {
            Some(r) => row_to_device(&r),
            None => Err(StoreError::NotFound(format!(
                "unknown phone {name}: add it first (`phonetrust phone add {name}`)"
            ))),
        }
    }

    /// Several phones in one query (names as given; unknown ones are absent from the
    /// result). The CAPF server batches the lookups of concurrent sessions through this.
    pub async fn devices_named(
        &self,
        names: &[String],
    ) -> Result<std::collections::HashMap<String, Device>, StoreError> {
        let mut out = std::collections::HashMap::new();
        for chunk in names.chunks(200) {
            let sql = format!(
                "SELECT {DEVICE_COLUMNS} FROM device WHERE name IN ({})",
                marks(1, chunk.len())
            );
            let mut q = sqlx::query(AssertSqlSafe(sql));
            for n in chunk {
                q = q.bind(n);
            }
            for r in q.fetch_all(&self.pool).await.map_err(db_err)? {
                let d = row_to_device(&r)?;
                out.insert(d.name.clone(), d);
            }
        }
        Ok(out)
    }

    /// The certificates recorded for a phone.
    pub async fn device_certs(&self, name: &str) -> Result<Vec<DeviceCert>, StoreError> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {CERT_COLUMNS} FROM devicecert WHERE device = $1 ORDER BY kind DESC"
        )))
        .bind(name)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        rows.iter().map(row_to_cert).collect()
    }

    /// Phones matching `f`, by name.
    pub async fn devices(&self, f: &DeviceFilter) -> Result<Vec<Device>, StoreError> {
        let (cond, values) = filter_sql(f);
        let sql = format!("SELECT {DEVICE_COLUMNS} FROM device WHERE {cond} ORDER BY name");
        let rows = bind_all(sqlx::query(AssertSqlSafe(sql)), values)
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?;
        rows.iter().map(row_to_device).collect()
    }

    /// One page of the phones matching `f` (by name, `limit` from `offset`) and how many
    /// match in all: two indexed queries, whatever the size of the fleet.
    pub async fn devices_page(
        &self,
        f: &DeviceFilter,
        offset: u64,
        limit: u64,
    ) -> Result<(Vec<Device>, i64), StoreError> {
        let (cond, values) = filter_sql(f);
        let n = values.len();
        let sql = format!(
            "SELECT {DEVICE_COLUMNS} FROM device WHERE {cond} ORDER BY name LIMIT ${} OFFSET ${}",
            n + 1,
            n + 2
        );
        let rows = bind_all(sqlx::query(AssertSqlSafe(sql)), values.clone())
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .bind(i64::try_from(offset).unwrap_or(i64::MAX))
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?;
        let sql = format!("SELECT COUNT(*) FROM device WHERE {cond}");
        let total: i64 = bind_all(sqlx::query(AssertSqlSafe(sql)), values)
            .fetch_one(&self.pool)
            .await
            .map_err(db_err)?
            .try_get(0)
            .map_err(db_err)?;
        Ok((
            rows.iter().map(row_to_device).collect::<Result<_, _>>()?,
            total,
        ))
    }

    /// Number of phones.
    pub async fn device_count(&self) -> Result<i64, StoreError> {
        sqlx::query_scalar("SELECT COUNT(*) FROM device")
            .fetch_one(&self.pool)
            .await
            .map_err(db_err)
    }

    /// Change a phone's configuration.
    pub async fn update_device(
        &self,
        name: &str,
        ch: &DeviceChange,
        now: i64,
    ) -> Result<Device, StoreError> {
        let mut d = self.device(name).await?;
        if let Some(m) = &ch.model {
            d.model = text_field("a model", m)?;
        }
        if let Some(p) = ch.protocol {
            d.protocol = p;
        }
        if let Some(p) = &ch.profile {
            check_key_order(&self.profile(p).await?, d.capf.key_order)?;
            d.profile = p.clone();
        }
        if let Some(s) = &ch.description {
            d.description = text_field("a description", s)?;
        }
        let mut tx = self.begin().await?;
        sqlx::query(
            "UPDATE device SET model = $2, protocol = $3, securityprofile = $4, description = $5, \
             updated_at = $6 WHERE name = $1",
        )
        .bind(&d.name)
        .bind(&d.model)
        .bind(d.protocol.as_str())
        .bind(&d.profile)
        .bind(&d.description)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        d.updated_at = now;
        Ok(d)
    }

    /// Change a phone's CAPF information. Scheduling an operation sets the status to
    /// "Operation Pending"; without `completes_by` the deadline is now plus "CAPF Operation
    /// Expires in (days)".
    pub async fn set_capf(
        &self,
        name: &str,
        ch: &CapfChange,
        now: i64,
    ) -> Result<Device, StoreError> {
        let mut d = self.device(name).await?;
        let days = self
            .param(crate::params::CAPF_OPERATION_EXPIRES_DAYS)
            .await?;
        let profile = self.profile(&d.profile).await?;
        apply_capf_change(&mut d.capf, &profile, ch, now, days)?;
        let mut tx = self.begin().await?;
        write_capf(&mut tx, &d.name, &d.capf, now).await?;
        tx.commit().await.map_err(db_err)?;
        tracing::info!(
            device = d.name,
            operation = d.capf.operation.as_str(),
            "CAPF information changed"
        );
        d.updated_at = now;
        Ok(d)
    }

    /// [`set_capf`](Self::set_capf) for many phones at once (bulk operations), each with its
    /// own change: one transaction per 500 phones. A phone whose change is refused (no such
    /// phone, a key order its profile does not allow, ...) gets its reason and the others go
    /// on; a database failure stops the whole call (the chunks before it are committed and
    /// reported in `done` of the error's context by the caller re-running the selection).
    pub async fn set_capf_many(
        &self,
        changes: &[(String, CapfChange)],
        now: i64,
    ) -> Result<Vec<(String, Result<Device, StoreError>)>, StoreError> {
        let days = self
            .param(crate::params::CAPF_OPERATION_EXPIRES_DAYS)
            .await?;
        let profiles: std::collections::HashMap<String, SecurityProfile> = self
            .profiles()
            .await?
            .into_iter()
            .map(|p| (p.name.clone(), p))
            .collect();
        let mut out = Vec::with_capacity(changes.len());
        for chunk in changes.chunks(500) {
            let names: Vec<String> = chunk.iter().map(|(n, _)| n.clone()).collect();
            let mut devices = self.devices_named(&names).await?;
            let mut tx = self.begin().await?;
            let mut results = Vec::with_capacity(chunk.len());
            for (name, ch) in chunk {
                let r = match devices.remove(name) {
                    None => Err(StoreError::NotFound(format!("phone {name}"))),
                    Some(mut d) => match profiles.get(&d.profile) {
                        None => Err(StoreError::NotFound(format!(
                            "security profile {} of {name}",
                            d.profile
                        ))),
                        Some(p) => match apply_capf_change(&mut d.capf, p, ch, now, days) {
                            Ok(()) => {
                                write_capf(&mut tx, &d.name, &d.capf, now).await?;
                                d.updated_at = now;
                                Ok(d)
                            }
                            Err(e) => Err(e),
                        },
                    },
                };
                results.push((name.clone(), r));
            }
            tx.commit().await.map_err(db_err)?;
            out.extend(results);
        }
        tracing::info!(phones = changes.len(), "CAPF information changed in bulk");
        Ok(out)
    }

    /// Record the outcome of a CAPF operation: state, status text and, on success, the
    /// certificate learnt (or, for a delete, the LSC removed), in one transaction. The
    /// operation is cleared once it succeeded.
    pub async fn record_capf_result(
        &self,
        name: &str,
        state: OpState,
        status: &str,
        certs: &[DeviceCert],
        delete_lsc: bool,
        now: i64,
    ) -> Result<(), StoreError> {
        let rec = CapfRecord {
            device: name.to_string(),
            state,
            status: status.to_string(),
            certs: certs.to_vec(),
            delete_lsc,
            now,
        };
        let mut out = self.record_capf_results(std::slice::from_ref(&rec)).await?;
        out.pop().unwrap_or(Ok(()))
    }

    /// Record several outcomes in one transaction (group commit: one disk sync for many
    /// phones). The transaction commits when every record could be written; a record for
    /// a phone that no longer exists is reported as `NotFound` in its own slot without
    /// stopping the others. Any other error rolls the whole batch back.
    ///
    /// A batch is written with a fixed number of statements (each a hand-off to the
    /// database), not a few per phone: the phones that exist, their CAPF status, their
    /// certificates (one upsert), deleted LSCs and `md5hash`. Records of the same phone
    /// are applied in order, the later one last.
    pub async fn record_capf_results(
        &self,
        records: &[CapfRecord],
    ) -> Result<Vec<Result<(), StoreError>>, StoreError> {
        let mut out: Vec<Result<(), StoreError>> = records.iter().map(|_| Ok(())).collect();
        let mut tx = self.begin().await?;
        for group in distinct_device_groups(records) {
            for chunk in group.chunks(RECORD_CHUNK) {
                let recs: Vec<(usize, &CapfRecord)> = chunk
                    .iter()
                    .filter_map(|&i| records.get(i).map(|r| (i, r)))
                    .collect();
                record_chunk(&mut tx, &recs, &mut out).await?;
            }
        }
        tx.commit().await.map_err(db_err)?;
        for (r, o) in records.iter().zip(&out) {
            if o.is_ok() {
                tracing::info!(
                    device = r.device,
                    state = r.state.as_str(),
                    status = r.status,
                    "CAPF status recorded"
                );
            }
        }
        Ok(out)
    }

    /// Delete a phone (and its recorded certificates).
    pub async fn delete_device(&self, name: &str) -> Result<(), StoreError> {
        let name = device_name(name)?;
        let mut tx = self.begin().await?;
        for table in ["devicecert", "device_placement"] {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DELETE FROM {table} WHERE device = $1"
            )))
            .bind(&name)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        }
        let done = sqlx::query("DELETE FROM device WHERE name = $1")
            .bind(&name)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("unknown phone {name}")));
        }
        tx.commit().await.map_err(db_err)?;
        tracing::info!(device = name, "phone deleted");
        Ok(())
    }

    /// How many phones hold an LSC issued by `issuer` (display form of the issuer name).
    pub async fn lsc_count_by_issuer(&self, issuer: &str) -> Result<i64, StoreError> {
        sqlx::query_scalar("SELECT COUNT(*) FROM devicecert WHERE kind = 'LSC' AND issuer = $1")
            .bind(issuer)
            .fetch_one(&self.pool)
            .await
            .map_err(db_err)
    }

    /// Phones that authenticate to CAPF by their LSC (auth mode lsc) and hold an LSC
    /// issued by `issuer`.
    pub async fn lsc_auth_phones_by_issuer(&self, issuer: &str) -> Result<Vec<String>, StoreError> {
        sqlx::query_scalar(
            "SELECT d.name FROM device d JOIN devicecert c ON c.device = d.name \
             WHERE c.kind = 'LSC' AND c.issuer = $1 AND d.capf_auth_mode = 'lsc' ORDER BY d.name",
        )
        .bind(issuer)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)
    }

    /// Names of every phone.
    pub async fn device_names(&self) -> Result<Vec<String>, StoreError> {
        sqlx::query_scalar("SELECT name FROM device ORDER BY name")
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)
    }

    /// Every phone's LSC, by phone name.
    pub async fn lscs(&self) -> Result<Vec<(String, DeviceCert)>, StoreError> {
        self.device_certs_of(DeviceCertKind::Lsc).await
    }

    /// The phones that hold an LSC, by name (no certificates read).
    pub async fn lsc_device_names(&self) -> Result<Vec<String>, StoreError> {
        sqlx::query_scalar("SELECT device FROM devicecert WHERE kind = 'LSC' ORDER BY device")
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)
    }

    /// Which of `names` (at most a page of them) hold an LSC.
    pub async fn lsc_among(
        &self,
        names: &[String],
    ) -> Result<std::collections::HashSet<String>, StoreError> {
        let mut out = std::collections::HashSet::new();
        for chunk in names.chunks(500) {
            let sql = format!(
                "SELECT device FROM devicecert WHERE kind = 'LSC' AND device IN ({})",
                marks(1, chunk.len())
            );
            let mut q = sqlx::query_scalar::<_, String>(AssertSqlSafe(sql));
            for n in chunk {
                q = q.bind(n);
            }
            out.extend(q.fetch_all(&self.pool).await.map_err(db_err)?);
        }
        Ok(out)
    }

    /// Every LSC's recording time (when CAPF committed it) and notAfter (Unix seconds),
    /// nothing else read: what the dashboard's pictures count.
    pub async fn lsc_times(&self) -> Result<Vec<(i64, i64)>, StoreError> {
        let rows = sqlx::query("SELECT recorded_at, not_after FROM devicecert WHERE kind = 'LSC'")
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?;
        rows.iter()
            .map(|r| Ok((get(r, "recorded_at")?, get(r, "not_after")?)))
            .collect()
    }

    /// When the LSC that expires first expires (Unix seconds), if any phone holds one.
    pub async fn lsc_earliest_expiry(&self) -> Result<Option<i64>, StoreError> {
        sqlx::query_scalar("SELECT MIN(not_after) FROM devicecert WHERE kind = 'LSC'")
            .fetch_one(&self.pool)
            .await
            .map_err(db_err)
    }

    /// Every MIC CAPF has seen, by phone name.
    pub async fn mics(&self) -> Result<Vec<(String, DeviceCert)>, StoreError> {
        self.device_certs_of(DeviceCertKind::Mic).await
    }

    async fn device_certs_of(
        &self,
        kind: DeviceCertKind,
    ) -> Result<Vec<(String, DeviceCert)>, StoreError> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT device, {CERT_COLUMNS} FROM devicecert WHERE kind = $1 ORDER BY device"
        )))
        .bind(kind.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        rows.iter()
            .map(|r| Ok((get(r, "device")?, row_to_cert(r)?)))
            .collect()
    }

    /// Phones whose LSC expires before `t`, with that time.
    pub async fn lsc_expiring(&self, t: i64) -> Result<Vec<(String, i64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT device, not_after FROM devicecert WHERE kind = 'LSC' AND not_after < $1 ORDER BY not_after, device",
        )
        .bind(t)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        rows.iter()
            .map(|r| Ok((get(r, "device")?, get(r, "not_after")?)))
            .collect()
    }
}

pub(crate) async fn insert_device(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    d: &NewDevice,
    now: i64,
) -> Result<String, StoreError> {
    let name = device_name(&d.name)?;
    let model = text_field("a model", &d.model)?;
    let description = text_field("a description", &d.description)?;
    let profile_name = d
        .profile
        .clone()
        .unwrap_or_else(|| DEFAULT_PROFILE.to_string());
    let row = sqlx::query(AssertSqlSafe(format!(
        "SELECT {PROFILE_COLUMNS} FROM securityprofile WHERE name = $1"
    )))
    .bind(&profile_name)
    .fetch_optional(&mut **tx)
    .await
    .map_err(db_err)?;
    let p = match row {
        Some(r) => row_to_profile(&r)?,
        None => {
            return Err(StoreError::NotFound(format!(
                "no phone security profile '{profile_name}' (see `phonetrust profile list`)"
            )));
        }
    };
    let exists: Option<String> = sqlx::query_scalar("SELECT name FROM device WHERE name = $1")
        .bind(&name)
        .fetch_optional(&mut **tx)
        .await
        .map_err(db_err)?;
    if exists.is_some() {
        return Err(StoreError::Conflict(format!(
            "phone {name} exists already (change it with `phonetrust phone set {name}`)"
        )));
    }
    let capf = CapfInfo::idle(&p, now);
    sqlx::query(AssertSqlSafe(format!(
        "INSERT INTO device ({DEVICE_COLUMNS}) VALUES \
         ($1, $2, $3, $4, $5, 'none', $6, NULL, $7, $8, $9, NULL, 'none', 'None', $10, NULL, $10, $10)"
    )))
    .bind(&name)
    .bind(&model)
    .bind(d.protocol.as_str())
    .bind(&p.name)
    .bind(&description)
    .bind(capf.auth_mode.as_str())
    .bind(capf.key_order.as_str())
    .bind(i64::from(capf.rsa_bits))
    .bind(capf.ec_curve.as_str())
    .bind(now)
    .execute(&mut **tx)
    .await
    .map_err(db_err)?;
    Ok(name)
}

pub(crate) async fn write_capf(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    name: &str,
    c: &CapfInfo,
    now: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE device SET capf_operation = $2, capf_auth_mode = $3, capf_auth_string = $4, \
         capf_key_order = $5, capf_rsa_bits = $6, capf_ec_curve = $7, capf_completes_by = $8, \
         capf_state = $9, capf_status = $10, capf_status_at = $11, updated_at = $12 WHERE name = $1",
    )
    .bind(name)
    .bind(c.operation.as_str())
    .bind(c.auth_mode.as_str())
    .bind(c.auth_string.clone())
    .bind(c.key_order.as_str())
    .bind(i64::from(c.rsa_bits))
    .bind(c.ec_curve.as_str())
    .bind(c.completes_by)
    .bind(c.state.as_str())
    .bind(&c.status)
    .bind(c.status_at)
    .bind(now)
    .execute(&mut **tx)
    .await
    .map_err(db_err)?;
    Ok(())
}

/// The certificate record of `cert` as CAPF learnt it.
pub fn device_cert(
    kind: DeviceCertKind,
    cert: &openssl::x509::X509Ref,
    now: i64,
) -> Result<DeviceCert, StoreError> {
    // The DER once (MD5 and PEM from it): recording an enrolment is on the CAPF hot path.
    let der = cert.to_der()?;
    let public = cert.public_key()?;
    let pk = phonetrust_proto::cert::record_public_key(&public)
        .map_err(|e| StoreError::Invalid(e.to_string()))?;
    let serial = phonetrust_proto::cert::serial_bytes(cert)
        .map_err(|e| StoreError::Invalid(e.to_string()))?;
    Ok(DeviceCert {
        kind,
        pem: pem_of_der(&der),
        md5: phonetrust_proto::cert::md5_hex(&der),
        public_key: phonetrust_proto::codec::hex(&pk),
        subject: phonetrust_pki::details::display_name(cert.subject_name()),
        issuer: phonetrust_pki::details::display_name(cert.issuer_name()),
        serial: phonetrust_proto::codec::hex(&serial).to_uppercase(),
        not_before: crate::trust::unix_time(cert.not_before()),
        not_after: crate::trust::unix_time(cert.not_after()),
        recorded_at: now,
    })
}

/// PEM of a DER certificate, as OpenSSL writes it (64 characters a line).
fn pem_of_der(der: &[u8]) -> String {
    let b64 = openssl::base64::encode_block(der);
    let mut pem = String::with_capacity(b64.len() + b64.len() / 64 + 64);
    pem.push_str("-----BEGIN CERTIFICATE-----\n");
    let mut rest = b64.as_str();
    while !rest.is_empty() {
        let (line, tail) = rest.split_at(rest.len().min(64));
        pem.push_str(line);
        pem.push('\n');
        rest = tail;
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    pem
}

/// One CAPF outcome to record (see [`Db::record_capf_results`]).
#[derive(Clone, Debug)]
pub struct CapfRecord {
    /// The phone.
    pub device: String,
    /// Success or Failed.
    pub state: OpState,
    /// The status text ("Upgrade Success", "Upgrade Failed: ...").
    pub status: String,
    /// Certificates learnt (replacing those of the same kind).
    pub certs: Vec<DeviceCert>,
    /// Whether the phone's LSC was deleted.
    pub delete_lsc: bool,
    /// When.
    pub now: i64,
}

/// Records written by one set of statements (bounds the placeholders of a statement:
/// 11 per certificate row, well under SQLite's 32,766 and PostgreSQL's 65,535).
const RECORD_CHUNK: usize = 100;

/// `records` split into groups, in order, in which each phone appears at most once (a
/// batch almost always is one group): a later record of a phone goes into a later group,
/// so it is applied after the earlier one.
fn distinct_device_groups(records: &[CapfRecord]) -> Vec<Vec<usize>> {
    let mut groups: Vec<(std::collections::HashSet<&str>, Vec<usize>)> = Vec::new();
    for (i, r) in records.iter().enumerate() {
        // The first group after the last one holding this phone.
        let after = groups
            .iter()
            .rposition(|(names, _)| names.contains(r.device.as_str()))
            .map_or(0, |g| g + 1);
        match groups.get_mut(after) {
            Some((names, idx)) => {
                names.insert(r.device.as_str());
                idx.push(i);
            }
            None => groups.push(([r.device.as_str()].into_iter().collect(), vec![i])),
        }
    }
    groups.into_iter().map(|(_, idx)| idx).collect()
}

/// The MD5 of the LSC a record installs (the last LSC it carries), unless it deletes it.
fn new_lsc_md5(r: &CapfRecord) -> Option<&str> {
    if r.delete_lsc {
        return None;
    }
    r.certs
        .iter()
        .rev()
        .find(|c| c.kind == DeviceCertKind::Lsc)
        .map(|c| c.md5.as_str())
}

/// `$first, $first+1, ...` (`n` placeholders).
fn marks(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Write records of distinct phones inside `tx`; a phone that does not exist gets
/// `NotFound` in `out` and nothing is written for it. `Err` on a database error (the
/// caller rolls back).
async fn record_chunk(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    recs: &[(usize, &CapfRecord)],
    out: &mut [Result<(), StoreError>],
) -> Result<(), StoreError> {
    if recs.is_empty() {
        return Ok(());
    }
    // The CAPF status (a success also ends the operation) and, when the record brings the
    // phone's LSC, md5hash — which follows the certificate CAPF knows the phone by: its
    // LSC, else its MIC. RETURNING tells which phones exist: nothing more is written for
    // the others.
    let rows: Vec<String> = (0..recs.len())
        .map(|k| format!("({})", marks(6 * k + 1, 6)))
        .collect();
    let sql = format!(
        "UPDATE device SET capf_state = v.column2, capf_status = v.column3, \
         capf_status_at = v.column4, updated_at = v.column4, \
         capf_operation = CASE WHEN v.column5 = 1 THEN 'none' ELSE device.capf_operation END, \
         capf_completes_by = CASE WHEN v.column5 = 1 THEN NULL ELSE device.capf_completes_by END, \
         md5hash = COALESCE(v.column6, device.md5hash) \
         FROM (VALUES {}) AS v WHERE device.name = v.column1 RETURNING name",
        rows.join(", ")
    );
    let mut q = sqlx::query_scalar::<_, String>(AssertSqlSafe(sql));
    for (_, r) in recs {
        q = q
            .bind(r.device.as_str())
            .bind(r.state.as_str())
            .bind(r.status.as_str())
            .bind(r.now)
            .bind(i64::from(r.state == OpState::Success))
            .bind(new_lsc_md5(r));
    }
    let known: std::collections::HashSet<String> = q
        .fetch_all(&mut **tx)
        .await
        .map_err(db_err)?
        .into_iter()
        .collect();
    let mut live = Vec::with_capacity(recs.len());
    for &(i, r) in recs {
        if known.contains(&r.device) {
            live.push(r);
        } else if let Some(slot) = out.get_mut(i) {
            *slot = Err(StoreError::NotFound(format!("unknown phone {}", r.device)));
        }
    }
    if live.is_empty() {
        return Ok(());
    }

    // Certificates learnt replace those of the same kind (the last of a kind wins).
    let mut certs: Vec<(&str, &DeviceCert)> = Vec::new();
    for r in &live {
        for c in &r.certs {
            match certs
                .iter_mut()
                .find(|(d, old)| *d == r.device && old.kind == c.kind)
            {
                Some(slot) => slot.1 = c,
                None => certs.push((r.device.as_str(), c)),
            }
        }
    }
    for part in certs.chunks(RECORD_CHUNK) {
        let rows: Vec<String> = (0..part.len())
            .map(|k| format!("({})", marks(11 * k + 1, 11)))
            .collect();
        let sql = format!(
            "INSERT INTO devicecert (device, {CERT_COLUMNS}) VALUES {} \
             ON CONFLICT (device, kind) DO UPDATE SET pem = excluded.pem, md5 = excluded.md5, \
             public_key = excluded.public_key, subject = excluded.subject, \
             issuer = excluded.issuer, serial = excluded.serial, \
             not_before = excluded.not_before, not_after = excluded.not_after, \
             recorded_at = excluded.recorded_at",
            rows.join(", ")
        );
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for (device, c) in part {
            q = q
                .bind(*device)
                .bind(c.kind.as_str())
                .bind(c.pem.as_str())
                .bind(c.md5.as_str())
                .bind(c.public_key.as_str())
                .bind(c.subject.as_str())
                .bind(c.issuer.as_str())
                .bind(c.serial.as_str())
                .bind(c.not_before)
                .bind(c.not_after)
                .bind(c.recorded_at);
        }
        q.execute(&mut **tx).await.map_err(db_err)?;
    }

    // LSCs the phones deleted.
    let deleted: Vec<&str> = live
        .iter()
        .filter(|r| r.delete_lsc)
        .map(|r| r.device.as_str())
        .collect();
    if !deleted.is_empty() {
        let sql = format!(
            "DELETE FROM devicecert WHERE kind = 'LSC' AND device IN ({})",
            marks(1, deleted.len())
        );
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for d in &deleted {
            q = q.bind(*d);
        }
        q.execute(&mut **tx).await.map_err(db_err)?;
    }

    // md5hash from the database where the record alone does not say it (an LSC deleted, a
    // MIC learnt): the LSC if one is left, else the MIC.
    let changed: Vec<&str> = live
        .iter()
        .filter(|r| new_lsc_md5(r).is_none() && (r.delete_lsc || !r.certs.is_empty()))
        .map(|r| r.device.as_str())
        .collect();
    if !changed.is_empty() {
        let sql = format!(
            "UPDATE device SET md5hash = (SELECT md5 FROM devicecert \
             WHERE devicecert.device = device.name \
             ORDER BY CASE kind WHEN 'LSC' THEN 0 ELSE 1 END LIMIT 1) WHERE name IN ({})",
            marks(1, changed.len())
        );
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for d in &changed {
            q = q.bind(*d);
        }
        q.execute(&mut **tx).await.map_err(db_err)?;
    }
    Ok(())
}
