//! RADIUS wire format (RFC 2865 §3-5, RFC 2866, RFC 3579 §3.2): packets, attributes, vendor
//! specific attributes, User-Password hiding and the three authenticators.
//!
//! [`Packet`] is a checked view over received bytes (attribute walk cannot overrun);
//! [`Repr`] is the owned meaning used to build requests. The shared secret enters only the
//! functions that need it (`emit_*`, [`verify_response`]).

use md5::{Digest, Md5};

/// RADIUS header length: code, identifier, length, authenticator.
pub const HEADER_LEN: usize = 20;
/// Largest packet RFC 2865 §3 allows.
pub const MAX_LEN: usize = 4096;

/// Packet codes used here (RFC 2865 §4, RFC 2866 §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Code {
    AccessRequest,
    AccessAccept,
    AccessReject,
    AccountingRequest,
    AccountingResponse,
    AccessChallenge,
    Other(u8),
}

impl Code {
    pub fn from_u8(v: u8) -> Code {
        match v {
            1 => Code::AccessRequest,
            2 => Code::AccessAccept,
            3 => Code::AccessReject,
            4 => Code::AccountingRequest,
            5 => Code::AccountingResponse,
            11 => Code::AccessChallenge,
            o => Code::Other(o),
        }
    }
    pub fn to_u8(self) -> u8 {
        match self {
            Code::AccessRequest => 1,
            Code::AccessAccept => 2,
            Code::AccessReject => 3,
            Code::AccountingRequest => 4,
            Code::AccountingResponse => 5,
            Code::AccessChallenge => 11,
            Code::Other(o) => o,
        }
    }
}

/// Attribute type numbers (RFC 2865 §5, RFC 2866 §5, RFC 2869, RFC 3579, RFC 5090).
pub mod attr {
    pub const USER_NAME: u8 = 1;
    pub const USER_PASSWORD: u8 = 2;
    pub const NAS_IP_ADDRESS: u8 = 4;
    pub const NAS_PORT: u8 = 5;
    pub const SERVICE_TYPE: u8 = 6;
    pub const REPLY_MESSAGE: u8 = 18;
    pub const CLASS: u8 = 25;
    pub const VENDOR_SPECIFIC: u8 = 26;
    pub const CALLED_STATION_ID: u8 = 30;
    pub const CALLING_STATION_ID: u8 = 31;
    pub const NAS_IDENTIFIER: u8 = 32;
    pub const ACCT_STATUS_TYPE: u8 = 40;
    pub const ACCT_DELAY_TIME: u8 = 41;
    pub const ACCT_SESSION_ID: u8 = 44;
    pub const ACCT_SESSION_TIME: u8 = 46;
    pub const ACCT_TERMINATE_CAUSE: u8 = 49;
    pub const EVENT_TIMESTAMP: u8 = 55;
    pub const MESSAGE_AUTHENTICATOR: u8 = 80;
    pub const DIGEST_RESPONSE: u8 = 103;
    pub const DIGEST_REALM: u8 = 104;
    pub const DIGEST_NONCE: u8 = 105;
    pub const DIGEST_RESPONSE_AUTH: u8 = 106;
    pub const DIGEST_NEXTNONCE: u8 = 107;
    pub const DIGEST_METHOD: u8 = 108;
    pub const DIGEST_URI: u8 = 109;
    pub const DIGEST_QOP: u8 = 110;
    pub const DIGEST_ALGORITHM: u8 = 111;
    pub const DIGEST_CNONCE: u8 = 113;
    pub const DIGEST_NONCE_COUNT: u8 = 114;
    pub const DIGEST_USERNAME: u8 = 115;
    /// draft-sterman-aaa-sip Digest-Response (FreeRADIUS `dictionary.iana`).
    pub const STERMAN_DIGEST_RESPONSE: u8 = 206;
    /// draft-sterman-aaa-sip Digest-Attributes: one sub-attribute per instance.
    pub const STERMAN_DIGEST_ATTRIBUTES: u8 = 207;
}

/// Cisco vendor id and its VSA numbers (Cisco "RADIUS VSA Voice Implementation Guide").
pub mod cisco {
    pub const VENDOR: u32 = 9;
    pub const AVPAIR: u8 = 1;
    pub const H323_REMOTE_ADDRESS: u8 = 23;
    pub const H323_CONF_ID: u8 = 24;
    pub const H323_SETUP_TIME: u8 = 25;
    pub const H323_CALL_ORIGIN: u8 = 26;
    pub const H323_CALL_TYPE: u8 = 27;
    pub const H323_CONNECT_TIME: u8 = 28;
    pub const H323_DISCONNECT_TIME: u8 = 29;
    pub const H323_DISCONNECT_CAUSE: u8 = 30;
}

/// Malformed RADIUS packet. Caused by the peer (or a corrupted spool record).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PacketError {
    #[error("RADIUS packet of {0} bytes is shorter than the 20-byte header")]
    Truncated(usize),
    #[error("RADIUS length field {field} disagrees with datagram of {actual} bytes")]
    BadLength { field: usize, actual: usize },
    #[error("RADIUS attribute at offset {0} has a bad length")]
    BadAttribute(usize),
    #[error("RADIUS packet would be {0} bytes, over the 4096 limit")]
    TooLong(usize),
    #[error("RADIUS attribute value of {0} bytes is over 253")]
    ValueTooLong(usize),
}

/// One attribute: a standard type or a vendor-specific one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attribute {
    Standard { ty: u8, value: Vec<u8> },
    Vendor { vendor: u32, ty: u8, value: Vec<u8> },
}

impl Attribute {
    pub fn text(ty: u8, s: &str) -> Attribute {
        Attribute::Standard {
            ty,
            value: s.as_bytes().to_vec(),
        }
    }
    pub fn int(ty: u8, v: u32) -> Attribute {
        Attribute::Standard {
            ty,
            value: v.to_be_bytes().to_vec(),
        }
    }
    pub fn ipv4(ty: u8, ip: std::net::Ipv4Addr) -> Attribute {
        Attribute::Standard {
            ty,
            value: ip.octets().to_vec(),
        }
    }
    /// A Cisco VSA whose value is `name=value` text, as Cisco gateways send h323-* attributes.
    pub fn cisco(ty: u8, name: &str, value: &str) -> Attribute {
        Attribute::Vendor {
            vendor: cisco::VENDOR,
            ty,
            value: format!("{name}={value}").into_bytes(),
        }
    }
    fn wire_len(&self) -> usize {
        match self {
            Attribute::Standard { value, .. } => 2 + value.len(),
            Attribute::Vendor { value, .. } => 8 + value.len(),
        }
    }
    fn emit(&self, out: &mut Vec<u8>) -> Result<(), PacketError> {
        match self {
            Attribute::Standard { ty, value } => {
                if value.len() > 253 {
                    return Err(PacketError::ValueTooLong(value.len()));
                }
                out.push(*ty);
                out.push((2 + value.len()) as u8);
                out.extend_from_slice(value);
            }
            Attribute::Vendor { vendor, ty, value } => {
                if value.len() > 247 {
                    return Err(PacketError::ValueTooLong(value.len()));
                }
                out.push(attr::VENDOR_SPECIFIC);
                out.push((8 + value.len()) as u8);
                out.extend_from_slice(&vendor.to_be_bytes());
                out.push(*ty);
                out.push((2 + value.len()) as u8);
                out.extend_from_slice(value);
            }
        }
        Ok(())
    }
}

/// A checked read-only view over a received RADIUS datagram.
#[derive(Debug, Clone, Copy)]
pub struct Packet<T: AsRef<[u8]>> {
    buf: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Checks the header length field and that every attribute fits.
    pub fn new_checked(buf: T) -> Result<Packet<T>, PacketError> {
        let b = buf.as_ref();
        if b.len() < HEADER_LEN {
            return Err(PacketError::Truncated(b.len()));
        }
        let field = u16::from_be_bytes([b[2], b[3]]) as usize;
        // RFC 2865 §3: octets beyond Length are padding and ignored; fewer is an error.
        if field < HEADER_LEN || field > b.len() || field > MAX_LEN {
            return Err(PacketError::BadLength {
                field,
                actual: b.len(),
            });
        }
        let mut off = HEADER_LEN;
        while off < field {
            if off + 2 > field {
                return Err(PacketError::BadAttribute(off));
            }
            let l = b[off + 1] as usize;
            if l < 2 || off + l > field {
                return Err(PacketError::BadAttribute(off));
            }
            off += l;
        }
        Ok(Packet { buf })
    }
    fn bytes(&self) -> &[u8] {
        let b = self.buf.as_ref();
        &b[..u16::from_be_bytes([b[2], b[3]]) as usize]
    }
    pub fn code(&self) -> Code {
        Code::from_u8(self.bytes()[0])
    }
    pub fn identifier(&self) -> u8 {
        self.bytes()[1]
    }
    pub fn authenticator(&self) -> [u8; 16] {
        let mut a = [0; 16];
        a.copy_from_slice(&self.bytes()[4..20]);
        a
    }
    /// The bytes covered by the Length field.
    pub fn as_bytes(&self) -> &[u8] {
        self.bytes()
    }
    /// All attributes in order, VSAs split into vendor, type and value where well formed.
    pub fn attributes(&self) -> Vec<Attribute> {
        let b = self.bytes();
        let mut out = Vec::new();
        let mut off = HEADER_LEN;
        while off + 2 <= b.len() {
            let ty = b[off];
            let l = b[off + 1] as usize;
            let value = &b[off + 2..off + l];
            if ty == attr::VENDOR_SPECIFIC
                && value.len() >= 6
                && value[5] as usize + 4 == value.len()
            {
                let vendor = u32::from_be_bytes([value[0], value[1], value[2], value[3]]);
                out.push(Attribute::Vendor {
                    vendor,
                    ty: value[4],
                    value: value[6..].to_vec(),
                });
            } else {
                out.push(Attribute::Standard {
                    ty,
                    value: value.to_vec(),
                });
            }
            off += l;
        }
        out
    }
    /// The first standard attribute of type `ty`.
    pub fn find(&self, ty: u8) -> Option<Vec<u8>> {
        self.attributes().into_iter().find_map(|a| match a {
            Attribute::Standard { ty: t, value } if t == ty => Some(value),
            _ => None,
        })
    }
}

/// A request to emit: code, identifier and attributes (User-Password given in clear).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repr {
    pub code: Code,
    pub identifier: u8,
    pub attributes: Vec<Attribute>,
}

/// Hides a User-Password (RFC 2865 §5.2).
pub fn hide_password(password: &[u8], secret: &[u8], request_auth: &[u8; 16]) -> Vec<u8> {
    let mut padded = password.to_vec();
    let n = padded.len().div_ceil(16).max(1) * 16;
    padded.resize(n.min(128), 0);
    let mut out = Vec::with_capacity(padded.len());
    let mut prev: Vec<u8> = request_auth.to_vec();
    for chunk in padded.chunks(16) {
        let mut h = Md5::new();
        h.update(secret);
        h.update(&prev);
        let b = h.finalize();
        let c: Vec<u8> = chunk.iter().zip(b.iter()).map(|(p, k)| p ^ k).collect();
        out.extend_from_slice(&c);
        prev = c;
    }
    out
}

/// HMAC-MD5 (RFC 2104), used for Message-Authenticator.
pub fn hmac_md5(key: &[u8], data: &[u8]) -> [u8; 16] {
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..16].copy_from_slice(&Md5::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let mut inner = Md5::new();
    inner.update(k.map(|b| b ^ 0x36));
    inner.update(data);
    let ih = inner.finalize();
    let mut outer = Md5::new();
    outer.update(k.map(|b| b ^ 0x5c));
    outer.update(ih);
    outer.finalize().into()
}

impl Repr {
    /// Emits an Access-Request with the given random Request Authenticator, the User-Password
    /// (if any) hidden, and a Message-Authenticator (RFC 3579 §3.2) as the first attribute.
    pub fn emit_access_request(
        &self,
        request_auth: [u8; 16],
        password: Option<&[u8]>,
        secret: &[u8],
    ) -> Result<Vec<u8>, PacketError> {
        let mut out = self.header(request_auth);
        let ma_off = out.len();
        Attribute::Standard {
            ty: attr::MESSAGE_AUTHENTICATOR,
            value: vec![0; 16],
        }
        .emit(&mut out)?;
        if let Some(pw) = password {
            let hidden = hide_password(pw, secret, &request_auth);
            Attribute::Standard {
                ty: attr::USER_PASSWORD,
                value: hidden,
            }
            .emit(&mut out)?;
        }
        for a in &self.attributes {
            a.emit(&mut out)?;
        }
        finish_len(&mut out)?;
        let mac = hmac_md5(secret, &out);
        out[ma_off + 2..ma_off + 18].copy_from_slice(&mac);
        Ok(out)
    }

    /// Emits an Accounting-Request (RFC 2866 §3): Message-Authenticator computed over the packet
    /// with a zero authenticator, then the Request Authenticator MD5 over the whole.
    pub fn emit_accounting_request(&self, secret: &[u8]) -> Result<Vec<u8>, PacketError> {
        let mut out = self.header([0; 16]);
        let ma_off = out.len();
        Attribute::Standard {
            ty: attr::MESSAGE_AUTHENTICATOR,
            value: vec![0; 16],
        }
        .emit(&mut out)?;
        for a in &self.attributes {
            a.emit(&mut out)?;
        }
        finish_len(&mut out)?;
        let mac = hmac_md5(secret, &out);
        out[ma_off + 2..ma_off + 18].copy_from_slice(&mac);
        let mut h = Md5::new();
        h.update(&out);
        h.update(secret);
        out[4..20].copy_from_slice(&h.finalize());
        Ok(out)
    }

    /// Emits a reply (used by tests acting as a server): Response Authenticator computed from
    /// the request's authenticator.
    pub fn emit_response(
        &self,
        request_auth: [u8; 16],
        secret: &[u8],
    ) -> Result<Vec<u8>, PacketError> {
        let mut out = self.header(request_auth);
        for a in &self.attributes {
            a.emit(&mut out)?;
        }
        finish_len(&mut out)?;
        let mut h = Md5::new();
        h.update(&out);
        h.update(secret);
        out[4..20].copy_from_slice(&h.finalize());
        Ok(out)
    }

    fn header(&self, auth: [u8; 16]) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            HEADER_LEN
                + self
                    .attributes
                    .iter()
                    .map(Attribute::wire_len)
                    .sum::<usize>()
                + 40,
        );
        out.push(self.code.to_u8());
        out.push(self.identifier);
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&auth);
        out
    }
}

fn finish_len(out: &mut [u8]) -> Result<(), PacketError> {
    if out.len() > MAX_LEN {
        return Err(PacketError::TooLong(out.len()));
    }
    let l = (out.len() as u16).to_be_bytes();
    out[2] = l[0];
    out[3] = l[1];
    Ok(())
}

/// Why a response was not accepted as the answer to our request. Caused by the peer (or a
/// spoofer, or a secret mismatch).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    #[error("Response Authenticator does not match (wrong shared secret?)")]
    BadAuthenticator,
    #[error("Message-Authenticator does not match")]
    BadMessageAuthenticator,
}

/// Checks a response's Response Authenticator (RFC 2865 §3) and, if present, its
/// Message-Authenticator (RFC 3579 §3.2), against our request's authenticator.
pub fn verify_response<T: AsRef<[u8]>>(
    resp: &Packet<T>,
    request_auth: &[u8; 16],
    secret: &[u8],
) -> Result<(), VerifyError> {
    let b = resp.as_bytes();
    let mut h = Md5::new();
    h.update(&b[..4]);
    h.update(request_auth);
    h.update(&b[20..]);
    h.update(secret);
    if h.finalize().as_slice() != &b[4..20] {
        return Err(VerifyError::BadAuthenticator);
    }
    // Message-Authenticator: recompute with it zeroed and the request authenticator in place.
    let mut off = HEADER_LEN;
    while off + 2 <= b.len() {
        let l = b[off + 1] as usize;
        if b[off] == attr::MESSAGE_AUTHENTICATOR && l == 18 {
            let mut copy = b.to_vec();
            copy[4..20].copy_from_slice(request_auth);
            copy[off + 2..off + 18].fill(0);
            if hmac_md5(secret, &copy) != b[off + 2..off + 18] {
                return Err(VerifyError::BadMessageAuthenticator);
            }
        }
        off += l.max(2);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 2865 §7.1: Access-Request from NAS 192.168.1.16, user "nemo", password "arctangent",
    /// secret "xyzzy5461".
    const RFC2865_7_1_REQUEST: [u8; 56] = [
        0x01, 0x00, 0x00, 0x38, 0x0f, 0x40, 0x3f, 0x94, 0x73, 0x97, 0x80, 0x57, 0xbd, 0x83, 0xd5,
        0xcb, 0x98, 0xf4, 0x22, 0x7a, 0x01, 0x06, 0x6e, 0x65, 0x6d, 0x6f, 0x02, 0x12, 0x0d, 0xbe,
        0x70, 0x8d, 0x93, 0xd4, 0x13, 0xce, 0x31, 0x96, 0xe4, 0x3f, 0x78, 0x2a, 0x0a, 0xee, 0x04,
        0x06, 0xc0, 0xa8, 0x01, 0x10, 0x05, 0x06, 0x00, 0x00, 0x00, 0x03,
    ];
    /// RFC 2865 §7.1: the Access-Accept answering it.
    const RFC2865_7_1_ACCEPT: [u8; 38] = [
        0x02, 0x00, 0x00, 0x26, 0x86, 0xfe, 0x22, 0x0e, 0x76, 0x24, 0xba, 0x2a, 0x10, 0x05, 0xf6,
        0xbf, 0x9b, 0x55, 0xe0, 0xb2, 0x06, 0x06, 0x00, 0x00, 0x00, 0x01, 0x0f, 0x06, 0x00, 0x00,
        0x00, 0x00, 0x0e, 0x06, 0xc0, 0xa8, 0x01, 0x03,
    ];
    const SECRET: &[u8] = b"xyzzy5461";

    #[test]
    fn rfc2865_example_password_hiding() {
        let p = Packet::new_checked(&RFC2865_7_1_REQUEST[..]).unwrap();
        let hidden = hide_password(b"arctangent", SECRET, &p.authenticator());
        assert_eq!(p.find(attr::USER_PASSWORD).unwrap(), hidden);
        assert_eq!(p.find(attr::USER_NAME).unwrap(), b"nemo");
    }

    #[test]
    fn rfc2865_example_response_authenticator() {
        let req = Packet::new_checked(&RFC2865_7_1_REQUEST[..]).unwrap();
        let resp = Packet::new_checked(&RFC2865_7_1_ACCEPT[..]).unwrap();
        assert_eq!(resp.code(), Code::AccessAccept);
        verify_response(&resp, &req.authenticator(), SECRET).unwrap();
        assert_eq!(
            verify_response(&resp, &req.authenticator(), b"wrong"),
            Err(VerifyError::BadAuthenticator)
        );
        // Our emitter reproduces the RFC bytes.
        let repr = Repr {
            code: Code::AccessAccept,
            identifier: 0,
            attributes: resp.attributes(),
        };
        assert_eq!(
            repr.emit_response(req.authenticator(), SECRET).unwrap(),
            RFC2865_7_1_ACCEPT
        );
    }

    #[test]
    fn rfc2865_example_request_round_trip() {
        let req = Packet::new_checked(&RFC2865_7_1_REQUEST[..]).unwrap();
        let repr = Repr {
            code: Code::AccessRequest,
            identifier: 0,
            attributes: vec![
                Attribute::text(attr::USER_NAME, "nemo"),
                Attribute::ipv4(attr::NAS_IP_ADDRESS, [192, 168, 1, 16].into()),
                Attribute::int(attr::NAS_PORT, 3),
            ],
        };
        let out = repr
            .emit_access_request(req.authenticator(), Some(b"arctangent"), SECRET)
            .unwrap();
        let p = Packet::new_checked(&out[..]).unwrap();
        assert_eq!(p.find(attr::USER_PASSWORD), req.find(attr::USER_PASSWORD));
        // Message-Authenticator verifies.
        let ma = p.find(attr::MESSAGE_AUTHENTICATOR).unwrap();
        let mut z = out.clone();
        z[22..38].fill(0);
        assert_eq!(hmac_md5(SECRET, &z).to_vec(), ma);
    }

    #[test]
    fn hmac_md5_rfc2104_vector() {
        // RFC 2104 test 2.
        let mac = hmac_md5(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            mac,
            [
                0x75, 0x0c, 0x78, 0x3e, 0x6a, 0xb0, 0xb5, 0x03, 0xea, 0xa8, 0x6e, 0x31, 0x0a, 0x5d,
                0xb7, 0x38
            ]
        );
    }

    #[test]
    fn vsa_round_trip_and_bad_input() {
        let repr = Repr {
            code: Code::AccountingRequest,
            identifier: 7,
            attributes: vec![Attribute::cisco(cisco::H323_CONF_ID, "h323-conf-id", "ABC")],
        };
        let out = repr.emit_accounting_request(b"s").unwrap();
        let p = Packet::new_checked(&out[..]).unwrap();
        assert!(p.attributes().contains(&Attribute::Vendor {
            vendor: 9,
            ty: 24,
            value: b"h323-conf-id=ABC".to_vec()
        }));
        assert!(matches!(
            Packet::new_checked(&out[..10]),
            Err(PacketError::Truncated(10))
        ));
        let mut bad = out.clone();
        bad[21] = 0; // attribute length 0
        assert!(matches!(
            Packet::new_checked(&bad[..]),
            Err(PacketError::BadAttribute(20))
        ));
        let mut bad = out;
        bad[3] = 0xff;
        assert!(matches!(
            Packet::new_checked(&bad[..]),
            Err(PacketError::BadLength { .. })
        ));
    }
}
