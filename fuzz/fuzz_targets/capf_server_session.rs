//! Fuzz target: `phonetrust_proto::fuzzing::capf_server_session` (the CAPF server's
//! state machine fed arbitrary phone messages).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| phonetrust_proto::fuzzing::capf_server_session(data));
