//! IP addresses as 16 comparable bytes, so CIDR filters become range scans.

use std::net::IpAddr;

/// IPv4 addresses map into `::ffff:0:0/96`, so both families share one order.
pub fn to_bytes(ip: IpAddr) -> Vec<u8> {
    let v6 = match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    };
    v6.octets().to_vec()
}

/// Parses a stored or reported address; `None` for empty or malformed text.
pub fn parse_bytes(text: &str) -> Option<Vec<u8>> {
    text.parse::<IpAddr>().ok().map(to_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v4_sorts_inside_mapped_range() {
        let a = parse_bytes("10.0.0.1").unwrap();
        let b = parse_bytes("10.0.0.255").unwrap();
        let c = parse_bytes("11.0.0.0").unwrap();
        assert!(a < b && b < c);
        assert_eq!(a.len(), 16);
        assert_eq!(parse_bytes("not an ip"), None);
    }
}
