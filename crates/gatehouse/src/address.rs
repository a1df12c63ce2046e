//! Host names and addresses as the command line takes them: checked when parsed, so that a
//! mistyped one is refused with what is wrong rather than stored, or probed and not found.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr, SocketAddr, ToSocketAddrs};

/// PostgreSQL's port, for a database address given without one.
pub const POSTGRES_PORT: u16 = 5432;

/// A host (a name or an IP address) and a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPort {
    /// Without brackets, also for an IPv6 address.
    pub host: String,
    pub port: u16,
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// `HOST` or `HOST:PORT` (`[IPv6]:PORT` with a port), for a database: port 5432 when left out.
pub fn database_address(text: &str) -> Result<HostPort, String> {
    let text = text.trim();
    let (host, port) = split_port(text)?;
    match port.unwrap_or(POSTGRES_PORT) {
        0 => Err(format!("{text:?} names port 0: a database listens on a port from 1 to 65535")),
        port => Ok(HostPort { host: host_name(host)?, port }),
    }
}

/// `--listen`: `ADDRESS:PORT`, where the address may be a host name: it listens on the first
/// address the name resolves to, an IPv4 one if there is any (`localhost` is then 127.0.0.1,
/// where clients look by default, rather than ::1).
pub fn listen_address(text: &str) -> Result<SocketAddr, String> {
    let text = text.trim();
    if let Ok(address) = text.parse() {
        return Ok(address);
    }
    let (host, port) = split_port(text)?;
    let port = port.ok_or_else(|| format!("{text:?} has no port: write ADDRESS:PORT, e.g. 127.0.0.1:7400"))?;
    let host = host_name(host)?;
    let resolved: Vec<SocketAddr> =
        (host.as_str(), port).to_socket_addrs().map_err(|e| format!("cannot resolve {host:?}: {e}"))?.collect();
    resolved
        .iter()
        .find(|address| address.is_ipv4())
        .or(resolved.first())
        .copied()
        .ok_or_else(|| format!("{host:?} resolves to no address"))
}

/// A host name of RFC 1123 labels (letters, digits and `-`, besides `_`, which container and
/// service names use and resolvers take), or an IP address. Returned trimmed, and an IPv6
/// address without brackets.
pub fn host_name(text: &str) -> Result<String, String> {
    let text = text.trim();
    let bare = text.strip_prefix('[').and_then(|rest| rest.strip_suffix(']')).unwrap_or(text);
    if bare.parse::<IpAddr>().is_ok() {
        return Ok(bare.to_owned());
    }
    let name = text.strip_suffix('.').unwrap_or(text);
    let label_ok = |label: &str| {
        (1..=63).contains(&label.len())
            && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    if name.is_empty() || name.len() > 253 || !name.split('.').all(label_ok) {
        return Err(format!(
            "{text:?} is not a host name or an IP address: a name is dot-separated labels of letters, digits \
             and '-' (at most 63 characters each), e.g. db.internal"
        ));
    }
    Ok(text.to_owned())
}

/// `HOST:PORT`, `[IPv6]:PORT` or the host alone (an IPv6 address too, bracketed or not).
fn split_port(text: &str) -> Result<(&str, Option<u16>), String> {
    let port =
        |digits: &str| digits.parse::<u16>().map_err(|_| format!("{digits:?} in {text:?} is not a port (0 to 65535)"));
    if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or_else(|| format!("{text:?} opens a [ it does not close"))?;
        return match after {
            "" => Ok((host, None)),
            _ => match after.strip_prefix(':') {
                Some(digits) => Ok((host, Some(port(digits)?))),
                None => Err(format!("{text:?} is not [IPv6]:PORT")),
            },
        };
    }
    if text.parse::<Ipv6Addr>().is_ok() {
        return Ok((text, None));
    }
    match text.rsplit_once(':') {
        Some((host, digits)) => Ok((host, Some(port(digits)?))),
        None => Ok((text, None)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn database(text: &str) -> String {
        database_address(text).map_or_else(|e| format!("error: {e}"), |a| a.to_string())
    }

    #[test]
    fn a_database_address_takes_port_5432_when_it_has_none() {
        assert_eq!(database("localhost"), "localhost:5432");
        assert_eq!(database("db.internal:6543"), "db.internal:6543");
        assert_eq!(database(" 10.0.0.7 "), "10.0.0.7:5432");
        assert_eq!(database("::1"), "[::1]:5432");
        assert_eq!(database("[::1]:5433"), "[::1]:5433");
        assert_eq!(database_address("[::1]").unwrap().host, "::1");
        assert!(database("localhost:").contains("is not a port"));
        assert!(database("localhost:99999").contains("is not a port"));
        assert!(database("localhost:0").contains("names port 0"));
        assert!(database("local host:5432").contains("not a host name"));
        assert!(database("[::1").contains("does not close"));
    }

    #[test]
    fn host_names_are_labels_or_ip_addresses() {
        for good in [
            "db",
            "db-1.internal",
            "orders_db",
            "db.example.com.",
            "10.0.0.7",
            "::1",
            "[fe80::1]",
            "xn--bcher-kva.example",
        ] {
            assert!(host_name(good).is_ok(), "{good}");
        }
        for bad in
            ["", " ", "not a host!", "-db", "db-", "db..internal", "db/x", "db:5432", &"a".repeat(64), "é.example"]
        {
            let error = host_name(bad).unwrap_err();
            assert!(error.contains("is not a host name or an IP address"), "{bad}: {error}");
        }
    }

    #[test]
    fn a_listen_address_may_name_a_host() {
        assert_eq!(listen_address("127.0.0.1:7400").unwrap(), "127.0.0.1:7400".parse().unwrap());
        assert_eq!(listen_address("[::1]:7400").unwrap(), "[::1]:7400".parse().unwrap());
        assert_eq!(listen_address("localhost:7400").unwrap(), "127.0.0.1:7400".parse().unwrap());
        assert_eq!(listen_address("localhost:0").unwrap(), "127.0.0.1:0".parse().unwrap());
        assert!(listen_address("localhost").unwrap_err().contains("has no port"));
        assert!(listen_address("no such host!:7400").unwrap_err().contains("not a host name"));
    }
}
