//! Feeds arbitrary bytes to the webhook's decoding path after the signature check: the
//! XML push decoder, the safe-mode envelope reader and AES decryption. Nothing may panic,
//! hang or allocate without bound, whatever a stranger manages to get signed.
#![no_main]

use std::{sync::LazyLock, time::SystemTime};

use libfuzzer_sys::fuzz_target;
use wechat_qr::{protocol::crypto::AesKey, webhook::push};

static KEY: LazyLock<AesKey> = LazyLock::new(|| {
    "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
        .parse()
        .expect("a valid EncodingAESKey")
});

fuzz_target!(|data: &[u8]| {
    let _ = push::decode_push(data, SystemTime::UNIX_EPOCH);
    if let Ok(envelope) = push::decode_envelope(data) {
        if let Some(encrypt) = envelope.encrypt {
            if let Ok(xml) = KEY.decrypt(&encrypt, "wx0000000000devsim") {
                let _ = push::decode_push(&xml, SystemTime::UNIX_EPOCH);
            }
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = KEY.decrypt(text, "wx0000000000devsim");
    }
});
