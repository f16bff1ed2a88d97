//! gRPC services: each maps its calls onto `vault-core` and back.

pub mod supporters;
