//! The certificate monitor against a real SMTP server with STARTTLS and a webhook
//! receiver (both local, started here): one notice per certificate per target per day,
//! retried after a failed send, nothing on a day with no finding.

use phonetrust_pki::DistinguishedName;
use phonetrust_pki::profiles::NodeIdentity;
use phonetrust_services::monitor::{MonitorConfig, check};
use phonetrust_services::notify::{Notifier, Smtp, Webhook};
use phonetrust_testsupport::sinks::{SmtpSink, WebhookSink};

use crate::{FreshNode, now};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_webhook_and_one_mail_per_certificate_per_day() {
    let n = NodeIdentity::new("pub.example.test", DistinguishedName::default());
    let node = FreshNode::new("monitor", &n).await;
    let smtp = SmtpSink::start();
    let hook = WebhookSink::start();
    let ca = node.join("sink-ca.pem");
    std::fs::write(&ca, smtp.ca_pem()).unwrap();
    let notifier = Notifier {
        webhook: Some(Webhook {
            url: format!("{}/hooks/certs", hook.url()),
            ca_file: None,
        }),
        smtp: Some(Smtp {
            host: "127.0.0.1".into(),
            port: smtp.port(),
            tls_name: Some("localhost".into()),
            ca_file: Some(ca.clone()),
            from: "phonetrust@example.test".into(),
            to: vec!["pki@example.test".into()],
            credentials: Some(("monitor".into(), "secret".into())),
        }),
        timeout: None,
    };
    let cfg = MonitorConfig::default();
    // Today nothing is within 30 days: nothing is sent.
    let r = check(
        &node.db,
        &node.data,
        "pub.example.test",
        &cfg,
        &notifier,
        now(),
    )
    .await
    .unwrap();
    assert_eq!((r.findings, r.sent), (0, 0), "{r:?}");
    // A day when the own certificates expire within 30 days (the clock is injected).
    let first = node
        .id
        .all()
        .map(|(_, c)| phonetrust_store::trust::unix_time(c.cert.not_after()))
        .min()
        .unwrap();
    // Ten days before the first expiry, taken at the start of that UTC day (plus a minute)
    // so that "later the same day" (an hour on) is still that day at whatever hour the
    // certificates were made.
    let day = (first - 10 * 86_400).div_euclid(86_400) * 86_400 + 60;
    let r = check(
        &node.db,
        &node.data,
        "pub.example.test",
        &cfg,
        &notifier,
        day,
    )
    .await
    .unwrap();
    assert!(r.findings >= 1, "{r:?}");
    assert_eq!(r.failed, 0, "{r:?}");
    assert_eq!(
        r.sent,
        2 * r.findings,
        "one webhook and one e-mail each: {r:?}"
    );
    let posts = hook.posts();
    assert_eq!(posts.len(), r.findings);
    assert_eq!(posts[0].path, "/hooks/certs");
    assert_eq!(posts[0].content_type, "application/json");
    let j: serde_json::Value = serde_json::from_slice(&posts[0].body).unwrap();
    assert_eq!(j["event"], "certificate-expiry");
    assert_eq!(j["node"], "pub.example.test");
    assert_eq!(j["kind"], "own");
    assert_eq!(j["days_left"], 10);
    assert_eq!(j["severity"], "warning");
    assert!(
        j["message"]
            .as_str()
            .unwrap()
            .contains("expires in 10 days"),
        "{j}"
    );
    assert_eq!(j["sha256"].as_str().unwrap().len(), 64);
    let mails = smtp.mails();
    assert_eq!(mails.len(), r.findings);
    for m in &mails {
        assert!(m.tls, "sent after STARTTLS");
        assert_eq!(m.user.as_deref(), Some("monitor"));
        assert_eq!(m.from, "phonetrust@example.test");
        assert_eq!(m.to, ["pki@example.test"]);
        assert!(
            m.data
                .contains("Subject: [phonetrust pub.example.test] warning: own "),
            "{}",
            m.data
        );
        assert!(m.data.contains("expires in 10 days"), "{}", m.data);
    }
    // Later the same day (the next hourly check): nothing more.
    let r2 = check(
        &node.db,
        &node.data,
        "pub.example.test",
        &cfg,
        &notifier,
        day + 3_600,
    )
    .await
    .unwrap();
    assert_eq!(r2.findings, r.findings);
    assert_eq!(r2.sent, 0, "{r2:?}");
    assert_eq!(hook.posts().len(), r.findings);
    assert_eq!(smtp.mails().len(), r.findings);
    // The next day: one more of each.
    let r3 = check(
        &node.db,
        &node.data,
        "pub.example.test",
        &cfg,
        &notifier,
        day + 86_400,
    )
    .await
    .unwrap();
    assert_eq!(r3.sent, 2 * r3.findings, "{r3:?}");
    assert_eq!(smtp.mails().len(), r.findings + r3.findings);
    // A target that fails is tried again at the next check; the other is not repeated.
    let down = Notifier {
        webhook: Some(Webhook {
            url: format!(
                "http://127.0.0.1:{}/x",
                phonetrust_testsupport::ports::reserve().get()
            ),
            ca_file: None,
        }),
        ..notifier.clone()
    };
    let d2 = day + 2 * 86_400;
    let r4 = check(&node.db, &node.data, "pub.example.test", &cfg, &down, d2)
        .await
        .unwrap();
    assert_eq!(r4.failed, r4.findings, "{r4:?}");
    assert_eq!(r4.sent, r4.findings, "the mails went: {r4:?}");
    let before = hook.posts().len();
    let r5 = check(
        &node.db,
        &node.data,
        "pub.example.test",
        &cfg,
        &notifier,
        d2 + 3_600,
    )
    .await
    .unwrap();
    assert_eq!(r5.sent, r5.findings, "only the webhook again: {r5:?}");
    assert_eq!(hook.posts().len(), before + r5.findings);
    // At most max_per_check per target per check; the rest later.
    let capped = MonitorConfig {
        max_per_check: 1,
        ..MonitorConfig::default()
    };
    if r.findings > 1 {
        let d3 = day + 3 * 86_400;
        let r6 = check(
            &node.db,
            &node.data,
            "pub.example.test",
            &capped,
            &notifier,
            d3,
        )
        .await
        .unwrap();
        assert_eq!(r6.sent, 2, "{r6:?}");
        assert_eq!(r6.deferred, 2 * (r6.findings - 1), "{r6:?}");
    }
}

/// A server that does not offer STARTTLS, or whose certificate is not trusted, gets no
/// mail: the failure names the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_needs_a_trusted_starttls_server() {
    let smtp = SmtpSink::start();
    let n = Notifier {
        smtp: Some(Smtp {
            host: "127.0.0.1".into(),
            port: smtp.port(),
            tls_name: Some("localhost".into()),
            // No CA file: the sink's throw-away CA is not among the system's.
            ca_file: None,
            from: "phonetrust@example.test".into(),
            to: vec!["pki@example.test".into()],
            credentials: None,
        }),
        ..Notifier::default()
    };
    let e = n.mail("s", "t").await.unwrap_err().to_string();
    assert!(
        e.contains(&format!("SMTP 127.0.0.1:{}", smtp.port())),
        "{e}"
    );
    assert!(smtp.mails().is_empty());
}
