//! IP cameras on the local network (ONVIF), the sources an operator looks for first: a WS-Discovery probe sent on the interface the
//! operator chooses, and, for a camera found, its media profiles with their RTSP URLs
//! (asked with the operator's credentials as a WS-Security UsernameToken digest).
//!
//! Bounds: a probe listens at most [`MAX_WAIT`], keeps at most [`MAX_DEVICES`], reads
//! datagrams and answers of at most [`xml::MAX_BYTES`]; a camera's HTTP answer must come
//! within [`HTTP_TIMEOUT`]. Only the interface chosen sees the probe (`SO_BINDTODEVICE`), so
//! discovery never leaves the LAN it was asked for.

pub mod xml;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use base64::Engine;
use serde::Serialize;
use sha1::Digest;
use xml::Element;

pub const MAX_WAIT: Duration = Duration::from_secs(10);
pub const MAX_DEVICES: usize = 256;
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(5);
const GROUP: Ipv4Addr = Ipv4Addr::new(239, 255, 255, 250);
const PORT: u16 = 3702;

#[derive(Debug, thiserror::Error)]
pub enum OnvifError {
    #[error("no interface named '{0}' with an IPv4 address")]
    NoSuchInterface(String),
    #[error("discovery failed: {0}")]
    Socket(String),
    #[error("the camera at {0} cannot be reached: {1}")]
    Unreachable(String, String),
    #[error("the camera refused the user name or password{0}")]
    NotAuthorized(String),
    #[error("the camera's answer is not ONVIF: {0}")]
    NotOnvif(String),
    #[error("'{0}' is not a camera's http:// service address")]
    BadAddress(String),
}

/// A network interface discovery can be sent on.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(as = OnvifInterface)]
pub struct Interface {
    pub name: String,
    pub ipv4: Vec<String>,
}

/// The interfaces with an IPv4 address, loopback excepted, by name.
pub fn interfaces() -> Vec<Interface> {
    lpe_drivers::system::ipv4_interfaces()
        .into_iter()
        .map(|(name, v4)| Interface {
            name,
            ipv4: v4.iter().map(|a| a.to_string()).collect(),
        })
        .collect()
}

fn interface_address(name: &str) -> Result<Ipv4Addr, OnvifError> {
    interfaces()
        .into_iter()
        .find(|i| i.name == name)
        .and_then(|i| i.ipv4.first().and_then(|a| a.parse().ok()))
        .ok_or_else(|| OnvifError::NoSuchInterface(name.to_string()))
}

/// A camera that answered the probe.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(as = OnvifDevice)]
pub struct Device {
    /// Its WS-Discovery endpoint (`urn:uuid:…`), stable across address changes.
    pub endpoint: String,
    /// Where it answered from.
    pub address: String,
    /// Its device service URLs.
    pub xaddrs: Vec<String>,
    /// From its scopes, when it says.
    pub name: Option<String>,
    pub hardware: Option<String>,
    pub location: Option<String>,
}

fn uuid() -> String {
    let b: [u8; 16] = rand::random();
    let h = |r: std::ops::Range<usize>| b[r].iter().map(|x| format!("{x:02x}")).collect::<String>();
    format!(
        "uuid:{}-{}-4{}-a{}-{}",
        h(0..4),
        h(4..6),
        &h(6..8)[1..],
        &h(8..10)[1..],
        h(10..16)
    )
}

fn probe_message(id: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><e:Envelope xmlns:e="http://www.w3.org/2003/05/soap-envelope" xmlns:w="http://schemas.xmlsoap.org/ws/2004/08/addressing" xmlns:d="http://schemas.xmlsoap.org/ws/2005/04/discovery" xmlns:dn="http://www.onvif.org/ver10/network/wsdl"><e:Header><w:MessageID>{id}</w:MessageID><w:To e:mustUnderstand="true">urn:schemas-xmlsoap-org:ws:2005:04:discovery</w:To><w:Action e:mustUnderstand="true">http://schemas.xmlsoap.org/ws/2005/04/discovery/Probe</w:Action></e:Header><e:Body><d:Probe><d:Types>dn:NetworkVideoTransmitter</d:Types></d:Probe></e:Body></e:Envelope>"#
    )
}

/// The devices in a `ProbeMatches` answering `id`.
pub fn parse_probe_matches(data: &[u8], id: &str, from: &str) -> Vec<Device> {
    let Some(doc) = Element::parse(data) else {
        return Vec::new();
    };
    if doc.text_of("RelatesTo").as_deref() != Some(id) {
        return Vec::new();
    }
    let mut matches = Vec::new();
    doc.find_all("ProbeMatch", &mut matches);
    matches
        .into_iter()
        .filter_map(|m| {
            let endpoint = m.find("EndpointReference")?.text_of("Address")?;
            let xaddrs: Vec<String> = m
                .text_of("XAddrs")?
                .split_whitespace()
                .filter(|x| x.starts_with("http://") || x.starts_with("https://"))
                .take(8)
                .map(String::from)
                .collect();
            if xaddrs.is_empty() {
                return None;
            }
            let scopes = m.text_of("Scopes").unwrap_or_default();
            let scope = |kind: &str| {
                scopes
                    .split_whitespace()
                    .find_map(|s| s.strip_prefix(&format!("onvif://www.onvif.org/{kind}/")))
                    .map(|v| percent_decode(v).chars().take(100).collect::<String>())
            };
            Some(Device {
                endpoint: endpoint.chars().take(200).collect(),
                address: from.to_string(),
                xaddrs,
                name: scope("name"),
                hardware: scope("hardware"),
                location: scope("location"),
            })
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%'
            && let (Some(h), Some(l)) = (
                b.get(i + 1).and_then(|c| hex(*c)),
                b.get(i + 2).and_then(|c| hex(*c)),
            )
        {
            out.push((h * 16 + l) as u8);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Sends the probe on `interface` (twice: UDP may lose one) and gathers the answers for
/// `wait` (at most [`MAX_WAIT`]).
pub async fn discover(interface: &str, wait: Duration) -> Result<Vec<Device>, OnvifError> {
    let local = interface_address(interface)?;
    let socket = socket2::Socket::new(
        socket2::Domain::IPV4,
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )
    .map_err(|e| OnvifError::Socket(e.to_string()))?;
    let setup = || -> std::io::Result<()> {
        // Bound to the device as well as to its address: the probe leaves by this interface
        // or not at all.
        socket.bind_device(Some(interface.as_bytes()))?;
        socket.set_multicast_if_v4(&local)?;
        socket.set_multicast_ttl_v4(1)?;
        socket.set_multicast_loop_v4(false)?;
        socket.set_nonblocking(true)?;
        socket.bind(&SocketAddr::V4(SocketAddrV4::new(local, 0)).into())
    };
    setup().map_err(|e| OnvifError::Socket(e.to_string()))?;
    let socket = tokio::net::UdpSocket::from_std(socket.into())
        .map_err(|e| OnvifError::Socket(e.to_string()))?;
    let id = uuid();
    let probe = probe_message(&id);
    let to = SocketAddr::V4(SocketAddrV4::new(GROUP, PORT));
    let deadline = tokio::time::Instant::now() + wait.min(MAX_WAIT);
    let mut found: BTreeMap<String, Device> = BTreeMap::new();
    let mut buf = vec![0u8; 65_536];
    for attempt in 0..2 {
        socket
            .send_to(probe.as_bytes(), to)
            .await
            .map_err(|e| OnvifError::Socket(format!("cannot send on {interface}: {e}")))?;
        let until = if attempt == 0 {
            deadline.min(tokio::time::Instant::now() + Duration::from_millis(500))
        } else {
            deadline
        };
        while let Ok(Ok((n, from))) =
            tokio::time::timeout_at(until, socket.recv_from(&mut buf)).await
        {
            for d in parse_probe_matches(&buf[..n], &id, &from.ip().to_string()) {
                if found.len() < MAX_DEVICES || found.contains_key(&d.endpoint) {
                    found.insert(d.endpoint.clone(), d);
                }
            }
        }
    }
    Ok(found.into_values().collect())
}

/// What the camera says about itself.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
#[schema(as = OnvifDeviceInfo)]
pub struct DeviceInfo {
    pub manufacturer: Option<String>,
    pub model: Option<String>,
    pub firmware: Option<String>,
    pub serial: Option<String>,
}

/// One media profile and where to get it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(as = OnvifProfile)]
pub struct Profile {
    pub token: String,
    pub name: String,
    /// `H264`, `H265`, `JPEG`, … as the camera names it.
    pub encoding: Option<String>,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub fps: Option<u32>,
    /// Without credentials (they go in the stream's own fields).
    pub rtsp_url: Option<String>,
}

/// A camera's identity and profiles.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(as = OnvifCamera)]
pub struct Camera {
    pub xaddr: String,
    pub info: DeviceInfo,
    pub profiles: Vec<Profile>,
}

/// The WS-Security header: a UsernameToken with the password's digest
/// (Base64(SHA-1(nonce + created + password))).
fn security(user: &str, password: &str) -> String {
    let nonce: [u8; 16] = rand::random();
    let created = created_now();
    let mut h = sha1::Sha1::new();
    h.update(nonce);
    h.update(created.as_bytes());
    h.update(password.as_bytes());
    let b64 = base64::engine::general_purpose::STANDARD;
    format!(
        r#"<Security s:mustUnderstand="1" xmlns="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"><UsernameToken><Username>{}</Username><Password Type="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-username-token-profile-1.0#PasswordDigest">{}</Password><Nonce EncodingType="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-soap-message-security-1.0#Base64Binary">{}</Nonce><Created xmlns="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd">{created}</Created></UsernameToken></Security>"#,
        quick_xml::escape::escape(user),
        b64.encode(h.finalize()),
        b64.encode(nonce),
    )
}

fn created_now() -> String {
    let t = time::OffsetDateTime::now_utc();
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// Checks a UsernameToken digest (what a camera does; the tests' responder and this
/// module's tests use it).
pub fn digest_matches(nonce_b64: &str, created: &str, password: &str, digest_b64: &str) -> bool {
    let b64 = base64::engine::general_purpose::STANDARD;
    let Ok(nonce) = b64.decode(nonce_b64) else {
        return false;
    };
    let mut h = sha1::Sha1::new();
    h.update(&nonce);
    h.update(created.as_bytes());
    h.update(password.as_bytes());
    b64.encode(h.finalize()) == digest_b64
}

/// A camera's service address: `http://` with a host, no user info.
fn check_xaddr(xaddr: &str) -> Result<reqwest::Url, OnvifError> {
    let url = reqwest::Url::parse(xaddr).map_err(|_| OnvifError::BadAddress(xaddr.to_string()))?;
    if url.scheme() != "http"
        || url.host().is_none()
        || !url.username().is_empty()
        || url.password().is_some()
    {
        return Err(OnvifError::BadAddress(xaddr.to_string()));
    }
    Ok(url)
}

struct Session {
    http: reqwest::Client,
    user: String,
    password: String,
}

impl Session {
    async fn call(&self, url: &reqwest::Url, body: &str) -> Result<Element, OnvifError> {
        let envelope = format!(
            r#"<?xml version="1.0" encoding="UTF-8"?><s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope"><s:Header>{}</s:Header><s:Body>{body}</s:Body></s:Envelope>"#,
            if self.user.is_empty() {
                String::new()
            } else {
                security(&self.user, &self.password)
            }
        );
        let host = url.host_str().unwrap_or_default().to_string();
        let unreachable = |e: String| OnvifError::Unreachable(host.clone(), e);
        let mut res = self
            .http
            .post(url.clone())
            .header("content-type", "application/soap+xml; charset=utf-8")
            .body(envelope)
            .send()
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        let status = res.status();
        let mut data = Vec::new();
        while let Some(chunk) = res.chunk().await.map_err(|e| unreachable(e.to_string()))? {
            if data.len() + chunk.len() > xml::MAX_BYTES {
                return Err(OnvifError::NotOnvif(format!(
                    "an answer larger than {} bytes",
                    xml::MAX_BYTES
                )));
            }
            data.extend_from_slice(&chunk);
        }
        if status == reqwest::StatusCode::UNAUTHORIZED {
            return Err(OnvifError::NotAuthorized(" (it asks for HTTP authentication, which is not supported; enable WS-Security user tokens on the camera)".into()));
        }
        let doc = Element::parse(&data)
            .ok_or_else(|| OnvifError::NotOnvif(format!("HTTP {status}, not XML")))?;
        if let Some(fault) = doc.find("Fault") {
            let codes: Vec<String> = {
                let mut v = Vec::new();
                fault.find_all("Value", &mut v);
                v.iter().map(|e| e.text.clone()).collect()
            };
            if codes
                .iter()
                .any(|c| c.ends_with("NotAuthorized") || c.ends_with("FailedAuthentication"))
            {
                return Err(OnvifError::NotAuthorized(String::new()));
            }
            let reason = fault.text_of("Text").unwrap_or_else(|| codes.join(" "));
            return Err(OnvifError::NotOnvif(format!(
                "fault: {}",
                reason.chars().take(200).collect::<String>()
            )));
        }
        if !status.is_success() {
            return Err(OnvifError::NotOnvif(format!("HTTP {status}")));
        }
        Ok(doc)
    }
}

/// Asks the camera at `xaddr` (its device service) who it is and for its profiles' RTSP URLs.
pub async fn camera(xaddr: &str, user: &str, password: &str) -> Result<Camera, OnvifError> {
    let device = check_xaddr(xaddr)?;
    let http = reqwest::Client::builder()
        .timeout(HTTP_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| OnvifError::Socket(e.to_string()))?;
    let s = Session {
        http,
        user: user.to_string(),
        password: password.to_string(),
    };
    const DEVICE: &str = "http://www.onvif.org/ver10/device/wsdl";
    const MEDIA: &str = "http://www.onvif.org/ver10/media/wsdl";
    let caps = s
        .call(
            &device,
            &format!(
                r#"<GetCapabilities xmlns="{DEVICE}"><Category>Media</Category></GetCapabilities>"#
            ),
        )
        .await?;
    let media = caps
        .find("Media")
        .and_then(|m| m.text_of("XAddr"))
        .ok_or_else(|| OnvifError::NotOnvif("no media service in its capabilities".into()))?;
    // The camera may name itself by another address than the one it is reached at (NAT, a
    // second interface): keep the path, use the host that answered.
    let mut media_url = reqwest::Url::parse(&media)
        .map_err(|_| OnvifError::NotOnvif(format!("media service '{media}'")))?;
    if media_url.scheme() != "http" {
        return Err(OnvifError::NotOnvif(format!(
            "media service '{media}' is not http"
        )));
    }
    let _ = media_url.set_host(device.host_str());
    let _ = media_url.set_port(device.port());
    let info = match s
        .call(
            &device,
            &format!(r#"<GetDeviceInformation xmlns="{DEVICE}"/>"#),
        )
        .await
    {
        Ok(d) => DeviceInfo {
            manufacturer: d.text_of("Manufacturer"),
            model: d.text_of("Model"),
            firmware: d.text_of("FirmwareVersion"),
            serial: d.text_of("SerialNumber"),
        },
        Err(OnvifError::NotAuthorized(w)) => return Err(OnvifError::NotAuthorized(w)),
        Err(_) => DeviceInfo::default(),
    };
    let doc = s
        .call(&media_url, &format!(r#"<GetProfiles xmlns="{MEDIA}"/>"#))
        .await?;
    let mut found = Vec::new();
    doc.find_all("Profiles", &mut found);
    let mut profiles = Vec::new();
    for p in found.into_iter().take(16) {
        let Some(token) = p.attr("token").map(String::from) else {
            continue;
        };
        let enc = p.find("VideoEncoderConfiguration");
        let num = |e: Option<&Element>, n: &str| {
            e.and_then(|e| e.text_of(n)).and_then(|t| t.parse().ok())
        };
        let resolution = enc.and_then(|e| e.find("Resolution"));
        let stream = format!(
            r#"<GetStreamUri xmlns="{MEDIA}"><StreamSetup><Stream xmlns="http://www.onvif.org/ver10/schema">RTP-Unicast</Stream><Transport xmlns="http://www.onvif.org/ver10/schema"><Protocol>RTSP</Protocol></Transport></StreamSetup><ProfileToken>{}</ProfileToken></GetStreamUri>"#,
            quick_xml::escape::escape(&token)
        );
        let rtsp_url = match s.call(&media_url, &stream).await {
            Ok(d) => d
                .find("MediaUri")
                .and_then(|m| m.text_of("Uri"))
                .and_then(|u| without_credentials(&u)),
            Err(OnvifError::NotAuthorized(w)) => return Err(OnvifError::NotAuthorized(w)),
            Err(_) => None,
        };
        profiles.push(Profile {
            name: p.text_of("Name").unwrap_or_else(|| token.clone()),
            token,
            encoding: enc.and_then(|e| e.text_of("Encoding")),
            width: num(resolution, "Width"),
            height: num(resolution, "Height"),
            fps: num(enc, "FrameRateLimit"),
            rtsp_url,
        });
    }
    Ok(Camera {
        xaddr: xaddr.to_string(),
        info,
        profiles,
    })
}

/// An `rtsp://` URL without user info (the stream keeps credentials in its own fields).
fn without_credentials(uri: &str) -> Option<String> {
    let mut url = reqwest::Url::parse(uri).ok()?;
    if url.scheme() != "rtsp" && url.scheme() != "rtsps" {
        return None;
    }
    let _ = url.set_username("");
    let _ = url.set_password(None);
    Some(url.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_matches_are_read_and_checked_against_the_probe() {
        let id = uuid();
        assert!(id.starts_with("uuid:") && id.len() == 41, "{id}");
        let answer = format!(
            r#"<?xml version="1.0"?><SOAP-ENV:Envelope xmlns:SOAP-ENV="http://www.w3.org/2003/05/soap-envelope" xmlns:wsa="a" xmlns:d="d"><SOAP-ENV:Header><wsa:RelatesTo>{id}</wsa:RelatesTo></SOAP-ENV:Header><SOAP-ENV:Body><d:ProbeMatches><d:ProbeMatch><wsa:EndpointReference><wsa:Address>urn:uuid:cam-1</wsa:Address></wsa:EndpointReference><d:Types>dn:NetworkVideoTransmitter</d:Types><d:Scopes>onvif://www.onvif.org/name/Door%20Cam onvif://www.onvif.org/hardware/IPC-1</d:Scopes><d:XAddrs>http://10.0.0.5/onvif/device_service ftp://x</d:XAddrs></d:ProbeMatch></d:ProbeMatches></SOAP-ENV:Body></SOAP-ENV:Envelope>"#
        );
        let d = parse_probe_matches(answer.as_bytes(), &id, "10.0.0.5");
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].endpoint, "urn:uuid:cam-1");
        assert_eq!(d[0].xaddrs, ["http://10.0.0.5/onvif/device_service"]);
        assert_eq!(d[0].name.as_deref(), Some("Door Cam"));
        assert_eq!(d[0].hardware.as_deref(), Some("IPC-1"));
        // An answer to someone else's probe, or garbage, is nothing.
        assert!(parse_probe_matches(answer.as_bytes(), "uuid:other", "x").is_empty());
        assert!(parse_probe_matches(b"\x00\x01garbage", &id, "x").is_empty());
    }

    #[test]
    fn the_token_digest_is_the_ws_security_one() {
        // WS-Security UsernameToken profile: Base64(SHA-1(nonce + created + password)).
        let header = security("admin", "pa<ss");
        let grab = |tag: &str| {
            let start = [format!("<{tag}>"), format!("<{tag} ")]
                .iter()
                .find_map(|open| header.find(open.as_str()))
                .and_then(|i| header[i..].find('>').map(|j| i + j + 1))
                .expect(tag);
            header[start..].split('<').next().expect("text").to_string()
        };
        assert_eq!(grab("Username"), "admin");
        let (nonce, created, digest) = (grab("Nonce"), grab("Created"), grab("Password"));
        assert!(digest_matches(&nonce, &created, "pa<ss", &digest));
        assert!(!digest_matches(&nonce, &created, "pass", &digest));
        assert_eq!(created.len(), 20, "{created}");
    }

    #[test]
    fn only_plain_http_service_addresses_are_asked() {
        assert!(check_xaddr("http://10.0.0.5/onvif/device_service").is_ok());
        for bad in [
            "https://x/",
            "file:///etc/passwd",
            "http://u:p@x/",
            "not a url",
        ] {
            assert!(check_xaddr(bad).is_err(), "{bad}");
        }
        assert_eq!(
            without_credentials("rtsp://admin:pw@10.0.0.5:554/Streaming/101").as_deref(),
            Some("rtsp://10.0.0.5:554/Streaming/101")
        );
        assert_eq!(without_credentials("http://x/"), None);
    }
}
