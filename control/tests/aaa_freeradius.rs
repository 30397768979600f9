//! RADIUS against a real FreeRADIUS 3 (Debian `freeradius`), started by the test on loopback
//! with a minimal config of its own: digest authentication (accept and reject), Cisco-style
//! PSTN authorisation, accounting Start/Stop with the h323-* VSAs landing in the `detail`
//! file, and an outage: records spooled while the server is down survive a client restart
//! and arrive exactly once when the server comes back.
//!
//! Skips with a message when `freeradius` is not installed.

use std::net::{Ipv4Addr, SocketAddr};

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use control::aaa::{
    digest_auth_request, pstn_auth_request, AcctRecord, AcctStatus, AuthOutcome, Authorized,
    CallOrigin, ClientConfig, ConfId, DigestFormat, RadiusHandle, Server,
};
use control::sip::digest::{self, Algorithm, Credentials};

#[path = "common/radiusd.rs"]
mod radiusd;
use radiusd::*;

const USERS: &str = "alice\tCleartext-Password := \"wonderland\"\n\
     1000\tCleartext-Password := \"1000\"\n\
     666\tAuth-Type := Reject\n\tReply-Message = \"barred\"\n";

fn client_config(port: u16) -> ClientConfig {
    let srv = |p| Server {
        address: SocketAddr::from(([127, 0, 0, 1], p)),
        secret: SECRET.into(),
    };
    ClientConfig {
        auth_servers: vec![srv(port)],
        acct_servers: vec![srv(port + 1)],
        timeout: Duration::from_millis(300),
        retries: 1,
        acct_window: 1,
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn creds(password: &str) -> Credentials {
    let nonce = "5f2b1c0e9a8d7c6b5a4f3e2d1c0b9a8f";
    let (nc, cnonce) = ("00000001", "0a4f113b");
    Credentials {
        username: "alice".into(),
        realm: "tandem".into(),
        nonce: nonce.into(),
        uri: "sip:200@tandem".into(),
        response: digest::response(
            Algorithm::Md5,
            "alice",
            "tandem",
            password,
            "INVITE",
            "sip:200@tandem",
            nonce,
            Some((nc, cnonce)),
        ),
        algorithm: Some("MD5".into()),
        cnonce: Some(cnonce.into()),
        nc: Some(nc.into()),
        qop: Some("auth".into()),
        opaque: None,
    }
}

fn record(session: &str, now: SystemTime) -> AcctRecord {
    AcctRecord {
        session_id: session.into(),
        calling: "1000".into(),
        called: "0049301234".into(),
        nas_ip: Some(Ipv4Addr::LOCALHOST),
        conf_id: ConfId([0x1a; 16]),
        origin: CallOrigin::Answer,
        call_type: "VoIP".into(),
        remote_address: Some([127, 0, 0, 2].into()),
        setup_time: now,
        connect_time: Some(now + Duration::from_secs(3)),
        disconnect_time: Some(now + Duration::from_secs(63)),
        disconnect_cause: Some(16),
    }
}

async fn wait_spool_empty(h: &RadiusHandle, secs: u64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while h.spooled() > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} records still spooled",
            h.spooled()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[test]
fn radius_against_freeradius() {
    let Some(bin) = freeradius() else {
        eprintln!("SKIP: freeradius not installed (apt-get install freeradius)");
        return;
    };
    let dir = std::env::temp_dir().join(format!("tandem-aaa-fr-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let port = free_udp_pair();
    write_config(&dir, port, USERS);
    let radiusd = start_radiusd(&bin, &dir);
    let spool = dir.join("acct.spool");
    let detail = dir.join("acct/detail");
    let now = UNIX_EPOCH + Duration::from_secs(1_764_000_000);

    rt().block_on(async {
        let h = RadiusHandle::start(client_config(port), "127.0.0.1:0".parse().unwrap(), &spool)
            .await
            .unwrap();
        // Digest: correct response accepted (FreeRADIUS's digest module reads draft-sterman).
        for fmt in [DigestFormat::Both, DigestFormat::Sterman] {
            let out = h
                .auth(
                    digest_auth_request(&creds("wonderland"), "INVITE", fmt, None),
                    None,
                )
                .await;
            assert!(matches!(out, AuthOutcome::Accept(_)), "{fmt:?}: {out:?}");
            assert_eq!(
                Authorized::from_outcome("alice", &out).unwrap().user(),
                "alice"
            );
        }
        let out = h
            .auth(
                digest_auth_request(&creds("guess"), "INVITE", DigestFormat::Both, None),
                None,
            )
            .await;
        assert!(
            matches!(out, AuthOutcome::Reject(_)),
            "wrong digest: {out:?}"
        );
        assert!(Authorized::from_outcome("alice", &out).is_none());

        // PSTN authorisation, Cisco style.
        let conf = ConfId::random();
        let out = h
            .auth(
                pstn_auth_request("1000", "0049301234", &conf, None),
                Some(b"1000".to_vec()),
            )
            .await;
        assert!(matches!(out, AuthOutcome::Accept(_)), "{out:?}");
        let out = h
            .auth(
                pstn_auth_request("666", "0049301234", &conf, None),
                Some(b"666".to_vec()),
            )
            .await;
        assert_eq!(out, AuthOutcome::Reject(Some("barred".into())));

        // Accounting Start / Stop.
        let r = record("tandem-call-1", now);
        h.record(r.attributes(AcctStatus::Start, now + Duration::from_secs(3)))
            .unwrap();
        h.record(r.attributes(AcctStatus::Stop, now + Duration::from_secs(63)))
            .unwrap();
        wait_spool_empty(&h, 10).await;
    });
    let text = std::fs::read_to_string(&detail).unwrap();
    for needle in [
        "Acct-Status-Type = Start",
        "Acct-Status-Type = Stop",
        "Acct-Session-Id = \"tandem-call-1\"",
        "Acct-Session-Time = 60",
        "Acct-Terminate-Cause = User-Request",
        "Calling-Station-Id = \"1000\"",
        "Called-Station-Id = \"0049301234\"",
        "NAS-IP-Address = 127.0.0.1",
        "h323-conf-id = \"h323-conf-id=1A1A1A1A 1A1A1A1A 1A1A1A1A 1A1A1A1A\"",
        "h323-setup-time = \"h323-setup-time=16:00:00.000 UTC Mon Nov 24 2025\"",
        "h323-connect-time = \"h323-connect-time=16:00:03.000 UTC Mon Nov 24 2025\"",
        "h323-disconnect-time = \"h323-disconnect-time=16:01:03.000 UTC Mon Nov 24 2025\"",
        "h323-disconnect-cause = \"h323-disconnect-cause=10\"",
        "h323-call-origin = \"h323-call-origin=answer\"",
        "h323-call-type = \"h323-call-type=VoIP\"",
        "h323-remote-address = \"h323-remote-address=127.0.0.2\"",
    ] {
        assert!(text.contains(needle), "detail lacks {needle}:\n{text}");
    }

    // Outage: the server is down, records go to the spool; the client restarts from it.
    drop(radiusd);
    const N: usize = 5;
    rt().block_on(async {
        let h = RadiusHandle::start(client_config(port), "127.0.0.1:0".parse().unwrap(), &spool)
            .await
            .unwrap();
        for i in 0..N {
            let r = record(&format!("outage-{i}"), now);
            h.record(r.attributes(AcctStatus::Stop, now + Duration::from_secs(63)))
                .unwrap();
        }
        tokio::time::sleep(Duration::from_millis(800)).await;
        assert_eq!(
            h.spooled(),
            N,
            "nothing acknowledged while the server is down"
        );
    });
    let _radiusd = start_radiusd(&bin, &dir);
    rt().block_on(async {
        let h = RadiusHandle::start(client_config(port), "127.0.0.1:0".parse().unwrap(), &spool)
            .await
            .unwrap();
        assert_eq!(h.spooled(), N, "spool survived the restart");
        wait_spool_empty(&h, 15).await;
    });
    let text = std::fs::read_to_string(&detail).unwrap();
    let mut last = 0;
    for i in 0..N {
        let needle = format!("Acct-Session-Id = \"outage-{i}\"");
        assert_eq!(
            text.matches(&needle).count(),
            1,
            "{needle} must arrive exactly once"
        );
        let at = text.find(&needle).unwrap();
        assert!(at > last, "outage-{i} arrived out of order");
        last = at;
    }
    let _ = std::fs::remove_dir_all(&dir);
}
