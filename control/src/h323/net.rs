//! The tokio edge for an H.225.0 call: owns the TCP socket and the clock,
//! drives an [`H323Call`] with bytes, commands and timeouts, and forwards its
//! events. One task per call (H.225.0 here runs one call per connection).

use std::io;
use std::net::SocketAddr;
use std::time::Instant;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use super::call::{CallEvent, H323Call};

/// Commands from the B2BUA to a running call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Place the call (caller side): calling, called, display, restricted.
    Setup {
        /// Calling number.
        calling: String,
        /// Called number.
        called: String,
        /// Display name.
        display: Option<String>,
        /// Presentation restricted.
        restricted: bool,
    },
    /// Send Call Proceeding.
    Proceeding,
    /// Send Alerting.
    Alerting,
    /// Send Progress.
    Progress,
    /// Send Connect.
    Connect,
    /// Send Release Complete with a Q.850 cause.
    Release(u8),
    /// Send a DTMF digit (tunnelled UserInputIndication).
    Dtmf(char, Option<u16>),
}

#[expect(clippy::disallowed_methods, reason = "the edge owns the clock")]
fn now() -> Instant {
    Instant::now()
}

/// Connects to `peer` and runs `call` on the connection.
pub async fn connect(
    peer: SocketAddr,
    call: H323Call,
    cmds: mpsc::Receiver<Command>,
    events: mpsc::Sender<CallEvent>,
) -> io::Result<()> {
    let s = TcpStream::connect(peer).await?;
    s.set_nodelay(true)?;
    run(s, call, cmds, events).await
}

/// Accepts one connection on `listener` and runs `call` on it.
pub async fn accept(
    listener: &TcpListener,
    call: H323Call,
    cmds: mpsc::Receiver<Command>,
    events: mpsc::Sender<CallEvent>,
) -> io::Result<()> {
    let (s, _) = listener.accept().await?;
    s.set_nodelay(true)?;
    run(s, call, cmds, events).await
}

fn apply(call: &mut H323Call, c: Command, t: Instant) {
    let r = match c {
        Command::Setup {
            calling,
            called,
            display,
            restricted,
        } => call.setup(&calling, &called, display.as_deref(), restricted, t),
        Command::Proceeding => call.proceeding(t),
        Command::Alerting => call.alerting(t),
        Command::Progress => call.progress(t),
        Command::Connect => call.connect(t),
        Command::Release(cause) => call.release(cause, t),
        Command::Dtmf(d, ms) => call.send_dtmf(d, ms),
    };
    if let Err(e) = r {
        tracing::warn!("h323: {e}");
    }
}

/// Runs `call` on an established stream until it is released and flushed,
/// the peer closes, or the command channel closes (then cause 16 is sent).
pub async fn run(
    mut s: TcpStream,
    mut call: H323Call,
    mut cmds: mpsc::Receiver<Command>,
    events: mpsc::Sender<CallEvent>,
) -> io::Result<()> {
    let mut buf = vec![0u8; 8192];
    let mut cmds_open = true;
    loop {
        while let Some(f) = call.poll_transmit() {
            s.write_all(&f).await?;
        }
        while let Some(e) = call.poll_event() {
            let _ = events.send(e).await;
        }
        if call.is_released() {
            s.flush().await?;
            return Ok(());
        }
        let deadline = call.poll_timeout();
        let sleep = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            r = s.read(&mut buf) => {
                let n = r?;
                if n == 0 {
                    call.handle_closed();
                } else if let Err(e) = call.handle_bytes(&buf[..n], now()) {
                    tracing::warn!("h323: {e}");
                }
            }
            c = cmds.recv(), if cmds_open => match c {
                Some(c) => apply(&mut call, c, now()),
                None => {
                    cmds_open = false;
                    if !call.is_released() {
                        let _ = call.release(16, now());
                    }
                }
            },
            _ = sleep => call.handle_timeout(now()),
        }
    }
}
