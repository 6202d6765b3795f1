//! One macro for the FHIR element structs and one for the choice elements, so every field gets
//! the same "leave out when empty" rule, camelCase naming and Avro description without
//! repeating the attributes a hundred times.

/// Declares a FHIR element or resource struct. Every field is skipped in JSON when empty
/// (see [`crate::model::Skip`]); field attributes (e.g. `#[serde(flatten)]`) pass through.
/// The struct also describes its Avro record ([`crate::model::avro::AvroModel`]): one field per
/// JSON key, named as in FHIR JSON.
macro_rules! fhir_struct {
    ($(#[$m:meta])* $name:ident { $( $(#[$($fm:tt)*])* $field:ident : $ty:ty ),* $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
        #[serde(rename_all = "camelCase")]
        pub struct $name {
            $(
                $(#[$($fm)*])*
                #[serde(skip_serializing_if = "crate::model::Skip::skip")]
                pub $field: $ty,
            )*
        }

        impl crate::model::Skip for $name {
            // Empty when every field is empty: checked field by field, without building a
            // default value to compare with (this runs for every element on serialisation).
            fn skip(&self) -> bool {
                true $(&& crate::model::Skip::skip(&self.$field))*
            }
        }

        impl crate::model::json::JsonMembers for $name {
            fn write_members(&self, out: &mut Vec<u8>) {
                $( json_member!(self.$field, out, stringify!($field); $([$($fm)*])*); )*
            }
        }

        impl crate::model::json::JsonWrite for $name {
            fn write_json(&self, out: &mut Vec<u8>) {
                crate::model::json::object(self, out)
            }
        }

        impl crate::model::avro::AvroModel for $name {
            fn avro_elem(b: &mut crate::model::avro::ShapeBuilder) -> crate::model::avro::Elem {
                let id = b.record(stringify!($name), |b| {
                    let mut fields = Vec::new();
                    $(
                        let elem = <$ty as crate::model::avro::AvroModel>::avro_elem(b);
                        crate::model::avro::push_field(
                            &mut fields,
                            json_name!(stringify!($field); $([$($fm)*])*),
                            elem,
                        );
                    )*
                    fields
                });
                crate::model::avro::Elem::record(id)
            }
        }
    };
}

/// The JSON key of a field: an explicit `#[serde(rename = "...")]` if there is one, else the
/// camelCase of the Rust name (what `rename_all = "camelCase"` does).
macro_rules! json_name {
    ($field:expr; ) => { crate::model::avro::camel_case($field) };
    ($field:expr; [serde(rename = $n:literal)] $($rest:tt)*) => { String::from($n) };
    ($field:expr; [$($other:tt)*] $($rest:tt)*) => { json_name!($field; $($rest)*) };
}

/// Declares a FHIR choice element (`value[x]` …): an enum whose variants serialise under their
/// own JSON key, flattened into the parent. In Avro each variant is its own optional field of the
/// parent record, named by that key (`valueQuantity`, `valueString` …): an Avro union cannot hold
/// two branches of the same primitive type (`valueString`, `valueTime`, `valueDateTime` are all
/// strings), and the per-key fields give analytics the paths FHIR users already know.
macro_rules! fhir_choice {
    ($(#[$m:meta])* $name:ident { $( $variant:ident ( $ty:ty ) = $key:literal ),* $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, PartialEq, serde::Serialize)]
        pub enum $name {
            $( #[serde(rename = $key)] $variant($ty), )*
        }

        impl crate::model::Skip for $name {
            fn skip(&self) -> bool {
                false
            }
        }

        impl crate::model::json::JsonFlat for $name {
            fn write_flat(&self, out: &mut Vec<u8>) {
                match self {
                    $( $name::$variant(v) => {
                        const K: crate::model::json::Key = crate::model::json::Key::exact($key);
                        out.extend_from_slice(K.bytes());
                        crate::model::json::JsonWrite::write_json(v, out);
                        out.push(b',');
                    } )*
                }
            }
        }

        impl crate::model::avro::AvroModel for $name {
            fn avro_elem(b: &mut crate::model::avro::ShapeBuilder) -> crate::model::avro::Elem {
                crate::model::avro::Elem::Choice(vec![
                    $( ($key, <$ty as crate::model::avro::AvroModel>::avro_elem(b).single_kind($key)), )*
                ])
            }
        }
    };
}

/// A member from a struct field, following its serde attributes: a `#[serde(flatten)]` choice
/// writes its own key, `#[serde(rename = "...")]` names the key, else the camelCase field name.
macro_rules! json_member {
    ($v:expr, $out:ident, $field:expr; ) => {{
        const K: crate::model::json::Key = crate::model::json::Key::camel($field);
        crate::model::json::member(&$v, K.bytes(), $out)
    }};
    ($v:expr, $out:ident, $field:expr; [serde(flatten)] $($rest:tt)*) => {
        crate::model::json::JsonFlat::write_flat(&$v, $out)
    };
    ($v:expr, $out:ident, $field:expr; [serde(rename = $n:literal)] $($rest:tt)*) => {{
        const K: crate::model::json::Key = crate::model::json::Key::exact($n);
        crate::model::json::member(&$v, K.bytes(), $out)
    }};
    ($v:expr, $out:ident, $field:expr; [$($other:tt)*] $($rest:tt)*) => {
        json_member!($v, $out, $field; $($rest)*)
    };
}
