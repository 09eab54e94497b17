//! hubforge: a declarative, SQL-first build tool for a Hubhouse warehouse.
//!
//! The modules follow the data's journey: project loading → templating → SQL
//! analysis → graph → selection → (fingerprints → state → plan → execution).

pub mod build;
pub mod change;
pub mod cli;
pub mod config;
pub mod deliver;
pub mod diagnostics;
pub mod docs;
pub mod engine;
pub mod error;
pub mod fingerprint;
pub mod fulfill;
pub mod graph;
pub mod hash;
pub mod impact;
pub mod init;
pub mod interrupt;
pub mod interval;
pub mod intervals;
pub mod mark;
pub mod name;
pub mod noop;
pub mod observe;
pub mod plan;
pub mod progress;
pub mod project;
pub mod render;
pub mod runs;
pub mod select;
pub mod sources;
pub mod sql;
pub mod state;
pub mod synth;
pub mod template;
pub mod validate;
pub mod workspace;

pub use error::{Error, Result};
