//! Enterprise parameters (`processconfig`): cluster-wide settings with their defaults,
//! validated on every change.

use std::collections::HashMap;

use phonetrust_proto::ports;
use sqlx::Row;

use crate::StoreError;
use crate::db::{Db, db_err};

/// The definition of one enterprise parameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParamDef {
    /// Name in the database (`paramname`).
    pub name: &'static str,
    /// Name on the administration pages.
    pub label: &'static str,
    /// Default value.
    pub default: i64,
    /// Smallest allowed value.
    pub min: i64,
    /// Largest allowed value.
    pub max: i64,
    /// What it does.
    pub help: &'static str,
    /// Whether a change alters what phones trust (asks for confirmation).
    pub alters_trust: bool,
}

/// Cluster Security Mode: 0 non-secure, 1 mixed.
pub const CLUSTER_SECURITY_MODE: &str = "ClusterSecurityMode";
/// CAPF Phone Port.
pub const CAPF_PHONE_PORT: &str = "CapfPhonePort";
/// CAPF Operation Expires in (days).
pub const CAPF_OPERATION_EXPIRES_DAYS: &str = "CapfOperationExpiresInDays";
/// Validity of issued LSCs in days.
pub const LSC_VALIDITY_DAYS: &str = "LscValidityDays";
/// TVS port.
pub const TVS_PORT: &str = "TvsPort";
/// TFTP port.
pub const TFTP_PORT: &str = "TftpPort";
/// HTTP (TFTP over HTTP) port.
pub const HTTP_PORT: &str = "HttpPort";

/// Which key signs the ITL: 0 the CallManager certificate, 1 ITLRecovery.
pub const ITL_SIGNER: &str = "ItlSigner";

/// Every enterprise parameter.
pub const PARAMS: [ParamDef; 8] = [
    ParamDef {
        name: CLUSTER_SECURITY_MODE,
        label: "Cluster Security Mode",
        default: 0,
        min: 0,
        max: 1,
        help: "0 = non-secure, 1 = mixed mode (set by `utils ctl set-cluster mixed-mode`)",
        alters_trust: false,
    },
    ParamDef {
        name: CAPF_PHONE_PORT,
        label: "CAPF Phone Port",
        default: ports::CAPF as i64,
        min: 1,
        max: 65535,
        help: "TCP port phones connect to for CAPF",
        alters_trust: false,
    },
    ParamDef {
        name: CAPF_OPERATION_EXPIRES_DAYS,
        label: "CAPF Operation Expires in (days)",
        default: 10,
        min: 1,
        max: 365,
        help: "default 'Operation Completes By' of a newly scheduled certificate operation",
        alters_trust: false,
    },
    ParamDef {
        name: LSC_VALIDITY_DAYS,
        label: "LSC Validity (days)",
        default: 1826,
        min: 1,
        max: 7305,
        help: "validity of the LSCs CAPF issues",
        alters_trust: false,
    },
    ParamDef {
        name: TVS_PORT,
        label: "TVS Port",
        default: ports::TVS as i64,
        min: 1,
        max: 65535,
        help: "TCP port of the Trust Verification Service",
        alters_trust: false,
    },
    ParamDef {
        name: TFTP_PORT,
        label: "TFTP Port",
        default: ports::TFTP as i64,
        min: 1,
        max: 65535,
        help: "UDP port of the TFTP server",
        alters_trust: false,
    },
    ParamDef {
        name: HTTP_PORT,
        label: "HTTP Port",
        default: ports::HTTP as i64,
        min: 1,
        max: 65535,
        help: "TCP port of the HTTP server for phone downloads",
        alters_trust: false,
    },
    ParamDef {
        name: ITL_SIGNER,
        label: "ITL Signer",
        default: 0,
        min: 0,
        max: 1,
        help: "0 = CallManager certificate (normal), 1 = ITLRecovery (set by `utils itl reset localkey`, back with `utils itl restore`)",
        alters_trust: true,
    },
];

/// The ports phones are told (in their configs) and servers listen on by default: the
/// enterprise parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PhonePorts {
    /// CAPF Phone Port.
    pub capf: u16,
    /// TVS Port.
    pub tvs: u16,
    /// TFTP Port.
    pub tftp: u16,
    /// HTTP Port.
    pub http: u16,
}

impl Default for PhonePorts {
    fn default() -> Self {
        Self {
            capf: ports::CAPF,
            tvs: ports::TVS,
            tftp: ports::TFTP,
            http: ports::HTTP,
        }
    }
}

impl PhonePorts {
    /// The ports among parameter values (name → value); defaults where one is missing.
    pub fn from_values(values: &HashMap<&str, i64>) -> Self {
        let d = Self::default();
        let port = |name: &str, default: u16| {
            values
                .get(name)
                .and_then(|v| u16::try_from(*v).ok())
                .unwrap_or(default)
        };
        Self {
            capf: port(CAPF_PHONE_PORT, d.capf),
            tvs: port(TVS_PORT, d.tvs),
            tftp: port(TFTP_PORT, d.tftp),
            http: port(HTTP_PORT, d.http),
        }
    }
}

/// The definition of the parameter named `name` (database name or label, any case).
pub fn def(name: &str) -> Result<&'static ParamDef, StoreError> {
    let n = name.trim();
    PARAMS
        .iter()
        .find(|p| p.name.eq_ignore_ascii_case(n) || p.label.eq_ignore_ascii_case(n))
        .ok_or_else(|| {
            StoreError::Invalid(format!(
                "unknown enterprise parameter '{name}' (known: {})",
                PARAMS.iter().map(|p| p.name).collect::<Vec<_>>().join(", ")
            ))
        })
}

/// Check `value` for the parameter `d`.
pub fn validate(d: &ParamDef, value: &str) -> Result<i64, StoreError> {
    let v: i64 = value.trim().parse().map_err(|_| {
        StoreError::Invalid(format!(
            "{} must be a whole number from {} to {}, not '{value}'",
            d.label, d.min, d.max
        ))
    })?;
    if !(d.min..=d.max).contains(&v) {
        return Err(StoreError::Invalid(format!(
            "{} must be from {} to {}, not {v}",
            d.label, d.min, d.max
        )));
    }
    Ok(v)
}

/// A value read back from the database, checked like a new one.
fn stored_value(d: &ParamDef, v: &str) -> Result<i64, StoreError> {
    validate(d, v).map_err(|e| StoreError::Db(format!("stored value: {e}")))
}

impl Db {
    /// Every parameter with its current value (one query).
    pub async fn params(&self) -> Result<Vec<(&'static ParamDef, i64)>, StoreError> {
        let rows = sqlx::query("SELECT paramname, paramvalue FROM processconfig")
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?;
        let mut stored = std::collections::HashMap::new();
        for r in &rows {
            let name: String = r.try_get(0).map_err(db_err)?;
            let value: String = r.try_get(1).map_err(db_err)?;
            stored.insert(name, value);
        }
        PARAMS
            .iter()
            .map(|d| match stored.get(d.name) {
                None => Ok((d, d.default)),
                Some(v) => stored_value(d, v).map(|v| (d, v)),
            })
            .collect()
    }

    /// The value of a parameter (its default when unset).
    pub async fn param(&self, name: &str) -> Result<i64, StoreError> {
        let d = def(name)?;
        let row = sqlx::query("SELECT paramvalue FROM processconfig WHERE paramname = $1")
            .bind(d.name)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)?;
        match row {
            None => Ok(d.default),
            Some(r) => stored_value(d, &r.try_get::<String, _>(0).map_err(db_err)?),
        }
    }

    /// The ports phones are told.
    pub async fn phone_ports(&self) -> Result<PhonePorts, StoreError> {
        let values: HashMap<&str, i64> = self
            .params()
            .await?
            .into_iter()
            .map(|(d, v)| (d.name, v))
            .collect();
        Ok(PhonePorts::from_values(&values))
    }

    /// Set a parameter; returns the old and the new value.
    pub async fn set_param(
        &self,
        name: &str,
        value: &str,
        now: i64,
    ) -> Result<(i64, i64), StoreError> {
        let d = def(name)?;
        if d.name == CLUSTER_SECURITY_MODE {
            return Err(StoreError::Invalid(
                "Cluster Security Mode changes together with the CTL: run `phonetrust utils ctl set-cluster mixed-mode` (or `non-secure-mode`) instead of `set param`".into(),
            ));
        }
        let v = validate(d, value)?;
        let mut tx = self.begin().await?;
        let old: Option<String> =
            sqlx::query_scalar("SELECT paramvalue FROM processconfig WHERE paramname = $1")
                .bind(d.name)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db_err)?;
        let old = old.and_then(|o| o.parse().ok()).unwrap_or(d.default);
        sqlx::query(
            "INSERT INTO processconfig (paramname, paramvalue, updated_at) VALUES ($1, $2, $3) \
             ON CONFLICT (paramname) DO UPDATE SET paramvalue = $2, updated_at = $3",
        )
        .bind(d.name)
        .bind(v.to_string())
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        tracing::info!(param = d.name, old, new = v, "enterprise parameter changed");
        Ok((old, v))
    }
}
