//! The hot-path JSON writer (`canonical::model::json`) escapes any string exactly as serde_json
//! does, and a resource carrying such strings everywhere serialises to the same bytes both ways.

use canonical::model::*;
use proptest::prelude::*;

proptest! {
    #[test]
    fn any_string_escapes_as_serde_json_does(s in any::<String>(), ctl in proptest::collection::vec(0u8..0x20, 0..4)) {
        let mut s = s;
        for c in ctl {
            s.push(char::from(c));
            s.push('"');
        }
        prop_assert_eq!(s.to_json(), serde_json::to_string(&s).unwrap());
        let obs = Observation {
            id: s.clone(),
            status: s.clone().into(),
            code: CodeableConcept::code(s.clone(), s.clone(), None),
            category: vec![CodeableConcept::text(s.clone())],
            value: Some(ObservationValue::String(s.clone())),
            note: vec![Annotation { text: s.clone(), ..Default::default() }],
            ..Default::default()
        };
        let r = Resource::from(obs);
        prop_assert_eq!(r.to_json(), serde_json::to_string(&r).unwrap());
    }
}
