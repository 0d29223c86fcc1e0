//! `context.ip`: which address is the client's, and how much of it is kept.
//!
//! The client's address is the connection's peer address, unless the peer is one of the
//! configured `trusted_proxies`: then `X-Forwarded-For` is read from right to left and the first
//! address that is not a trusted proxy is the client's (the addresses left of it were written by
//! the client itself and prove nothing). A request from any other peer has its
//! `X-Forwarded-For` ignored, so a client cannot choose the address recorded for it.
//!
//! An event that carries its own `context.ip` keeps it (a server forwarding its end user's
//! address, as Segment's server libraries do); `ip_mode` applies to every address alike.
//!
//! # Invariants
//! - With `anonymize`, no stored address has a non-zero last IPv4 octet or a non-zero bit in the
//!   last 80 bits of an IPv6 address; text that is not an address is removed (it cannot be
//!   anonymized). With `drop`, no event keeps a `context.ip`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use axum::http::HeaderMap;
use ipnet::IpNet;
use serde_json::{Map, Value};

/// How much of the client's address is stored in `context.ip`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IpMode {
    /// The whole address.
    Full,
    /// The last IPv4 octet / the last 80 IPv6 bits zeroed (the default).
    #[default]
    Anonymize,
    /// No `context.ip` at all.
    Drop,
}

impl FromStr for IpMode {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "full" => Ok(Self::Full),
            "anonymize" => Ok(Self::Anonymize),
            "drop" => Ok(Self::Drop),
            other => Err(format!(
                "{other:?} is not an ip_mode: use \"full\", \"anonymize\" or \"drop\""
            )),
        }
    }
}

/// The proxies whose `X-Forwarded-For` is believed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    networks: Vec<IpNet>,
}

impl TrustedProxies {
    /// Parses CIDRs (`10.0.0.0/8`, `fd00::/8`) or single addresses.
    ///
    /// # Errors
    /// The first entry that is neither, with why.
    pub fn parse(entries: &[String]) -> Result<Self, String> {
        let mut networks = Vec::with_capacity(entries.len());
        for entry in entries {
            let entry = entry.trim();
            let network = IpNet::from_str(entry)
                .or_else(|_| IpAddr::from_str(entry).map(IpNet::from))
                .map_err(|_| {
                    format!("{entry:?} is not a CIDR such as \"10.0.0.0/8\" or an IP address")
                })?;
            networks.push(network);
        }
        Ok(Self { networks })
    }

    /// Whether `address` is one of the trusted proxies.
    pub fn contains(&self, address: IpAddr) -> bool {
        let address = canonical(address);
        self.networks
            .iter()
            .any(|network| network.contains(&address))
    }

    /// The client's address: `peer`, or, when `peer` is a trusted proxy, the right-most address
    /// of `X-Forwarded-For` that is not one (the left-most when all are). `None` without a peer
    /// (a request that did not come over a socket, such as a test's).
    pub fn client_ip(&self, peer: Option<IpAddr>, headers: &HeaderMap) -> Option<IpAddr> {
        let peer = canonical(peer?);
        if !self.contains(peer) {
            return Some(peer);
        }
        let mut forwarded: Vec<IpAddr> = Vec::new();
        for value in headers.get_all("x-forwarded-for") {
            let Ok(text) = value.to_str() else {
                return Some(peer);
            };
            for part in text.split(',') {
                match parse_forwarded(part) {
                    Some(address) => forwarded.push(canonical(address)),
                    // A hop we cannot read: nothing left of it can be attributed.
                    None => return Some(forwarded.last().copied().unwrap_or(peer)),
                }
            }
        }
        let mut client = peer;
        for address in forwarded.into_iter().rev() {
            client = address;
            if !self.contains(address) {
                break;
            }
        }
        Some(client)
    }
}

/// `1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1` or `[2001:db8::1]:443`.
fn parse_forwarded(part: &str) -> Option<IpAddr> {
    let part = part.trim();
    if let Ok(address) = IpAddr::from_str(part) {
        return Some(address);
    }
    if let Ok(socket) = std::net::SocketAddr::from_str(part) {
        return Some(socket.ip());
    }
    None
}

/// An IPv4-mapped IPv6 address (from a dual-stack socket) as the IPv4 address it is.
fn canonical(address: IpAddr) -> IpAddr {
    address.to_canonical()
}

/// `address` with its last IPv4 octet, or its last 80 IPv6 bits, zeroed.
pub fn anonymize(address: IpAddr) -> IpAddr {
    match canonical(address) {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            IpAddr::V4(Ipv4Addr::new(a, b, c, 0))
        }
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 80) - 1);
            IpAddr::V6(Ipv6Addr::from(bits))
        }
    }
}

/// Sets `context.ip` of one event: the event's own address, else `client`; then `mode`.
pub fn apply(context: &mut Map<String, Value>, client: Option<IpAddr>, mode: IpMode) {
    if mode == IpMode::Drop {
        context.remove("ip");
        return;
    }
    let own = context.get("ip").cloned();
    let value = match own {
        Some(Value::String(text)) => match IpAddr::from_str(text.trim()) {
            Ok(address) => Some(address),
            Err(_) if mode == IpMode::Full => return,
            Err(_) => None,
        },
        Some(Value::Null) | None => client,
        // Not text: not an address either.
        Some(_) if mode == IpMode::Full => return,
        Some(_) => None,
    };
    match value {
        Some(address) => {
            let address = match mode {
                IpMode::Anonymize => anonymize(address),
                _ => canonical(address),
            };
            context.insert("ip".into(), Value::String(address.to_string()));
        }
        None => {
            context.remove("ip");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn forwarded(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn anonymize_zeroes_the_last_octet_and_the_last_80_bits() {
        assert_eq!(anonymize(ip("203.0.113.77")), ip("203.0.113.0"));
        assert_eq!(
            anonymize(ip("2001:db8:abcd:1234:5678:9abc:def0:1234")),
            ip("2001:db8:abcd::")
        );
        assert_eq!(anonymize(ip("::ffff:198.51.100.9")), ip("198.51.100.0"));
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let proxies = TrustedProxies::parse(&["10.0.0.0/8".into(), "192.0.2.1".into()]).unwrap();
        let headers = forwarded("198.51.100.7, 10.1.1.1");
        // Untrusted peer: its header proves nothing.
        assert_eq!(
            proxies.client_ip(Some(ip("203.0.113.5")), &headers),
            Some(ip("203.0.113.5"))
        );
        // Trusted peer: the right-most untrusted hop.
        assert_eq!(
            proxies.client_ip(Some(ip("10.0.0.2")), &headers),
            Some(ip("198.51.100.7"))
        );
        // A spoofed left-most entry does not win over the hop the proxy saw.
        assert_eq!(
            proxies.client_ip(Some(ip("192.0.2.1")), &forwarded("1.1.1.1, 198.51.100.7")),
            Some(ip("198.51.100.7"))
        );
        // Ports and brackets.
        assert_eq!(
            proxies.client_ip(Some(ip("10.0.0.2")), &forwarded("[2001:db8::5]:443")),
            Some(ip("2001:db8::5"))
        );
        // No header: the proxy itself.
        assert_eq!(
            proxies.client_ip(Some(ip("10.0.0.2")), &HeaderMap::new()),
            Some(ip("10.0.0.2"))
        );
        // Garbage stops the walk at the last readable hop.
        assert_eq!(
            proxies.client_ip(Some(ip("10.0.0.2")), &forwarded("nonsense, 198.51.100.8")),
            Some(ip("10.0.0.2")),
            "the first hop is unreadable, so nothing can be attributed beyond the proxy"
        );
        assert_eq!(proxies.client_ip(None, &headers), None);
        assert!(TrustedProxies::parse(&["10.0.0.0/33".into()]).is_err());
        assert!(TrustedProxies::parse(&["proxy.local".into()]).is_err());
    }

    #[test]
    fn modes() {
        let client = Some(ip("203.0.113.77"));
        let mut context = Map::new();
        apply(&mut context, client, IpMode::Full);
        assert_eq!(context["ip"], "203.0.113.77");
        let mut context = Map::new();
        apply(&mut context, client, IpMode::Anonymize);
        assert_eq!(context["ip"], "203.0.113.0");
        let mut context = Map::new();
        apply(&mut context, client, IpMode::Drop);
        assert!(!context.contains_key("ip"));

        // The event's own address is kept, and the mode applies to it.
        let mut own = Map::new();
        own.insert("ip".into(), "198.51.100.9".into());
        let mut context = own.clone();
        apply(&mut context, client, IpMode::Anonymize);
        assert_eq!(context["ip"], "198.51.100.0");
        let mut context = own.clone();
        apply(&mut context, client, IpMode::Drop);
        assert!(!context.contains_key("ip"));

        // Text that is not an address: kept as sent in full mode, removed otherwise.
        let mut odd = Map::new();
        odd.insert("ip".into(), "unknown".into());
        let mut context = odd.clone();
        apply(&mut context, client, IpMode::Full);
        assert_eq!(context["ip"], "unknown");
        let mut context = odd;
        apply(&mut context, client, IpMode::Anonymize);
        assert!(!context.contains_key("ip"));

        assert_eq!("drop".parse::<IpMode>().unwrap(), IpMode::Drop);
        assert!("partial".parse::<IpMode>().is_err());
    }
}
