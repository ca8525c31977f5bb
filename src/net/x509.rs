//! The subject common name (CN) of an X.509 certificate, read from its DER
//! encoding: what `use_identity_as_username` takes as the username.
//!
//! A full X.509 parser would be a new dependency for one field. This walks
//! only the path to that field, with every length checked against what is
//! left, no recursion and no allocation but the result:
//!
//! ```text
//! Certificate    SEQUENCE {
//!   tbsCertificate SEQUENCE {
//!     version        [0] EXPLICIT, optional
//!     serialNumber   INTEGER
//!     signature      SEQUENCE
//!     issuer         SEQUENCE
//!     validity       SEQUENCE
//!     subject        SEQUENCE OF        -- Name
//!                      SET OF           -- RelativeDistinguishedName
//!                        SEQUENCE {     -- AttributeTypeAndValue
//!                          type  OID    -- 2.5.4.3 is commonName
//!                          value ANY    -- a string type
//!                        }
//!     ...
//! ```
//!
//! It is called only on certificates that rustls has already verified
//! against `cafile`, so it meets well-formed DER; it is written to be safe
//! on anything all the same. When the subject has several CNs the first is
//! taken, as mosquitto does.
//!
//! Explained in docs/12-tls-and-auth.md.

/// DER tags used on the way.
const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const OID: u8 = 0x06;
const INTEGER: u8 = 0x02;
/// `[0]` constructed: the optional explicit version.
const VERSION: u8 = 0xA0;
const UTF8_STRING: u8 = 0x0C;
const PRINTABLE_STRING: u8 = 0x13;
const IA5_STRING: u8 = 0x16;
const BMP_STRING: u8 = 0x1E;

/// The encoded OID 2.5.4.3 (id-at-commonName).
const COMMON_NAME: &[u8] = &[0x55, 0x04, 0x03];

/// The longest CN returned: the longest string MQTT can carry, so the name
/// can stand where a CONNECT's username would.
const MAX_NAME: usize = 65_535;

/// The subject CN of the DER certificate `cert`, if it has one that is a
/// string sol can use as a username: UTF-8 (from UTF8String, PrintableString,
/// IA5String or BMPString), not empty, no U+0000, at most 65535 bytes.
pub(crate) fn subject_common_name(cert: &[u8]) -> Option<String> {
    let (certificate, _) = expect(cert, SEQUENCE)?;
    let (tbs, _) = expect(certificate, SEQUENCE)?;
    let mut rest = tbs;
    if let Some((VERSION, _, after)) = tlv(rest) {
        rest = after;
    }
    let (_, rest) = expect(rest, INTEGER)?;
    // signature, issuer, validity
    let (_, rest) = expect(rest, SEQUENCE)?;
    let (_, rest) = expect(rest, SEQUENCE)?;
    let (_, rest) = expect(rest, SEQUENCE)?;
    let (subject, _) = expect(rest, SEQUENCE)?;
    first_common_name(subject)
}

/// The first CN among the name's relative distinguished names.
fn first_common_name(name: &[u8]) -> Option<String> {
    let mut rdns = name;
    while !rdns.is_empty() {
        let (rdn, after) = expect(rdns, SET)?;
        rdns = after;
        let mut attributes = rdn;
        while !attributes.is_empty() {
            let (attribute, after) = expect(attributes, SEQUENCE)?;
            attributes = after;
            let (oid, value) = expect(attribute, OID)?;
            if oid == COMMON_NAME {
                let (tag, content, _) = tlv(value)?;
                return decode_string(tag, content);
            }
        }
    }
    None
}

/// A directory string as UTF-8, or `None` for a type or content that is not
/// usable as a username.
fn decode_string(tag: u8, content: &[u8]) -> Option<String> {
    let text = match tag {
        UTF8_STRING => String::from_utf8(content.to_vec()).ok()?,
        PRINTABLE_STRING | IA5_STRING if content.is_ascii() => {
            String::from_utf8(content.to_vec()).ok()?
        }
        BMP_STRING if content.len() % 2 == 0 => {
            let units = content
                .chunks_exact(2)
                .filter_map(|pair| <[u8; 2]>::try_from(pair).ok())
                .map(u16::from_be_bytes);
            char::decode_utf16(units)
                .collect::<Result<String, _>>()
                .ok()?
        }
        _ => return None,
    };
    let usable = !text.is_empty() && text.len() <= MAX_NAME && !text.contains('\0');
    usable.then_some(text)
}

/// The content of the element at the start of `input` if its tag is `tag`,
/// and what follows it.
fn expect(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    match tlv(input)? {
        (found, content, rest) if found == tag => Some((content, rest)),
        _ => None,
    }
}

/// Splits the element at the start of `input` into its tag, its content and
/// what follows it. Only single-byte tags and definite lengths of up to four
/// bytes are accepted (DER allows nothing else a certificate would need).
fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    // The high-tag-number form: no field on our path uses it.
    if tag & 0x1F == 0x1F {
        return None;
    }
    let (&first, mut rest) = rest.split_first()?;
    let length = if first < 0x80 {
        usize::from(first)
    } else {
        let count = usize::from(first & 0x7F);
        // 0x80 is BER's indefinite length, which DER forbids.
        if count == 0 || count > 4 {
            return None;
        }
        let (bytes, after) = rest.split_at_checked(count)?;
        rest = after;
        bytes
            .iter()
            .fold(0usize, |length, &byte| (length << 8) | usize::from(byte))
    };
    let (content, after) = rest.split_at_checked(length)?;
    Some((tag, content, after))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A DER element with the right length bytes.
    fn der(tag: u8, content: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        let len = content.len();
        if len < 0x80 {
            out.push(len as u8);
        } else if len < 0x100 {
            out.extend([0x81, len as u8]);
        } else {
            out.extend([0x82, (len >> 8) as u8, len as u8]);
        }
        out.extend_from_slice(content);
        out
    }

    fn attribute(oid: &[u8], tag: u8, value: &[u8]) -> Vec<u8> {
        let mut body = der(OID, oid);
        body.extend(der(tag, value));
        der(SET, &der(SEQUENCE, &body))
    }

    /// A certificate-shaped structure around `subject` (a Name's content).
    fn cert(subject: &[u8], with_version: bool) -> Vec<u8> {
        let mut tbs = Vec::new();
        if with_version {
            tbs.extend(der(VERSION, &der(INTEGER, &[2])));
        }
        tbs.extend(der(INTEGER, &[0x01, 0x02]));
        tbs.extend(der(SEQUENCE, &der(OID, &[0x2A, 0x86, 0x48])));
        tbs.extend(der(
            SEQUENCE,
            &attribute(COMMON_NAME, UTF8_STRING, b"issuer CA"),
        ));
        tbs.extend(der(SEQUENCE, &[]));
        tbs.extend(der(SEQUENCE, subject));
        tbs.extend(der(SEQUENCE, &[])); // subjectPublicKeyInfo, unread
        let mut body = der(SEQUENCE, &tbs);
        body.extend(der(SEQUENCE, &[]));
        body.extend(der(0x03, &[0]));
        der(SEQUENCE, &body)
    }

    const ORGANIZATION: &[u8] = &[0x55, 0x04, 0x0A];

    #[test]
    fn finds_the_cn_after_other_attributes_and_not_the_issuers() {
        let mut subject = attribute(ORGANIZATION, UTF8_STRING, b"Acme");
        subject.extend(attribute(COMMON_NAME, UTF8_STRING, b"sensor-7"));
        for with_version in [true, false] {
            assert_eq!(
                subject_common_name(&cert(&subject, with_version)).as_deref(),
                Some("sensor-7")
            );
        }
    }

    #[test]
    fn the_first_of_several_cns_wins() {
        let mut subject = attribute(COMMON_NAME, PRINTABLE_STRING, b"first");
        subject.extend(attribute(COMMON_NAME, UTF8_STRING, b"second"));
        assert_eq!(
            subject_common_name(&cert(&subject, true)).as_deref(),
            Some("first")
        );
    }

    #[test]
    fn string_types_are_decoded_or_refused() {
        let cn = |tag, value: &[u8]| {
            subject_common_name(&cert(&attribute(COMMON_NAME, tag, value), true))
        };
        assert_eq!(cn(UTF8_STRING, "zoë".as_bytes()).as_deref(), Some("zoë"));
        assert_eq!(cn(IA5_STRING, b"a@b").as_deref(), Some("a@b"));
        assert_eq!(
            cn(BMP_STRING, &[0, b'h', 0x00, 0xEB]).as_deref(),
            Some("hë")
        );
        // Invalid UTF-8, a lone surrogate, an odd BMP length, non-ASCII in a
        // PrintableString, an unknown type, NUL and emptiness: no name.
        assert_eq!(cn(UTF8_STRING, b"\xff\xfe"), None);
        assert_eq!(cn(BMP_STRING, &[0xD8, 0x00]), None);
        assert_eq!(cn(BMP_STRING, &[0, b'h', 0]), None);
        assert_eq!(cn(PRINTABLE_STRING, "é".as_bytes()), None);
        assert_eq!(cn(0x14, b"teletex"), None);
        assert_eq!(cn(UTF8_STRING, b"a\0b"), None);
        assert_eq!(cn(UTF8_STRING, b""), None);
        // Long names need the long length form.
        let long = "x".repeat(300);
        assert_eq!(cn(UTF8_STRING, long.as_bytes()), Some(long));
    }

    #[test]
    fn no_cn_is_none() {
        let subject = attribute(ORGANIZATION, UTF8_STRING, b"Acme");
        assert_eq!(subject_common_name(&cert(&subject, true)), None);
        assert_eq!(subject_common_name(&cert(&[], true)), None);
    }

    #[test]
    fn every_truncation_and_corruption_is_safe() {
        let subject = attribute(COMMON_NAME, UTF8_STRING, b"name");
        let good = cert(&subject, true);
        assert_eq!(subject_common_name(&good).as_deref(), Some("name"));
        for end in 0..good.len() {
            assert_eq!(subject_common_name(&good[..end]), None, "cut at {end}");
        }
        // Every single-byte change either still finds a name or finds none;
        // it never panics or loops.
        for index in 0..good.len() {
            for value in [0x00, 0x1F, 0x7F, 0x80, 0x84, 0x85, 0xFF] {
                let mut bad = good.clone();
                bad[index] = value;
                let _ = subject_common_name(&bad);
            }
        }
        assert_eq!(subject_common_name(&[]), None);
        assert_eq!(subject_common_name(&[0x30, 0x80, 0x00, 0x00]), None);
        assert_eq!(
            subject_common_name(&[0x30, 0x84, 0xFF, 0xFF, 0xFF, 0xFF]),
            None
        );
    }

    #[test]
    fn reads_certificates_made_by_a_real_tool() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "Acme");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "device-42");
        let cert = params.self_signed(&key).unwrap();
        assert_eq!(
            subject_common_name(cert.der()).as_deref(),
            Some("device-42")
        );
        let mut nameless = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        nameless.distinguished_name = rcgen::DistinguishedName::new();
        let cert = nameless.self_signed(&key).unwrap();
        assert_eq!(subject_common_name(cert.der()), None);
    }

    #[test]
    fn lengths_past_the_input_are_refused() {
        assert_eq!(tlv(&[0x30, 0x05, 1, 2]), None);
        assert_eq!(tlv(&[0x30, 0x82, 0x01]), None);
        assert_eq!(tlv(&[0x1F, 0x01, 0x00]), None);
        assert_eq!(tlv(&[0x30, 0x00]), Some((0x30, &[][..], &[][..])));
        assert_eq!(
            tlv(&[0x04, 0x81, 0x01, 0xAA, 0xBB]),
            Some((0x04, &[0xAA][..], &[0xBB][..]))
        );
    }
}
