//! The default widget handler.
//!
//! - [`request`] parses and validates a request's bytes (SPEC.md 1);
//! - [`widget`] is a stored widget in its two layouts (SPEC.md 2);
//! - [`plan`] turns a valid request into storage operations (SPEC.md 3).
//!
//! All three are plain Rust, tested natively with `cargo test`. The
//! `component` module, compiled only for WebAssembly, exports them through
//! the `widgets:handler` WIT world so that widget-host can run them.

#![warn(missing_docs)]

pub mod plan;
pub mod request;
pub mod widget;

#[cfg(target_arch = "wasm32")]
mod component;
