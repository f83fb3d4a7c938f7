//! Configuration files: parsed and resolved into settings (errors, never panics).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    cistern_gateway::fuzzing::config(text);
});
