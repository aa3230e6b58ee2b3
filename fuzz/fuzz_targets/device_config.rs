//! Fuzz target: `phonetrust_proto::fuzzing::device_config`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| phonetrust_proto::fuzzing::device_config(data));
