//! Fuzz target: `phonetrust_proto::fuzzing::tftp_server`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| phonetrust_proto::fuzzing::tftp_server(data));
