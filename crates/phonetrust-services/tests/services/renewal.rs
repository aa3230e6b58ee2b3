//! 17.1 and 17.4 end to end: a fleet of 200 phones holding LSCs of the first CAPF
//! certificate; CAPF regenerated (the old certificate stays in CAPF-trust, and deleting it
//! is refused while phones depend on it); the renewal policy renews them in batches of at
//! most 50 an hour, only inside the maintenance window, calling the reset hook per batch;
//! each phone renews by its old LSC; then nothing depends on the old certificate and it can
//! be deleted. The policy's clock is simulated (hours pass in a second); CAPF runs as it
//! does in `serve`.

use std::sync::Arc;

use phonetrust_phonesim::{Generate, SimPhone};
use phonetrust_pki::DistinguishedName;
use phonetrust_pki::profiles::{NodeIdentity, OwnCert};
use phonetrust_proto::capf_phone::{PhoneAuth, PhoneResult};
use phonetrust_proto::rand::OsRandom;
use phonetrust_rules::lifecycle::{Policy, Window, progress};
use phonetrust_services::capf::{CapfConfig, CapfServer};
use phonetrust_services::renewal::{ResetHook, tick};
use phonetrust_store::devices::CapfChange;
use phonetrust_store::model::{AuthMode, CertOperation, KeyOrder, TrustStore};

use crate::{FreshNode, now, phone};

const FLEET: usize = 200;

/// Run `f` over every phone, 16 at a time.
async fn each<F, Fut>(phones: Vec<SimPhone>, f: F) -> Vec<SimPhone>
where
    F: Fn(SimPhone) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = SimPhone> + Send + 'static,
{
    let f = Arc::new(f);
    let sem = Arc::new(tokio::sync::Semaphore::new(16));
    let mut tasks = Vec::new();
    for p in phones {
        let (f, sem) = (f.clone(), sem.clone());
        tasks.push(tokio::spawn(async move {
            let _permit = sem.acquire().await.unwrap();
            f(p).await
        }));
    }
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_renews_in_hourly_batches_inside_the_window_after_a_capf_rollover() {
    let mut n = NodeIdentity::new(
        "pub.example.test",
        DistinguishedName {
            o: "Example Corp".into(),
            ..DistinguishedName::default()
        },
    );
    n.rsa_bits = 2048;
    let node = FreshNode::new("renewal", &n).await;
    let (db, data) = (node.db.clone(), node.data.clone());
    let first = node.id.get(OwnCert::Capf).unwrap().clone();
    phonetrust_store::own::trust_capf(&db, &first.cert, now())
        .await
        .unwrap();
    let server = CapfServer::bind(
        db.clone(),
        first.clone(),
        CapfConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            ..CapfConfig::default()
        },
    )
    .await
    .unwrap();
    let addr = server.local_addr().unwrap();
    tokio::spawn(server.follow_identity(data.clone(), std::time::Duration::from_millis(100)));
    tokio::spawn(server.run());

    // The fleet enrols with the first CAPF certificate.
    let names: Vec<String> = (0..FLEET).map(|i| format!("SEP00AA0000{i:04X}")).collect();
    let devs: Vec<_> = names.iter().map(|n| phone(n, None)).collect();
    db.add_devices(&devs, now()).await.unwrap();
    let install = CapfChange {
        operation: Some(CertOperation::Install),
        auth_mode: Some(AuthMode::NullString),
        key_order: Some(KeyOrder::Ec),
        ..CapfChange::default()
    };
    let changes: Vec<_> = names.iter().map(|n| (n.clone(), install.clone())).collect();
    for (_, r) in db.set_capf_many(&changes, now()).await.unwrap() {
        r.unwrap();
    }
    let first_cert = first.cert.clone();
    let phones: Vec<SimPhone> = names
        .iter()
        .map(|n| SimPhone::new(n.trim_start_matches("SEP"), "8845"))
        .collect();
    let phones = each(phones, move |mut p| {
        let c = first_cert.clone();
        async move {
            let r = p
                .capf(addr, &c, PhoneAuth::None, &Generate { ec: true })
                .await;
            assert_eq!(r, PhoneResult::Installed, "{:?}", p.status_messages);
            p
        }
    })
    .await;

    // CAPF regenerated: the old certificate stays in CAPF-trust; deleting it is refused
    // while the fleet's LSCs depend on it.
    phonetrust_store::own::regenerate(&data, &db, OwnCert::Capf, true, now(), &OsRandom)
        .await
        .unwrap();
    let second = phonetrust_store::identity::load(&data)
        .unwrap()
        .get(OwnCert::Capf)
        .unwrap()
        .cert
        .clone();
    let old_fp = phonetrust_proto::codec::hex(
        &first
            .cert
            .digest(openssl::hash::MessageDigest::sha256())
            .unwrap(),
    );
    let old_name = db
        .trust_list(Some(TrustStore::Capf))
        .await
        .unwrap()
        .into_iter()
        .find(|c| c.fingerprint.eq_ignore_ascii_case(&old_fp))
        .expect("the old CAPF certificate stays in CAPF-trust")
        .name;
    let deps = db
        .capf_trust_dependents(&old_name, std::slice::from_ref(&second), now())
        .await
        .unwrap();
    assert_eq!(
        deps.len(),
        FLEET,
        "every phone depends on the old certificate"
    );
    // CAPF presents the new certificate once it has followed the identity.
    tokio::time::sleep(std::time::Duration::from_millis(800)).await;

    // The policy: LSCs of retired generations, 50 an hour, 01:00-05:00 UTC.
    let window = Window::parse("01:00-05:00").unwrap();
    let policy = Policy {
        renew_after_share: None,
        renew_days_before: Some(30),
        renew_retired: true,
        max_per_hour: 50,
        window: Some(window),
    };
    let hook_log = node.join("hook.log");
    let hook = ResetHook {
        command: Some(vec![
            "sh".into(),
            "-c".into(),
            format!("printf '%s\\n' \"$*\" >> '{}'", hook_log.display()),
            "reset-hook".into(),
        ]),
        webhook: None,
        timeout: None,
    };
    let hook_calls = || -> Vec<Vec<String>> {
        std::fs::read_to_string(&hook_log)
            .unwrap_or_default()
            .lines()
            .map(|l| l.split(' ').map(String::from).collect())
            .collect()
    };
    // An opening of the window a day or more ahead (a simulated clock). It is taken from a
    // midnight, which lies outside the window, so that it is the window's start whatever the
    // hour the test runs at (from inside the window `next_open` would return that instant).
    let midnight = (now() / 86_400 + 2) * 86_400;
    assert!(!window.contains(midnight));
    let open = window.next_open(midnight);
    assert_eq!(open % 86_400, 3_600, "01:00 UTC");
    let r = tick(&db, &data, &policy, &hook, open - 1_800)
        .await
        .unwrap();
    assert!(r.batch.is_none());
    assert!(
        r.waiting
            .unwrap()
            .contains("outside the maintenance window")
    );
    let p = progress(&db, &data, &policy, open - 1_800).await.unwrap();
    assert_eq!((p.waiting, p.scheduled, p.done), (FLEET, 0, 0));
    assert_eq!(
        p.next_batch,
        Some(open),
        "the next batch when the window opens"
    );

    let mut phones = phones;
    let mut renewed = std::collections::HashSet::new();
    for k in 0..4i64 {
        let t = open + k * 3_600 + 60;
        let r = tick(&db, &data, &policy, &hook, t).await.unwrap();
        assert_eq!(
            r.done.len(),
            if k == 0 { 0 } else { 50 },
            "batch {k}: {r:?}"
        );
        assert!(r.failed.is_empty(), "{r:?}");
        let (_, batch) = r
            .batch
            .clone()
            .unwrap_or_else(|| panic!("a batch an hour: {r:?}"));
        assert_eq!(batch.len(), 50);
        let calls = hook_calls();
        assert_eq!(calls.len() as i64, k + 1, "the hook once per batch");
        assert_eq!(calls.last().unwrap(), &batch, "given the batch's phones");
        // Later in the same hour: the budget is spent.
        let r2 = tick(&db, &data, &policy, &hook, t + 600).await.unwrap();
        assert!(r2.batch.is_none());
        assert!(r2.waiting.unwrap().contains("at most 50 per hour"));
        for name in &batch {
            let d = db.device(name).await.unwrap();
            assert_eq!(d.capf.operation, CertOperation::Install);
            assert_eq!(
                d.capf.auth_mode,
                AuthMode::Lsc,
                "authenticated by the existing LSC"
            );
            assert!(renewed.insert(name.clone()), "{name} twice");
        }
        // The batch's phones renew by their old LSC (they trust the new CAPF from the ITL).
        let wanted: std::collections::HashSet<String> = batch.into_iter().collect();
        let (todo, rest): (Vec<_>, Vec<_>) = phones
            .into_iter()
            .partition(|p| wanted.contains(&p.state.device));
        let cert = second.clone();
        let mut done = each(todo, move |mut p| {
            let c = cert.clone();
            async move {
                let old = p.state.lsc.clone().unwrap().cert.to_der().unwrap();
                let r = p
                    .capf(
                        addr,
                        &c,
                        PhoneAuth::Certificate { sudi: false },
                        &Generate { ec: true },
                    )
                    .await;
                assert_eq!(r, PhoneResult::Installed, "{:?}", p.status_messages);
                assert_ne!(p.state.lsc.clone().unwrap().cert.to_der().unwrap(), old);
                p
            }
        })
        .await;
        done.extend(rest);
        phones = done;
    }
    // After the window: the last batch is recorded done; nothing waits any more.
    let t = open + 4 * 3_600 + 60;
    let r = tick(&db, &data, &policy, &hook, t).await.unwrap();
    assert_eq!(r.done.len(), 50);
    assert!(r.batch.is_none());
    let p = progress(&db, &data, &policy, t).await.unwrap();
    assert_eq!(
        (p.waiting, p.scheduled, p.done, p.failed.len()),
        (0, 0, FLEET, 0)
    );
    assert_eq!(p.next_batch, None);
    assert_eq!(hook_calls().len(), 4);
    let batches = db.renewal_batches(10).await.unwrap();
    assert_eq!(batches.len(), 4);
    assert!(
        batches
            .iter()
            .all(|b| b.phones == 50 && b.hook.contains("ok")),
        "{batches:?}"
    );
    // No phone depends on the old CAPF certificate: it may go.
    let deps = db
        .capf_trust_dependents(&old_name, std::slice::from_ref(&second), now())
        .await
        .unwrap();
    assert!(deps.is_empty(), "{deps:?}");
}
