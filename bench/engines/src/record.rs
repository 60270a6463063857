//! The synthetic events the benchmark writes: for a sequence number, a JSON-ish record of
//! 277 bytes shaped like the service's `Event` (openid of 28 characters, scene, ticket of
//! 60, account, timestamps) and its 82-byte de-duplication key, laid out as `DedupKey`
//! builds it (`openid \0 create_time \0 event \0 event_key`) or reordered time first.
//! Random-looking fields come from a hash of the sequence number, so the engines see
//! realistic, poorly compressible identifiers, and every run writes the same bytes.

/// One event ready to append: the stored record and the key that de-duplicates it.
#[derive(Debug, Clone)]
pub struct Event {
    /// The stored value.
    pub record: Vec<u8>,
    /// The de-duplication key, derivable from `record` by [`dedup_key_of`].
    pub key: Vec<u8>,
}

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// `SplitMix64`: a cheap, well-mixed hash of the sequence number.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// `len` URL-safe base64 characters derived from `seed`.
fn token(seed: u64, len: usize) -> String {
    let mut out = String::with_capacity(len);
    let mut state = seed;
    while out.len() < len {
        state = mix(state);
        let mut bits = state;
        for _ in 0..10 {
            if out.len() == len {
                break;
            }
            out.push(char::from(ALPHABET[(bits & 63) as usize]));
            bits >>= 6;
        }
    }
    out
}

impl Event {
    /// The event pushed as number `n` (the store assigns its own sequence numbers).
    #[must_use]
    pub fn synthetic(n: u64) -> Self {
        let openid = format!("o{}", token(n, 27));
        let ticket = format!("gQ{}", token(n ^ 0x5EED, 58));
        let scene = format!("order-{:010}-campaign-spring-sale", mix(n) % 10_000_000_000);
        let create_time = 1_700_000_000 + n / 8;
        let received_ms = create_time * 1_000 + mix(n) % 1_000;
        let record = format!(
            concat!(
                "{{\"kind\":\"SCAN\",\"openid\":\"{}\",\"scene\":\"{}\",\"ticket\":\"{}\",",
                "\"account\":\"gh_3f2a9c1d7e5b\",\"create_time\":{},\"received_ms\":{},",
                "\"new_follower\":false}}"
            ),
            openid, scene, ticket, create_time, received_ms
        );
        let key = format!("{openid}\0{create_time}\0SCAN\0{scene}");
        Self {
            record: record.into_bytes(),
            key: key.into_bytes(),
        }
    }
}

/// The text of string or number field `name` in a record written by [`Event::synthetic`].
fn field<'a>(record: &'a str, name: &str) -> Option<&'a str> {
    let tag = format!("\"{name}\":");
    let start = record.find(&tag)? + tag.len();
    let rest = &record[start..];
    if let Some(quoted) = rest.strip_prefix('"') {
        quoted.find('"').map(|end| &quoted[..end])
    } else {
        rest.find([',', '}']).map(|end| &rest[..end])
    }
}

/// The de-duplication key of a stored record, as retention needs it to drop the key
/// together with the event (the real store would decode its record the same way).
#[must_use]
pub fn dedup_key_of(record: &[u8]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(record).ok()?;
    let openid = field(text, "openid")?;
    let create_time = field(text, "create_time")?;
    let kind = field(text, "kind")?;
    let scene = field(text, "scene")?;
    Some(format!("{openid}\0{create_time}\0{kind}\0{scene}").into_bytes())
}

/// The same key with `create_time` (ten digits, so byte order is time order) moved to
/// the front: `create_time \0 openid \0 event \0 event_key`. Equal keys stay equal and
/// distinct keys distinct, but a store's inserts land at the end of the key space and
/// retention's deletes at its start, instead of everywhere at random as the openid puts
/// them.
#[must_use]
pub fn time_first(key: &[u8]) -> Vec<u8> {
    let mut parts = key.splitn(3, |&b| b == 0);
    let (Some(openid), Some(create_time), Some(rest)) = (parts.next(), parts.next(), parts.next())
    else {
        return key.to_vec();
    };
    [create_time, openid, rest].join(&0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_match_the_service() {
        let event = Event::synthetic(12_345);
        assert!(
            (240..=280).contains(&event.record.len()),
            "{}",
            event.record.len()
        );
        assert!((75..=90).contains(&event.key.len()), "{}", event.key.len());
    }

    #[test]
    fn the_key_is_recovered_from_the_record() {
        for n in [0, 1, 99_999, u64::MAX / 3] {
            let event = Event::synthetic(n);
            assert_eq!(dedup_key_of(&event.record).as_deref(), Some(&event.key[..]));
        }
    }

    #[test]
    fn time_first_moves_the_time_to_the_front() {
        let event = Event::synthetic(80);
        let key = time_first(&event.key);
        assert_eq!(key.len(), event.key.len());
        assert!(key.starts_with(b"1700000010\0o"));
        assert!(time_first(&Event::synthetic(7).key) < time_first(&Event::synthetic(8).key));
    }

    #[test]
    fn keys_differ() {
        assert_ne!(Event::synthetic(1).key, Event::synthetic(2).key);
    }
}
