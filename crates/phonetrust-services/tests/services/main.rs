//! phonetrust-services over loopback: the CAPF server with simulated phones
//! ([`capf`]), provisioning over TFTP and HTTP ([`provision`]), and TVS ([`tvs`]). One
//! test binary; the set-up of a fresh node is shared here.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod capf;
mod provision;
mod tvs;

use std::path::PathBuf;

use phonetrust_pki::profiles::NodeIdentity;
use phonetrust_proto::rand::OsRandom;
use phonetrust_store::Db;
use phonetrust_store::identity::{self, Identity};
use phonetrust_store::layout::DataDir;

/// Now, Unix seconds.
/// A SIP 8845 named `name`, in `profile` (default: the standard non-secure one).
pub(crate) fn phone(name: &str, profile: Option<&str>) -> phonetrust_store::devices::NewDevice {
    phonetrust_store::devices::NewDevice {
        name: name.into(),
        model: "8845".into(),
        protocol: phonetrust_store::model::Protocol::Sip,
        profile: profile.map(Into::into),
        description: String::new(),
    }
}

pub(crate) fn now() -> i64 {
    phonetrust_proto::clock::unix_now()
}

/// The reference vectors (`PHONETRUST_VECTORS`, default `../shared/vectors`).
pub(crate) fn vectors() -> PathBuf {
    std::env::var("PHONETRUST_VECTORS")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/vectors")
        })
}

/// A node in a fresh temporary directory: its identity for `n` (valid from a minute ago)
/// and its database (a file: never `sqlite::memory:` with a pool).
pub(crate) struct FreshNode {
    pub(crate) dir: PathBuf,
    pub(crate) data: DataDir,
    pub(crate) id: Identity,
    pub(crate) db: Db,
}

pub(crate) async fn fresh_node(tag: &str, n: &NodeIdentity) -> FreshNode {
    let dir = std::env::temp_dir().join(format!("phonetrust-svc-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let data = DataDir::new(&dir);
    let id = identity::create(&data, n, now() - 60, &OsRandom).unwrap();
    let db = Db::open(&phonetrust_store::db::default_url(&dir))
        .await
        .unwrap();
    FreshNode { dir, data, id, db }
}
