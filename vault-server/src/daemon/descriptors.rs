//! The gRPC methods the daemon serves, read from the encoded `FileDescriptorSet`s compiled
//! into it: the limits tell unary calls from streams by them, and the metrics know every
//! method in advance, so a client sending made-up paths can never add a metric series.

use prost::Message as _;

/// The descriptor sets of every service the daemon serves.
pub const SERVED: &[&[u8]] = &[
    vault_proto::FILE_DESCRIPTOR_SET,
    tonic_health::pb::FILE_DESCRIPTOR_SET,
    tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
    tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
];

/// One method of a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Method {
    /// The gRPC path, `/package.Service/Method`.
    pub path: String,
    /// Neither client- nor server-streaming.
    pub unary: bool,
}

/// The methods of every service in these encoded `FileDescriptorSet`s.
pub fn methods(descriptor_sets: &[&[u8]]) -> Result<Vec<Method>, prost::DecodeError> {
    let mut out = Vec::new();
    for set in descriptor_sets {
        let set = prost_types::FileDescriptorSet::decode(*set)?;
        for file in set.file {
            let package = file.package.unwrap_or_default();
            let prefix = if package.is_empty() {
                String::new()
            } else {
                format!("{package}.")
            };
            for service in file.service {
                let service_name = service.name.unwrap_or_default();
                for method in service.method {
                    out.push(Method {
                        unary: !method.client_streaming() && !method.server_streaming(),
                        path: format!(
                            "/{prefix}{service_name}/{}",
                            method.name.unwrap_or_default()
                        ),
                    });
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_served_method_is_known() {
        let all = methods(SERVED).unwrap();
        let path = |p: &str| all.iter().find(|m| m.path == p).cloned();
        assert_eq!(
            path("/vault.v1.Supporters/Get").map(|m| m.unary),
            Some(true)
        );
        assert_eq!(
            path("/vault.v1.Supporters/Watch").map(|m| m.unary),
            Some(false)
        );
        for streaming in [
            "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
            "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
            "/grpc.health.v1.Health/Watch",
        ] {
            assert_eq!(path(streaming).map(|m| m.unary), Some(false), "{streaming}");
        }
    }
}
