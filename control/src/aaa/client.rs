//! Sans-IO RADIUS client: identifiers, retransmission, primary/secondary failover and
//! response checking for Access-Request and Accounting-Request.
//!
//! Calling contract (the quinn-proto shape): feed [`RadiusClient::send_auth`] /
//! [`RadiusClient::send_acct`], [`RadiusClient::handle_datagram`] and
//! [`RadiusClient::handle_timeout`] with `now`; then drain [`RadiusClient::poll_transmit`] and
//! [`RadiusClient::poll_event`], and sleep until [`RadiusClient::poll_timeout`].
//!
//! A request goes to the server that last answered; after `retries` retransmissions every
//! `timeout` without an answer it fails over to the next server of its list. An
//! Access-Request that exhausts every server ends in [`Event::AuthTimedOut`]; an
//! Accounting-Request never gives up (it cycles the servers, the spool keeps it durable).

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::packet::{self, Attribute, Code, Packet, Repr};

/// One RADIUS server and its shared secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    pub address: SocketAddr,
    pub secret: Vec<u8>,
}

/// Client timing and server lists.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub auth_servers: Vec<Server>,
    pub acct_servers: Vec<Server>,
    /// Wait for an answer before retransmitting.
    pub timeout: Duration,
    /// Retransmissions to one server before failing over to the next.
    pub retries: u32,
    /// Accounting requests in flight at once (they are sent in queue order). The
    /// default is 1, so records reach the server strictly in order: a billing
    /// server such as FreeRADIUS handles a window of requests on several threads
    /// and would write them out of order (seen after an outage replay).
    pub acct_window: usize,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            auth_servers: Vec::new(),
            acct_servers: Vec::new(),
            timeout: Duration::from_secs(2),
            retries: 2,
            acct_window: 1,
        }
    }
}

/// Caller's handle for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(pub u64);

/// A datagram to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    pub destination: SocketAddr,
    pub payload: Vec<u8>,
}

/// What happened to a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Access-Accept; `attributes` are the reply attributes.
    AuthAccepted {
        id: RequestId,
        attributes: Vec<Attribute>,
    },
    /// Access-Reject (or an Access-Challenge, which we do not continue).
    AuthRejected {
        id: RequestId,
        reply_message: Option<String>,
    },
    /// No auth server answered.
    AuthTimedOut { id: RequestId },
    /// Accounting-Response received: the record may leave the spool.
    AcctAcknowledged { id: RequestId },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Auth,
    Acct,
}

#[derive(Debug)]
struct Pending {
    kind: Kind,
    attributes: Vec<Attribute>,
    password: Option<Vec<u8>>,
    server: usize,
    servers_tried: usize,
    sends_to_server: u32,
    ident: u8,
    request_auth: [u8; 16],
    payload: Vec<u8>,
    next_at: Instant,
}

/// The client. One UDP socket serves every server; answers are matched by (server, identifier).
#[derive(Debug)]
pub struct RadiusClient {
    cfg: ClientConfig,
    next_id: u64,
    next_ident: u8,
    active_auth: usize,
    active_acct: usize,
    pending: HashMap<RequestId, Pending>,
    acct_queue: VecDeque<(RequestId, Vec<Attribute>)>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    /// Counts datagrams dropped (unknown id, bad authenticator, malformed).
    pub dropped: u64,
}

impl RadiusClient {
    pub fn new(cfg: ClientConfig) -> RadiusClient {
        RadiusClient {
            cfg,
            next_id: 1,
            next_ident: rand::random(),
            active_auth: 0,
            active_acct: 0,
            pending: HashMap::new(),
            acct_queue: VecDeque::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            dropped: 0,
        }
    }

    /// Queues an Access-Request. `password` is hidden as User-Password when given.
    /// With no auth server configured the request times out at once.
    pub fn send_auth(
        &mut self,
        attributes: Vec<Attribute>,
        password: Option<Vec<u8>>,
        now: Instant,
    ) -> RequestId {
        let id = self.alloc_id();
        if self.cfg.auth_servers.is_empty() {
            self.events.push_back(Event::AuthTimedOut { id });
            return id;
        }
        let server = self.active_auth % self.cfg.auth_servers.len();
        let p = Pending {
            kind: Kind::Auth,
            attributes,
            password,
            server,
            servers_tried: 0,
            sends_to_server: 0,
            ident: 0,
            request_auth: [0; 16],
            payload: Vec::new(),
            next_at: now,
        };
        self.start(id, p, now);
        id
    }

    /// Queues an Accounting-Request. Requests are sent in queue order, at most
    /// `acct_window` in flight. Returns the handle reported in [`Event::AcctAcknowledged`].
    pub fn send_acct(&mut self, attributes: Vec<Attribute>, now: Instant) -> RequestId {
        let id = self.alloc_id();
        self.acct_queue.push_back((id, attributes));
        self.pump_acct(now);
        id
    }

    /// Accounting requests not yet acknowledged (queued or in flight).
    pub fn acct_outstanding(&self) -> usize {
        self.acct_queue.len()
            + self
                .pending
                .values()
                .filter(|p| p.kind == Kind::Acct)
                .count()
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// The next retransmission deadline.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.pending.values().map(|p| p.next_at).min()
    }

    /// A datagram from `from`. Unknown, malformed or unauthenticated answers are dropped.
    pub fn handle_datagram(&mut self, from: SocketAddr, bytes: &[u8], now: Instant) {
        let Ok(resp) = Packet::new_checked(bytes) else {
            self.dropped += 1;
            return;
        };
        let ident = resp.identifier();
        let found = self.pending.iter().find(|(_, p)| {
            p.ident == ident && self.servers(p.kind).get(p.server).map(|s| s.address) == Some(from)
        });
        let Some((&id, p)) = found else {
            self.dropped += 1;
            return;
        };
        let secret = &self.servers(p.kind)[p.server].secret;
        if packet::verify_response(&resp, &p.request_auth, secret).is_err() {
            self.dropped += 1;
            return;
        }
        let (kind, server) = (p.kind, p.server);
        let ev = match (kind, resp.code()) {
            (Kind::Auth, Code::AccessAccept) => Event::AuthAccepted {
                id,
                attributes: resp.attributes(),
            },
            (Kind::Auth, Code::AccessReject | Code::AccessChallenge) => Event::AuthRejected {
                id,
                reply_message: resp
                    .find(packet::attr::REPLY_MESSAGE)
                    .map(|v| String::from_utf8_lossy(&v).into_owned()),
            },
            (Kind::Acct, Code::AccountingResponse) => Event::AcctAcknowledged { id },
            _ => {
                self.dropped += 1;
                return;
            }
        };
        self.pending.remove(&id);
        match kind {
            Kind::Auth => self.active_auth = server,
            Kind::Acct => self.active_acct = server,
        }
        self.events.push_back(ev);
        self.pump_acct(now);
    }

    /// Retransmits, fails over, or gives up requests whose deadline passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        let due: Vec<RequestId> = self
            .pending
            .iter()
            .filter(|(_, p)| p.next_at <= now)
            .map(|(i, _)| *i)
            .collect();
        for id in due {
            let Some(mut p) = self.pending.remove(&id) else {
                continue;
            };
            let nservers = self.servers(p.kind).len();
            if p.sends_to_server <= self.cfg.retries {
                // Same server, same packet (RFC 2865 §2.5: same identifier and authenticator).
                self.transmits.push_back(Transmit {
                    destination: self.servers(p.kind)[p.server].address,
                    payload: p.payload.clone(),
                });
                p.sends_to_server += 1;
                p.next_at = now + self.cfg.timeout;
                self.pending.insert(id, p);
                continue;
            }
            p.servers_tried += 1;
            if p.kind == Kind::Auth && p.servers_tried >= nservers {
                self.events.push_back(Event::AuthTimedOut { id });
                continue;
            }
            p.server = (p.server + 1) % nservers;
            match p.kind {
                Kind::Auth => self.active_auth = p.server,
                Kind::Acct => self.active_acct = p.server,
            }
            p.sends_to_server = 0;
            self.start(id, p, now);
        }
        self.pump_acct(now);
    }

    fn servers(&self, kind: Kind) -> &[Server] {
        match kind {
            Kind::Auth => &self.cfg.auth_servers,
            Kind::Acct => &self.cfg.acct_servers,
        }
    }

    fn alloc_id(&mut self) -> RequestId {
        let id = RequestId(self.next_id);
        self.next_id += 1;
        id
    }

    fn pump_acct(&mut self, now: Instant) {
        if self.cfg.acct_servers.is_empty() {
            return;
        }
        while self
            .pending
            .values()
            .filter(|p| p.kind == Kind::Acct)
            .count()
            < self.cfg.acct_window.max(1)
        {
            let Some((id, attributes)) = self.acct_queue.pop_front() else {
                return;
            };
            let server = self.active_acct % self.cfg.acct_servers.len();
            let p = Pending {
                kind: Kind::Acct,
                attributes,
                password: None,
                server,
                servers_tried: 0,
                sends_to_server: 0,
                ident: 0,
                request_auth: [0; 16],
                payload: Vec::new(),
                next_at: now,
            };
            self.start(id, p, now);
        }
    }

    /// Picks an identifier free for the server, emits the packet for it and sends it.
    fn start(&mut self, id: RequestId, mut p: Pending, now: Instant) {
        let server = self.servers(p.kind)[p.server].clone();
        let in_use: Vec<u8> = self
            .pending
            .values()
            .filter(|q| {
                self.servers(q.kind).get(q.server).map(|s| s.address) == Some(server.address)
            })
            .map(|q| q.ident)
            .collect();
        let mut ident = self.next_ident;
        for _ in 0..256 {
            if !in_use.contains(&ident) {
                break;
            }
            ident = ident.wrapping_add(1);
        }
        self.next_ident = ident.wrapping_add(1);
        p.ident = ident;
        let repr = Repr {
            code: match p.kind {
                Kind::Auth => Code::AccessRequest,
                Kind::Acct => Code::AccountingRequest,
            },
            identifier: ident,
            attributes: p.attributes.clone(),
        };
        let emitted = match p.kind {
            Kind::Auth => {
                p.request_auth = rand::random();
                repr.emit_access_request(p.request_auth, p.password.as_deref(), &server.secret)
            }
            Kind::Acct => repr.emit_accounting_request(&server.secret),
        };
        let payload = match emitted {
            Ok(b) => b,
            Err(_) => {
                // Oversized request: a caller bug; report it like an unreachable server.
                if p.kind == Kind::Auth {
                    self.events.push_back(Event::AuthTimedOut { id });
                }
                return;
            }
        };
        if p.kind == Kind::Acct {
            p.request_auth.copy_from_slice(&payload[4..20]);
        }
        p.payload = payload.clone();
        p.sends_to_server = 1;
        p.next_at = now + self.cfg.timeout;
        self.transmits.push_back(Transmit {
            destination: server.address,
            payload,
        });
        self.pending.insert(id, p);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aaa::packet::attr;

    fn epoch() -> Instant {
        #[expect(clippy::disallowed_methods, reason = "test epoch")]
        Instant::now()
    }

    fn srv(port: u16, secret: &str) -> Server {
        Server {
            address: SocketAddr::from(([127, 0, 0, 1], port)),
            secret: secret.as_bytes().to_vec(),
        }
    }

    fn answer(req: &[u8], code: Code, secret: &[u8]) -> Vec<u8> {
        let p = Packet::new_checked(req).unwrap();
        Repr {
            code,
            identifier: p.identifier(),
            attributes: vec![],
        }
        .emit_response(p.authenticator(), secret)
        .unwrap()
    }

    fn client() -> RadiusClient {
        RadiusClient::new(ClientConfig {
            auth_servers: vec![srv(1812, "a"), srv(2812, "b")],
            acct_servers: vec![srv(1813, "a"), srv(2813, "b")],
            timeout: Duration::from_secs(1),
            retries: 1,
            acct_window: 2,
        })
    }

    #[test]
    fn auth_accept_with_checked_authenticator() {
        let t0 = epoch();
        let mut c = client();
        let id = c.send_auth(
            vec![Attribute::text(attr::USER_NAME, "u")],
            Some(b"pw".to_vec()),
            t0,
        );
        let tx = c.poll_transmit().unwrap();
        assert_eq!(tx.destination.port(), 1812);
        // Wrong secret: dropped.
        c.handle_datagram(
            tx.destination,
            &answer(&tx.payload, Code::AccessAccept, b"x"),
            t0,
        );
        assert_eq!(c.poll_event(), None);
        assert_eq!(c.dropped, 1);
        // From the wrong server: dropped.
        c.handle_datagram(
            srv(2812, "b").address,
            &answer(&tx.payload, Code::AccessAccept, b"a"),
            t0,
        );
        assert_eq!(c.poll_event(), None);
        c.handle_datagram(
            tx.destination,
            &answer(&tx.payload, Code::AccessAccept, b"a"),
            t0,
        );
        assert_eq!(
            c.poll_event(),
            Some(Event::AuthAccepted {
                id,
                attributes: vec![]
            })
        );
        assert_eq!(c.poll_timeout(), None);
    }

    #[test]
    fn auth_retransmits_then_fails_over_then_times_out() {
        let t0 = epoch();
        let mut c = client();
        let id = c.send_auth(vec![], None, t0);
        let first = c.poll_transmit().unwrap();
        let mut t = t0;
        t += Duration::from_secs(1);
        c.handle_timeout(t);
        let re = c.poll_transmit().unwrap();
        assert_eq!(re, first, "retransmission is byte-identical");
        t += Duration::from_secs(1);
        c.handle_timeout(t);
        let fo = c.poll_transmit().unwrap();
        assert_eq!(fo.destination.port(), 2812);
        t += Duration::from_secs(1);
        c.handle_timeout(t);
        assert_eq!(c.poll_transmit().unwrap().payload, fo.payload);
        t += Duration::from_secs(1);
        c.handle_timeout(t);
        assert_eq!(c.poll_transmit(), None);
        assert_eq!(c.poll_event(), Some(Event::AuthTimedOut { id }));
        // The secondary is now preferred.
        c.send_auth(vec![], None, t);
        assert_eq!(c.poll_transmit().unwrap().destination.port(), 2812);
    }

    #[test]
    fn acct_window_order_and_never_gives_up() {
        let t0 = epoch();
        let mut c = client();
        let ids: Vec<_> = (0..3)
            .map(|i| c.send_acct(vec![Attribute::int(attr::ACCT_STATUS_TYPE, i)], t0))
            .collect();
        let a = c.poll_transmit().unwrap();
        let b = c.poll_transmit().unwrap();
        assert_eq!(c.poll_transmit(), None, "window of 2");
        c.handle_datagram(
            a.destination,
            &answer(&a.payload, Code::AccountingResponse, b"a"),
            t0,
        );
        assert_eq!(c.poll_event(), Some(Event::AcctAcknowledged { id: ids[0] }));
        let third = c.poll_transmit().unwrap();
        assert_eq!(
            Packet::new_checked(&third.payload[..])
                .unwrap()
                .find(attr::ACCT_STATUS_TYPE),
            Some(vec![0, 0, 0, 2])
        );
        let mut t = t0;
        for _ in 0..20 {
            t += Duration::from_secs(1);
            c.handle_timeout(t);
            while c.poll_transmit().is_some() {}
        }
        assert_eq!(c.acct_outstanding(), 2);
        assert_eq!(c.poll_event(), None);
        let _ = b;
    }
}
