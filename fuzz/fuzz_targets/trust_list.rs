//! Fuzz target: `phonetrust_proto::fuzzing::trust_list`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| phonetrust_proto::fuzzing::trust_list(data));
