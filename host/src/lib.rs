//! widget-host: runs widget requests through a WebAssembly handler.
//!
//! A map of the parts, in the order a request meets them:
//! - [`source`]: where requests come from (a local folder, an S3 bucket);
//! - [`pipeline`]: lists the source, hands each request to a worker chosen
//!   by its ordering key, and removes it only once its effects are stored;
//! - [`runtime`]: the wasmtime sandbox that calls the handler, one fresh
//!   instance per request, under time and memory limits; [`reload`] swaps
//!   the handler of a running host;
//! - [`sink`]: where widgets go (a local folder, an S3 bucket, a DynamoDB
//!   table); [`aws`] builds the AWS clients and classifies their errors;
//! - [`retry`], [`shutdown`], [`metrics`]: backoff, stopping, the summary.
//!
//! Around them: [`cli`] parses flags, [`config`] checks them, [`app`] runs
//! the commands, [`producer`] writes realistic requests, [`check`] runs the
//! conformance suite, [`logging`] sets up `tracing`. The handler's contract is `wit/handler.wit`; the default
//! handler is `guest/`, built and embedded by `build.rs`.

#![warn(missing_docs)]

pub mod app;
pub mod aws;
pub mod check;
pub mod cli;
pub mod config;
pub mod error;
pub mod fsutil;
pub mod logging;
pub mod metrics;
pub mod pipeline;
pub mod producer;
pub mod reload;
pub mod retry;
pub mod runtime;
pub mod shutdown;
pub mod sink;
pub mod source;
