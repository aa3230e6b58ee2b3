//! Fuzz target: `phonetrust_proto::fuzzing::enc_config` with a fixed phone key.
#![no_main]
use std::sync::OnceLock;

use phonetrust_proto::cert::CertAndKey;

static PHONE: OnceLock<CertAndKey> = OnceLock::new();

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let phone = PHONE.get_or_init(|| {
        CertAndKey::from_pem(include_bytes!("../phone-key.pem")).expect("fuzz phone key")
    });
    let _ = phonetrust_proto::fuzzing::enc_config(data, phone);
});
