//! Target schemas: how a source schema becomes the target's, and how two schemas compare.

use crate::proto::common::KeyValuePair;
use crate::proto::schema::{CollectionSchema, DataType, FieldSchema, FunctionSchema};

/// Types ferry can move: every user type of Milvus 2.3 to 2.6 (not yet the 2.6 struct
/// arrays, vector arrays, or types newer than TIMESTAMPTZ).
pub fn supported(t: DataType) -> bool {
    matches!(
        t,
        DataType::Bool
            | DataType::Int8
            | DataType::Int16
            | DataType::Int32
            | DataType::Int64
            | DataType::Float
            | DataType::Double
            | DataType::VarChar
            | DataType::Array
            | DataType::Json
            | DataType::Geometry
            | DataType::Timestamptz
            | DataType::BinaryVector
            | DataType::FloatVector
            | DataType::Float16Vector
            | DataType::BFloat16Vector
            | DataType::SparseFloatVector
            | DataType::Int8Vector
    )
}

/// Whether values of this type are vectors.
pub fn is_vector(t: i32) -> bool {
    t >= DataType::BinaryVector as i32 && t < DataType::ArrayOfStruct as i32
}

/// Type parameters that define a field's shape, or what a function computes from it (others,
/// like `mmap.enabled`, are tuning).
const SHAPE_PARAMS: [&str; 7] = [
    "dim",
    "max_length",
    "max_capacity",
    "enable_analyzer",
    "analyzer_params",
    "multi_analyzer_params",
    "enable_match",
];

/// The user-declared fields (the hidden `$meta` dynamic field is implied by
/// `enable_dynamic_field`, and Milvus refuses it in a create call).
pub fn user_fields(schema: &CollectionSchema) -> impl Iterator<Item = &FieldSchema> {
    schema.fields.iter().filter(|f| !f.is_dynamic)
}

/// The schema to create on the target: the source's fields with server-assigned parts
/// (field IDs, states) cleared, under the new name and description.
pub fn target_schema(
    source: &CollectionSchema,
    name: &str,
    description: Option<&str>,
    keep_auto_id: bool,
) -> CollectionSchema {
    let fields = user_fields(source)
        .map(|f| FieldSchema {
            field_id: 0,
            name: f.name.clone(),
            is_primary_key: f.is_primary_key,
            description: f.description.clone(),
            data_type: f.data_type,
            type_params: with_max_length(f, name),
            index_params: Vec::new(),
            auto_id: f.auto_id && keep_auto_id,
            state: 0,
            element_type: f.element_type,
            default_value: f.default_value.clone(),
            is_dynamic: false,
            is_partition_key: f.is_partition_key,
            is_clustering_key: f.is_clustering_key,
            nullable: f.nullable,
            is_function_output: f.is_function_output,
            external_field: f.external_field.clone(),
            element_nullable: f.element_nullable,
        })
        .collect();
    // Functions by field name; the target assigns the IDs.
    let functions = source
        .functions
        .iter()
        .map(|f| FunctionSchema { id: 0, input_field_ids: Vec::new(), output_field_ids: Vec::new(), ..f.clone() })
        .collect();
    #[allow(deprecated)]
    CollectionSchema {
        name: name.to_string(),
        description: description.map(str::to_string).unwrap_or_else(|| source.description.clone()),
        auto_id: false,
        fields,
        enable_dynamic_field: source.enable_dynamic_field,
        properties: Vec::new(),
        functions,
        db_name: String::new(),
        struct_array_fields: Vec::new(),
    }
}

/// The largest `max_length` Milvus takes: a VarChar value can be no longer, so a field given
/// it holds every value any source can have.
pub const MAX_VARCHAR_LENGTH: u32 = 65535;

/// `f`'s type params, with `max_length` added where a VarChar (or an array of VarChar) lacks
/// it: Milvus requires one, and Milvus Lite 3.2 does not report it for arrays of VarChar.
fn with_max_length(f: &FieldSchema, collection: &str) -> Vec<KeyValuePair> {
    let varchar = DataType::VarChar as i32;
    let needs = f.data_type == varchar || (f.data_type == DataType::Array as i32 && f.element_type == varchar);
    let mut params = f.type_params.clone();
    if needs && !params.iter().any(|kv| kv.key == "max_length") {
        tracing::warn!(
            collection,
            field = %f.name,
            max_length = MAX_VARCHAR_LENGTH,
            "the source reports no max_length for this VarChar field (Milvus Lite does not for arrays of VarChar): the target gets the largest Milvus takes"
        );
        params.push(KeyValuePair { key: "max_length".into(), value: MAX_VARCHAR_LENGTH.to_string() });
    }
    params
}

fn shape_params(params: &[KeyValuePair]) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = params
        .iter()
        .filter(|kv| SHAPE_PARAMS.contains(&kv.key.as_str()))
        .map(|kv| (kv.key.clone(), json_by_meaning(&kv.value)))
        .collect();
    v.sort();
    v
}

/// A JSON value (analyzer parameters) in one spelling: servers re-serialise it. Anything
/// else as it is.
fn json_by_meaning(v: &str) -> String {
    match serde_json::from_str::<serde_json::Value>(v) {
        Ok(j @ (serde_json::Value::Object(_) | serde_json::Value::Array(_))) => j.to_string(),
        _ => v.to_string(),
    }
}

/// A function as compared between schemas: type, fields and parameters (not IDs).
fn function_shape(f: &FunctionSchema) -> String {
    let mut params: Vec<(String, String)> =
        f.params.iter().map(|kv| (kv.key.clone(), json_by_meaning(&kv.value))).collect();
    params.sort();
    format!("{:?} {:?} -> {:?} {:?}", f.r#type(), f.input_field_names, f.output_field_names, params)
}

fn type_name(t: i32) -> String {
    DataType::try_from(t)
        .map(|d| d.as_str_name().to_string())
        .unwrap_or_else(|_| format!("type {t}"))
}

/// The first structural difference between an existing target schema and the planned one,
/// or `None` when data written for one fits the other exactly.
pub fn first_difference(existing: &CollectionSchema, planned: &CollectionSchema) -> Option<String> {
    if existing.enable_dynamic_field != planned.enable_dynamic_field {
        return Some(format!(
            "dynamic field is {} on the target, {} in the plan",
            on_off(existing.enable_dynamic_field),
            on_off(planned.enable_dynamic_field)
        ));
    }
    let ex: Vec<&FieldSchema> = user_fields(existing).collect();
    let pl: Vec<&FieldSchema> = user_fields(planned).collect();
    for p in &pl {
        let Some(e) = ex.iter().find(|e| e.name == p.name) else {
            return Some(format!("field {:?} is missing on the target", p.name));
        };
        let checks: [(&str, String, String); 10] = [
            ("type", type_name(e.data_type), type_name(p.data_type)),
            ("element type", type_name(e.element_type), type_name(p.element_type)),
            ("primary key", e.is_primary_key.to_string(), p.is_primary_key.to_string()),
            ("autoID", e.auto_id.to_string(), p.auto_id.to_string()),
            ("partition key", e.is_partition_key.to_string(), p.is_partition_key.to_string()),
            ("clustering key", e.is_clustering_key.to_string(), p.is_clustering_key.to_string()),
            ("nullable", e.nullable.to_string(), p.nullable.to_string()),
            ("default value", format!("{:?}", e.default_value), format!("{:?}", p.default_value)),
            ("function output", e.is_function_output.to_string(), p.is_function_output.to_string()),
            (
                "type params",
                format!("{:?}", shape_params(&e.type_params)),
                // A shape parameter the target does not report is not compared: Milvus always
                // reports them, Milvus Lite drops `max_length` of VarChar arrays.
                format!(
                    "{:?}",
                    shape_params(&p.type_params)
                        .into_iter()
                        .filter(|(k, _)| e.type_params.iter().any(|kv| &kv.key == k))
                        .collect::<Vec<_>>()
                ),
            ),
        ];
        for (what, a, b) in checks {
            if what == "element type" && p.data_type != DataType::Array as i32 {
                continue;
            }
            if a != b {
                return Some(format!("field {:?}: {what} is {a} on the target, {b} in the plan", p.name));
            }
        }
    }
    if let Some(extra) = ex.iter().find(|e| !pl.iter().any(|p| p.name == e.name)) {
        return Some(format!("the target has an extra field {:?}", extra.name));
    }
    let shapes = |s: &CollectionSchema| {
        let mut v: Vec<String> = s.functions.iter().map(function_shape).collect();
        v.sort();
        v
    };
    let (ef, pf) = (shapes(existing), shapes(planned));
    if ef != pf {
        return Some(format!("functions are {ef:?} on the target, {pf:?} in the plan"));
    }
    None
}

fn on_off(b: bool) -> &'static str {
    if b {
        "on"
    } else {
        "off"
    }
}

/// A one-line description of a field, for plans.
pub fn describe_field(f: &FieldSchema) -> String {
    let mut s = format!("{} {}", f.name, type_name(f.data_type).to_lowercase());
    if f.data_type == DataType::Array as i32 {
        s.push_str(&format!("<{}>", type_name(f.element_type).to_lowercase()));
    }
    for (k, v) in shape_params(&f.type_params) {
        s.push_str(&format!(" {k}={v}"));
    }
    if f.is_primary_key {
        s.push_str(" primary");
    }
    if f.auto_id {
        s.push_str(" autoID");
    }
    if f.is_partition_key {
        s.push_str(" partition-key");
    }
    if f.is_clustering_key {
        s.push_str(" clustering-key");
    }
    if f.nullable {
        s.push_str(" nullable");
    }
    if let Some(d) = f.default_value.as_ref().and_then(|d| d.data.as_ref()) {
        s.push_str(&format!(" default={d:?}"));
    }
    if f.is_function_output {
        s.push_str(" function-output (computed by the target)");
    }
    s
}

/// A one-line description of a function, for plans.
pub fn describe_function(f: &FunctionSchema) -> String {
    format!(
        "{} {:?}({}) -> {}",
        f.name,
        f.r#type(),
        f.input_field_names.join(", "),
        f.output_field_names.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(name: &str, t: DataType, params: &[(&str, &str)]) -> FieldSchema {
        FieldSchema {
            name: name.into(),
            data_type: t as i32,
            type_params: params
                .iter()
                .map(|(k, v)| KeyValuePair {
                    key: k.to_string(),
                    value: v.to_string(),
                })
                .collect(),
            ..Default::default()
        }
    }

    fn schema() -> CollectionSchema {
        let mut pk = field("id", DataType::Int64, &[]);
        pk.is_primary_key = true;
        pk.auto_id = true;
        let mut meta = field("$meta", DataType::Json, &[]);
        meta.is_dynamic = true;
        meta.field_id = 104;
        CollectionSchema {
            name: "src".into(),
            description: "d".into(),
            fields: vec![
                pk,
                field("v", DataType::FloatVector, &[("dim", "8")]),
                field("s", DataType::VarChar, &[("max_length", "64"), ("mmap.enabled", "true")]),
                meta,
            ],
            enable_dynamic_field: true,
            ..Default::default()
        }
    }

    #[test]
    fn target_schema_drops_dynamic_field_and_applies_autoid_policy() {
        let t = target_schema(&schema(), "dst", Some("new"), false);
        assert_eq!(t.name, "dst");
        assert_eq!(t.description, "new");
        assert_eq!(t.fields.len(), 3);
        assert!(!t.fields[0].auto_id);
        assert!(target_schema(&schema(), "dst", None, true).fields[0].auto_id);
        assert!(t.enable_dynamic_field);
    }

    #[test]
    fn identical_schemas_have_no_difference_and_tuning_params_are_ignored() {
        let a = target_schema(&schema(), "x", None, true);
        let mut b = a.clone();
        b.fields[2].type_params.retain(|kv| kv.key != "mmap.enabled");
        assert_eq!(first_difference(&a, &b), None);
    }

    #[test]
    fn first_difference_names_the_field() {
        let a = target_schema(&schema(), "x", None, true);
        let mut b = a.clone();
        b.fields[1].type_params[0].value = "16".into();
        let d = first_difference(&a, &b).unwrap();
        assert!(d.contains("\"v\"") && d.contains("16"), "{d}");
        let mut lite = a.clone();
        lite.fields[2].type_params.retain(|kv| kv.key != "max_length");
        assert_eq!(first_difference(&lite, &a), None, "unreported params are not compared");
        // From a source that does not report it, the target gets the largest max_length.
        let planned = target_schema(&lite, "x", None, true);
        assert!(planned.fields[2].type_params.iter().any(|kv| kv.key == "max_length" && kv.value == "65535"), "{:?}", planned.fields[2]);
        let mut c = a.clone();
        c.fields.remove(2);
        assert!(first_difference(&a, &c).unwrap().contains("extra field \"s\""));
        let mut e = a.clone();
        e.enable_dynamic_field = false;
        assert!(first_difference(&a, &e).unwrap().contains("dynamic"));
    }
}
