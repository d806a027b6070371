//! widget-host: runs widget requests through a WebAssembly handler.
//!
//! A map of the parts, in the order a request meets them:
//! - `source/`: where requests come from (a local folder, an S3 bucket, an
//!   SQS queue);
//! - `pipeline/`: lists the source, hands each request to a worker chosen
//!   by its ordering key, and removes it only once its effects are stored;
//!   every transient failure goes through `retry.rs`;
//! - [`handler`]: the Wasm component that decides what a request means,
//!   called in a fresh sandboxed instance per request;
//! - [`sink`]: where widgets go (a local folder, an S3 bucket, a DynamoDB
//!   table), and what the handler reads through `store.get`;
//! - `aws/`: the only place AWS clients are built and SDK errors
//!   classified, and the S3 and SQS calls sources, sinks and `produce`
//!   share; `batch.rs` turns many callers' single items into batch calls.
//!
//! [`contract`] holds the plain types both sides of the handler boundary
//! use, so that sinks never depend on the Wasm runtime. Around the parts:
//! [`cli`] parses the command line, [`commands`] runs each command,
//! `producer.rs` writes realistic requests, `conformance.rs` is the suite
//! `check` runs, [`logging`] sets up `tracing`, [`traces`] exports each
//! request's spans to an OpenTelemetry collector. The library never installs
//! signal handlers: a command takes its stop and reload signals as
//! [`commands::Controls`]. The handler's contract is `wit/handler.wit`; the
//! default handler is `guest/`, built and embedded by `build.rs`.

#![warn(missing_docs)]

mod aws;
mod batch;
pub mod cli;
pub mod commands;
mod conformance;
pub mod contract;
mod dead_letter_cases;
pub mod error;
pub mod folder;
pub mod handler;
mod jsondiff;
pub mod logging;
mod metrics;
mod pipeline;
mod producer;
mod progress;
mod retry;
mod runner;
pub mod sink;
mod source;
pub mod traces;
mod verdicts;

/// The build script's check for the guests' target, compiled here too so
/// that its tests run with the host's.
#[cfg(test)]
#[path = "../build/wasm_target.rs"]
#[allow(dead_code)]
mod wasm_target;
