//! The JSON Schema of the manifest, generated from the raw types so that it cannot drift from
//! what the parser accepts.

use crate::raw::RawManifest;
use serde_json::json;

/// The manifest's JSON Schema (draft 2020-12), as printed by `drover schema`.
pub fn json_schema() -> serde_json::Value {
    let mut schema = schemars::schema_for!(RawManifest).to_value();
    schema["$id"] = json!("https://drover.dev/schema/manifest-v1.json");
    // What the types cannot say: `command` is required (it is an `Option` in `RawService` and
    // `RawHook` so
    // that validation can go on without it), and the service-name rule.
    schema["$defs"]["RawService"]["required"] = json!(["command"]);
    schema["$defs"]["RawHook"]["required"] = json!(["command"]);
    schema["properties"]["services"]["propertyNames"] = json!({ "pattern": "^[a-z0-9_-]{1,63}$" });
    schema
}
