//! WeChat's wire primitives, below everything that speaks to or as WeChat: the SHA-1
//! [`signature`] over the token, timestamp and nonce; the AES envelope of safe mode
//! ([`crypto`]); and a scan push as WeChat builds, signs, encrypts and delivers it
//! ([`push`]). The webhook verifies and decrypts with them, the simulator and the bench
//! harness sign and encrypt with them, and the configuration parses keys with them; they
//! import nothing of the service but [`secret`](crate::secret).

pub mod crypto;
pub mod push;
pub mod signature;

/// How the webhook accepts pushes (WeChat's "message encryption mode").
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EncryptMode {
    /// Only plaintext pushes, checked by `signature`.
    Plaintext,
    /// Plaintext and encrypted pushes.
    Compatible,
    /// Only encrypted pushes, checked by `msg_signature`.
    Safe,
}
