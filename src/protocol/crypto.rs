//! WeChat's safe-mode message encryption (`../shared/wechat-qrcode-api.md` §5): AES-256-CBC
//! with the key from the EncodingAESKey, IV = the key's first 16 bytes, PKCS#7 padding to a
//! 32-byte block, and a plaintext framed as 16 random bytes, a 4-byte big-endian length,
//! the XML, then the AppID. The webhook decrypts with it; the simulator encrypts.

use std::{fmt, str::FromStr};

use aes::cipher::{BlockDecryptMut, BlockEncryptMut, KeyIvInit, block_padding::NoPadding};
use base64::{
    Engine, alphabet,
    engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig},
};

type Decryptor = cbc::Decryptor<aes::Aes256>;
type Encryptor = cbc::Encryptor<aes::Aes256>;

/// WeChat pads to 32 bytes although AES blocks are 16.
const PAD_BLOCK: usize = 32;

/// Lenient like WeChat's own SDKs: EncodingAESKeys end in a character whose trailing bits
/// are not always zero, and padding may be present or not.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_allow_trailing_bits(true)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Why a push could not be decrypted or a key could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// The EncodingAESKey is not 43 base64 characters decoding to 32 bytes.
    #[error("EncodingAESKey must be 43 base64 characters")]
    BadKey,
    /// The `Encrypt` field is not valid base64.
    #[error("encrypted body is not valid base64")]
    Base64,
    /// The ciphertext is empty or not a whole number of AES blocks.
    #[error("ciphertext length is not a multiple of 16")]
    BlockLength,
    /// The PKCS#7 padding is malformed (wrong key, or tampered data).
    #[error("bad padding")]
    Padding,
    /// The framed length points outside the plaintext.
    #[error("bad message length")]
    Length,
    /// The AppID at the end of the plaintext is not ours.
    #[error("AppID does not match")]
    AppId,
}

/// A decoded EncodingAESKey (32 bytes). Its `Debug` never shows the key.
#[derive(Clone, PartialEq, Eq)]
pub struct AesKey([u8; 32]);

impl fmt::Debug for AesKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AesKey(***)")
    }
}

impl FromStr for AesKey {
    type Err = CryptoError;

    fn from_str(encoding_aes_key: &str) -> Result<Self, CryptoError> {
        if encoding_aes_key.len() != 43 {
            return Err(CryptoError::BadKey);
        }
        let bytes = BASE64
            .decode(format!("{encoding_aes_key}="))
            .map_err(|_| CryptoError::BadKey)?;
        Ok(Self(bytes.try_into().map_err(|_| CryptoError::BadKey)?))
    }
}

impl AesKey {
    fn iv(&self) -> &[u8] {
        &self.0[..16]
    }

    /// Decrypts a push's `Encrypt` field and returns the inner XML, checking its AppID.
    pub fn decrypt(&self, encrypted_base64: &str, app_id: &str) -> Result<Vec<u8>, CryptoError> {
        let mut buf = BASE64
            .decode(encrypted_base64.trim())
            .map_err(|_| CryptoError::Base64)?;
        if buf.is_empty() || buf.len() % 16 != 0 {
            return Err(CryptoError::BlockLength);
        }
        let plain = Decryptor::new(self.0.as_slice().into(), self.iv().into())
            .decrypt_padded_mut::<NoPadding>(&mut buf)
            .map_err(|_| CryptoError::BlockLength)?;
        let pad = usize::from(*plain.last().ok_or(CryptoError::Padding)?);
        if pad == 0 || pad > PAD_BLOCK || pad > plain.len() {
            return Err(CryptoError::Padding);
        }
        let (body, padding) = plain.split_at(plain.len() - pad);
        if padding.iter().any(|&b| usize::from(b) != pad) {
            return Err(CryptoError::Padding);
        }
        if body.len() < 20 {
            return Err(CryptoError::Length);
        }
        let len = u32::from_be_bytes(body[16..20].try_into().expect("4 bytes")) as usize;
        let rest = &body[20..];
        if len > rest.len() {
            return Err(CryptoError::Length);
        }
        let (xml, their_app_id) = rest.split_at(len);
        if their_app_id != app_id.as_bytes() {
            return Err(CryptoError::AppId);
        }
        Ok(xml.to_vec())
    }

    /// Encrypts `xml` the way WeChat does, returning the base64 `Encrypt` value.
    pub fn encrypt(&self, xml: &[u8], app_id: &str) -> String {
        let mut plain = Vec::with_capacity(20 + xml.len() + app_id.len() + PAD_BLOCK);
        plain.extend_from_slice(&rand::random::<[u8; 16]>());
        let len = u32::try_from(xml.len()).expect("a push is far smaller than 4 GiB");
        plain.extend_from_slice(&len.to_be_bytes());
        plain.extend_from_slice(xml);
        plain.extend_from_slice(app_id.as_bytes());
        let pad = PAD_BLOCK - plain.len() % PAD_BLOCK;
        plain.resize(plain.len() + pad, pad as u8);
        let len = plain.len();
        let cipher = Encryptor::new(self.0.as_slice().into(), self.iv().into())
            .encrypt_padded_mut::<NoPadding>(&mut plain, len)
            .expect("buffer is a whole number of blocks");
        BASE64.encode(cipher)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";

    #[test]
    fn round_trip_and_app_id_check() {
        let key: AesKey = KEY.parse().unwrap();
        let sealed = key.encrypt(b"<xml>hi</xml>", "wxapp");
        assert_eq!(key.decrypt(&sealed, "wxapp").unwrap(), b"<xml>hi</xml>");
        assert_eq!(key.decrypt(&sealed, "wxother"), Err(CryptoError::AppId));
    }

    #[test]
    fn rejects_malformed_keys_and_ciphertexts() {
        assert_eq!("short".parse::<AesKey>(), Err(CryptoError::BadKey));
        let key: AesKey = KEY.parse().unwrap();
        assert_eq!(key.decrypt("!!!", "wx"), Err(CryptoError::Base64));
        assert_eq!(key.decrypt("AAAA", "wx"), Err(CryptoError::BlockLength));
    }
}
