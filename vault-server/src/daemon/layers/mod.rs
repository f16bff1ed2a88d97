//! The tower layers every gRPC call goes through before it reaches a service, outermost
//! first (the order `serve.rs` stacks them in, and the reason for it):
//!
//! 1. [`call_log::CallLogLayer`] times and counts every call, refused or not, and writes
//!    its `info` line;
//! 2. [`limits::GlobalLimitLayer`] applies the daemon-wide caps, before any credential is
//!    checked;
//! 3. [`auth::AuthLayer`] turns the token or client certificate and the purpose into a
//!    `Caller` (no call reaches the vault unauthenticated);
//! 4. [`call_log::CallerTagLayer`] hands the authenticated client's id back to the call log;
//! 5. [`limits::ClientLimitLayer`] applies the per-client limits, keyed on that client.

pub mod auth;
pub mod call_log;
pub mod limits;
