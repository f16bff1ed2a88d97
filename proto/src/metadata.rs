//! The wire constants of the vault's gRPC API, once: the metadata keys a client sends and
//! the daemon reads (and the other way round), and the purpose id the DPO's calls declare.
//!
//! Both sides name them from here: the daemon's layers (`auth`, `limits`, `call_log`), its
//! `Supporters.Search`, and the client library (`vaultctl`, `vault-load`).
//!
//! The purpose key and the DPO's purpose also belong to the access policy in `vault-core`,
//! which names them in its refusals. This crate does not depend on `vault-core` (a client
//! links the generated code without the storage engines), so the two copies are pinned
//! equal by a test in `vault-server` (`wire_constants_match_the_policy`).

/// Request metadata carrying the caller's credentials: `authorization: Bearer <token>`.
pub const AUTHORIZATION: &str = "authorization";

/// What precedes the token in the [`AUTHORIZATION`] value.
pub const BEARER_PREFIX: &str = "Bearer ";

/// Request metadata declaring the purpose of a call on personal data:
/// `x-vault-purpose: <purpose id>`.
pub const PURPOSE: &str = "x-vault-purpose";

/// Request metadata a client may set to correlate its calls with the daemon's log lines.
pub const REQUEST_ID: &str = "x-request-id";

/// Initial metadata of a `Supporters.Search` reply: the next page's token, absent on the
/// last page.
pub const NEXT_PAGE_TOKEN: &str = "x-vault-next-page-token";

/// Trailing metadata of a call refused by the daemon's limits (`RESOURCE_EXHAUSTED`): how
/// many milliseconds to wait before trying again.
pub const RETRY_AFTER_MS: &str = "retry-after-ms";

/// The built-in purpose the DPO's calls on personal data declare (`data-subject-rights`).
pub const DPO_PURPOSE: &str = "data-subject-rights";

/// The [`AUTHORIZATION`] value for `token`.
pub fn bearer(token: &str) -> String {
    format!("{BEARER_PREFIX}{token}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wire_names_are_the_documented_ones() {
        assert_eq!(PURPOSE, "x-vault-purpose");
        assert_eq!(DPO_PURPOSE, "data-subject-rights");
        assert_eq!(bearer("t"), "Bearer t");
    }
}
