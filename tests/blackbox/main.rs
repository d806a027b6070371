//! Black-box tests: they run the built `widget-host` binary on folders,
//! buckets and tables of requests and check what it leaves behind, file by
//! file. The AWS tests need the servers tests/run.sh starts.

mod aws;
mod cli;
mod handlers;
mod local;
mod operability;
mod proxy;
mod sandbox;
mod setup;
mod util;
