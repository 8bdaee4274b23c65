//! The one thing the shared port's demultiplexer needs from a STUN datagram before any session
//! sees it: the local ICE username fragment a binding request names (RFC 8445 section 7.2.2: the
//! USERNAME is `<receiver's ufrag>:<sender's ufrag>`).
//!
//! Hand-written on purpose: it runs for every STUN datagram from an unknown address, floods
//! included, so it must allocate nothing, and str0m's `StunMessage::parse` builds a `String` for
//! each refusal. It checks only the framing; the session's own ICE agent checks the message
//! integrity once the datagram reaches it.

/// RFC 5389's magic cookie.
const MAGIC: [u8; 4] = [0x21, 0x12, 0xa4, 0x42];
/// Binding method, request class.
const BINDING_REQUEST: u16 = 0x0001;
const USERNAME: u16 = 0x0006;
const HEADER: usize = 20;

/// The local ufrag a STUN binding request names, or `None` for anything else.
pub fn binding_request_ufrag(data: &[u8]) -> Option<&str> {
    let header = data.get(..HEADER)?;
    if u16::from_be_bytes([header[0], header[1]]) != BINDING_REQUEST || header[4..8] != MAGIC {
        return None;
    }
    let len = usize::from(u16::from_be_bytes([header[2], header[3]]));
    let mut attrs = data.get(HEADER..HEADER.checked_add(len)?)?;
    while attrs.len() >= 4 {
        let typ = u16::from_be_bytes([attrs[0], attrs[1]]);
        let alen = usize::from(u16::from_be_bytes([attrs[2], attrs[3]]));
        let value = attrs.get(4..4 + alen)?;
        if typ == USERNAME {
            let name = std::str::from_utf8(value).ok()?;
            let (local, _) = name.split_once(':')?;
            return (!local.is_empty()).then_some(local);
        }
        // Attributes are padded to four bytes.
        attrs = attrs.get((4 + alen).next_multiple_of(4)..)?;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(attrs: &[(u16, &[u8])]) -> Vec<u8> {
        let mut body = Vec::new();
        for (typ, value) in attrs {
            body.extend_from_slice(&typ.to_be_bytes());
            body.extend_from_slice(&(value.len() as u16).to_be_bytes());
            body.extend_from_slice(value);
            body.resize(body.len().next_multiple_of(4), 0);
        }
        let mut d = vec![0x00, 0x01];
        d.extend_from_slice(&(body.len() as u16).to_be_bytes());
        d.extend_from_slice(&MAGIC);
        d.extend_from_slice(&[7; 12]);
        d.extend_from_slice(&body);
        d
    }

    #[test]
    fn a_binding_request_names_its_receivers_ufrag() {
        let d = request(&[(0x0024, &[0, 0, 0, 1]), (USERNAME, b"abcd:wxyz"), (0x0008, &[0; 20])]);
        assert_eq!(binding_request_ufrag(&d), Some("abcd"));
        // Padding after an odd-length attribute.
        let d = request(&[(0x8022, b"odd"), (USERNAME, b"q1w2e3:r")]);
        assert_eq!(binding_request_ufrag(&d), Some("q1w2e3"));
    }

    #[test]
    fn anything_else_names_no_one() {
        let good = request(&[(USERNAME, b"abcd:wxyz")]);
        let mut response = good.clone();
        response[1] = 0x01;
        response[0] = 0x01; // a success response, not a request
        let mut bad_magic = good.clone();
        bad_magic[5] ^= 1;
        let no_colon = request(&[(USERNAME, b"abcdwxyz")]);
        let empty_local = request(&[(USERNAME, b":wxyz")]);
        let no_username = request(&[(0x0024, &[0, 0, 0, 1])]);
        let not_utf8 = request(&[(USERNAME, &[0xff, b':', b'a'])]);
        for d in [response, bad_magic, no_colon, empty_local, no_username, not_utf8] {
            assert_eq!(binding_request_ufrag(&d), None, "{d:?}");
        }
        for cut in 0..good.len() {
            assert_eq!(binding_request_ufrag(&good[..cut]), None, "truncated to {cut}");
        }
        // A length field past the datagram, and an attribute length past the body.
        let mut long = good.clone();
        long[3] = 0xff;
        assert_eq!(binding_request_ufrag(&long), None);
        let mut attr_long = good;
        attr_long[HEADER + 3] = 0xff;
        assert_eq!(binding_request_ufrag(&attr_long), None);
        assert_eq!(binding_request_ufrag(&[]), None);
    }

    #[test]
    fn mangled_requests_never_panic_and_a_ufrag_is_always_clean() {
        let mut rng = switchboard_driver::testing::Rng(0x5eed);
        let base = request(&[(0x0024, &[0, 0, 0, 1]), (USERNAME, b"abcd:wxyz"), (0x0008, &[0; 20])]);
        for _ in 0..20_000 {
            let mut d = base.clone();
            for _ in 0..=rng.below(4) {
                let i = rng.index(d.len());
                d[i] ^= 1 << rng.below(8);
            }
            d.truncate(rng.index(d.len() + 1).max(rng.index(d.len() + 1)));
            if let Some(u) = binding_request_ufrag(&d) {
                assert!(!u.is_empty() && !u.contains(':'), "{u:?}");
            }
        }
    }
}
