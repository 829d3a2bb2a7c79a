//! Whatever a client sends, the decoders never panic and always answer with
//! a specific error: arbitrary bytes, arbitrary JSON, and mutated valid
//! messages. `examples/fuzz.rs` runs the same decoders over millions of
//! inputs; this is the part that runs with every `cargo test`.

use playfield::dots::{DotGame, DotInput};
use playfield::protocol::bin::{self, Replica};
use playfield::protocol::{decode, decode_binary, ErrorCode, Protocol, ProtocolError};
use playfield::replicate::FieldKind;
use proptest::prelude::*;
use serde_json::Value;

/// The codes a malformed client message may get, each with a message that
/// says what was wrong.
fn specific(e: &ProtocolError) -> bool {
    matches!(
        e.code,
        ErrorCode::InvalidJson | ErrorCode::InvalidMessage | ErrorCode::UnknownType
    ) && e.message.len() > 10
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        prop_oneof![
            Just("input".to_owned()),
            Just("move".to_owned()),
            Just("ping".to_owned()),
            Just("UP".to_owned()),
            ".{0,12}"
        ]
        .prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::btree_map(
                prop_oneof![
                    Just("type".to_owned()),
                    Just("seq".to_owned()),
                    Just("input".to_owned()),
                    Just("x".to_owned()),
                    Just("y".to_owned()),
                    Just("id".to_owned()),
                    Just("direction".to_owned()),
                    "[a-z]{1,6}"
                ],
                inner,
                0..5
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn arbitrary_json_gets_a_specific_answer(v in arb_json()) {
        let text = v.to_string();
        for p in [Protocol::Seed, Protocol::NativeJson, Protocol::NativeBin] {
            if let Err(e) = decode::<DotGame>(p, &text) {
                prop_assert!(specific(&e), "{:?} for {}", e, text);
            }
        }
    }

    #[test]
    fn arbitrary_bytes_get_a_specific_answer(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
        if let Err(e) = decode_binary::<DotGame>(&bytes) {
            prop_assert!(specific(&e), "{:?} for {:02x?}", e, bytes);
        }
        if let Ok(text) = std::str::from_utf8(&bytes) {
            for p in [Protocol::Seed, Protocol::NativeJson] {
                if let Err(e) = decode::<DotGame>(p, text) {
                    prop_assert!(specific(&e), "{:?}", e);
                }
            }
        }
        // A client decoding a hostile server's bytes gets a typed error too.
        let _ = Replica::default().apply(&bytes, &[FieldKind::Str, FieldKind::Int]);
    }

    #[test]
    fn mutated_binary_inputs_get_a_specific_answer(
        seq in any::<u32>(),
        x in any::<f64>(),
        cut in 0usize..20,
        flip in 0usize..160,
    ) {
        let mut m = bin::encode_input(seq, &DotInput::steer(x, 0.5));
        let i = flip / 8;
        if let Some(b) = m.get_mut(i) {
            *b ^= 1 << (flip % 8);
        }
        m.truncate(m.len().saturating_sub(cut % 4));
        if let Err(e) = decode_binary::<DotGame>(&m) {
            prop_assert!(specific(&e), "{:?} for {:02x?}", e, m);
        }
    }
}
