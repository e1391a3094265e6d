//! The JSON Schema of the manifest, generated from the raw types so that it cannot drift from
//! what the parser accepts.

use crate::raw::RawManifest;

/// The manifest's JSON Schema (draft 2020-12), as printed by `drover schema`.
pub fn json_schema() -> serde_json::Value {
    let mut schema = schemars::schema_for!(RawManifest).to_value();
    if let Some(object) = schema.as_object_mut() {
        object.insert(
            "$id".to_string(),
            serde_json::Value::String("https://drover.dev/schema/manifest-v1.json".to_string()),
        );
    }
    schema
}
