//! The node identity on disk: created whole, keys 0600, loaded back, never half-written.

use phonetrust_pki::DistinguishedName;
use phonetrust_pki::profiles::{NodeIdentity, OwnCert};
use phonetrust_proto::cert::name_string;
use phonetrust_proto::rand::SeededRandom;
use phonetrust_store::StoreError;
use phonetrust_store::identity;
use phonetrust_store::layout::DataDir;

use crate::tmp;

pub(crate) fn node() -> NodeIdentity {
    let mut n = NodeIdentity::new(
        "pub.example.test",
        DistinguishedName {
            o: "Example Corp".into(),
            c: "NZ".into(),
            ..DistinguishedName::default()
        },
    );
    n.rsa_bits = 1024; // fast; sizes are covered by phonetrust-pki's tests
    n
}

#[test]
fn create_load_and_permissions() {
    let tmp = tmp("create");
    let root = tmp.path().join("node");
    let data = DataDir::new(&root);
    assert!(!identity::exists(&data));
    assert!(matches!(
        identity::load(&data),
        Err(StoreError::NotInitialised(_))
    ));
    let made = identity::create(&data, &node(), 1_795_000_000, &SeededRandom::new(1)).unwrap();
    let loaded = identity::load(&data).unwrap();
    for which in OwnCert::ALL {
        let a = made.get(which).unwrap();
        let b = loaded.get(which).unwrap();
        assert_eq!(a.cert.to_der().unwrap(), b.cert.to_der().unwrap());
        assert!(a.key.public_eq(&b.key));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(data.own_cert(which))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{which}");
        }
    }
    assert!(
        name_string(loaded.get(OwnCert::Capf).unwrap().cert.subject_name()).contains("CN=CAPF-")
    );
    assert_eq!(loaded.node().unwrap().host, "pub.example.test");
    // A second init refuses and changes nothing.
    let before = std::fs::read(data.own_cert(OwnCert::Capf)).unwrap();
    assert!(matches!(
        identity::create(&data, &node(), 0, &SeededRandom::new(2)),
        Err(StoreError::AlreadyInitialised(_))
    ));
    assert_eq!(std::fs::read(data.own_cert(OwnCert::Capf)).unwrap(), before);
    // A key made readable by others (a copy with the wrong umask) is private again once
    // the identity is loaded.
    {
        use std::os::unix::fs::PermissionsExt;
        let p = data.own_cert(OwnCert::Tvs);
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        identity::load(&data).unwrap();
        let mode = std::fs::metadata(&p).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}

#[test]
fn leftovers_of_a_crashed_init_do_not_count() {
    let tmp = tmp("crash");
    let root = tmp.path().join("node");
    std::fs::create_dir_all(root.join(".identity.tmp-99999")).unwrap();
    std::fs::write(root.join(".identity.tmp-99999/CAPF.pem"), b"half").unwrap();
    let data = DataDir::new(&root);
    assert!(!identity::exists(&data));
    identity::create(&data, &node(), 1_795_000_000, &SeededRandom::new(3)).unwrap();
    identity::load(&data).unwrap();
}

/// A crash mid-write leaves temporary files that may hold private keys: the next start
/// removes those whose writer is gone, and nothing else.
#[test]
fn leftover_temporary_key_files_are_removed() {
    let tmp = tmp("leftovers");
    let root = tmp.path().join("node");
    let data = DataDir::new(&root);
    identity::create(&data, &node(), 1_795_000_000, &SeededRandom::new(4)).unwrap();
    // A process that has ended: its pid names the leftovers.
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    let ours = std::process::id();
    let stale = [
        root.join(format!(".identity.tmp-{dead}")),
        data.identity_dir().join(format!(".CAPF.pem.tmp-{dead}")),
        root.join(format!(".phonetrust.toml.tmp-{dead}")),
    ];
    std::fs::create_dir_all(&stale[0]).unwrap();
    std::fs::write(stale[0].join("CAPF.pem"), b"-----BEGIN PRIVATE KEY-----").unwrap();
    std::fs::write(&stale[1], b"-----BEGIN PRIVATE KEY-----").unwrap();
    std::fs::write(&stale[2], b"x").unwrap();
    let keep = [
        data.identity_dir().join(format!(".CAPF.pem.tmp-{ours}")),
        root.join("notes.tmp-1"),
        root.join(".hidden"),
    ];
    for k in &keep {
        std::fs::write(k, b"k").unwrap();
    }
    let mut removed = identity::remove_leftovers(&data).unwrap();
    removed.sort();
    let mut want = stale.to_vec();
    want.sort();
    assert_eq!(removed, want);
    for s in &stale {
        assert!(!s.exists(), "{}", s.display());
    }
    for k in &keep {
        assert!(k.exists(), "{}", k.display());
    }
    identity::load(&data).unwrap();
    assert!(identity::remove_leftovers(&data).unwrap().is_empty());
}

#[test]
fn damaged_file_and_replacement() {
    let tmp = tmp("damage");
    let root = tmp.path().join("node");
    let data = DataDir::new(&root);
    let id = identity::create(&data, &node(), 1_795_000_000, &SeededRandom::new(4)).unwrap();
    // Replace TVS with ITLRecovery's pair: atomic, 0600, loads back.
    let other = id.get(OwnCert::ItlRecovery).unwrap().clone();
    identity::replace(&data, OwnCert::Tvs, &other).unwrap();
    let loaded = identity::load(&data).unwrap();
    assert_eq!(
        loaded.get(OwnCert::Tvs).unwrap().cert.to_der().unwrap(),
        other.cert.to_der().unwrap()
    );
    std::fs::write(data.own_cert(OwnCert::Tvs), b"garbage").unwrap();
    let e = identity::load(&data).unwrap_err().to_string();
    assert!(e.contains("TVS.pem"), "{e}");
}
