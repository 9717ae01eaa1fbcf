//! What older versions stored reads into today's types and answers the same JSON.

use serde_json::Value;

use crate::{ExplanationJ, NumbersJ};

/// A stored part, read and written back, against the text it was read from.
fn round_trip<T: serde::de::DeserializeOwned + serde::Serialize>(stored: &str) -> (Value, Value) {
    let typed: T = serde_json::from_str(stored).expect("stored text reads");
    (serde_json::from_str(stored).unwrap(), serde_json::to_value(&typed).unwrap())
}

#[test]
fn a_finding_stored_before_the_views_were_typed_reads_the_same() {
    // Written by detection and explanation at 7acfba9, when both wrote JSON by hand (the demo's
    // slow `apply_promotions`; two suspects kept, the patch cut short).
    let (mut stored, read) =
        round_trip::<NumbersJ>(include_str!("../test_data/finding_detail_7acfba9.json"));
    // The look is the finding's row's since; the stored copy is read and not shown.
    assert_eq!(stored.as_object_mut().unwrap().remove("look_minutes"), Some(25.into()));
    assert_eq!(read, stored);

    let (mut stored, read) =
        round_trip::<ExplanationJ>(include_str!("../test_data/finding_explanation_7acfba9.json"));
    // A ranking without a bisect plan leaves the key out rather than writing `null`.
    assert_eq!(stored["ranking"].as_object_mut().unwrap().remove("bisect"), Some(Value::Null));
    assert_eq!(read, stored);
    assert_eq!(
        read["suspects"][0]["commit"]["subject"],
        "Apply first-order promotions only to first orders"
    );
}
