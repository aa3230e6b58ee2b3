//! Which phones are on which ITL (the vendor's report of phones with mismatched ITLs):
//! from what each phone last downloaded as `ITLSEP<MAC>.tlv`
//! ([`phonetrust_store::downloads`]) against the ITL each TFTP node serves now and since
//! when its signer signs it ([`phonetrust_store::itlfile`]).

use std::collections::HashMap;

use phonetrust_store::downloads::{Download, DownloadKind};
use phonetrust_store::itlfile::StoredItl;

/// Where a phone stands with its ITL.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ItlState {
    /// It never downloaded its ITL from this cluster (by its own name).
    Never,
    /// Its last ITL is older than the change of signer of the node it came from: it
    /// has not been seen since (switched off, or locked out if it cannot reach TVS).
    NotSeenSinceSignerChange,
    /// Its last ITL is not the one that node serves now (what the ITL lists changed
    /// since; the phone takes the new one at its next reset, through TVS).
    Outdated,
    /// It holds the ITL its node serves now.
    Current,
}

impl ItlState {
    /// As printed.
    pub fn label(self) -> &'static str {
        match self {
            Self::Never => "never fetched an ITL",
            Self::NotSeenSinceSignerChange => "not seen since the signer changed",
            Self::Outdated => "outdated ITL",
            Self::Current => "current",
        }
    }
}

/// One phone's ITL status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PhoneItl {
    /// `SEP<MAC>`.
    pub device: String,
    /// Where it stands.
    pub state: ItlState,
    /// Its last ITL download.
    pub last: Option<Download>,
    /// SHA-256 of the ITL its node serves now, when known.
    pub current: Option<String>,
}

/// The status of every phone in `devices` (sorted as given) from their ITL downloads and
/// the nodes' stored ITLs.
pub fn classify(devices: &[String], downloads: &[Download], itls: &[StoredItl]) -> Vec<PhoneItl> {
    let by_device: HashMap<&str, &Download> = downloads
        .iter()
        .filter(|d| d.kind == DownloadKind::Itl)
        .map(|d| (d.device.as_str(), d))
        .collect();
    let by_node: HashMap<&str, &StoredItl> = itls.iter().map(|i| (i.node.as_str(), i)).collect();
    devices
        .iter()
        .map(|dev| {
            let last = by_device.get(dev.as_str()).copied();
            let node = last.and_then(|l| by_node.get(l.node.as_str()).copied());
            let state = match (last, node) {
                (None, _) => ItlState::Never,
                (Some(_), None) => ItlState::Outdated,
                (Some(l), Some(n)) if l.at < n.signer_since => ItlState::NotSeenSinceSignerChange,
                (Some(l), Some(n)) if l.sha256 != n.sha256 => ItlState::Outdated,
                (Some(_), Some(_)) => ItlState::Current,
            };
            PhoneItl {
                device: dev.clone(),
                state,
                last: last.cloned(),
                current: node.map(|n| n.sha256.clone()),
            }
        })
        .collect()
}

/// [`classify`] over the whole store.
pub async fn status(db: &phonetrust_store::Db) -> Result<Vec<PhoneItl>, String> {
    let e = |e: phonetrust_store::StoreError| e.to_string();
    let devices = db.device_names().await.map_err(e)?;
    let downloads = db.downloads(DownloadKind::Itl).await.map_err(e)?;
    let mut itls = Vec::new();
    for node in db.itl_nodes().await.map_err(e)? {
        if let Some(i) = db.itl(&node).await.map_err(e)? {
            itls.push(i);
        }
    }
    Ok(classify(&devices, &downloads, &itls))
}

/// [`classify`] for one phone (its own records and its node's ITL only).
pub async fn of_phone(db: &phonetrust_store::Db, device: &str) -> Result<PhoneItl, String> {
    let e = |e: phonetrust_store::StoreError| e.to_string();
    let downloads = db.downloads_of(device).await.map_err(e)?;
    let mut itls = Vec::new();
    if let Some(d) = downloads.iter().find(|d| d.kind == DownloadKind::Itl)
        && let Some(i) = db.itl(&d.node).await.map_err(e)?
    {
        itls.push(i);
    }
    classify(&[device.to_string()], &downloads, &itls)
        .pop()
        .ok_or_else(|| format!("no ITL status for {device}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dl(dev: &str, node: &str, sha: &str, at: i64) -> Download {
        Download {
            device: dev.into(),
            kind: DownloadKind::Itl,
            file: format!("ITL{dev}.tlv"),
            sha256: sha.into(),
            node: node.into(),
            protocol: "tftp".into(),
            at,
        }
    }

    fn itl(node: &str, sha: &str, signer_since: i64) -> StoredItl {
        StoredItl {
            node: node.into(),
            bytes: vec![],
            sha256: sha.into(),
            source: String::new(),
            updated_at: signer_since,
            signer: "s".into(),
            signer_since,
        }
    }

    #[test]
    fn each_state_from_downloads_and_nodes() {
        let devices: Vec<String> = ["SEPA", "SEPB", "SEPC", "SEPD", "SEPE"]
            .map(String::from)
            .into();
        let downloads = [
            dl("SEPA", "pub", "new", 200),
            dl("SEPB", "pub", "old", 150),
            dl("SEPC", "pub", "older", 50),
            dl("SEPE", "gone", "x", 300),
            // A config download says nothing about the ITL.
            Download {
                kind: DownloadKind::Config,
                ..dl("SEPD", "pub", "new", 300)
            },
        ];
        let itls = [itl("pub", "new", 100)];
        let s = classify(&devices, &downloads, &itls);
        let states: Vec<_> = s.iter().map(|p| p.state).collect();
        assert_eq!(
            states,
            [
                ItlState::Current,
                ItlState::Outdated,
                ItlState::NotSeenSinceSignerChange,
                ItlState::Never,
                ItlState::Outdated,
            ]
        );
        assert_eq!(s[1].current.as_deref(), Some("new"));
        assert_eq!(s[4].current, None);
        assert_eq!(s[0].last.as_ref().map(|l| l.at), Some(200));
    }
}
