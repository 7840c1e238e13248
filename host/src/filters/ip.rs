//! [`Cidr`]: IP networks for `IsIPAddressInCIDR`, and Python's `is_private`/`is_global`
//! tables for `IsIPAddressPrivate`/`IsIPAddressPublic`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// An IP network.
#[derive(Debug, Clone, Copy)]
pub(super) enum Cidr {
    V4 { net: u32, mask: u32 },
    V6 { net: u128, mask: u128 },
}

impl Cidr {
    const fn v4(a: [u8; 4], prefix: u32) -> Cidr {
        let mask = if prefix == 0 {
            0
        } else {
            u32::MAX << (32 - prefix)
        };
        Cidr::V4 {
            net: u32::from_be_bytes(a) & mask,
            mask,
        }
    }

    const fn v6(s: [u16; 8], prefix: u32) -> Cidr {
        let mask = if prefix == 0 {
            0
        } else {
            u128::MAX << (128 - prefix)
        };
        let addr = Ipv6Addr::new(s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]);
        Cidr::V6 {
            net: addr.to_bits() & mask,
            mask,
        }
    }

    pub(super) fn contains(self, ip: IpAddr) -> bool {
        match (self, ip) {
            (Cidr::V4 { net, mask }, IpAddr::V4(a)) => a.to_bits() & mask == net,
            (Cidr::V6 { net, mask }, IpAddr::V6(a)) => a.to_bits() & mask == net,
            _ => false,
        }
    }

    /// `addr/prefix` or a bare address (one host). Host bits must be zero, as in Python's
    /// `ipaddress.ip_network`.
    pub(super) fn parse(s: &str) -> Result<Cidr, String> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("invalid CIDR `{s}`: `{addr}` is not an IP address"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u32>()
                .ok()
                .filter(|&n| n <= max && p.bytes().all(|b| b.is_ascii_digit()))
                .ok_or_else(|| format!("invalid CIDR `{s}`: prefix must be 0 to {max}"))?,
        };
        let cidr = match addr {
            IpAddr::V4(a) => Cidr::v4(a.octets(), prefix),
            IpAddr::V6(a) => Cidr::v6(a.segments(), prefix),
        };
        let net = match cidr {
            Cidr::V4 { net, .. } => IpAddr::V4(Ipv4Addr::from_bits(net)),
            Cidr::V6 { net, .. } => IpAddr::V6(Ipv6Addr::from_bits(net)),
        };
        if net != addr {
            return Err(format!(
                "invalid CIDR `{s}`: host bits are set; the network is `{net}/{prefix}`"
            ));
        }
        Ok(cidr)
    }
}

// Python 3.13 `ipaddress`: `_IPv4Constants` / `_IPv6Constants` (`_private_networks`,
// `_private_networks_exceptions`, `_public_network`), from the IANA special-purpose registries.

const V4_PRIVATE: [Cidr; 14] = [
    Cidr::v4([0, 0, 0, 0], 8),
    Cidr::v4([10, 0, 0, 0], 8),
    Cidr::v4([127, 0, 0, 0], 8),
    Cidr::v4([169, 254, 0, 0], 16),
    Cidr::v4([172, 16, 0, 0], 12),
    Cidr::v4([192, 0, 0, 0], 24),
    Cidr::v4([192, 0, 0, 170], 31),
    Cidr::v4([192, 0, 2, 0], 24),
    Cidr::v4([192, 168, 0, 0], 16),
    Cidr::v4([198, 18, 0, 0], 15),
    Cidr::v4([198, 51, 100, 0], 24),
    Cidr::v4([203, 0, 113, 0], 24),
    Cidr::v4([240, 0, 0, 0], 4),
    Cidr::v4([255, 255, 255, 255], 32),
];
const V4_PRIVATE_EXCEPTIONS: [Cidr; 2] =
    [Cidr::v4([192, 0, 0, 9], 32), Cidr::v4([192, 0, 0, 10], 32)];
/// Shared address space (carrier-grade NAT): neither private nor global.
const V4_SHARED: Cidr = Cidr::v4([100, 64, 0, 0], 10);
const V6_PRIVATE: [Cidr; 11] = [
    Cidr::v6([0, 0, 0, 0, 0, 0, 0, 1], 128),
    Cidr::v6([0, 0, 0, 0, 0, 0, 0, 0], 128),
    Cidr::v6([0, 0, 0, 0, 0, 0xffff, 0, 0], 96),
    Cidr::v6([0x64, 0xff9b, 1, 0, 0, 0, 0, 0], 48),
    Cidr::v6([0x100, 0, 0, 0, 0, 0, 0, 0], 64),
    Cidr::v6([0x2001, 0, 0, 0, 0, 0, 0, 0], 23),
    Cidr::v6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0], 32),
    Cidr::v6([0x2002, 0, 0, 0, 0, 0, 0, 0], 16),
    Cidr::v6([0x3fff, 0, 0, 0, 0, 0, 0, 0], 20),
    Cidr::v6([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7),
    Cidr::v6([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10),
];
const V6_PRIVATE_EXCEPTIONS: [Cidr; 6] = [
    Cidr::v6([0x2001, 1, 0, 0, 0, 0, 0, 1], 128),
    Cidr::v6([0x2001, 1, 0, 0, 0, 0, 0, 2], 128),
    Cidr::v6([0x2001, 3, 0, 0, 0, 0, 0, 0], 32),
    Cidr::v6([0x2001, 4, 0x112, 0, 0, 0, 0, 0], 48),
    Cidr::v6([0x2001, 0x20, 0, 0, 0, 0, 0, 0], 28),
    Cidr::v6([0x2001, 0x30, 0, 0, 0, 0, 0, 0], 28),
];

fn in_table(ip: IpAddr, included: &[Cidr], excepted: &[Cidr]) -> bool {
    included.iter().any(|c| c.contains(ip)) && !excepted.iter().any(|c| c.contains(ip))
}

/// Python's `is_private`.
pub(super) fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(_) => in_table(ip, &V4_PRIVATE, &V4_PRIVATE_EXCEPTIONS),
        IpAddr::V6(a) => match a.to_ipv4_mapped() {
            Some(v4) => is_private(IpAddr::V4(v4)),
            None => in_table(ip, &V6_PRIVATE, &V6_PRIVATE_EXCEPTIONS),
        },
    }
}

/// Python's `is_global`.
pub(super) fn is_global(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(_) => !V4_SHARED.contains(ip) && !is_private(ip),
        IpAddr::V6(a) => match a.to_ipv4_mapped() {
            Some(v4) => is_global(IpAddr::V4(v4)),
            None => !is_private(ip),
        },
    }
}

#[cfg(test)]
mod tests {
    use crate::filters::test_util::{check, check_pair, single};
    use serde_json::{Value, json};

    #[test]
    fn ip_address_types() {
        let cases = [
            ("1.2.3.4", true, true, false),
            ("2001:db8::1", true, false, true),
            ("::ffff:10.0.0.1", true, false, true),
            ("1.2.3", false, false, false),
            ("010.0.0.1", false, false, false),
            ("1.2.3.4/32", false, false, false),
            ("example.com", false, false, false),
        ];
        for (s, ip, v4, v6) in cases {
            let e = json!({ "f": s });
            assert_eq!(single("IsIPAddress", "").matches(&e), ip, "{s}");
            assert_eq!(single("IsIPv4Address", "").matches(&e), v4, "{s}");
            assert_eq!(single("IsIPv6Address", "").matches(&e), v6, "{s}");
        }
        for c in ["IsIPAddress", "IsIPv4Address", "IsIPv6Address"] {
            assert!(!single(c, "").matches(&json!({"f": null})));
            assert!(!single(c, "").matches(&json!({"f": 16909060})));
            assert!(single(c, "").matches(&json!({})), "missing passes");
        }
    }

    #[test]
    fn ip_address_public_and_private_follow_python() {
        // (address, is_private, is_global) as Python 3.13's ipaddress reports them.
        let cases = [
            ("8.8.8.8", false, true),
            ("10.1.2.3", true, false),
            ("172.16.0.1", true, false),
            ("172.32.0.1", false, true),
            ("192.168.1.1", true, false),
            ("127.0.0.1", true, false),
            ("169.254.169.254", true, false),
            ("0.1.2.3", true, false),
            ("100.64.0.1", false, false),
            ("192.0.0.9", false, true),
            ("192.0.0.8", true, false),
            ("192.0.0.171", true, false),
            ("198.19.255.255", true, false),
            ("203.0.113.7", true, false),
            ("255.255.255.255", true, false),
            ("224.0.0.1", false, true),
            ("2606:4700::1111", false, true),
            ("::1", true, false),
            ("::", true, false),
            ("fd00::1", true, false),
            ("fe80::1", true, false),
            ("2001:db8::1", true, false),
            ("2001:3::1", false, true),
            ("2002::1", true, false),
            ("::ffff:8.8.8.8", false, true),
            ("::ffff:192.168.0.1", true, false),
        ];
        for (s, private, public) in cases {
            let e = json!({ "f": s });
            assert_eq!(single("IsIPAddressPrivate", "").matches(&e), private, "{s}");
            assert_eq!(single("IsIPAddressPublic", "").matches(&e), public, "{s}");
        }
        for c in ["IsIPAddressPrivate", "IsIPAddressPublic"] {
            assert!(!single(c, "").matches(&json!({"f": "not an ip"})));
            assert!(!single(c, "").matches(&json!({"f": null})));
        }
    }

    #[test]
    fn ip_address_in_cidr() {
        check_pair(
            "IsIPAddressInCIDR",
            "IsIPAddressNotInCIDR",
            "10.0.0.0/8",
            &[
                (json!("10.255.0.1"), true),
                (json!("11.0.0.1"), false),
                (json!("::ffff:10.0.0.1"), false),
                (json!("nope"), false),
                (json!(10), false),
                (Value::Null, false),
            ],
        );
        check_pair(
            "IsIPAddressInCIDR",
            "IsIPAddressNotInCIDR",
            "Values: [\"192.168.0.0/16\", \"2001:db8::/32\", 1.2.3.4, 0.0.0.0/0]",
            &[
                (json!("192.168.7.7"), true),
                (json!("2001:db8:1::5"), true),
                (json!("1.2.3.4"), true),
                (json!("8.8.8.8"), true),
                (json!("2001:db9::1"), false),
            ],
        );
        check(
            "IsIPAddressInCIDR",
            "1.2.3.4",
            &[(json!("1.2.3.4"), true), (json!("1.2.3.5"), false)],
        );
    }
}
