//! Supporters: the record model, field masks, normalization and the sealed record codec.

pub mod fields;
pub mod model;
pub mod normalize;
pub mod record;

pub use fields::{Field, FieldSet};
pub use model::{Address, LookupKey, Shown, Supporter, UpsertOutcome};
