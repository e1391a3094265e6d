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
    // Compose's extension keys, ignored by the parser (`crate::load`): anything goes under them.
    let extensions = json!({ "^x-": {} });
    schema["patternProperties"] = extensions.clone();
    schema["$defs"]["RawService"]["patternProperties"] = extensions;
    // `restart: no` read as a boolean by YAML 1.1 readers.
    if let Some(forms) = schema
        .pointer_mut("/$defs/RestartSpec/anyOf")
        .and_then(serde_json::Value::as_array_mut)
    {
        forms.push(json!({ "const": false, "description": "`no`, read as a boolean" }));
    }
    // Strings that the parser also takes from a number or a boolean (`PORT: 8080`,
    // `[sleep, 5]`, `user: 1000`): the schema accepts them too.
    for pointer in [
        "/$defs/CommandSpec/anyOf/1/items",
        "/$defs/EnvSpec/anyOf/0/additionalProperties",
        "/$defs/RawHttpProbe/properties/headers/additionalProperties",
        "/$defs/RawService/properties/user",
        "/$defs/RawService/properties/working_dir",
        "/$defs/RawHook/properties/user",
        "/$defs/RawHook/properties/working_dir",
    ] {
        if let Some(node) = schema.pointer_mut(pointer) {
            widen_string(node);
        }
    }
    schema
}

/// `"type": "string"` (or `["string", "null"]`) becomes string, number or boolean.
fn widen_string(node: &mut serde_json::Value) {
    let nullable = node["type"]
        .as_array()
        .is_some_and(|types| types.iter().any(|t| t == "null"));
    node["type"] = if nullable {
        json!(["string", "number", "boolean", "null"])
    } else {
        json!(["string", "number", "boolean"])
    };
}
