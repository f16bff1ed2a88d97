use super::*;

const GET: &str = "/vault.v1.Supporters/Get";
const UPSERT: &str = "/vault.v1.Supporters/Upsert";
const REFLECT_V1: &str = "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo";
const REFLECT_V1ALPHA: &str = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo";

fn registry() -> Metrics {
    Metrics::new([GET, UPSERT, REFLECT_V1, REFLECT_V1ALPHA])
}

fn figures() -> VaultFigures {
    VaultFigures {
        access_log_entries: 42,
        checkpoint_age_seconds: Some(1.5),
        flushes: LatencyHistogram::new().snapshot(),
    }
}

/// Every sample line of `text` as (name, labels, value), checking the line's syntax.
fn samples(text: &str) -> Vec<(String, String, f64)> {
    let mut out = Vec::new();
    for line in text.lines() {
        if line.starts_with("# HELP ") || line.starts_with("# TYPE ") {
            continue;
        }
        assert!(!line.starts_with('#'), "stray comment {line:?}");
        let (series, value) = line.rsplit_once(' ').expect("series and value");
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("value of {line:?}"));
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => (name, rest.strip_suffix('}').expect("closing brace")),
            None => (series, ""),
        };
        assert!(
            name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "metric name {name:?}"
        );
        out.push((name.to_owned(), labels.to_owned(), value));
    }
    out
}

fn value(text: &str, name: &str, labels: &str) -> Option<f64> {
    samples(text)
        .into_iter()
        .find(|(n, l, _)| n == name && l == labels)
        .map(|(_, _, v)| v)
}

#[test]
fn a_fresh_registry_renders_its_gauges_and_no_call_series() {
    let text = registry().render(&figures());
    assert_eq!(value(&text, "vault_calls_in_flight", ""), Some(0.0));
    assert_eq!(value(&text, "vault_limit_refusals_total", ""), Some(0.0));
    assert_eq!(value(&text, "vault_access_log_entries", ""), Some(42.0));
    assert_eq!(
        value(&text, "vault_access_log_checkpoint_age_seconds", ""),
        Some(1.5)
    );
    assert_eq!(
        value(&text, "vault_store_flush_duration_seconds_count", ""),
        Some(0.0)
    );
    assert!(!text.contains("vault_calls_total{"), "{text}");
    for name in [
        "vault_calls_total",
        "vault_call_duration_seconds",
        "vault_store_flush_duration_seconds",
    ] {
        assert_eq!(
            text.matches(&format!("# TYPE {name} ")).count(),
            1,
            "{name}"
        );
    }
}

#[test]
fn no_checkpoint_yet_means_no_age_sample() {
    let text = registry().render(&VaultFigures {
        checkpoint_age_seconds: None,
        ..figures()
    });
    assert!(text.contains("# TYPE vault_access_log_checkpoint_age_seconds gauge"));
    assert_eq!(
        value(&text, "vault_access_log_checkpoint_age_seconds", ""),
        None
    );
}

#[test]
fn calls_are_counted_by_method_and_code_with_their_latency() {
    let m = registry();
    for (path, code, ms, refused) in [
        (GET, Code::Ok, 3, false),
        (GET, Code::Ok, 30, false),
        (GET, Code::NotFound, 1, false),
        (UPSERT, Code::ResourceExhausted, 0, true),
        ("/made.Up/Path", Code::Unimplemented, 0, false),
        (REFLECT_V1, Code::Ok, 2, false),
        (REFLECT_V1ALPHA, Code::Ok, 2, false),
    ] {
        m.call_started();
        m.call_ended(path, code, Duration::from_millis(ms), refused);
    }
    m.call_started();
    let text = m.render(&figures());
    let calls = |rpc: &str, code: &str| {
        value(
            &text,
            "vault_calls_total",
            &format!("rpc=\"{rpc}\",code=\"{code}\""),
        )
    };
    assert_eq!(calls("Supporters.Get", "OK"), Some(2.0));
    assert_eq!(calls("Supporters.Get", "NOT_FOUND"), Some(1.0));
    assert_eq!(calls("Supporters.Upsert", "RESOURCE_EXHAUSTED"), Some(1.0));
    assert_eq!(calls("unknown", "UNIMPLEMENTED"), Some(1.0));
    assert_eq!(
        calls("ServerReflection.ServerReflectionInfo", "OK"),
        Some(2.0)
    );
    assert_eq!(calls("Supporters.Get", "INTERNAL"), None);
    assert_eq!(value(&text, "vault_limit_refusals_total", ""), Some(1.0));
    assert_eq!(value(&text, "vault_calls_in_flight", ""), Some(1.0));

    let get = |suffix: &str, le: Option<&str>| {
        let labels = match le {
            Some(le) => format!("rpc=\"Supporters.Get\",le=\"{le}\""),
            None => "rpc=\"Supporters.Get\"".to_owned(),
        };
        value(
            &text,
            &format!("vault_call_duration_seconds{suffix}"),
            &labels,
        )
    };
    assert_eq!(get("_bucket", Some("0.001")), Some(1.0));
    assert_eq!(get("_bucket", Some("0.005")), Some(2.0));
    assert_eq!(get("_bucket", Some("0.025")), Some(2.0));
    assert_eq!(get("_bucket", Some("0.05")), Some(3.0));
    assert_eq!(get("_bucket", Some("+Inf")), Some(3.0));
    assert_eq!(get("_count", None), Some(3.0));
    assert!((get("_sum", None).unwrap() - 0.034).abs() < 1e-9);
    // Buckets never decrease along the bounds.
    let buckets: Vec<f64> = samples(&text)
        .into_iter()
        .filter(|(n, l, _)| n == "vault_call_duration_seconds_bucket" && l.contains("Get"))
        .map(|(_, _, v)| v)
        .collect();
    assert_eq!(buckets.len(), BUCKET_BOUNDS_SECONDS.len() + 1);
    assert!(buckets.windows(2).all(|w| w[0] <= w[1]), "{buckets:?}");
}

#[test]
fn unknown_paths_share_one_label() {
    let m = registry();
    assert_eq!(m.rpc_label(GET), "Supporters.Get");
    assert_eq!(m.rpc_label("/x.Y/Z"), UNKNOWN_RPC);
    assert_eq!(
        m.rpc_label("/grpc.reflection.v1.ServerReflection/Nope"),
        UNKNOWN_RPC
    );
    assert_eq!(
        m.rpc_label(REFLECT_V1ALPHA),
        "ServerReflection.ServerReflectionInfo"
    );
}

#[test]
fn code_names_follow_the_grpc_specification() {
    assert_eq!(code_name(Code::Ok), "OK");
    assert_eq!(code_name(Code::PermissionDenied), "PERMISSION_DENIED");
    assert_eq!(code_name(Code::Unauthenticated), "UNAUTHENTICATED");
    assert_eq!(code_name(Code::DataLoss), "DATA_LOSS");
    for n in 0..17 {
        assert_eq!(i32::from(Code::from_i32(n)), n);
        assert!(!code_name(Code::from_i32(n)).is_empty());
    }
}

#[test]
fn label_values_are_escaped() {
    assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    assert_eq!(escape("Supporters.Get"), "Supporters.Get");
}
