//! Fuzz target: `phonetrust_proto::fuzzing::tvs_message`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| phonetrust_proto::fuzzing::tvs_message(data));
