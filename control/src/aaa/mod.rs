//! RADIUS authentication and accounting (RFC 2865/2866, RFC 3579 Message-Authenticator,
//! RFC 5090 digest), FreeRADIUS compatible, with the Cisco h323-* VSAs billing systems read.
//!
//! Layers:
//! - [`packet`]: wire format, attributes, authenticators (pure).
//! - [`client`]: sans-IO request engine: identifiers, retransmission, failover (pure, `now` in).
//! - [`spool`]: durable accounting log (append + fsync, ack, replay in order).
//! - [`udp`]: the tokio edge joining the three; the call manager holds a [`udp::RadiusHandle`].
//!
//! This module also builds the requests the call manager sends: [`digest_auth_request`]
//! (a SIP user's digest checked by the RADIUS server), [`pstn_auth_request`] (a Cisco-style
//! authorisation before a PSTN call) and [`AcctRecord::attributes`] (Start / Interim / Stop).
//! Only this module can mint an [`Authorized`] proof.

pub mod client;
pub mod packet;
pub mod spool;
pub mod udp;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Deserialize;

use crate::sip::digest::Credentials;
pub use client::{ClientConfig, Event, RadiusClient, RequestId, Server, Transmit};
use packet::{attr, cisco, Attribute};
pub use spool::{Spool, SpoolError, SpoolSeq};
pub use udp::{AuthOutcome, RadiusHandle};

/// `[radius]` in `tandem.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RadiusConfig {
    #[serde(default)]
    pub auth_servers: Vec<ServerConfig>,
    #[serde(default)]
    pub acct_servers: Vec<ServerConfig>,
    /// Accounting spool file (required when `acct_servers` is not empty).
    #[serde(default)]
    pub spool: Option<PathBuf>,
    /// NAS-IP-Address sent in every request (default: unset).
    #[serde(default)]
    pub nas_ip: Option<Ipv4Addr>,
    /// Milliseconds before a retransmission (default 2000).
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Retransmissions per server before failover (default 2).
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// Seconds between Interim-Update records; 0 = none (default).
    #[serde(default)]
    pub interim_interval: u64,
    /// Check the digest responses of SIP users that are not in `[[sip.user]]` with the RADIUS
    /// server (default: on when `auth_servers` is not empty).
    #[serde(default)]
    pub digest_auth: Option<bool>,
    /// Digest attribute set for `digest_auth`: "rfc5090", "sterman" or "both" (default).
    #[serde(default)]
    pub digest_format: DigestFormat,
    /// Send a Cisco-style Access-Request before a call leaves to the PSTN.
    #[serde(default)]
    pub authorize_pstn: bool,
}

fn default_timeout_ms() -> u64 {
    2000
}
fn default_retries() -> u32 {
    2
}

/// One `{ address = "127.0.0.1:1812", secret = "..." }` entry.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    pub address: SocketAddr,
    pub secret: String,
}

impl RadiusConfig {
    /// The client configuration these settings describe.
    pub fn client_config(&self) -> ClientConfig {
        let conv = |v: &[ServerConfig]| {
            v.iter()
                .map(|s| Server {
                    address: s.address,
                    secret: s.secret.as_bytes().to_vec(),
                })
                .collect()
        };
        ClientConfig {
            auth_servers: conv(&self.auth_servers),
            acct_servers: conv(&self.acct_servers),
            timeout: Duration::from_millis(self.timeout_ms),
            retries: self.retries,
            ..ClientConfig::default()
        }
    }

    /// Checks what serde cannot: a spool for accounting, secrets present.
    /// True when SIP users missing from `[[sip.user]]` are authenticated by RADIUS.
    pub fn digest_enabled(&self) -> bool {
        !self.auth_servers.is_empty() && self.digest_auth.unwrap_or(true)
    }

    pub fn check(&self) -> Result<(), String> {
        if self.digest_auth == Some(true) && self.auth_servers.is_empty() {
            return Err("[radius] digest_auth = true needs auth_servers".into());
        }
        if self.authorize_pstn && self.auth_servers.is_empty() {
            return Err("[radius] authorize_pstn = true needs auth_servers".into());
        }
        if !self.acct_servers.is_empty() && self.spool.is_none() {
            return Err("[radius] acct_servers needs spool = \"path\" so no record is lost".into());
        }
        for s in self.auth_servers.iter().chain(&self.acct_servers) {
            if s.secret.is_empty() {
                return Err(format!("[radius] server {} has an empty secret", s.address));
            }
        }
        Ok(())
    }
}

/// Proof that the RADIUS server accepted a user or a call. Only [`Authorized::from_outcome`]
/// makes one, from an Access-Accept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorized {
    user: String,
    reply: Vec<Attribute>,
}

impl Authorized {
    /// `Some` only for [`AuthOutcome::Accept`].
    pub fn from_outcome(user: &str, outcome: &AuthOutcome) -> Option<Authorized> {
        match outcome {
            AuthOutcome::Accept(reply) => Some(Authorized {
                user: user.to_string(),
                reply: reply.clone(),
            }),
            _ => None,
        }
    }
    pub fn user(&self) -> &str {
        &self.user
    }
    pub fn reply(&self) -> &[Attribute] {
        &self.reply
    }
}

/// Which digest attribute set an Access-Request carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DigestFormat {
    /// RFC 5090 attributes (Digest-Response 103 ... Digest-Username 115).
    Rfc5090,
    /// draft-sterman-aaa-sip: Digest-Response (206) plus Digest-Attributes (207) sub-attributes,
    /// what FreeRADIUS 3's `digest` module, Kamailio and OpenSER send and check.
    Sterman,
    /// Both sets in one request: each server uses the set it knows (default).
    #[default]
    Both,
}

/// Access-Request attributes asking the server to verify a SIP digest response
/// (RFC 5090 §3 and/or draft-sterman). The client never learns the password.
pub fn digest_auth_request(
    c: &Credentials,
    method: &str,
    format: DigestFormat,
    nas_ip: Option<Ipv4Addr>,
) -> Vec<Attribute> {
    let mut v = vec![Attribute::text(attr::USER_NAME, &c.username)];
    if format != DigestFormat::Sterman {
        v.push(Attribute::text(attr::DIGEST_RESPONSE, &c.response));
        v.push(Attribute::text(attr::DIGEST_REALM, &c.realm));
        v.push(Attribute::text(attr::DIGEST_NONCE, &c.nonce));
        v.push(Attribute::text(attr::DIGEST_METHOD, method));
        v.push(Attribute::text(attr::DIGEST_URI, &c.uri));
        v.push(Attribute::text(attr::DIGEST_USERNAME, &c.username));
        let opt = [
            (attr::DIGEST_ALGORITHM, &c.algorithm),
            (attr::DIGEST_QOP, &c.qop),
            (attr::DIGEST_CNONCE, &c.cnonce),
            (attr::DIGEST_NONCE_COUNT, &c.nc),
        ];
        for (ty, val) in opt {
            if let Some(x) = val {
                v.push(Attribute::text(ty, x));
            }
        }
    }
    if format != DigestFormat::Rfc5090 {
        v.push(Attribute::text(attr::STERMAN_DIGEST_RESPONSE, &c.response));
        let subs = [
            (1u8, Some(&c.realm)),
            (2, Some(&c.nonce)),
            (3, None),
            (4, Some(&c.uri)),
            (5, c.qop.as_ref()),
            (6, c.algorithm.as_ref()),
            (8, c.cnonce.as_ref()),
            (9, c.nc.as_ref()),
            (10, Some(&c.username)),
        ];
        for (sub, val) in subs {
            let text = if sub == 3 {
                method
            } else if let Some(x) = val {
                x.as_str()
            } else {
                continue;
            };
            // Sub-attribute: type, length (with its 2-byte header), value; at most 251 bytes.
            let bytes = text.as_bytes();
            let bytes = &bytes[..bytes.len().min(251)];
            let mut value = vec![sub, (bytes.len() + 2) as u8];
            value.extend_from_slice(bytes);
            v.push(Attribute::Standard {
                ty: attr::STERMAN_DIGEST_ATTRIBUTES,
                value,
            });
        }
    }
    if let Some(ip) = nas_ip {
        v.push(Attribute::ipv4(attr::NAS_IP_ADDRESS, ip));
    }
    v
}

/// Cisco-style authorisation before a PSTN call: User-Name is the calling number (the
/// password, if any, is passed to [`RadiusHandle::auth`]), with Calling/Called-Station-Id and
/// h323-conf-id; the server may reject the call.
pub fn pstn_auth_request(
    calling: &str,
    called: &str,
    conf_id: &ConfId,
    nas_ip: Option<Ipv4Addr>,
) -> Vec<Attribute> {
    let mut v = vec![
        Attribute::text(attr::USER_NAME, calling),
        Attribute::text(attr::CALLING_STATION_ID, calling),
        Attribute::text(attr::CALLED_STATION_ID, called),
        Attribute::cisco(cisco::H323_CONF_ID, "h323-conf-id", &conf_id.to_string()),
        Attribute::cisco(
            cisco::AVPAIR,
            "cisco-avpair",
            "h323-ivr-out=transaction:authorize",
        ),
    ];
    if let Some(ip) = nas_ip {
        v.push(Attribute::ipv4(attr::NAS_IP_ADDRESS, ip));
    }
    v
}

/// An h323-conf-id: 128 bits shown as four 8-digit hex groups, as Cisco gateways print it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConfId(pub [u8; 16]);

impl ConfId {
    pub fn random() -> ConfId {
        ConfId(rand::random())
    }
}

impl std::fmt::Display for ConfId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, c) in self.0.chunks(4).enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            for b in c {
                write!(f, "{b:02X}")?;
            }
        }
        Ok(())
    }
}

/// Acct-Status-Type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcctStatus {
    Start = 1,
    Stop = 2,
    InterimUpdate = 3,
}

/// Which side set up the call, for h323-call-origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallOrigin {
    /// The call came in to us (our A leg).
    Answer,
    /// We placed the call (our B leg).
    Originate,
}

/// One call's accounting data. Times are wall-clock, given by the caller (the edge's clock).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcctRecord {
    pub session_id: String,
    pub calling: String,
    pub called: String,
    pub nas_ip: Option<Ipv4Addr>,
    pub conf_id: ConfId,
    pub origin: CallOrigin,
    /// `VoIP` or `Telephony`.
    pub call_type: String,
    pub remote_address: Option<std::net::IpAddr>,
    pub setup_time: SystemTime,
    pub connect_time: Option<SystemTime>,
    pub disconnect_time: Option<SystemTime>,
    /// Q.850 cause of the release.
    pub disconnect_cause: Option<u8>,
}

impl AcctRecord {
    /// The Accounting-Request attributes for `status`. Acct-Session-Time counts from connect
    /// to disconnect (or to `at`, for an Interim-Update).
    pub fn attributes(&self, status: AcctStatus, at: SystemTime) -> Vec<Attribute> {
        let mut v = vec![
            Attribute::int(attr::ACCT_STATUS_TYPE, status as u32),
            Attribute::text(attr::ACCT_SESSION_ID, &self.session_id),
            Attribute::text(attr::USER_NAME, &self.calling),
            Attribute::text(attr::CALLING_STATION_ID, &self.calling),
            Attribute::text(attr::CALLED_STATION_ID, &self.called),
            Attribute::int(attr::EVENT_TIMESTAMP, unix(at) as u32),
        ];
        if let Some(ip) = self.nas_ip {
            v.push(Attribute::ipv4(attr::NAS_IP_ADDRESS, ip));
        }
        let h = |ty, name, val: &str| Attribute::cisco(ty, name, val);
        v.push(h(
            cisco::H323_CONF_ID,
            "h323-conf-id",
            &self.conf_id.to_string(),
        ));
        v.push(h(
            cisco::H323_CALL_ORIGIN,
            "h323-call-origin",
            match self.origin {
                CallOrigin::Answer => "answer",
                CallOrigin::Originate => "originate",
            },
        ));
        v.push(h(cisco::H323_CALL_TYPE, "h323-call-type", &self.call_type));
        if let Some(ip) = self.remote_address {
            v.push(h(
                cisco::H323_REMOTE_ADDRESS,
                "h323-remote-address",
                &ip.to_string(),
            ));
        }
        v.push(h(
            cisco::H323_SETUP_TIME,
            "h323-setup-time",
            &cisco_time(self.setup_time),
        ));
        if let Some(t) = self.connect_time {
            v.push(h(
                cisco::H323_CONNECT_TIME,
                "h323-connect-time",
                &cisco_time(t),
            ));
        }
        if status != AcctStatus::Start {
            let end = if status == AcctStatus::Stop {
                self.disconnect_time.unwrap_or(at)
            } else {
                at
            };
            let secs = self
                .connect_time
                .map(|c| unix(end).saturating_sub(unix(c)))
                .unwrap_or(0);
            v.push(Attribute::int(attr::ACCT_SESSION_TIME, secs as u32));
        }
        if status == AcctStatus::Stop {
            let end = self.disconnect_time.unwrap_or(at);
            v.push(h(
                cisco::H323_DISCONNECT_TIME,
                "h323-disconnect-time",
                &cisco_time(end),
            ));
            let cause = self.disconnect_cause.unwrap_or(16);
            v.push(h(
                cisco::H323_DISCONNECT_CAUSE,
                "h323-disconnect-cause",
                &format!("{cause:X}"),
            ));
            v.push(Attribute::int(
                attr::ACCT_TERMINATE_CAUSE,
                terminate_cause(cause),
            ));
        }
        v
    }
}

/// Acct-Terminate-Cause (RFC 2866 §5.10) for a Q.850 cause.
pub fn terminate_cause(q850: u8) -> u32 {
    match q850 {
        16 | 17 | 19 | 21 | 31 => 1, // User-Request
        18 => 4,                     // Idle-Timeout: no user responding
        27 | 38 | 41 => 3,           // Lost-Service
        34 | 42 | 47 => 15,          // Service-Unavailable
        1 | 3 | 28 => 17,            // User-Error: unallocated or invalid number
        _ => 10,                     // NAS-Request
    }
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Cisco's h323-*-time format: `14:32:10.123 UTC Mon Nov 25 2026`.
pub fn cisco_time(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (y, m, day) = civil_from_days((secs / 86_400) as i64);
    let sod = secs % 86_400;
    const WD: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MO: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{:02}:{:02}:{:02}.{:03} UTC {} {} {:02} {}",
        sod / 3600,
        sod / 60 % 60,
        sod % 60,
        d.subsec_millis(),
        WD[(secs / 86_400 % 7) as usize],
        MO[(m - 1) as usize],
        day,
        y
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
pub(crate) fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cisco_time_format() {
        let t = UNIX_EPOCH + Duration::from_millis(1_764_081_130_123);
        assert_eq!(cisco_time(t), "14:32:10.123 UTC Tue Nov 25 2025");
        assert_eq!(cisco_time(UNIX_EPOCH), "00:00:00.000 UTC Thu Jan 01 1970");
    }

    #[test]
    fn stop_record_has_session_time_and_cause() {
        let setup = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let r = AcctRecord {
            session_id: "s1".into(),
            calling: "100".into(),
            called: "200".into(),
            nas_ip: Some(Ipv4Addr::LOCALHOST),
            conf_id: ConfId([0xab; 16]),
            origin: CallOrigin::Answer,
            call_type: "VoIP".into(),
            remote_address: None,
            setup_time: setup,
            connect_time: Some(setup + Duration::from_secs(5)),
            disconnect_time: Some(setup + Duration::from_secs(65)),
            disconnect_cause: Some(16),
        };
        let a = r.attributes(AcctStatus::Stop, setup + Duration::from_secs(66));
        assert!(a.contains(&Attribute::int(attr::ACCT_SESSION_TIME, 60)));
        assert!(a.contains(&Attribute::int(attr::ACCT_TERMINATE_CAUSE, 1)));
        assert!(a.contains(&Attribute::cisco(30, "h323-disconnect-cause", "10")));
        assert!(a.contains(&Attribute::cisco(
            24,
            "h323-conf-id",
            "ABABABAB ABABABAB ABABABAB ABABABAB"
        )));
        let s = r.attributes(AcctStatus::Start, setup);
        assert!(!s.iter().any(|x| matches!(
            x,
            Attribute::Standard {
                ty: attr::ACCT_SESSION_TIME,
                ..
            }
        )));
    }

    #[test]
    fn config_parses_and_rejects_unknown_keys() {
        let c: RadiusConfig = toml::from_str(
            "auth_servers = [{ address = \"127.0.0.1:1812\", secret = \"s\" }]\nspool = \"/tmp/x\"\n",
        )
        .unwrap();
        assert_eq!(c.auth_servers[0].address.port(), 1812);
        assert_eq!(c.timeout_ms, 2000);
        c.check().unwrap();
        assert!(toml::from_str::<RadiusConfig>("bogus = 1").is_err());
        let no_spool: RadiusConfig =
            toml::from_str("acct_servers = [{ address = \"127.0.0.1:1813\", secret = \"s\" }]")
                .unwrap();
        assert!(no_spool.check().is_err());
    }
}
