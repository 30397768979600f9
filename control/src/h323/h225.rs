//! H.225.0 `H323-UserInformation` (the body of the Q.931 User-user IE) in
//! aligned PER.
//!
//! Every root component of the modelled types is decoded into a field;
//! extension additions stay as raw open types in [`Extensions`] and are read
//! through typed accessors (`call_identifier`, `fast_start`, ...). A decoded
//! message therefore re-encodes byte for byte, including additions this code
//! does not know. Root components that need types outside the modelled
//! subset (H.235 tokens in Progress/Status roots, IPX/NSAP transport
//! addresses, H.221 video alternatives) are reported as
//! [`PerError::Unsupported`].

use super::per::{encode, oid_arcs, oid_from_arcs, Extensions, PerError, Reader, Result, Writer};

/// `dialledDigits` alphabet, sorted by character value (X.691 index table).
const DIGITS: &[u8] = b"#*,0123456789";

/// A CHOICE whose root alternatives are all NULL (reasons, goals, call types).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NullChoice {
    /// Root alternative by index.
    Root(u8),
    /// Extension alternative by index, with its open-type contents.
    Ext(u8, Vec<u8>),
}

impl NullChoice {
    fn read(r: &mut Reader, root: u64, what: &'static str) -> Result<Self> {
        match r.choice(root, true, what)? {
            (false, i) => Ok(NullChoice::Root(i as u8)),
            (true, i) => Ok(NullChoice::Ext(i as u8, r.open_type(what)?.to_vec())),
        }
    }

    fn write(&self, w: &mut Writer, root: u64) {
        match self {
            NullChoice::Root(i) => w.choice_root(u64::from(*i), root, true),
            NullChoice::Ext(i, d) => w.choice_ext(u64::from(*i), d),
        }
    }
}

/// `H221NonStandard`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct H221NonStandard {
    /// T.35 country code (181 = USA).
    pub t35_country_code: u8,
    /// T.35 extension.
    pub t35_extension: u8,
    /// Manufacturer code.
    pub manufacturer_code: u16,
    /// Extension additions.
    pub ext: Extensions,
}

impl H221NonStandard {
    fn read(r: &mut Reader) -> Result<Self> {
        let e = r.bit("H221NonStandard ext")?;
        let mut v = Self {
            t35_country_code: r.constrained(0, 255, "t35CountryCode")? as u8,
            t35_extension: r.constrained(0, 255, "t35Extension")? as u8,
            manufacturer_code: r.constrained(0, 65535, "manufacturerCode")? as u16,
            ext: Extensions::default(),
        };
        if e {
            v.ext = r.extensions("H221NonStandard")?;
        }
        Ok(v)
    }

    fn write(&self, w: &mut Writer) {
        w.bit(self.ext.any());
        w.constrained(u64::from(self.t35_country_code), 0, 255);
        w.constrained(u64::from(self.t35_extension), 0, 255);
        w.constrained(u64::from(self.manufacturer_code), 0, 65535);
        w.extensions(&self.ext);
    }
}

/// `NonStandardParameter` (shared by H.225 and H.245, same encoding).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NonStandardParameter {
    /// `object` (BER OID contents) or `h221NonStandard`.
    pub id: NonStandardId,
    /// Opaque data.
    pub data: Vec<u8>,
}

/// `NonStandardIdentifier`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NonStandardId {
    /// An object identifier (BER contents).
    Object(Vec<u8>),
    /// H.221 country/manufacturer.
    H221(H221NonStandard),
    /// Extension alternative.
    Ext(u8, Vec<u8>),
}

impl NonStandardParameter {
    /// Decodes one.
    pub fn read(r: &mut Reader) -> Result<Self> {
        let id = match r.choice(2, true, "NonStandardIdentifier")? {
            (false, 0) => NonStandardId::Object(r.oid("nonStandard object")?),
            (false, _) => NonStandardId::H221(H221NonStandard::read(r)?),
            (true, i) => {
                NonStandardId::Ext(i as u8, r.open_type("NonStandardIdentifier")?.to_vec())
            }
        };
        Ok(Self {
            id,
            data: r.octet_string(None, "nonStandard data")?,
        })
    }

    /// Encodes one.
    pub fn write(&self, w: &mut Writer) {
        match &self.id {
            NonStandardId::Object(o) => {
                w.choice_root(0, 2, true);
                w.oid(o);
            }
            NonStandardId::H221(h) => {
                w.choice_root(1, 2, true);
                h.write(w);
            }
            NonStandardId::Ext(i, d) => w.choice_ext(u64::from(*i), d),
        }
        w.octet_string(&self.data, None);
    }
}

/// H.225 `TransportAddress` (the modelled alternatives).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransportAddress {
    /// `ipAddress`.
    Ip {
        /// IPv4 address.
        ip: [u8; 4],
        /// Port.
        port: u16,
    },
    /// `ip6Address`.
    Ip6 {
        /// IPv6 address.
        ip: [u8; 16],
        /// Port.
        port: u16,
        /// Extension additions.
        ext: Extensions,
    },
    /// `netBios`.
    NetBios([u8; 16]),
    /// `nsap`.
    Nsap(Vec<u8>),
    /// `nonStandardAddress`.
    NonStandard(NonStandardParameter),
    /// Extension alternative.
    Ext(u8, Vec<u8>),
}

impl TransportAddress {
    /// An IPv4/IPv6 socket address as a transport address.
    pub fn from_socket(a: std::net::SocketAddr) -> Self {
        match a {
            std::net::SocketAddr::V4(v) => TransportAddress::Ip {
                ip: v.ip().octets(),
                port: v.port(),
            },
            std::net::SocketAddr::V6(v) => TransportAddress::Ip6 {
                ip: v.ip().octets(),
                port: v.port(),
                ext: Extensions::default(),
            },
        }
    }

    /// The socket address, for the IP alternatives.
    pub fn socket(&self) -> Option<std::net::SocketAddr> {
        match self {
            TransportAddress::Ip { ip, port } => Some((*ip, *port).into()),
            TransportAddress::Ip6 { ip, port, .. } => Some((*ip, *port).into()),
            _ => None,
        }
    }

    /// Decodes one.
    pub fn read(r: &mut Reader) -> Result<Self> {
        Ok(match r.choice(7, true, "TransportAddress")? {
            (false, 0) => TransportAddress::Ip {
                ip: r.fixed::<4>("ipAddress.ip")?,
                port: r.constrained(0, 65535, "ipAddress.port")? as u16,
            },
            (false, 3) => {
                let e = r.bit("ip6Address ext")?;
                let ip = r.fixed::<16>("ip6Address.ip")?;
                let port = r.constrained(0, 65535, "ip6Address.port")? as u16;
                let ext = if e {
                    r.extensions("ip6Address")?
                } else {
                    Extensions::default()
                };
                TransportAddress::Ip6 { ip, port, ext }
            }
            (false, 4) => TransportAddress::NetBios(r.fixed::<16>("netBios")?),
            (false, 5) => TransportAddress::Nsap(r.octet_string(Some((1, 20)), "nsap")?),
            (false, 6) => TransportAddress::NonStandard(NonStandardParameter::read(r)?),
            (false, _) => return Err(r.unsupported("TransportAddress", "ipSourceRoute/ipxAddress")),
            (true, i) => TransportAddress::Ext(i as u8, r.open_type("TransportAddress")?.to_vec()),
        })
    }

    /// Encodes one.
    pub fn write(&self, w: &mut Writer) {
        match self {
            TransportAddress::Ip { ip, port } => {
                w.choice_root(0, 7, true);
                w.octets(ip);
                w.constrained(u64::from(*port), 0, 65535);
            }
            TransportAddress::Ip6 { ip, port, ext } => {
                w.choice_root(3, 7, true);
                w.bit(ext.any());
                w.octets(ip);
                w.constrained(u64::from(*port), 0, 65535);
                w.extensions(ext);
            }
            TransportAddress::NetBios(n) => {
                w.choice_root(4, 7, true);
                w.octets(n);
            }
            TransportAddress::Nsap(n) => {
                w.choice_root(5, 7, true);
                w.octet_string(n, Some((1, 20)));
            }
            TransportAddress::NonStandard(p) => {
                w.choice_root(6, 7, true);
                p.write(w);
            }
            TransportAddress::Ext(i, d) => w.choice_ext(u64::from(*i), d),
        }
    }
}

/// `AliasAddress`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AliasAddress {
    /// `dialledDigits` (0-9 # * ,).
    DialledDigits(String),
    /// `h323-ID` (BMPString).
    H323Id(String),
    /// `url-ID`.
    Url(String),
    /// `email-ID`.
    Email(String),
    /// Other extension alternatives (transportID, partyNumber, ...), raw.
    Ext(u8, Vec<u8>),
}

impl AliasAddress {
    /// A printable form: the digits, ID, URL or e-mail.
    pub fn text(&self) -> Option<&str> {
        match self {
            AliasAddress::DialledDigits(s)
            | AliasAddress::H323Id(s)
            | AliasAddress::Url(s)
            | AliasAddress::Email(s) => Some(s),
            AliasAddress::Ext(..) => None,
        }
    }

    /// Decodes one.
    pub fn read(r: &mut Reader) -> Result<Self> {
        Ok(match r.choice(2, true, "AliasAddress")? {
            (false, 0) => AliasAddress::DialledDigits(chars(r.char_string(
                (1, 128),
                4,
                Some(DIGITS),
                "dialledDigits",
            )?)),
            (false, _) => {
                let units = r.char_string((1, 256), 16, None, "h323-ID")?;
                let u16s: Vec<u16> = units.iter().map(|&u| u as u16).collect();
                AliasAddress::H323Id(String::from_utf16_lossy(&u16s))
            }
            (true, i @ (0 | 2)) => {
                let inner = r.open_type("AliasAddress")?;
                let s = chars(Reader::new(inner).char_string((1, 512), 8, None, "url/email")?);
                if i == 0 {
                    AliasAddress::Url(s)
                } else {
                    AliasAddress::Email(s)
                }
            }
            (true, i) => AliasAddress::Ext(i as u8, r.open_type("AliasAddress")?.to_vec()),
        })
    }

    /// Encodes one. Characters outside the alphabet of dialledDigits are
    /// dropped (the caller should pick `H323Id` for other text).
    pub fn write(&self, w: &mut Writer) {
        match self {
            AliasAddress::DialledDigits(s) => {
                w.choice_root(0, 2, true);
                let c: Vec<u32> = s
                    .bytes()
                    .filter(|b| DIGITS.contains(b))
                    .take(128)
                    .map(u32::from)
                    .collect();
                w.char_string(&c, (1, 128), 4, Some(DIGITS));
            }
            AliasAddress::H323Id(s) => {
                w.choice_root(1, 2, true);
                let c: Vec<u32> = s.encode_utf16().take(256).map(u32::from).collect();
                w.char_string(&c, (1, 256), 16, None);
            }
            AliasAddress::Url(s) | AliasAddress::Email(s) => {
                let i = if matches!(self, AliasAddress::Url(_)) {
                    0
                } else {
                    2
                };
                let c: Vec<u32> = s.bytes().take(512).map(u32::from).collect();
                let inner = encode(|w| w.char_string(&c, (1, 512), 8, None));
                w.choice_ext(i, &inner);
            }
            AliasAddress::Ext(i, d) => w.choice_ext(u64::from(*i), d),
        }
    }
}

fn chars(v: Vec<u32>) -> String {
    v.into_iter()
        .map(|c| char::from_u32(c).unwrap_or('?'))
        .collect()
}

fn read_aliases(r: &mut Reader, what: &'static str) -> Result<Vec<AliasAddress>> {
    let n = r.length(None, what)?;
    (0..n).map(|_| AliasAddress::read(r)).collect()
}

fn write_aliases(w: &mut Writer, a: &[AliasAddress]) {
    w.length(a.len(), None);
    for x in a {
        x.write(w);
    }
}

/// A SEQUENCE whose root is only `nonStandardData OPTIONAL` (TerminalInfo,
/// McuInfo, GatekeeperInfo, the H.3xx/voice capability sets).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Info {
    /// `nonStandardData`.
    pub non_standard: Option<NonStandardParameter>,
    /// Extension additions.
    pub ext: Extensions,
}

impl Info {
    fn read(r: &mut Reader) -> Result<Self> {
        let e = r.bit("Info ext")?;
        let [ns] = r.preamble::<1>("Info")?;
        let non_standard = ns.then(|| NonStandardParameter::read(r)).transpose()?;
        let ext = if e {
            r.extensions("Info")?
        } else {
            Extensions::default()
        };
        Ok(Self { non_standard, ext })
    }

    fn write(&self, w: &mut Writer) {
        w.bit(self.ext.any());
        w.bit(self.non_standard.is_some());
        if let Some(n) = &self.non_standard {
            n.write(w);
        }
        w.extensions(&self.ext);
    }
}

/// `SupportedProtocols`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SupportedProtocol {
    /// `nonStandardData`.
    NonStandard(NonStandardParameter),
    /// h310 (1) .. voice (7), t120-only (8): the capability set by root index.
    Caps(u8, Info),
    /// Extension alternative.
    Ext(u8, Vec<u8>),
}

impl SupportedProtocol {
    fn read(r: &mut Reader) -> Result<Self> {
        Ok(match r.choice(9, true, "SupportedProtocols")? {
            (false, 0) => SupportedProtocol::NonStandard(NonStandardParameter::read(r)?),
            (false, i) => SupportedProtocol::Caps(i as u8, Info::read(r)?),
            (true, i) => {
                SupportedProtocol::Ext(i as u8, r.open_type("SupportedProtocols")?.to_vec())
            }
        })
    }

    fn write(&self, w: &mut Writer) {
        match self {
            SupportedProtocol::NonStandard(n) => {
                w.choice_root(0, 9, true);
                n.write(w);
            }
            SupportedProtocol::Caps(i, c) => {
                w.choice_root(u64::from(*i), 9, true);
                c.write(w);
            }
            SupportedProtocol::Ext(i, d) => w.choice_ext(u64::from(*i), d),
        }
    }
}

/// `GatewayInfo`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GatewayInfo {
    /// `protocol`.
    pub protocol: Option<Vec<SupportedProtocol>>,
    /// `nonStandardData`.
    pub non_standard: Option<NonStandardParameter>,
    /// Extension additions.
    pub ext: Extensions,
}

/// `VendorIdentifier`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VendorIdentifier {
    /// `vendor`.
    pub vendor: H221NonStandard,
    /// `productId`.
    pub product_id: Option<Vec<u8>>,
    /// `versionId`.
    pub version_id: Option<Vec<u8>>,
    /// Extension additions.
    pub ext: Extensions,
}

/// `EndpointType`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EndpointType {
    /// `nonStandardData`.
    pub non_standard: Option<NonStandardParameter>,
    /// `vendor`.
    pub vendor: Option<VendorIdentifier>,
    /// `gatekeeper`.
    pub gatekeeper: Option<Info>,
    /// `gateway`.
    pub gateway: Option<GatewayInfo>,
    /// `mcu`.
    pub mcu: Option<Info>,
    /// `terminal`.
    pub terminal: Option<Info>,
    /// `mc`.
    pub mc: bool,
    /// `undefinedNode`.
    pub undefined_node: bool,
    /// Extension additions.
    pub ext: Extensions,
}

impl EndpointType {
    /// Tandem's own description: a gateway with vendor "Tandem".
    pub fn tandem() -> Self {
        Self {
            vendor: Some(VendorIdentifier {
                vendor: H221NonStandard {
                    t35_country_code: 181,
                    t35_extension: 0,
                    manufacturer_code: 0x5444,
                    ext: Extensions::default(),
                },
                product_id: Some(b"Tandem".to_vec()),
                version_id: Some(env!("CARGO_PKG_VERSION").as_bytes().to_vec()),
                ext: Extensions::default(),
            }),
            gateway: Some(GatewayInfo::default()),
            ..Self::default()
        }
    }

    fn read(r: &mut Reader) -> Result<Self> {
        let e = r.bit("EndpointType ext")?;
        let [ns, ve, gk, gw, mcu, te] = r.preamble::<6>("EndpointType")?;
        let non_standard = ns.then(|| NonStandardParameter::read(r)).transpose()?;
        let vendor = if ve {
            let ve_ext = r.bit("VendorIdentifier ext")?;
            let [p, v] = r.preamble::<2>("VendorIdentifier")?;
            let vendor = H221NonStandard::read(r)?;
            let product_id = p
                .then(|| r.octet_string(Some((1, 256)), "productId"))
                .transpose()?;
            let version_id = v
                .then(|| r.octet_string(Some((1, 256)), "versionId"))
                .transpose()?;
            let ext = if ve_ext {
                r.extensions("VendorIdentifier")?
            } else {
                Extensions::default()
            };
            Some(VendorIdentifier {
                vendor,
                product_id,
                version_id,
                ext,
            })
        } else {
            None
        };
        let gatekeeper = gk.then(|| Info::read(r)).transpose()?;
        let gateway = if gw {
            let g_ext = r.bit("GatewayInfo ext")?;
            let [p, n] = r.preamble::<2>("GatewayInfo")?;
            let protocol = if p {
                let k = r.length(None, "GatewayInfo.protocol")?;
                Some(
                    (0..k)
                        .map(|_| SupportedProtocol::read(r))
                        .collect::<Result<_>>()?,
                )
            } else {
                None
            };
            let non_standard = n.then(|| NonStandardParameter::read(r)).transpose()?;
            let ext = if g_ext {
                r.extensions("GatewayInfo")?
            } else {
                Extensions::default()
            };
            Some(GatewayInfo {
                protocol,
                non_standard,
                ext,
            })
        } else {
            None
        };
        let mcu = mcu.then(|| Info::read(r)).transpose()?;
        let terminal = te.then(|| Info::read(r)).transpose()?;
        let mc = r.bit("mc")?;
        let undefined_node = r.bit("undefinedNode")?;
        let ext = if e {
            r.extensions("EndpointType")?
        } else {
            Extensions::default()
        };
        Ok(Self {
            non_standard,
            vendor,
            gatekeeper,
            gateway,
            mcu,
            terminal,
            mc,
            undefined_node,
            ext,
        })
    }

    fn write(&self, w: &mut Writer) {
        w.bit(self.ext.any());
        for b in [
            self.non_standard.is_some(),
            self.vendor.is_some(),
            self.gatekeeper.is_some(),
            self.gateway.is_some(),
            self.mcu.is_some(),
            self.terminal.is_some(),
        ] {
            w.bit(b);
        }
        if let Some(n) = &self.non_standard {
            n.write(w);
        }
        if let Some(v) = &self.vendor {
            w.bit(v.ext.any());
            w.bit(v.product_id.is_some());
            w.bit(v.version_id.is_some());
            v.vendor.write(w);
            if let Some(p) = &v.product_id {
                w.octet_string(p, Some((1, 256)));
            }
            if let Some(p) = &v.version_id {
                w.octet_string(p, Some((1, 256)));
            }
            w.extensions(&v.ext);
        }
        if let Some(g) = &self.gatekeeper {
            g.write(w);
        }
        if let Some(g) = &self.gateway {
            w.bit(g.ext.any());
            w.bit(g.protocol.is_some());
            w.bit(g.non_standard.is_some());
            if let Some(p) = &g.protocol {
                w.length(p.len(), None);
                for x in p {
                    x.write(w);
                }
            }
            if let Some(n) = &g.non_standard {
                n.write(w);
            }
            w.extensions(&g.ext);
        }
        if let Some(m) = &self.mcu {
            m.write(w);
        }
        if let Some(t) = &self.terminal {
            t.write(w);
        }
        w.bit(self.mc);
        w.bit(self.undefined_node);
        w.extensions(&self.ext);
    }
}

/// `QseriesOptions`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QseriesOptions {
    /// q932Full .. q957Full.
    pub full: [bool; 7],
    /// Q954Details: conferenceCalling, threePartyService.
    pub q954: [bool; 2],
    /// Q954Details extensions.
    pub q954_ext: Extensions,
    /// Extension additions.
    pub ext: Extensions,
}

impl QseriesOptions {
    fn read(r: &mut Reader) -> Result<Self> {
        let e = r.bit("QseriesOptions ext")?;
        let full = r.preamble::<7>("QseriesOptions")?;
        let qe = r.bit("Q954Details ext")?;
        let q954 = r.preamble::<2>("Q954Details")?;
        let q954_ext = if qe {
            r.extensions("Q954Details")?
        } else {
            Extensions::default()
        };
        let ext = if e {
            r.extensions("QseriesOptions")?
        } else {
            Extensions::default()
        };
        Ok(Self {
            full,
            q954,
            q954_ext,
            ext,
        })
    }

    fn write(&self, w: &mut Writer) {
        w.bit(self.ext.any());
        for b in self.full {
            w.bit(b);
        }
        w.bit(self.q954_ext.any());
        for b in self.q954 {
            w.bit(b);
        }
        w.extensions(&self.q954_ext);
        w.extensions(&self.ext);
    }
}

/// The H.225 protocol identifier `0.0.8.2250.0.version`.
pub fn protocol_identifier(version: u64) -> Vec<u8> {
    oid_from_arcs(&[0, 0, 8, 2250, 0, version])
}

/// Reads `CallIdentifier` (a 16-octet GUID).
pub fn read_call_identifier(r: &mut Reader) -> Result<[u8; 16]> {
    let e = r.bit("CallIdentifier ext")?;
    let g = r.fixed::<16>("guid")?;
    if e {
        r.extensions("CallIdentifier")?;
    }
    Ok(g)
}

/// Writes `CallIdentifier`.
pub fn write_call_identifier(w: &mut Writer, g: &[u8; 16]) {
    w.bit(false);
    w.octets(g);
}

/// Reads `SEQUENCE OF OCTET STRING` (fastStart, h245Control).
pub fn read_octet_strings(r: &mut Reader) -> Result<Vec<Vec<u8>>> {
    let n = r.length(None, "SEQUENCE OF OCTET STRING")?;
    (0..n)
        .map(|_| r.octet_string(None, "OCTET STRING"))
        .collect()
}

/// Writes `SEQUENCE OF OCTET STRING`.
pub fn write_octet_strings(w: &mut Writer, v: &[Vec<u8>]) {
    w.length(v.len(), None);
    for o in v {
        w.octet_string(o, None);
    }
}

fn read_bool(r: &mut Reader) -> Result<bool> {
    r.bit("BOOLEAN")
}

fn reject_tokens(r: &Reader, present: bool, what: &'static str) -> Result<()> {
    if present {
        return Err(r.unsupported(what, "H.235 tokens/security mode in the root"));
    }
    Ok(())
}

/// Extension-addition indexes of the fields Tandem reads and writes, per UUIE.
#[derive(Debug, Clone, Copy)]
struct ExtIdx {
    count: usize,
    call_id: Option<usize>,
    fast_start: Option<usize>,
    multiple_calls: Option<usize>,
    maintain: Option<usize>,
    h245_address: Option<usize>,
    presentation: Option<usize>,
}

const SETUP_EXT: ExtIdx = ExtIdx {
    count: 28,
    call_id: Some(2),
    fast_start: Some(6),
    multiple_calls: Some(10),
    maintain: Some(11),
    h245_address: None,
    presentation: Some(14),
};
const PROCEEDING_EXT: ExtIdx = ExtIdx {
    count: 9,
    call_id: Some(0),
    fast_start: Some(4),
    multiple_calls: Some(5),
    maintain: Some(6),
    h245_address: None,
    presentation: None,
};
const ALERTING_EXT: ExtIdx = ExtIdx {
    count: 15,
    presentation: Some(8),
    ..PROCEEDING_EXT
};
const CONNECT_EXT: ExtIdx = ExtIdx {
    count: 16,
    presentation: Some(9),
    ..PROCEEDING_EXT
};
const RELEASE_EXT: ExtIdx = ExtIdx {
    count: 11,
    call_id: Some(0),
    fast_start: None,
    multiple_calls: None,
    maintain: None,
    h245_address: None,
    presentation: Some(4),
};
const FACILITY_EXT: ExtIdx = ExtIdx {
    count: 16,
    call_id: Some(0),
    fast_start: Some(7),
    multiple_calls: Some(8),
    maintain: Some(9),
    h245_address: Some(6),
    presentation: None,
};
const PROGRESS_EXT: ExtIdx = ExtIdx {
    count: 3,
    call_id: None,
    fast_start: None,
    multiple_calls: Some(0),
    maintain: Some(1),
    h245_address: None,
    presentation: None,
};
const INFORMATION_EXT: ExtIdx = ExtIdx {
    count: 6,
    call_id: Some(0),
    fast_start: Some(3),
    multiple_calls: None,
    maintain: None,
    h245_address: None,
    presentation: None,
};
const STATUS_EXT: ExtIdx = ExtIdx {
    count: 0,
    call_id: None,
    fast_start: None,
    multiple_calls: None,
    maintain: None,
    h245_address: None,
    presentation: None,
};

/// `Setup-UUIE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetupUuie {
    /// `protocolIdentifier` (BER OID contents).
    pub protocol_identifier: Vec<u8>,
    /// `h245Address`.
    pub h245_address: Option<TransportAddress>,
    /// `sourceAddress`.
    pub source_address: Option<Vec<AliasAddress>>,
    /// `sourceInfo`.
    pub source_info: EndpointType,
    /// `destinationAddress`.
    pub destination_address: Option<Vec<AliasAddress>>,
    /// `destCallSignalAddress`.
    pub dest_call_signal_address: Option<TransportAddress>,
    /// `destExtraCallInfo`.
    pub dest_extra_call_info: Option<Vec<AliasAddress>>,
    /// `destExtraCRV`.
    pub dest_extra_crv: Option<Vec<u16>>,
    /// `activeMC`.
    pub active_mc: bool,
    /// `conferenceID`.
    pub conference_id: [u8; 16],
    /// `conferenceGoal` (0 create, 1 join, 2 invite).
    pub conference_goal: NullChoice,
    /// `callServices`.
    pub call_services: Option<QseriesOptions>,
    /// `callType` (0 pointToPoint).
    pub call_type: NullChoice,
    /// Extension additions (sourceCallSignalAddress, callIdentifier, fastStart, ...).
    pub ext: Extensions,
}

impl SetupUuie {
    fn read(r: &mut Reader) -> Result<Self> {
        let e = r.bit("Setup-UUIE ext")?;
        let [h245, src, dst, dcsa, dec, dcrv, cs] = r.preamble::<7>("Setup-UUIE")?;
        let protocol_identifier = r.oid("protocolIdentifier")?;
        let h245_address = h245.then(|| TransportAddress::read(r)).transpose()?;
        let source_address = src.then(|| read_aliases(r, "sourceAddress")).transpose()?;
        let source_info = EndpointType::read(r)?;
        let destination_address = dst
            .then(|| read_aliases(r, "destinationAddress"))
            .transpose()?;
        let dest_call_signal_address = dcsa.then(|| TransportAddress::read(r)).transpose()?;
        let dest_extra_call_info = dec
            .then(|| read_aliases(r, "destExtraCallInfo"))
            .transpose()?;
        let dest_extra_crv = if dcrv {
            let n = r.length(None, "destExtraCRV")?;
            Some(
                (0..n)
                    .map(|_| {
                        r.constrained(0, 65535, "CallReferenceValue")
                            .map(|v| v as u16)
                    })
                    .collect::<Result<_>>()?,
            )
        } else {
            None
        };
        let active_mc = r.bit("activeMC")?;
        let conference_id = r.fixed::<16>("conferenceID")?;
        let conference_goal = NullChoice::read(r, 3, "conferenceGoal")?;
        let call_services = cs.then(|| QseriesOptions::read(r)).transpose()?;
        let call_type = NullChoice::read(r, 4, "callType")?;
        let ext = if e {
            r.extensions("Setup-UUIE")?
        } else {
            Extensions::default()
        };
        Ok(Self {
            protocol_identifier,
            h245_address,
            source_address,
            source_info,
            destination_address,
            dest_call_signal_address,
            dest_extra_call_info,
            dest_extra_crv,
            active_mc,
            conference_id,
            conference_goal,
            call_services,
            call_type,
            ext,
        })
    }

    fn write(&self, w: &mut Writer) {
        w.bit(self.ext.any());
        for b in [
            self.h245_address.is_some(),
            self.source_address.is_some(),
            self.destination_address.is_some(),
            self.dest_call_signal_address.is_some(),
            self.dest_extra_call_info.is_some(),
            self.dest_extra_crv.is_some(),
            self.call_services.is_some(),
        ] {
            w.bit(b);
        }
        w.oid(&self.protocol_identifier);
        if let Some(a) = &self.h245_address {
            a.write(w);
        }
        if let Some(a) = &self.source_address {
            write_aliases(w, a);
        }
        self.source_info.write(w);
        if let Some(a) = &self.destination_address {
            write_aliases(w, a);
        }
        if let Some(a) = &self.dest_call_signal_address {
            a.write(w);
        }
        if let Some(a) = &self.dest_extra_call_info {
            write_aliases(w, a);
        }
        if let Some(c) = &self.dest_extra_crv {
            w.length(c.len(), None);
            for &v in c {
                w.constrained(u64::from(v), 0, 65535);
            }
        }
        w.bit(self.active_mc);
        w.octets(&self.conference_id);
        self.conference_goal.write(w, 3);
        if let Some(c) = &self.call_services {
            c.write(w);
        }
        self.call_type.write(w, 4);
        w.extensions(&self.ext);
    }

    /// `sourceCallSignalAddress` (extension addition 0).
    pub fn source_call_signal_address(&self) -> Result<Option<TransportAddress>> {
        self.ext.get(0, TransportAddress::read)
    }

    /// Sets `sourceCallSignalAddress`.
    pub fn set_source_call_signal_address(&mut self, a: &TransportAddress) {
        self.ext.set(0, SETUP_EXT.count, |w| a.write(w));
    }

    /// `mediaWaitForConnect`, `canOverlapSend` (additions 7 and 8).
    pub fn set_media_wait_and_overlap(&mut self, media_wait: bool, overlap: bool) {
        self.ext.set(7, SETUP_EXT.count, |w| w.bit(media_wait));
        self.ext.set(8, SETUP_EXT.count, |w| w.bit(overlap));
    }
}

/// `CallProceeding-UUIE` and `Alerting-UUIE` (same root components).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgressingUuie {
    /// `protocolIdentifier`.
    pub protocol_identifier: Vec<u8>,
    /// `destinationInfo`.
    pub destination_info: EndpointType,
    /// `h245Address`.
    pub h245_address: Option<TransportAddress>,
    /// Extension additions.
    pub ext: Extensions,
}

impl ProgressingUuie {
    fn read(r: &mut Reader) -> Result<Self> {
        let e = r.bit("UUIE ext")?;
        let [h245] = r.preamble::<1>("UUIE")?;
        let protocol_identifier = r.oid("protocolIdentifier")?;
        let destination_info = EndpointType::read(r)?;
        let h245_address = h245.then(|| TransportAddress::read(r)).transpose()?;
        let ext = if e {
            r.extensions("UUIE")?
        } else {
            Extensions::default()
        };
        Ok(Self {
            protocol_identifier,
            destination_info,
            h245_address,
            ext,
        })
    }

    fn write(&self, w: &mut Writer) {
        w.bit(self.ext.any());
        w.bit(self.h245_address.is_some());
        w.oid(&self.protocol_identifier);
        self.destination_info.write(w);
        if let Some(a) = &self.h245_address {
            a.write(w);
        }
        w.extensions(&self.ext);
    }
}

/// `Connect-UUIE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectUuie {
    /// `protocolIdentifier`.
    pub protocol_identifier: Vec<u8>,
    /// `h245Address`.
    pub h245_address: Option<TransportAddress>,
    /// `destinationInfo`.
    pub destination_info: EndpointType,
    /// `conferenceID`.
    pub conference_id: [u8; 16],
    /// Extension additions.
    pub ext: Extensions,
}

impl ConnectUuie {
    fn read(r: &mut Reader) -> Result<Self> {
        let e = r.bit("Connect-UUIE ext")?;
        let [h245] = r.preamble::<1>("Connect-UUIE")?;
        let protocol_identifier = r.oid("protocolIdentifier")?;
        let h245_address = h245.then(|| TransportAddress::read(r)).transpose()?;
        let destination_info = EndpointType::read(r)?;
        let conference_id = r.fixed::<16>("conferenceID")?;
        let ext = if e {
            r.extensions("Connect-UUIE")?
        } else {
            Extensions::default()
        };
        Ok(Self {
            protocol_identifier,
            h245_address,
            destination_info,
            conference_id,
            ext,
        })
    }

    fn write(&self, w: &mut Writer) {
        w.bit(self.ext.any());
        w.bit(self.h245_address.is_some());
        w.oid(&self.protocol_identifier);
        if let Some(a) = &self.h245_address {
            a.write(w);
        }
        self.destination_info.write(w);
        w.octets(&self.conference_id);
        w.extensions(&self.ext);
    }
}

/// `ReleaseComplete-UUIE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseCompleteUuie {
    /// `protocolIdentifier`.
    pub protocol_identifier: Vec<u8>,
    /// `reason` (`ReleaseCompleteReason`, 12 root alternatives).
    pub reason: Option<NullChoice>,
    /// Extension additions.
    pub ext: Extensions,
}

impl ReleaseCompleteUuie {
    fn read(r: &mut Reader) -> Result<Self> {
        let e = r.bit("ReleaseComplete-UUIE ext")?;
        let [re] = r.preamble::<1>("ReleaseComplete-UUIE")?;
        let protocol_identifier = r.oid("protocolIdentifier")?;
        let reason = re
            .then(|| NullChoice::read(r, 12, "ReleaseCompleteReason"))
            .transpose()?;
        let ext = if e {
            r.extensions("ReleaseComplete-UUIE")?
        } else {
            Extensions::default()
        };
        Ok(Self {
            protocol_identifier,
            reason,
            ext,
        })
    }

    fn write(&self, w: &mut Writer) {
        w.bit(self.ext.any());
        w.bit(self.reason.is_some());
        w.oid(&self.protocol_identifier);
        if let Some(c) = &self.reason {
            c.write(w, 12);
        }
        w.extensions(&self.ext);
    }
}

/// `Facility-UUIE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FacilityUuie {
    /// `protocolIdentifier`.
    pub protocol_identifier: Vec<u8>,
    /// `alternativeAddress`.
    pub alternative_address: Option<TransportAddress>,
    /// `alternativeAliasAddress`.
    pub alternative_alias_address: Option<Vec<AliasAddress>>,
    /// `conferenceID`.
    pub conference_id: Option<[u8; 16]>,
    /// `reason` (`FacilityReason`: 3 undefinedReason; ext 1 startH245).
    pub reason: NullChoice,
    /// Extension additions.
    pub ext: Extensions,
}

impl FacilityUuie {
    fn read(r: &mut Reader) -> Result<Self> {
        let e = r.bit("Facility-UUIE ext")?;
        let [aa, aal, cid] = r.preamble::<3>("Facility-UUIE")?;
        let protocol_identifier = r.oid("protocolIdentifier")?;
        let alternative_address = aa.then(|| TransportAddress::read(r)).transpose()?;
        let alternative_alias_address = aal
            .then(|| read_aliases(r, "alternativeAliasAddress"))
            .transpose()?;
        let conference_id = cid.then(|| r.fixed::<16>("conferenceID")).transpose()?;
        let reason = NullChoice::read(r, 4, "FacilityReason")?;
        let ext = if e {
            r.extensions("Facility-UUIE")?
        } else {
            Extensions::default()
        };
        Ok(Self {
            protocol_identifier,
            alternative_address,
            alternative_alias_address,
            conference_id,
            reason,
            ext,
        })
    }

    fn write(&self, w: &mut Writer) {
        w.bit(self.ext.any());
        w.bit(self.alternative_address.is_some());
        w.bit(self.alternative_alias_address.is_some());
        w.bit(self.conference_id.is_some());
        w.oid(&self.protocol_identifier);
        if let Some(a) = &self.alternative_address {
            a.write(w);
        }
        if let Some(a) = &self.alternative_alias_address {
            write_aliases(w, a);
        }
        if let Some(c) = &self.conference_id {
            w.octets(c);
        }
        self.reason.write(w, 4);
        w.extensions(&self.ext);
    }
}

/// `Progress-UUIE` (callIdentifier and fastStart are root components here).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgressUuie {
    /// `protocolIdentifier`.
    pub protocol_identifier: Vec<u8>,
    /// `destinationInfo`.
    pub destination_info: EndpointType,
    /// `h245Address`.
    pub h245_address: Option<TransportAddress>,
    /// `callIdentifier`.
    pub call_identifier: [u8; 16],
    /// `fastStart`.
    pub fast_start: Option<Vec<Vec<u8>>>,
    /// Extension additions (multipleCalls, maintainConnection, fastConnectRefused).
    pub ext: Extensions,
}

impl ProgressUuie {
    fn read(r: &mut Reader) -> Result<Self> {
        let e = r.bit("Progress-UUIE ext")?;
        let [h245, sm, tk, ct, fs] = r.preamble::<5>("Progress-UUIE")?;
        let protocol_identifier = r.oid("protocolIdentifier")?;
        let destination_info = EndpointType::read(r)?;
        let h245_address = h245.then(|| TransportAddress::read(r)).transpose()?;
        let call_identifier = read_call_identifier(r)?;
        reject_tokens(r, sm || tk || ct, "Progress-UUIE")?;
        let fast_start = fs.then(|| read_octet_strings(r)).transpose()?;
        let ext = if e {
            r.extensions("Progress-UUIE")?
        } else {
            Extensions::default()
        };
        Ok(Self {
            protocol_identifier,
            destination_info,
            h245_address,
            call_identifier,
            fast_start,
            ext,
        })
    }

    fn write(&self, w: &mut Writer) {
        w.bit(self.ext.any());
        for b in [
            self.h245_address.is_some(),
            false,
            false,
            false,
            self.fast_start.is_some(),
        ] {
            w.bit(b);
        }
        w.oid(&self.protocol_identifier);
        self.destination_info.write(w);
        if let Some(a) = &self.h245_address {
            a.write(w);
        }
        write_call_identifier(w, &self.call_identifier);
        if let Some(f) = &self.fast_start {
            write_octet_strings(w, f);
        }
        w.extensions(&self.ext);
    }
}

/// `Status-UUIE` and `StatusInquiry-UUIE` (same root components).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusUuie {
    /// `protocolIdentifier`.
    pub protocol_identifier: Vec<u8>,
    /// `callIdentifier`.
    pub call_identifier: [u8; 16],
    /// Extension additions.
    pub ext: Extensions,
}

impl StatusUuie {
    fn read(r: &mut Reader) -> Result<Self> {
        let e = r.bit("Status-UUIE ext")?;
        let [tk, ct] = r.preamble::<2>("Status-UUIE")?;
        let protocol_identifier = r.oid("protocolIdentifier")?;
        let call_identifier = read_call_identifier(r)?;
        reject_tokens(r, tk || ct, "Status-UUIE")?;
        let ext = if e {
            r.extensions("Status-UUIE")?
        } else {
            Extensions::default()
        };
        Ok(Self {
            protocol_identifier,
            call_identifier,
            ext,
        })
    }

    fn write(&self, w: &mut Writer) {
        w.bit(self.ext.any());
        w.bit(false);
        w.bit(false);
        w.oid(&self.protocol_identifier);
        write_call_identifier(w, &self.call_identifier);
        w.extensions(&self.ext);
    }
}

/// `Information-UUIE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InformationUuie {
    /// `protocolIdentifier`.
    pub protocol_identifier: Vec<u8>,
    /// Extension additions.
    pub ext: Extensions,
}

impl InformationUuie {
    fn read(r: &mut Reader) -> Result<Self> {
        let e = r.bit("Information-UUIE ext")?;
        let protocol_identifier = r.oid("protocolIdentifier")?;
        let ext = if e {
            r.extensions("Information-UUIE")?
        } else {
            Extensions::default()
        };
        Ok(Self {
            protocol_identifier,
            ext,
        })
    }

    fn write(&self, w: &mut Writer) {
        w.bit(self.ext.any());
        w.oid(&self.protocol_identifier);
        w.extensions(&self.ext);
    }
}

/// `h323-message-body`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// setup (boxed: by far the largest body).
    Setup(Box<SetupUuie>),
    /// callProceeding.
    CallProceeding(ProgressingUuie),
    /// connect.
    Connect(ConnectUuie),
    /// alerting.
    Alerting(ProgressingUuie),
    /// information.
    Information(InformationUuie),
    /// releaseComplete.
    ReleaseComplete(ReleaseCompleteUuie),
    /// facility.
    Facility(FacilityUuie),
    /// progress (extension alternative 0).
    Progress(ProgressUuie),
    /// empty (extension alternative 1): carries only tunnelled H.245.
    Empty,
    /// status (extension alternative 2).
    Status(StatusUuie),
    /// statusInquiry (extension alternative 3).
    StatusInquiry(StatusUuie),
    /// Other extension alternatives (setupAcknowledge, notify), raw.
    Other(u8, Vec<u8>),
}

impl Body {
    /// The body's ASN.1 name (as Wireshark and h323peer print it).
    pub fn name(&self) -> &'static str {
        match self {
            Body::Setup(_) => "setup",
            Body::CallProceeding(_) => "callProceeding",
            Body::Connect(_) => "connect",
            Body::Alerting(_) => "alerting",
            Body::Information(_) => "information",
            Body::ReleaseComplete(_) => "releaseComplete",
            Body::Facility(_) => "facility",
            Body::Progress(_) => "progress",
            Body::Empty => "empty",
            Body::Status(_) => "status",
            Body::StatusInquiry(_) => "statusInquiry",
            Body::Other(..) => "other",
        }
    }

    fn idx(&self) -> ExtIdx {
        match self {
            Body::Setup(_) => SETUP_EXT,
            Body::CallProceeding(_) => PROCEEDING_EXT,
            Body::Alerting(_) => ALERTING_EXT,
            Body::Connect(_) => CONNECT_EXT,
            Body::ReleaseComplete(_) => RELEASE_EXT,
            Body::Facility(_) => FACILITY_EXT,
            Body::Progress(_) => PROGRESS_EXT,
            Body::Information(_) => INFORMATION_EXT,
            _ => STATUS_EXT,
        }
    }

    fn ext(&self) -> Option<&Extensions> {
        Some(match self {
            Body::Setup(u) => &u.ext,
            Body::CallProceeding(u) | Body::Alerting(u) => &u.ext,
            Body::Connect(u) => &u.ext,
            Body::ReleaseComplete(u) => &u.ext,
            Body::Facility(u) => &u.ext,
            Body::Progress(u) => &u.ext,
            Body::Information(u) => &u.ext,
            Body::Status(u) | Body::StatusInquiry(u) => &u.ext,
            Body::Empty | Body::Other(..) => return None,
        })
    }

    fn ext_mut(&mut self) -> Option<&mut Extensions> {
        Some(match self {
            Body::Setup(u) => &mut u.ext,
            Body::CallProceeding(u) | Body::Alerting(u) => &mut u.ext,
            Body::Connect(u) => &mut u.ext,
            Body::ReleaseComplete(u) => &mut u.ext,
            Body::Facility(u) => &mut u.ext,
            Body::Progress(u) => &mut u.ext,
            Body::Information(u) => &mut u.ext,
            Body::Status(u) | Body::StatusInquiry(u) => &mut u.ext,
            Body::Empty | Body::Other(..) => return None,
        })
    }

    fn read(r: &mut Reader) -> Result<Self> {
        Ok(match r.choice(7, true, "h323-message-body")? {
            (false, 0) => Body::Setup(Box::new(SetupUuie::read(r)?)),
            (false, 1) => Body::CallProceeding(ProgressingUuie::read(r)?),
            (false, 2) => Body::Connect(ConnectUuie::read(r)?),
            (false, 3) => Body::Alerting(ProgressingUuie::read(r)?),
            (false, 4) => Body::Information(InformationUuie::read(r)?),
            (false, 5) => Body::ReleaseComplete(ReleaseCompleteUuie::read(r)?),
            (false, _) => Body::Facility(FacilityUuie::read(r)?),
            (true, i) => {
                let inner = r.open_type("h323-message-body")?;
                let mut ir = Reader::new(inner);
                match i {
                    0 => Body::Progress(ProgressUuie::read(&mut ir)?),
                    1 => Body::Empty,
                    2 => Body::Status(StatusUuie::read(&mut ir)?),
                    3 => Body::StatusInquiry(StatusUuie::read(&mut ir)?),
                    _ => Body::Other(i as u8, inner.to_vec()),
                }
            }
        })
    }

    fn write(&self, w: &mut Writer) {
        match self {
            Body::Setup(u) => {
                w.choice_root(0, 7, true);
                u.write(w);
            }
            Body::CallProceeding(u) => {
                w.choice_root(1, 7, true);
                u.write(w);
            }
            Body::Connect(u) => {
                w.choice_root(2, 7, true);
                u.write(w);
            }
            Body::Alerting(u) => {
                w.choice_root(3, 7, true);
                u.write(w);
            }
            Body::Information(u) => {
                w.choice_root(4, 7, true);
                u.write(w);
            }
            Body::ReleaseComplete(u) => {
                w.choice_root(5, 7, true);
                u.write(w);
            }
            Body::Facility(u) => {
                w.choice_root(6, 7, true);
                u.write(w);
            }
            Body::Progress(u) => w.choice_ext(0, &encode(|w| u.write(w))),
            Body::Empty => w.choice_ext(1, &encode(|_| {})),
            Body::Status(u) => w.choice_ext(2, &encode(|w| u.write(w))),
            Body::StatusInquiry(u) => w.choice_ext(3, &encode(|w| u.write(w))),
            Body::Other(i, d) => w.choice_ext(u64::from(*i), d),
        }
    }
}

/// `H323-UU-PDU` extension-addition count and indexes.
const PDU_EXT_COUNT: usize = 9;
const PDU_H245_TUNNELLING: usize = 1;
const PDU_H245_CONTROL: usize = 2;

/// `H323-UserInformation`: the decoded User-user IE contents (after the
/// protocol discriminator octet 0x05).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserInformation {
    /// `h323-uu-pdu.h323-message-body`.
    pub body: Body,
    /// `h323-uu-pdu.nonStandardData`.
    pub non_standard: Option<NonStandardParameter>,
    /// `h323-uu-pdu` extension additions (h245Tunnelling, h245Control, ...).
    pub pdu_ext: Extensions,
    /// `user-data`: protocol discriminator, user information, extensions.
    pub user_data: Option<(u8, Vec<u8>, Extensions)>,
    /// Extension additions of `H323-UserInformation`.
    pub ext: Extensions,
}

impl UserInformation {
    /// A message with `body`, `h245Tunnelling` set as given, nothing else.
    pub fn new(body: Body, tunnelling: bool) -> Self {
        let mut u = Self {
            body,
            non_standard: None,
            pdu_ext: Extensions::default(),
            user_data: None,
            ext: Extensions::default(),
        };
        u.pdu_ext
            .set(PDU_H245_TUNNELLING, PDU_EXT_COUNT, |w| w.bit(tunnelling));
        u
    }

    /// Decodes the PER bytes. Never panics.
    pub fn decode(b: &[u8]) -> Result<Self> {
        let mut r = Reader::new(b);
        let e = r.bit("H323-UserInformation ext")?;
        let [ud] = r.preamble::<1>("H323-UserInformation")?;
        let pe = r.bit("H323-UU-PDU ext")?;
        let [ns] = r.preamble::<1>("H323-UU-PDU")?;
        let body = Body::read(&mut r)?;
        let non_standard = ns.then(|| NonStandardParameter::read(&mut r)).transpose()?;
        let pdu_ext = if pe {
            r.extensions("H323-UU-PDU")?
        } else {
            Extensions::default()
        };
        let user_data = if ud {
            let ue = r.bit("user-data ext")?;
            let pd = r.constrained(0, 255, "protocol-discriminator")? as u8;
            let info = r.octet_string(Some((1, 131)), "user-information")?;
            let ext = if ue {
                r.extensions("user-data")?
            } else {
                Extensions::default()
            };
            Some((pd, info, ext))
        } else {
            None
        };
        let ext = if e {
            r.extensions("H323-UserInformation")?
        } else {
            Extensions::default()
        };
        if r.remaining() >= 8 {
            return Err(r.invalid("H323-UserInformation", "trailing octets"));
        }
        Ok(Self {
            body,
            non_standard,
            pdu_ext,
            user_data,
            ext,
        })
    }

    /// Encodes to PER bytes.
    pub fn encode(&self) -> Vec<u8> {
        encode(|w| {
            w.bit(self.ext.any());
            w.bit(self.user_data.is_some());
            w.bit(self.pdu_ext.any());
            w.bit(self.non_standard.is_some());
            self.body.write(w);
            if let Some(n) = &self.non_standard {
                n.write(w);
            }
            w.extensions(&self.pdu_ext);
            if let Some((pd, info, ext)) = &self.user_data {
                w.bit(ext.any());
                w.constrained(u64::from(*pd), 0, 255);
                w.octet_string(info, Some((1, 131)));
                w.extensions(ext);
            }
            w.extensions(&self.ext);
        })
    }

    /// `h245Tunnelling` (false when absent).
    pub fn h245_tunnelling(&self) -> bool {
        matches!(
            self.pdu_ext.get(PDU_H245_TUNNELLING, read_bool),
            Ok(Some(true))
        )
    }

    /// Tunnelled H.245 messages (`h245Control`), each a PER
    /// `MultimediaSystemControlMessage`.
    pub fn h245_control(&self) -> Result<Vec<Vec<u8>>> {
        Ok(self
            .pdu_ext
            .get(PDU_H245_CONTROL, read_octet_strings)?
            .unwrap_or_default())
    }

    /// Sets the tunnelled H.245 messages (removes the field when empty).
    pub fn set_h245_control(&mut self, msgs: &[Vec<u8>]) {
        if msgs.is_empty() {
            self.pdu_ext.clear(PDU_H245_CONTROL);
        } else {
            self.pdu_ext.set(PDU_H245_CONTROL, PDU_EXT_COUNT, |w| {
                write_octet_strings(w, msgs)
            });
        }
    }

    /// The `callIdentifier` GUID, wherever the body keeps it.
    pub fn call_identifier(&self) -> Result<Option<[u8; 16]>> {
        match &self.body {
            Body::Progress(p) => Ok(Some(p.call_identifier)),
            Body::Status(s) | Body::StatusInquiry(s) => Ok(Some(s.call_identifier)),
            b => match (b.ext(), b.idx().call_id) {
                (Some(e), Some(i)) => e.get(i, read_call_identifier),
                _ => Ok(None),
            },
        }
    }

    /// The fastStart OpenLogicalChannel encodings, if any.
    pub fn fast_start(&self) -> Result<Option<Vec<Vec<u8>>>> {
        match &self.body {
            Body::Progress(p) => Ok(p.fast_start.clone()),
            b => match (b.ext(), b.idx().fast_start) {
                (Some(e), Some(i)) => e.get(i, read_octet_strings),
                _ => Ok(None),
            },
        }
    }

    /// The `h245Address`, wherever the body keeps it.
    pub fn h245_address(&self) -> Result<Option<TransportAddress>> {
        Ok(match &self.body {
            Body::Setup(u) => u.h245_address.clone(),
            Body::CallProceeding(u) | Body::Alerting(u) => u.h245_address.clone(),
            Body::Connect(u) => u.h245_address.clone(),
            Body::Progress(u) => u.h245_address.clone(),
            b => match (b.ext(), b.idx().h245_address) {
                (Some(e), Some(i)) => e.get(i, TransportAddress::read)?,
                _ => None,
            },
        })
    }

    /// `presentationIndicator` root index (0 allowed, 1 restricted, 2 not available).
    pub fn presentation(&self) -> Result<Option<u8>> {
        match (self.body.ext(), self.body.idx().presentation) {
            (Some(e), Some(i)) => e.get(i, |r| {
                match NullChoice::read(r, 3, "presentationIndicator")? {
                    NullChoice::Root(v) => Ok(v),
                    NullChoice::Ext(..) => Ok(2),
                }
            }),
            _ => Ok(None),
        }
    }

    /// Sets the fields every message of this body type must carry from
    /// version 4 on: callIdentifier, multipleCalls/maintainConnection (false),
    /// and fastStart when given.
    pub fn set_common(&mut self, call_id: &[u8; 16], fast_start: Option<&[Vec<u8>]>) {
        let idx = self.body.idx();
        match &mut self.body {
            Body::Progress(p) => {
                p.call_identifier = *call_id;
                if let Some(f) = fast_start {
                    p.fast_start = Some(f.to_vec());
                }
            }
            Body::Status(s) | Body::StatusInquiry(s) => s.call_identifier = *call_id,
            _ => {}
        }
        let Some(e) = self.body.ext_mut() else { return };
        if let Some(i) = idx.call_id {
            e.set(i, idx.count, |w| write_call_identifier(w, call_id));
        }
        if let (Some(i), Some(f)) = (idx.fast_start, fast_start) {
            e.set(i, idx.count, |w| write_octet_strings(w, f));
        }
        for i in [idx.multiple_calls, idx.maintain].into_iter().flatten() {
            e.set(i, idx.count, |w| w.bit(false));
        }
    }

    /// Sets `presentationIndicator` (0 allowed, 1 restricted, 2 not available).
    pub fn set_presentation(&mut self, p: u8) {
        let idx = self.body.idx();
        if let (Some(e), Some(i)) = (self.body.ext_mut(), idx.presentation) {
            e.set(i, idx.count, |w| NullChoice::Root(p.min(2)).write(w, 3));
        }
    }
}

/// The H.225 version in a protocol identifier (its last arc).
pub fn protocol_version(oid: &[u8]) -> Option<u64> {
    oid_arcs(oid).last().copied()
}

impl From<PerError> for super::H323Error {
    fn from(e: PerError) -> Self {
        super::H323Error::Per(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The PER body of h323peer's Call Proceeding from sample-call.pcap.
    const PROCEEDING: &[u8] = &[
        0x21, 0x80, 0x06, 0x00, 0x08, 0x91, 0x4a, 0x00, 0x04, 0x22, 0xc0, 0xb5, 0x00, 0x7e, 0x7e,
        0x07, 0x68, 0x33, 0x32, 0x33, 0x70, 0x65, 0x65, 0x72, 0x02, 0x31, 0x2e, 0x30, 0x01, 0x10,
        0xc0, 0x11, 0x00, 0xf0, 0xa1, 0x5d, 0x31, 0xb4, 0x47, 0x9d, 0x32, 0x60, 0x19, 0x10, 0xeb,
        0x99, 0x07, 0x4f, 0x3f, 0x01, 0x00, 0x01, 0x00, 0x10, 0x80, 0x01, 0x00,
    ];

    #[test]
    fn call_proceeding_decodes_and_reencodes_exactly() {
        let u = UserInformation::decode(PROCEEDING).unwrap();
        let Body::CallProceeding(p) = &u.body else {
            panic!("not callProceeding: {:?}", u.body)
        };
        assert_eq!(protocol_version(&p.protocol_identifier), Some(4));
        let v = p.destination_info.vendor.as_ref().unwrap();
        assert_eq!(v.product_id.as_deref(), Some(&b"h323peer"[..]));
        assert!(p.destination_info.terminal.is_some());
        assert_eq!(u.call_identifier().unwrap().unwrap()[0], 0xf0);
        assert!(!u.h245_tunnelling());
        assert_eq!(u.encode(), PROCEEDING);
    }

    #[test]
    fn built_release_complete_round_trips() {
        let mut u = UserInformation::new(
            Body::ReleaseComplete(ReleaseCompleteUuie {
                protocol_identifier: protocol_identifier(4),
                reason: Some(NullChoice::Root(3)),
                ext: Extensions::default(),
            }),
            false,
        );
        u.set_common(&[7; 16], None);
        let b = u.encode();
        let d = UserInformation::decode(&b).unwrap();
        assert_eq!(d, u);
        assert_eq!(d.call_identifier().unwrap(), Some([7; 16]));
    }

    #[test]
    fn aliases_round_trip() {
        for a in [
            AliasAddress::DialledDigits("12#*,9".into()),
            AliasAddress::H323Id("Zoë".into()),
            AliasAddress::Url("h323:bob@example".into()),
        ] {
            let b = encode(|w| a.write(w));
            assert_eq!(AliasAddress::read(&mut Reader::new(&b)).unwrap(), a);
        }
    }

    #[test]
    fn truncations_of_a_real_message_never_panic() {
        for n in 0..PROCEEDING.len() {
            assert!(
                UserInformation::decode(&PROCEEDING[..n]).is_err(),
                "prefix {n}"
            );
        }
    }
}
