//! Consent: the append-only ledger of grants and withdrawals, and the state derived from it.

pub mod ledger;

pub use ledger::{ConsentEvent, ConsentKind, ConsentSource, ConsentState, ConsentStatus};
