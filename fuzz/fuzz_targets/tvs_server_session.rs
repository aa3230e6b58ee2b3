//! Fuzz target: `phonetrust_proto::fuzzing::tvs_server_session`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| phonetrust_proto::fuzzing::tvs_server_session(data));
