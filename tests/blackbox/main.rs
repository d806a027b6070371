//! Black-box tests: they run the built `widget-host` binary on folders,
//! buckets and tables of requests and check what it leaves behind, file by
//! file. The AWS and queue tests need the servers tests/run.sh starts.

mod aws;
mod cli;
mod dead_letters;
mod handlers;
mod local;
mod operability;
mod proxy;
mod queue;
mod sandbox;
mod service;
mod setup;
mod slowdown;
mod stalls;
mod tour;
mod traces;
mod util;
