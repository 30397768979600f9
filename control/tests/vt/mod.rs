//! The virtual-time harness of the engine tests: a fake dataplane that records
//! what the call manager asks of it, and a `World` that feeds hand-written SIP
//! to an `Engine` and collects what it sends, per destination, with time
//! advanced virtually (no sockets, no sleeps).
#![allow(dead_code)]

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use control::call::{Engine, EngineConfig, Media};
use control::dialplan::Dialplan;
use control::sip::transaction::TimerConfig;
use control::sip::{Message, Request, Response};
use dataplane::{Allocated, Event, Mode, SessionId, Side, WorkerStats};

#[derive(Default)]
pub struct FakeLog {
    pub created: u32,
    pub remotes: Vec<(SessionId, Side, SocketAddr)>,
    pub modes: Vec<(SessionId, Mode)>,
    pub armed: Vec<SessionId>,
    pub destroyed: Vec<SessionId>,
    pub events: Vec<Event>,
}

/// Records what the call manager asks of the dataplane.
#[derive(Clone, Default)]
pub struct FakeMedia(pub Rc<RefCell<FakeLog>>);

impl Media for FakeMedia {
    fn create_session(&mut self, _mode: Mode) -> Result<Allocated, dataplane::Error> {
        let mut l = self.0.borrow_mut();
        l.created += 1;
        let n = l.created;
        Ok(Allocated {
            id: SessionId(n),
            worker: 0,
            a: SocketAddr::from(([127, 0, 0, 1], 20000 + 4 * n as u16)),
            b: SocketAddr::from(([127, 0, 0, 1], 20002 + 4 * n as u16)),
        })
    }
    fn set_remote(
        &mut self,
        id: SessionId,
        side: Side,
        rtp: SocketAddr,
    ) -> Result<(), dataplane::Error> {
        self.0.borrow_mut().remotes.push((id, side, rtp));
        Ok(())
    }
    fn set_mode(&mut self, id: SessionId, mode: Mode) -> Result<(), dataplane::Error> {
        self.0.borrow_mut().modes.push((id, mode));
        Ok(())
    }
    fn arm_timeout(&mut self, id: SessionId) -> Result<(), dataplane::Error> {
        self.0.borrow_mut().armed.push(id);
        Ok(())
    }
    fn destroy(&mut self, id: SessionId) -> Result<(), dataplane::Error> {
        self.0.borrow_mut().destroyed.push(id);
        Ok(())
    }
    fn poll_event(&mut self) -> Option<Event> {
        self.0.borrow_mut().events.pop()
    }
    fn stats(&self) -> Vec<WorkerStats> {
        Vec::new()
    }
}

pub const TANDEM: &str = "127.0.0.1:5060";
pub const PHONE_A: &str = "127.0.0.1:6001";
pub const PHONE_B: &str = "127.0.0.1:6002";

pub fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

pub struct World {
    pub engine: Engine<FakeMedia>,
    pub media: FakeMedia,
    pub now: Instant,
    /// Datagrams Tandem sent, per destination.
    pub inbox: HashMap<SocketAddr, Vec<Message>>,
}

#[expect(
    clippy::disallowed_methods,
    reason = "the test's fixed epoch; time then advances virtually"
)]
pub fn epoch() -> Instant {
    Instant::now()
}

impl World {
    pub fn new(dialplan: &str) -> World {
        let now = epoch();
        let media = FakeMedia::default();
        let cfg = EngineConfig {
            local: addr(TANDEM),
            realm: "tandem".into(),
            user_agent: "Tandem/test".into(),
            context: "default".into(),
            user_contexts: HashMap::new(),
            users: [("1001", "pw1001"), ("1002", "pw1002")]
                .iter()
                .map(|(u, p)| (u.to_string(), p.to_string()))
                .collect(),
            timers: TimerConfig::default(),
            user_codecs: HashMap::new(),
            tone_zone: "us".into(),
            sounds: Arc::new(HashMap::new()),
            gateways: Vec::new(),
        };
        let plan = Arc::new(Dialplan::parse(dialplan, "test.conf").unwrap());
        let engine = Engine::new(cfg, plan, media.clone(), [7u8; 32], now, 1_800_000_000);
        World {
            engine,
            media,
            now,
            inbox: HashMap::new(),
        }
    }

    pub fn send(&mut self, from: &str, text: &str) {
        self.engine
            .handle_datagram(text.as_bytes(), addr(from), self.now);
        self.flush();
    }

    pub fn flush(&mut self) {
        while let Some(t) = self.engine.poll_transmit() {
            let m = Message::parse(&t.bytes).expect("Tandem sends valid SIP");
            self.inbox.entry(t.dest).or_default().push(m);
        }
    }

    pub fn advance(&mut self, d: Duration) {
        let end = self.now + d;
        while let Some(t) = self.engine.poll_timeout() {
            if t > end {
                break;
            }
            self.now = t.max(self.now);
            self.engine.handle_timeout(self.now);
            self.flush();
        }
        self.now = end;
        self.engine.handle_timeout(self.now);
        self.flush();
    }

    pub fn take(&mut self, to: &str) -> Vec<Message> {
        self.inbox.remove(&addr(to)).unwrap_or_default()
    }

    pub fn take_responses(&mut self, to: &str) -> Vec<Response> {
        self.take(to)
            .into_iter()
            .filter_map(|m| match m {
                Message::Response(r) => Some(r),
                _ => None,
            })
            .collect()
    }

    pub fn take_requests(&mut self, to: &str) -> Vec<Request> {
        self.take(to)
            .into_iter()
            .filter_map(|m| match m {
                Message::Request(r) => Some(r),
                _ => None,
            })
            .collect()
    }
}
