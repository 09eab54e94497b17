//! hubforge needs no build step. This script exists so that Cargo.toml's
//! [build-dependencies] take part in feature resolution for the host: see
//! the comment there.
fn main() {}
