//! Fuzz target: `phonetrust_proto::fuzzing::device_names`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| phonetrust_proto::fuzzing::device_names(data));
