//! One H.225.0 call signalling message: the Q.931 message plus the decoded
//! `H323-UserInformation` from its User-user IE.

use super::h225::UserInformation;
use super::{tpkt, H323Error};
use crate::q931::{Ie, Message, IE_USER_USER};

/// Protocol discriminator of the User-user IE contents in H.225.0 ("X.208/X.209 coded").
pub const UU_PD_H225: u8 = 0x05;

/// An H.225.0 message (`Repr`): Q.931 header and IEs, and the UUIE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct H225Message {
    /// The Q.931 message. Its User-user IE is replaced by the encoding of
    /// `uuie` on emit.
    pub q931: Message,
    /// The decoded User-user IE body, if the message had one.
    pub uuie: Option<UserInformation>,
}

impl H225Message {
    /// Parses a TPKT payload. Never panics.
    pub fn parse(payload: &[u8]) -> Result<Self, H323Error> {
        let q931 = Message::parse_h225(payload)?;
        let uuie = match q931.user_user() {
            Some([UU_PD_H225, per @ ..]) => Some(UserInformation::decode(per)?),
            Some(_) => {
                return Err(H323Error::Missing(
                    "User-user IE protocol discriminator 0x05",
                ))
            }
            None => None,
        };
        Ok(Self { q931, uuie })
    }

    /// A message with the given Q.931 part and UUIE.
    pub fn new(q931: Message, uuie: UserInformation) -> Self {
        Self {
            q931,
            uuie: Some(uuie),
        }
    }

    /// Encodes the Q.931 message, with the UUIE in its User-user IE (which
    /// keeps its place, or is appended), appending to `out`.
    pub fn emit(&self, out: &mut Vec<u8>) {
        let mut m = self.q931.clone();
        if let Some(u) = &self.uuie {
            let mut data = vec![UU_PD_H225];
            data.extend_from_slice(&u.encode());
            let slot = m
                .ies
                .iter_mut()
                .find(|ie| matches!(ie, Ie::Unknown { id, .. } if *id == u16::from(IE_USER_USER)));
            match slot {
                Some(Ie::Unknown { data: d, .. }) => *d = data,
                _ => m.ies.push(Ie::Unknown {
                    id: u16::from(IE_USER_USER),
                    data,
                }),
            }
        }
        m.emit_h225(out);
    }

    /// The message as one TPKT frame.
    pub fn to_tpkt(&self) -> Vec<u8> {
        let mut p = Vec::new();
        self.emit(&mut p);
        let mut out = Vec::with_capacity(p.len() + 4);
        tpkt::frame(&p, &mut out);
        out
    }
}
