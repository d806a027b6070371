//! Black-box tests: they run the built `widget-host` binary on folders of
//! requests and check what it leaves behind, file by file.

mod local;
mod sandbox;
mod util;
