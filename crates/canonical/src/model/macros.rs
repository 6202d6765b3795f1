//! One macro for the FHIR element structs, so every field gets the same "leave out when empty"
//! rule and camelCase naming without repeating the attributes a hundred times.

/// Declares a FHIR element or resource struct. Every field is skipped in JSON when empty
/// (see [`crate::model::Skip`]); field attributes (e.g. `#[serde(flatten)]`) pass through.
macro_rules! fhir_struct {
    ($(#[$m:meta])* $name:ident { $( $(#[$fm:meta])* $field:ident : $ty:ty ),* $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
        #[serde(rename_all = "camelCase")]
        pub struct $name {
            $(
                $(#[$fm])*
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
    };
}
