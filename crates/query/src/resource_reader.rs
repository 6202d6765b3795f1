//! `FhirResource` read by hand from its Avro body, up to and including `fhir_json`.
//!
//! The store wants each resource's envelope and FHIR JSON, never its `typed` record, which is
//! the body's last field and most of its bytes. Stopping before it spares the walk that cutting
//! it out costs (`bus::projection`: Avro records carry no lengths) and the generic decoder's
//! per-field dispatch. Used through `AvroSerde::decode_with`, so only for bytes written with
//! exactly `FhirResource`'s schema; the tests hold it to the generic decoder's result.
//! Errors name the field and byte position, never content.

use bus::body_reader::BodyReader;
use canonical::current::FhirResource;

/// Reads the fields of `FhirResource` before `typed`; what follows them is not looked at.
pub fn read_fhir_resource(body: &[u8]) -> Result<FhirResource, String> {
    let mut c = BodyReader::new(body);
    Ok(FhirResource {
        id: c.string("id")?,
        resource_type: c.string("resource_type")?,
        tenant: c.string("tenant")?,
        patient_id: c.opt_string("patient_id")?,
        source_event_id: c.string("source_event_id")?,
        event_type: c.string("event_type")?,
        occurred_at: c.long("occurred_at")?,
        fhir_json: c.string("fhir_json")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use apache_avro::AvroSchema;
    use apache_avro::reader::datum::GenericDatumReader;

    fn resource(patient: Option<&str>, json: &str) -> FhirResource {
        FhirResource {
            id: "3f1c5a52-8d1e-4c55-9b7e-0c2d4e6f8a10".into(),
            resource_type: "Observation".into(),
            tenant: "general-hospital".into(),
            patient_id: patient.map(str::to_string),
            source_event_id: "ev-0001".into(),
            event_type: "ORU^R01".into(),
            occurred_at: -1_700_000_000_123,
            fhir_json: json.into(),
        }
    }

    fn body(r: &FhirResource) -> Vec<u8> {
        let mut out = Vec::new();
        r.write_avro(&mut out);
        out
    }

    /// What the generic decoder makes of the same bytes.
    fn generic(bytes: &[u8]) -> FhirResource {
        let schema = FhirResource::get_schema();
        let reader = GenericDatumReader::builder(&schema).build().unwrap();
        reader.read_deser::<FhirResource>(&mut &bytes[..]).unwrap()
    }

    #[test]
    fn reads_what_the_generic_decoder_reads() {
        let json = r#"{"resourceType":"Observation","id":"3f1c5a52-8d1e-4c55-9b7e-0c2d4e6f8a10","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"2345-7"}]},"subject":{"reference":"Patient/p-ü"},"valueQuantity":{"value":5.4,"unit":"mmol/L"}}"#;
        for r in [resource(Some("p-1"), json), resource(None, json), resource(Some(""), "{}")] {
            let b = body(&r);
            let got = read_fhir_resource(&b).unwrap();
            assert_eq!(got, generic(&b));
            assert_eq!(got, r);
        }
    }

    #[test]
    fn a_body_cut_before_the_json_ends_is_an_error_naming_the_field() {
        let json = r#"{"resourceType":"Observation"}"#;
        let b = body(&resource(Some("p-1"), json));
        let full = read_fhir_resource(&b).unwrap();
        let json_end = b.windows(json.len()).position(|w| w == json.as_bytes()).unwrap() + json.len();
        assert!(json_end < b.len(), "the typed record follows the JSON");
        for cut in 0..json_end {
            let e = read_fhir_resource(&b[..cut]).unwrap_err();
            assert!(!e.contains("Observation\""), "{e}");
        }
        // Everything after the JSON (the typed record) is not read.
        assert_eq!(read_fhir_resource(&b[..json_end]).unwrap(), full);
        let e = read_fhir_resource(&b[..json_end - 1]).unwrap_err();
        assert!(e.starts_with("fhir_json: length"), "{e}");
    }

    #[test]
    fn never_panics_on_any_bytes() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for n in 0..20_000usize {
            let mut v = Vec::with_capacity(n % 64);
            for _ in 0..n % 64 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                v.push(x as u8);
            }
            let _ = read_fhir_resource(&v);
        }
        let e = read_fhir_resource(&[0x02, 0x41, 0x02, 0x42, 0x00, 0x04]).unwrap_err();
        assert!(e.starts_with("patient_id: union branch 2"), "{e}");
        assert!(read_fhir_resource(&[0xff; 11]).unwrap_err().starts_with("id: a number longer"));
    }
}
