//! WeChat's push signature: SHA-1 over the lexicographically sorted strings
//! (token, timestamp, nonce[, encrypted body]), as lowercase hex. The webhook checks it
//! in constant time against every accepted token; the simulator signs with it.

use sha1::{Digest, Sha1};
use subtle::ConstantTimeEq;

use crate::secret::Secret;

/// The signature WeChat would send for these parts (order does not matter).
///
/// ```
/// use wechat_qr::protocol::signature::sign;
/// // sha1("1409304348" + "TOKEN" + "nonce"): the parts sorted, then concatenated.
/// assert_eq!(
///     sign(&["TOKEN", "1409304348", "nonce"]),
///     sign(&["nonce", "TOKEN", "1409304348"]),
/// );
/// assert_eq!(sign(&["a"]), "86f7e437faa5a7fce15d1ddcb9eaeaea377667b8");
/// ```
pub fn sign(parts: &[&str]) -> String {
    let mut sorted = parts.to_vec();
    sorted.sort_unstable();
    let mut hasher = Sha1::new();
    for part in sorted {
        hasher.update(part.as_bytes());
    }
    hex::encode(hasher.finalize())
}

/// Whether `signature` matches `sign([token, rest...])` for any accepted token.
///
/// Every token is tried even after a match so the time taken does not tell which matched.
pub fn verify(tokens: &[Secret], rest: &[&str], signature: &str) -> bool {
    let signature = signature.to_ascii_lowercase();
    let mut parts = Vec::with_capacity(rest.len() + 1);
    let mut matched = subtle::Choice::from(0);
    for token in tokens {
        parts.clear();
        parts.push(token.expose());
        parts.extend_from_slice(rest);
        let expected = sign(&parts);
        matched |= expected.as_bytes().ct_eq(signature.as_bytes());
    }
    matched.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_wechat_documented_rule() {
        // sha1("1409304348" + "TOKEN_VALUE" + "xxxxxx"), the three strings sorted.
        let mut hasher = Sha1::new();
        hasher.update(b"1409304348TOKEN_VALUExxxxxx");
        let expected = hex::encode(hasher.finalize());
        assert_eq!(sign(&["TOKEN_VALUE", "1409304348", "xxxxxx"]), expected);
        let tokens = [Secret::new("old-token"), Secret::new("TOKEN_VALUE")];
        assert!(verify(
            &tokens,
            &["1409304348", "xxxxxx"],
            &expected.to_uppercase()
        ));
        assert!(!verify(&tokens[..1], &["1409304348", "xxxxxx"], &expected));
    }
}
