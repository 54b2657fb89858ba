//! Where a request came from and which address the client used to reach the gateway: the
//! client's IP address (rate limits, the audit trail, the loopback-only development token) and
//! the scheme and host that links (`Location`, paging links, `fullUrl`s) are built on when
//! `server.base_url` is empty.
//!
//! Forwarding headers are believed only from a peer in `server.trusted_proxies` (default: no
//! one), and only the family `server.forwarded_headers` names (`Forwarded` or `X-Forwarded-*`),
//! so a proxy that passes the other family through untouched cannot be used to forge it. A host
//! must be a well-formed `host[:port]` and a scheme `http` or `https`; anything else is ignored
//! (the connection's own values are used, and nothing a client sent is echoed), never an error,
//! so a misconfigured proxy degrades links instead of every answer. This module must never let
//! header text reach a link or an audit record unchecked.

use std::net::{IpAddr, SocketAddr};

use actix_web::http::header::{HeaderMap, HOST};
use actix_web::{HttpMessage as _, HttpRequest};

use crate::config::{ForwardedHeaders, ServerConfig, TrustedProxies};

/// The request's origin as far as the gateway can vouch for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// `http` or `https`.
    pub scheme: &'static str,
    /// A well-formed `host[:port]`.
    pub host: String,
    /// The client's address: the peer, or what trusted proxies said about who they relay.
    pub client: Option<IpAddr>,
}

impl Origin {
    /// `scheme://host`, the base FHIR and municipal links are built on.
    pub fn authority_url(&self) -> String {
        format!("{}://{}", self.scheme, self.host)
    }
}

/// The origin of `req` under `server`'s proxy settings.
pub fn of(req: &HttpRequest, server: &ServerConfig) -> Origin {
    of_via(req, &server.trusted_proxies, server.forwarded_headers)
}

/// The origin of `req` as its connection alone tells it (no proxy trusted).
pub fn direct(req: &HttpRequest) -> Origin {
    of_via(
        req,
        &TrustedProxies::default(),
        ForwardedHeaders::XForwarded,
    )
}

fn of_via(req: &HttpRequest, proxies: &TrustedProxies, family: ForwardedHeaders) -> Origin {
    let conn = req.app_config();
    let local = conn.local_addr();
    let own_scheme = if conn.secure() { "https" } else { "http" };
    let own_host = req
        .headers()
        .get(HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()))
        .and_then(well_formed_host)
        .unwrap_or_else(|| socket_host(local));
    from_parts(
        req.peer_addr(),
        req.headers(),
        (proxies, family),
        own_scheme,
        own_host,
    )
}

/// The client's address alone (for rate limits and the audit trail).
pub fn client_ip(req: &HttpRequest, server: &ServerConfig) -> Option<IpAddr> {
    if let Some(&ClientIp(ip)) = req.extensions().get::<ClientIp>() {
        return ip;
    }
    of(req, server).client
}

/// The client's address as [`client_ip`] found it, kept on the request by the middleware
/// (`api::observe`): the rate limits, authentication's loopback check and the audit record
/// each ask, and the forwarding headers are read once.
#[derive(Clone, Copy, Debug)]
pub struct ClientIp(pub Option<IpAddr>);

/// The decision, apart from actix: `peer` is the connection's peer, `own_*` what the
/// connection itself says.
fn from_parts(
    peer: Option<SocketAddr>,
    headers: &HeaderMap,
    (proxies, family): (&TrustedProxies, ForwardedHeaders),
    own_scheme: &'static str,
    own_host: String,
) -> Origin {
    let mut origin = Origin {
        scheme: own_scheme,
        host: own_host,
        client: peer.map(|p| unmapped(p.ip())),
    };
    let Some(peer) = origin.client else {
        return origin;
    };
    if !proxies.trusts(peer) {
        return origin;
    }
    let claims = match family {
        ForwardedHeaders::XForwarded => x_forwarded(headers),
        ForwardedHeaders::Forwarded => forwarded(headers),
    };
    // Walk the chain from the nearest hop back: the first address no trusted proxy vouches
    // for is the client. A hop that is not an address ("unknown", an obfuscated name) ends the
    // walk at the proxy that reported it.
    let mut client = peer;
    for hop in claims.chain.iter().rev() {
        match hop {
            Some(ip) => {
                client = *ip;
                if !proxies.trusts(*ip) {
                    break;
                }
            }
            None => break,
        }
    }
    origin.client = Some(client);
    if let Some(scheme) = claims.proto.as_deref().and_then(well_formed_scheme) {
        origin.scheme = scheme;
    }
    if let Some(host) = claims.host.as_deref().and_then(well_formed_host) {
        origin.host = host;
    }
    origin
}

/// What forwarding headers claim: the `for` chain (oldest first; `None` where a hop is not an
/// address), and the host and scheme the nearest proxy reported.
#[derive(Debug, Default)]
struct Claims {
    chain: Vec<Option<IpAddr>>,
    host: Option<String>,
    proto: Option<String>,
}

/// `X-Forwarded-For` (every header line, in order), and the last value of `X-Forwarded-Host`
/// and `X-Forwarded-Proto`: a proxy that appends puts its own value last.
fn x_forwarded(headers: &HeaderMap) -> Claims {
    let values = |name: &str| -> Vec<String> {
        headers
            .get_all(name)
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .collect()
    };
    Claims {
        chain: values("x-forwarded-for")
            .iter()
            .map(|v| node_ip(v))
            .collect(),
        host: values("x-forwarded-host").pop(),
        proto: values("x-forwarded-proto").pop(),
    }
}

/// RFC 7239 `Forwarded`: every element's `for`, and `host`/`proto` of the last element that
/// names them.
fn forwarded(headers: &HeaderMap) -> Claims {
    let mut claims = Claims::default();
    for element in headers
        .get_all("forwarded")
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
    {
        for pair in element.split(';') {
            let Some((name, value)) = pair.split_once('=') else {
                continue;
            };
            let value = value.trim().trim_matches('"');
            match name.trim().to_ascii_lowercase().as_str() {
                "for" => claims.chain.push(node_ip(value)),
                "host" => claims.host = Some(value.to_string()),
                "proto" => claims.proto = Some(value.to_string()),
                _ => {}
            }
        }
    }
    claims
}

/// A forwarded node's address: `1.2.3.4`, `1.2.3.4:5678`, `[::1]`, `[::1]:5678`, `::1`.
fn node_ip(node: &str) -> Option<IpAddr> {
    let node = node.trim();
    if let Ok(ip) = node.parse::<IpAddr>() {
        return Some(unmapped(ip));
    }
    if let Ok(sa) = node.parse::<SocketAddr>() {
        return Some(unmapped(sa.ip()));
    }
    let inner = node.strip_prefix('[')?.strip_suffix(']')?;
    inner.parse::<IpAddr>().ok().map(unmapped)
}

/// `::ffff:a.b.c.d` as `a.b.c.d`, so one address has one spelling in limits and the audit.
fn unmapped(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn well_formed_scheme(s: &str) -> Option<&'static str> {
    if s.eq_ignore_ascii_case("https") {
        Some("https")
    } else if s.eq_ignore_ascii_case("http") {
        Some("http")
    } else {
        None
    }
}

/// `host[:port]` per RFC 3986 as far as a link needs it: a DNS name (letters, digits, hyphens,
/// dot-separated labels of 1–63 characters), an IPv4 address or a bracketed IPv6 address, and an
/// optional port 1–65535. Returned lower-cased; `None` for anything else.
pub fn well_formed_host(s: &str) -> Option<String> {
    if s.is_empty() || s.len() > 261 {
        return None;
    }
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (v6, after) = rest.split_once(']')?;
        v6.parse::<std::net::Ipv6Addr>().ok()?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':')?),
        };
        (&s[..v6.len() + 2], port)
    } else {
        match s.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    if let Some(p) = port {
        let ok = !p.is_empty()
            && p.len() <= 5
            && p.bytes().all(|b| b.is_ascii_digit())
            && p.parse::<u32>().is_ok_and(|n| (1..=65535).contains(&n));
        if !ok {
            return None;
        }
    }
    if !host.starts_with('[') {
        let name = host.strip_suffix('.').unwrap_or(host);
        let labels_ok = !name.is_empty()
            && name.len() <= 253
            && name.split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && !l.starts_with('-')
                    && !l.ends_with('-')
                    && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            });
        if !labels_ok {
            return None;
        }
    }
    Some(s.to_ascii_lowercase())
}

/// The listening socket as a host, when the request named none that is well-formed.
fn socket_host(addr: SocketAddr) -> String {
    match addr {
        SocketAddr::V4(a) => a.to_string(),
        SocketAddr::V6(a) => format!("[{}]:{}", a.ip(), a.port()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::{HeaderName, HeaderValue};

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_static(k),
                HeaderValue::from_str(v).expect("header value"),
            );
        }
        h
    }

    fn origin(peer: &str, proxies: &[&str], family: ForwardedHeaders, h: HeaderMap) -> Origin {
        from_parts(
            Some(peer.parse().expect("socket address")),
            &h,
            (
                &TrustedProxies::parse(proxies).expect("valid proxies"),
                family,
            ),
            "http",
            "gw.internal:8080".into(),
        )
    }

    #[test]
    fn forwarding_headers_from_an_untrusted_peer_change_nothing() {
        let h = headers(&[
            ("x-forwarded-host", "evil.example"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-for", "10.9.9.9"),
            ("forwarded", "for=10.8.8.8;host=evil2.example;proto=https"),
        ]);
        for family in [ForwardedHeaders::XForwarded, ForwardedHeaders::Forwarded] {
            let o = origin("192.0.2.1:5555", &[], family, h.clone());
            assert_eq!(o.host, "gw.internal:8080");
            assert_eq!(o.scheme, "http");
            assert_eq!(o.client, Some("192.0.2.1".parse().expect("ip")));
        }
    }

    #[test]
    fn a_trusted_proxy_names_the_client_host_and_scheme() {
        let h = headers(&[
            ("x-forwarded-host", "gw.example.dk"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-for", "203.0.113.9, 10.0.0.3"),
        ]);
        let o = origin(
            "10.0.0.7:4000",
            &["10.0.0.0/24"],
            ForwardedHeaders::XForwarded,
            h,
        );
        assert_eq!(o.authority_url(), "https://gw.example.dk");
        assert_eq!(o.client, Some("203.0.113.9".parse().expect("ip")));
    }

    #[test]
    fn a_client_cannot_hide_behind_an_address_it_prepends() {
        // The client sends X-Forwarded-For: 127.0.0.1; the proxy appends the real address.
        let h = headers(&[("x-forwarded-for", "127.0.0.1, 198.51.100.4")]);
        let o = origin("10.0.0.7:1", &["10.0.0.7"], ForwardedHeaders::XForwarded, h);
        assert_eq!(o.client, Some("198.51.100.4".parse().expect("ip")));
    }

    #[test]
    fn the_family_not_configured_is_ignored() {
        let h = headers(&[("forwarded", "for=1.2.3.4;host=evil.example;proto=https")]);
        let o = origin("10.0.0.7:1", &["10.0.0.7"], ForwardedHeaders::XForwarded, h);
        assert_eq!(o.host, "gw.internal:8080");
        assert_eq!(o.client, Some("10.0.0.7".parse().expect("ip")));
    }

    #[test]
    fn malformed_hosts_and_schemes_from_a_trusted_proxy_are_ignored() {
        for (host, proto) in [
            ("x/fhir/Patient/decoy-audit", "javascript"),
            ("evil.example/path", "ftp"),
            ("a@b", "https:"),
            ("host:99999", "HTTP "),
            ("host:", ""),
            ("[::1", "data"),
            ("-bad.example", "ht\ttp"),
            ("ex ample", "https://"),
        ] {
            let h = headers(&[(
                "forwarded",
                &format!("for=1.2.3.4;host=\"{host}\";proto={proto}"),
            )]);
            let o = origin("10.0.0.7:1", &["10.0.0.7"], ForwardedHeaders::Forwarded, h);
            assert_eq!(o.host, "gw.internal:8080", "{host}");
            assert_eq!(o.scheme, "http", "{proto}");
        }
    }

    #[test]
    fn hosts_follow_the_uri_grammar() {
        for good in [
            "gw.example.dk",
            "GW.Example.DK:8443",
            "127.0.0.1:8080",
            "[::1]:8080",
            "[2001:db8::1]",
            "localhost",
        ] {
            assert!(well_formed_host(good).is_some(), "{good}");
        }
        for bad in [
            "", "x/y", "a b", "a..b", "[::1]x", "[zz::1]", "a:0", "a:-1", "a:b", "é.dk", "a\"b",
        ] {
            assert!(well_formed_host(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn ipv4_mapped_peers_are_matched_as_ipv4() {
        let h = headers(&[("x-forwarded-for", "203.0.113.9")]);
        let o = origin(
            "[::ffff:10.0.0.7]:1",
            &["10.0.0.7"],
            ForwardedHeaders::XForwarded,
            h,
        );
        assert_eq!(o.client, Some("203.0.113.9".parse().expect("ip")));
    }
}
