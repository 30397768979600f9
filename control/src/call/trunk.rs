//! SIP trunks: calls out to a carrier (or another PBX) and in from it, with digest
//! authentication and registration, the way Asterisk's pjsip endpoint/registration/auth
//! objects or FreeSWITCH gateways do it.
//!
//! - `Dial(SIP/<trunk>/<number>)` sends the INVITE to the trunk's host (or its
//!   `outbound_proxy`) with Request-URI `sip:<number>@<host>`. From carries the caller's
//!   number (`caller_id = "pass"`) or the trunk's `from_user` (`"fixed"`), at `from_domain`.
//!   A trusted trunk (`trust = true`, RFC 3325) also gets `P-Asserted-Identity`. A caller who
//!   asked for privacy (`Privacy: id`, or a user with `presentation = "restricted"`) goes out
//!   with the anonymous From of RFC 3323 and `Privacy: id`; the trusted trunk still sees the
//!   number in P-Asserted-Identity.
//! - A 401/407 from the trunk is answered once with digest credentials (a new CSeq in the
//!   same dialog-forming Call-ID; the transaction layer ACKs the challenge). A second
//!   challenge means wrong credentials: the caller gets 403.
//! - `register = true` keeps a registration at the provider
//!   ([`crate::sip::register_client`]): refreshed at half the granted expiry, retried with
//!   backoff, shown by `tandemctl show trunks`.
//! - An INVITE from the trunk's address (or, from the trunk's IP, for our registered contact
//!   user) is accepted without a challenge and runs in the trunk's `context`. The
//!   P-Asserted-Identity of an untrusted trunk is dropped, never believed.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::time::Instant;

use super::gateway::{self, DialTo, Gateway};
use super::{CallId, Engine, LegSide, Media};
use crate::config::{Config, Trunk, TrunkCallerId};
use crate::mgmt::TrunkInfo;
use crate::sip::client_auth::{new_cnonce, Challenge};
use crate::sip::register_client::{RegState, RegisterClient, RegisterParams};
use crate::sip::{new_branch, CSeq, Method, Request, Response, TxKey, Uri};

/// `DialTo::tech` of a B leg that leaves through a trunk.
const TRUNK_TECH: &str = "SIP trunk";
/// The authenticated-user name of a call that came in from a trunk (`trunk:<name>`).
const TRUNK_USER: &str = "trunk:";

/// Trunk state inside the engine.
#[derive(Default)]
pub(super) struct Trunks {
    list: Vec<TrunkRt>,
    /// Users whose calls carry `Privacy: id` (`presentation = "restricted"`).
    restricted: HashSet<String>,
    /// Users whose P-Asserted-Identity is believed (`trust_id_inbound`).
    trust_id: HashSet<String>,
    /// Our REGISTER transactions, by trunk index.
    reg_tx: HashMap<TxKey, usize>,
    /// B legs sent through a trunk: trunk index and challenges answered so far.
    dialing: HashMap<CallId, (usize, u8)>,
}

struct TrunkRt {
    cfg: Trunk,
    reg: Option<RegisterClient>,
    calls_out: u64,
    calls_in: u64,
}

impl<M: Media> Engine<M> {
    /// Take the trunks and the per-user presentation/trust settings of `cfg`; registrations
    /// start at `now`.
    pub fn configure_trunks(&mut self, cfg: &Config, now: Instant) {
        for u in &cfg.users {
            if u.presentation_restricted {
                self.trunks.restricted.insert(u.name.clone());
            }
            if u.trust_id_inbound {
                self.trunks.trust_id.insert(u.name.clone());
            }
        }
        for t in &cfg.trunks {
            self.add_trunk(t.clone(), now);
        }
    }

    /// Add (or replace, by name) a trunk. With `register`, the first REGISTER is due at `now`.
    pub fn add_trunk(&mut self, t: Trunk, now: Instant) {
        self.note(format!(
            "trunk {} at {}{} (calls in to context {})",
            t.name,
            t.host,
            if t.register { ", registering" } else { "" },
            t.context
        ));
        let reg = t.register.then(|| {
            RegisterClient::new(
                RegisterParams {
                    local: self.cfg.local,
                    domain: t.from_domain.clone(),
                    username: t.username.clone(),
                    password: t.password.clone(),
                    realm: t.realm.clone(),
                    expiry: t.register_expiry,
                    user_agent: self.cfg.user_agent.clone(),
                },
                now,
            )
        });
        let rt = TrunkRt {
            cfg: t,
            reg,
            calls_out: 0,
            calls_in: 0,
        };
        match self
            .trunks
            .list
            .iter()
            .position(|x| x.cfg.name == rt.cfg.name)
        {
            Some(i) => self.trunks.list[i] = rt,
            None => self.trunks.list.push(rt),
        }
    }

    /// Mark a user's calls as presentation restricted (RFC 3323 `Privacy: id`).
    pub fn set_user_presentation_restricted(&mut self, user: &str, restricted: bool) {
        if restricted {
            self.trunks.restricted.insert(user.to_string());
        } else {
            self.trunks.restricted.remove(user);
        }
    }

    /// `tandemctl show trunks`.
    pub fn trunks_info(&self, now: Instant) -> Vec<TrunkInfo> {
        self.trunks
            .list
            .iter()
            .map(|t| TrunkInfo {
                name: t.cfg.name.clone(),
                host: t.cfg.host.to_string(),
                username: t.cfg.username.clone(),
                register: t.cfg.register,
                state: t
                    .reg
                    .as_ref()
                    .map_or("not registering", |r| r.state().as_str())
                    .to_string(),
                last_status: t.reg.as_ref().and_then(|r| r.last_status()),
                expires_s: t
                    .reg
                    .as_ref()
                    .and_then(|r| r.expires_at())
                    .map(|e| e.saturating_duration_since(now).as_secs()),
                next_register_s: t
                    .reg
                    .as_ref()
                    .and_then(|r| r.poll_timeout())
                    .map(|e| e.saturating_duration_since(now).as_secs()),
                trust: t.cfg.trust,
                context: t.cfg.context.clone(),
                calls_out: t.calls_out,
                calls_in: t.calls_in,
            })
            .collect()
    }

    // ---------------------------------------------------------------- hooks: out

    /// `Dial(SIP/<trunk>/<number>)`: the B-leg address, when `<trunk>` names a trunk.
    pub(super) fn trunk_target(&self, tech: &str, resource: &str) -> Option<DialTo> {
        if !tech.eq_ignore_ascii_case("SIP") {
            return None;
        }
        let (name, number) = resource.split_once('/')?;
        let t = self.trunks.list.iter().find(|t| t.cfg.name == name)?;
        let user = gateway::percent_encode_user(number);
        let uri = format!("sip:{user}@{}", t.cfg.host);
        Some(DialTo {
            label: format!("SIP/{name}"),
            tech: TRUNK_TECH.into(),
            request_uri: uri.clone(),
            to_uri: uri,
            dest: t.cfg.outbound_proxy.unwrap_or(t.cfg.host),
            transport: crate::sip::transport::Transport::Udp,
            codecs: t
                .cfg
                .codecs
                .clone()
                .unwrap_or_else(|| self.cfg.codecs_for("")),
            trusted: t.cfg.trust,
        })
    }

    /// Rewrite the identity headers of an INVITE about to leave through a trunk. Returns the
    /// new From header (the B leg's local header) when `to` is a trunk.
    pub(super) fn trunk_shape_invite(
        &mut self,
        cid: CallId,
        to: &DialTo,
        inv: &mut Request,
    ) -> Option<String> {
        if to.tech != TRUNK_TECH {
            return None;
        }
        let name = to.label.strip_prefix("SIP/")?;
        let idx = self.trunks.list.iter().position(|t| t.cfg.name == name)?;
        let call = self.calls.get(&cid)?;
        let t = &self.trunks.list[idx].cfg;
        let tag = inv.from()?.tag()?.to_string();
        let passed = !call.caller.is_empty() && !call.caller.eq_ignore_ascii_case("anonymous");
        let number = match t.caller_id {
            TrunkCallerId::Pass if passed => gateway::percent_encode_user(&call.caller),
            _ => gateway::percent_encode_user(&t.from_user),
        };
        let uri = format!("sip:{number}@{}", t.from_domain);
        let name_part = match &call.bill.caller_name {
            n if n.is_empty() || t.caller_id == TrunkCallerId::Fixed => String::new(),
            n => format!("\"{}\" ", n.replace(['"', '\\'], "")),
        };
        let from = if call.privacy {
            format!("\"Anonymous\" <sip:anonymous@anonymous.invalid>;tag={tag}")
        } else {
            format!("{name_part}<{uri}>;tag={tag}")
        };
        inv.headers.set("From", from.clone());
        inv.headers.remove("P-Asserted-Identity");
        inv.headers.remove("Privacy");
        if t.trust {
            inv.headers
                .push("P-Asserted-Identity", format!("{name_part}<{uri}>"));
        }
        if call.privacy {
            inv.headers.push("Privacy", "id");
        }
        self.trunks.list[idx].calls_out += 1;
        self.trunks.dialing.insert(cid, (idx, 0));
        Some(from)
    }

    /// A 401/407 to a B leg's INVITE. For a trunk leg not yet retried: resend the INVITE
    /// with credentials and return `None`. Otherwise the status the Dial fails with (403
    /// for refused credentials).
    pub(super) fn trunk_retry_auth(
        &mut self,
        cid: CallId,
        resp: &Response,
        now: Instant,
    ) -> Option<u16> {
        let Some(&(idx, answered)) = self.trunks.dialing.get(&cid) else {
            return Some(resp.code);
        };
        let t = &self.trunks.list[idx].cfg;
        let name = t.name.clone();
        if answered >= 1 {
            self.note(format!(
                "call {cid}: trunk {name} refused our credentials, 403"
            ));
            return Some(403);
        }
        let Some((header, ch)) = Challenge::from_response(resp, t.realm.as_deref()) else {
            self.note(format!(
                "call {cid}: trunk {name} sent {} without a challenge we can answer",
                resp.code
            ));
            return Some(403);
        };
        let (username, password) = (t.username.clone(), t.password.clone());
        let local = self.cfg.local;
        let call = self.calls.get_mut(&cid)?;
        let ending = call.state == super::CallState::Ending;
        let b = call.b.as_mut()?;
        if ending || b.state == super::BState::Cancelling {
            // The caller gave up meanwhile: no second INVITE.
            return Some(resp.code);
        }
        let mut inv = b.invite.clone();
        let cseq = b.cseq + 1;
        inv.headers.set(
            "Via",
            format!("SIP/2.0/UDP {local};branch={};rport", new_branch()),
        );
        inv.headers.set(
            "CSeq",
            CSeq {
                seq: cseq,
                method: Method::Invite,
            }
            .to_string(),
        );
        inv.headers.remove("Authorization");
        inv.headers.remove("Proxy-Authorization");
        let uri = inv.uri.clone();
        let value = ch.answer(&username, &password, "INVITE", &uri, 1, &new_cnonce());
        inv.headers.push(header, value);
        let dest = b.dest;
        b.cseq = cseq;
        b.invite = inv.clone();
        b.remote_hdr = inv.headers.get("To").unwrap_or_default().to_string();
        b.state = super::BState::Calling;
        let tx = self.tl.send_request(inv, dest, now);
        if let Some(b) = self.calls.get_mut(&cid).and_then(|c| c.b.as_mut()) {
            b.tx = tx.clone();
        }
        self.by_tx.insert(tx, (cid, LegSide::B));
        self.trunks.dialing.insert(cid, (idx, answered + 1));
        self.note(format!(
            "call {cid}: trunk {name} challenged ({}), retrying with credentials",
            resp.code
        ));
        None
    }

    // ----------------------------------------------------------------- hooks: in

    /// A new INVITE from `from`: the authenticated-user name (`trunk:<name>`) when it comes
    /// from a trunk. Rewrites `req` for the trunk's rules: an untrusted trunk's asserted
    /// identity is dropped; a Request-URI for our registered contact user takes the To user.
    pub(super) fn trunk_inbound(&mut self, req: &mut Request, from: SocketAddr) -> Option<String> {
        let ruri_user = Uri::parse(&req.uri).ok().and_then(|u| u.user);
        let idx = self
            .trunks
            .list
            .iter()
            .position(|t| t.cfg.host == from || t.cfg.outbound_proxy == Some(from));
        // Our registered contact: only from the trunk's own IP, so nobody can skip the
        // challenge by addressing the contact user.
        let contact_idx = self.trunks.list.iter().position(|t| {
            t.reg.as_ref().is_some_and(|r| {
                ruri_user.as_deref() == Some(r.contact_user())
                    && (t.cfg.host.ip() == from.ip()
                        || t.cfg.outbound_proxy.is_some_and(|p| p.ip() == from.ip()))
            })
        });
        let idx = idx.or(contact_idx)?;
        let t = &self.trunks.list[idx];
        if let Some(r) = &t.reg {
            let to_user = req.to().and_then(|t| t.uri.user);
            if ruri_user.as_deref() == Some(r.contact_user()) {
                if let (Some(to_user), Ok(mut u)) = (to_user, Uri::parse(&req.uri)) {
                    if !to_user.is_empty() {
                        u.user = Some(to_user);
                        req.uri = u.to_string();
                    }
                }
            }
        }
        if !t.cfg.trust {
            req.headers.remove("P-Asserted-Identity");
            req.headers.remove("Remote-Party-ID");
        }
        let name = t.cfg.name.clone();
        self.trunks.list[idx].calls_in += 1;
        self.note(format!(
            "INVITE from trunk {name} ({from}): accepted without challenge"
        ));
        Some(format!("{TRUNK_USER}{name}"))
    }

    /// The trunk a call came in from, as the gateway [`Engine::start_call`] treats it
    /// (context, codecs, asserted identity believed: an untrusted trunk's was dropped).
    pub(super) fn trunk_gateway(&self, user: &str) -> Option<Gateway> {
        let name = user.strip_prefix(TRUNK_USER)?;
        let t = self.trunks.list.iter().find(|t| t.cfg.name == name)?;
        Some(Gateway {
            tech: "SIP".into(),
            addr: t.cfg.host,
            context: t.cfg.context.clone(),
            codecs: t.cfg.codecs.clone().unwrap_or_default(),
        })
    }

    /// The user's calls are presentation restricted.
    pub(super) fn trunk_user_restricted(&self, user: &str) -> bool {
        self.trunks.restricted.contains(user)
    }

    /// The user's P-Asserted-Identity is believed.
    pub(super) fn trunk_user_trusted(&self, user: &str) -> bool {
        self.trunks.trust_id.contains(user)
    }

    // ----------------------------------------------------------- hooks: REGISTER

    /// A response no call claims: ours if it answers a trunk REGISTER.
    pub(super) fn trunk_on_response(&mut self, key: &TxKey, resp: &Response, now: Instant) {
        let Some(&idx) = self.trunks.reg_tx.get(key) else {
            return;
        };
        if resp.code < 200 {
            return;
        }
        self.trunks.reg_tx.remove(key);
        let t = &mut self.trunks.list[idx];
        let name = t.cfg.name.clone();
        let dest = t.cfg.outbound_proxy.unwrap_or(t.cfg.host);
        let Some(reg) = t.reg.as_mut() else { return };
        let before = reg.state();
        let again = reg.handle_response(resp, now);
        let after = reg.state();
        let granted = reg.granted();
        if let Some(req) = again {
            let key = self.tl.send_request(req, dest, now);
            self.trunks.reg_tx.insert(key, idx);
            return;
        }
        match after {
            RegState::Registered if before != RegState::Registered => self.note(format!(
                "trunk {name}: registered ({}s)",
                granted.unwrap_or(0)
            )),
            RegState::Rejected => self.note(format!(
                "trunk {name}: registration failed ({} {})",
                resp.code, resp.reason
            )),
            _ => {}
        }
    }

    /// A transaction timed out: a trunk REGISTER with no answer retries later.
    pub(super) fn trunk_tx_timeout(&mut self, key: &TxKey, now: Instant) {
        let Some(idx) = self.trunks.reg_tx.remove(key) else {
            return;
        };
        let t = &mut self.trunks.list[idx];
        let name = t.cfg.name.clone();
        if let Some(reg) = t.reg.as_mut() {
            reg.handle_failure(now);
        }
        self.note(format!(
            "trunk {name}: registrar did not answer, will retry"
        ));
    }

    /// Due REGISTERs; forget finished trunk calls.
    pub(super) fn trunk_timers(&mut self, now: Instant) {
        let mut out = Vec::new();
        for (i, t) in self.trunks.list.iter_mut().enumerate() {
            let dest = t.cfg.outbound_proxy.unwrap_or(t.cfg.host);
            if let Some(req) = t.reg.as_mut().and_then(|r| r.handle_timeout(now)) {
                out.push((i, req, dest));
            }
        }
        for (i, req, dest) in out {
            let key = self.tl.send_request(req, dest, now);
            self.trunks.reg_tx.insert(key, i);
        }
        if !self.trunks.dialing.is_empty() {
            let calls = &self.calls;
            self.trunks.dialing.retain(|cid, _| calls.contains_key(cid));
        }
    }

    /// The next instant a trunk REGISTER is due.
    pub(super) fn trunk_next_timeout(&self) -> Option<Instant> {
        self.trunks
            .list
            .iter()
            .filter_map(|t| t.reg.as_ref().and_then(|r| r.poll_timeout()))
            .min()
    }
}
