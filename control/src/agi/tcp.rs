//! Tokio TCP edge for [`AgiSession`]: connect (with a timeout), send the environment, serve
//! commands until the AGI server closes the connection.
//!
//! A dead or silent AGI server fails the application cleanly: [`run`] returns
//! [`AgiStatus::Failure`] (Asterisk's `AGISTATUS=FAILURE`) and the dialplan goes on.

use std::future::Future;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{AgiChannel, AgiEnv, AgiError, AgiSession, AgiUrl, MediaOutcome, MediaRequest};

/// A channel that can also perform media operations (play, collect digits).
pub trait AgiMediaChannel: AgiChannel {
    fn perform(&mut self, req: MediaRequest) -> impl Future<Output = MediaOutcome> + Send;
}

/// The application's outcome, as Asterisk's `AGISTATUS`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgiStatus {
    Success,
    /// Could not connect, or the connection broke or went silent: the reason.
    Failure(AgiError),
    /// The channel hung up during the script.
    Hangup,
}

impl AgiStatus {
    /// The `AGISTATUS` variable value.
    pub fn as_str(&self) -> &'static str {
        match self {
            AgiStatus::Success => "SUCCESS",
            AgiStatus::Failure(_) => "FAILURE",
            AgiStatus::Hangup => "HANGUP",
        }
    }
}

/// Runs one FastAGI session. `connect_timeout` bounds the TCP connect; `idle_timeout` bounds
/// the wait for each command from the server.
pub async fn run<C: AgiMediaChannel>(
    url: &AgiUrl,
    env: &AgiEnv,
    chan: &mut C,
    connect_timeout: Duration,
    idle_timeout: Duration,
) -> AgiStatus {
    let target = format!("{}:{}", url.host, url.port);
    let who = target.clone();
    let stream = match tokio::time::timeout(connect_timeout, TcpStream::connect(&target)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return AgiStatus::Failure(AgiError::Connect(who, e.to_string())),
        Err(_) => return AgiStatus::Failure(AgiError::Connect(who, "connect timed out".into())),
    };
    let _ = stream.set_nodelay(true);
    let (mut rd, mut wr) = stream.into_split();
    let mut s = AgiSession::new(url, env);
    let mut buf = vec![0u8; 4096];
    let io = |e: String| AgiStatus::Failure(AgiError::Io(who.clone(), e));
    loop {
        if let Some(bytes) = s.poll_transmit() {
            if let Err(e) = wr.write_all(&bytes).await {
                return if s.hung_up() {
                    AgiStatus::Hangup
                } else {
                    io(e.to_string())
                };
            }
            continue;
        }
        if let Some(req) = s.poll_media() {
            let outcome = chan.perform(req).await;
            s.complete_media(outcome, chan);
            continue;
        }
        match tokio::time::timeout(idle_timeout, rd.read(&mut buf)).await {
            Ok(Ok(0)) => {
                return if s.hung_up() {
                    AgiStatus::Hangup
                } else {
                    AgiStatus::Success
                };
            }
            Ok(Ok(n)) => s.handle_bytes(&buf[..n], chan),
            Ok(Err(e)) => return io(e.to_string()),
            Err(_) => return io("no command within the idle timeout".into()),
        }
    }
}
