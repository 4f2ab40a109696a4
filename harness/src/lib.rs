//! The harness as a library: books-ms's continuous-deployment pipeline.
//!
//! `main.rs` parses the command line and prints; everything it runs lives
//! here, one module per job (see ARCHITECTURE.md, "harness").

pub mod build;
pub mod checkout;
mod child;
pub mod cli;
pub mod commands;
pub mod config;
pub mod context;
pub mod deploy;
pub mod engine;
mod follow;
pub mod http;
pub mod init;
pub mod interrupt;
pub mod pipeline;
pub mod plan;
pub mod progress;
pub mod push;
pub mod registry;
pub mod release;
pub mod runner;
pub mod traffic;
pub mod verify;
pub mod version;
