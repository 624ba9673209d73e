//! Property tests (issue 19's fuzzing): every parser of what clients and
//! sprites send takes any input without panicking, and what is encoded
//! decodes back. `PROPTEST_CASES=N` runs more cases; failures found are
//! kept in `proptest-regressions/` and replayed first on every run.

use proptest::prelude::*;
use sprites_api::{agent, checkpoint, duration, exec, fs, name, port};

proptest! {
    #[test]
    fn agent_frames_round_trip(kind in any::<u8>(), payload in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let f = agent::frame(kind, &payload);
        let h: [u8; agent::HEADER_LEN] = f[..agent::HEADER_LEN].try_into().unwrap();
        prop_assert_eq!(agent::parse_header(h), Ok((kind, payload.len())));
        prop_assert_eq!(&f[agent::HEADER_LEN..], &payload[..]);
    }

    #[test]
    fn any_agent_header_is_read_or_refused(h in any::<[u8; agent::HEADER_LEN]>()) {
        if let Ok((_, len)) = agent::parse_header(h) {
            prop_assert!(len <= agent::MAX_FRAME);
        }
    }

    #[test]
    fn exit_frames_round_trip(code in any::<i32>(), junk in proptest::collection::vec(any::<u8>(), 0..16)) {
        let f = agent::exit_frame(code);
        prop_assert_eq!(agent::parse_exit(&f[agent::HEADER_LEN..]), Ok(code));
        // Any other payload is refused or read, never a panic.
        let _ = agent::parse_exit(&junk);
    }

    #[test]
    fn agent_json_of_any_bytes_is_read_or_refused(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = serde_json::from_slice::<agent::Request>(&bytes);
    }

    #[test]
    fn exec_text_messages_of_any_text_are_read_or_refused(text in ".{0,256}") {
        let _ = serde_json::from_str::<exec::TextMessage>(&text);
    }

    #[test]
    fn signal_names_are_normalised(raw in ".{0,64}") {
        let s = exec::signal_name(&raw);
        prop_assert!(s.starts_with("SIG"));
        prop_assert_eq!(exec::signal_name(&s), s.clone());
    }

    #[test]
    fn accepted_names_are_dns_labels(n in ".{0,80}") {
        if name::validate(&n).is_ok() {
            prop_assert!((1..=63).contains(&n.len()));
            prop_assert!(n.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'));
            prop_assert!(!n.starts_with('-') && !n.ends_with('-'));
        }
    }

    #[test]
    fn dns_labels_are_accepted(n in "[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?") {
        prop_assert!(name::validate(&n).is_ok());
    }

    #[test]
    fn query_values_round_trip(key in "[a-z_]{1,12}", value in proptest::collection::vec(any::<u8>(), 0..256), other in "[a-z]{1,8}=[a-z%+]{0,8}") {
        let raw = format!("{other}&{key}={}&{other}", fs::percent_encode(&value));
        let got = fs::query_values(&raw, &key);
        let want: Vec<Vec<u8>> = if other.split('=').next() == Some(key.as_str()) {
            // `other` is the same key: its values come too, in order.
            let o = fs::percent_decode(other.split_once('=').map_or("", |p| p.1));
            vec![o.clone(), value.clone(), o]
        } else {
            vec![value.clone()]
        };
        prop_assert_eq!(got, want);
    }

    #[test]
    fn any_query_is_read(raw in ".{0,256}", key in ".{0,8}") {
        let _ = fs::query_values(&raw, &key);
        let _ = fs::percent_decode(&raw);
    }

    #[test]
    fn path_bytes_of_any_base64_are_read_or_refused(text in ".{0,128}") {
        if let Ok(p) = fs::PathBytes::from_base64(&text) {
            let _ = p.lossy();
            let _ = p.percent_encoded();
        }
    }

    #[test]
    fn modes_round_trip(mode in 0u32..=0o7777, text in ".{0,12}") {
        prop_assert_eq!(fs::parse_mode(&fs::format_mode(mode)), Ok(mode));
        if let Ok(m) = fs::parse_mode(&text) {
            prop_assert!(m <= 0o7777);
        }
    }

    #[test]
    fn durations_of_any_text_are_read_or_refused(text in ".{0,32}", secs in 0u64..1_000_000) {
        let _ = duration::parse_duration(&text);
        prop_assert_eq!(
            duration::parse_duration(&format!("{secs}s")),
            Some(std::time::Duration::from_secs(secs))
        );
        prop_assert_eq!(
            duration::parse_duration(&format!("{secs}ms")),
            Some(std::time::Duration::from_millis(secs))
        );
    }

    #[test]
    fn checkpoint_ids_round_trip(n in any::<u64>(), text in ".{0,24}") {
        prop_assert_eq!(checkpoint::parse_id(&format!("v{n}")), Some(n));
        if let Some(n) = checkpoint::parse_id(&text) {
            prop_assert_eq!(format!("v{n}"), text);
        }
    }

    #[test]
    fn relay_targets_are_only_loopback(host in ".{0,40}") {
        if let Some(ips) = port::loopback_target(&host) {
            prop_assert!(!ips.is_empty());
            prop_assert!(ips.iter().all(|ip| ip.is_loopback()));
        }
    }
}

/// Inputs random text rarely hits, kept as cases of their own.
#[test]
fn edge_durations_are_read_or_refused() {
    for text in [
        "-0",
        "-0s",
        "-0.0ms",
        "0x10",
        "1e9",
        "1e10",
        "NaN",
        "inf",
        "-inf",
        "9e999h",
        "1.5.5s",
        "",
        " ",
        "ms",
        "18446744073709551616s",
        "99999999999999999999 days",
    ] {
        let _ = duration::parse_duration(text);
    }
    assert_eq!(
        duration::parse_duration("-0"),
        Some(std::time::Duration::ZERO)
    );
}
