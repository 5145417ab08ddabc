//! Know the target: what a server can hold, from the version it reports, so a collection it
//! cannot hold is refused at planning (naming the collection, the field and the version
//! needed) before anything is created.
//!
//! The versions are where upstream Milvus introduced each feature (its docs and release
//! notes); Milvus 2.3.5 and Milvus Lite 3.2.2 are also measured by the test suite (README,
//! "Versions and features"). A server whose version cannot be read is not second-guessed:
//! it refuses what it cannot hold when the collection is created.

use crate::proto::schema::{CollectionSchema, DataType, FieldSchema, FunctionType};

use super::schema::{is_vector, user_fields};

/// A target server, by the version string it reports (`v2.3.5`, `2.5.3-…`, or Milvus Lite's
/// `milvus_lite-3.2.2`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Server {
    Milvus { major: u32, minor: u32 },
    Lite,
    Unknown,
}

impl Server {
    pub fn parse(version: &str) -> Server {
        if version.starts_with("milvus_lite") {
            return Server::Lite;
        }
        let v = version.trim_start_matches('v');
        let mut parts = v.split(|c: char| !c.is_ascii_digit()).map(|p| p.parse::<u32>());
        match (parts.next(), parts.next()) {
            (Some(Ok(major)), Some(Ok(minor))) => Server::Milvus { major, minor },
            _ => Server::Unknown,
        }
    }

    /// Whether it takes given keys into an autoID primary key (`allow_insert_auto_id`,
    /// Milvus 2.6; Milvus Lite 3.2 does, checked by hand).
    pub fn accepts_keys_into_autoid(self) -> bool {
        match self {
            Server::Milvus { major, minor } => (major, minor) >= (2, 6),
            Server::Lite => true,
            Server::Unknown => false,
        }
    }

    /// Why it cannot hold what `need` names, if it cannot.
    fn lacks(self, need: Need) -> Option<String> {
        match self {
            Server::Unknown => None,
            Server::Lite => need.lite_lacks.map(|why| format!("Milvus Lite {why}")),
            Server::Milvus { major, minor } => {
                let (a, b) = need.since;
                ((major, minor) < (a, b)).then(|| format!("{} needs Milvus {a}.{b} or later", need.what))
            }
        }
    }
}

/// A feature, the Milvus version that introduced it, and whether Milvus Lite lacks it.
#[derive(Debug, Clone, Copy)]
struct Need {
    what: &'static str,
    since: (u32, u32),
    lite_lacks: Option<&'static str>,
}

const fn need(what: &'static str, since: (u32, u32)) -> Need {
    Need { what, since, lite_lacks: None }
}

/// What a field of type `t` needs of the server.
fn type_need(t: DataType) -> Option<Need> {
    // Milvus Lite lists what it takes in its own error: BOOL, INT8/16/32/64, FLOAT, DOUBLE,
    // VARCHAR, JSON, ARRAY, GEOMETRY, TIMESTAMPTZ, FLOAT_VECTOR, SPARSE_FLOAT_VECTOR.
    let no_lite = |what, since, why| Need { what, since, lite_lacks: Some(why) };
    Some(match t {
        DataType::BinaryVector => no_lite("BinaryVector", (2, 0), "has no BinaryVector"),
        DataType::Float16Vector => no_lite("Float16Vector", (2, 4), "has no Float16Vector"),
        DataType::BFloat16Vector => no_lite("BFloat16Vector", (2, 4), "has no BFloat16Vector"),
        DataType::Int8Vector => no_lite("Int8Vector", (2, 6), "has no Int8Vector"),
        DataType::SparseFloatVector => need("SparseFloatVector", (2, 4)),
        DataType::Geometry => need("Geometry", (2, 6)),
        DataType::Timestamptz => need("Timestamptz", (2, 6)),
        _ => return None,
    })
}

/// What a field needs of the server beyond its type.
fn field_needs(f: &FieldSchema) -> Vec<Need> {
    let mut v = Vec::new();
    if f.nullable {
        v.push(need("a nullable field", (2, 5)));
    }
    if f.default_value.is_some() {
        v.push(need("a default value", (2, 5)));
    }
    if f.is_clustering_key {
        v.push(need("a clustering key", (2, 4)));
    }
    v
}

/// Why the target cannot hold `schema`, as (field, its type, reason), if it cannot: every
/// field's type and features, several vector fields, and the functions.
pub fn cannot_hold(schema: &CollectionSchema, target: Server) -> Option<(String, String, String)> {
    let type_of = |f: &FieldSchema| {
        let t = DataType::try_from(f.data_type).unwrap_or(DataType::None);
        if t == DataType::Array {
            format!("Array<{:?}>", DataType::try_from(f.element_type).unwrap_or(DataType::None))
        } else {
            format!("{t:?}")
        }
    };
    for f in user_fields(schema) {
        let t = DataType::try_from(f.data_type).unwrap_or(DataType::None);
        let needs = type_need(t).into_iter().chain(field_needs(f));
        for n in needs {
            if let Some(why) = target.lacks(n) {
                return Some((f.name.clone(), type_of(f), why));
            }
        }
    }
    let vectors: Vec<&FieldSchema> = user_fields(schema).filter(|f| is_vector(f.data_type)).collect();
    if vectors.len() > 1 {
        if let Some(why) = target.lacks(need("more than one vector field", (2, 4))) {
            return Some((vectors[1].name.clone(), type_of(vectors[1]), why));
        }
    }
    for func in &schema.functions {
        let n = match func.r#type() {
            FunctionType::Bm25 => need("a BM25 function", (2, 5)),
            _ => need("a text embedding function", (2, 6)),
        };
        if let Some(why) = target.lacks(n) {
            let out = func.output_field_names.first().cloned().unwrap_or_default();
            let t = schema.fields.iter().find(|f| f.name == out).map(type_of).unwrap_or_default();
            return Some((out, t, format!("{why} (function {:?})", func.name)));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::schema::{FunctionSchema, ValueField};

    fn field(name: &str, t: DataType) -> FieldSchema {
        FieldSchema { name: name.into(), data_type: t as i32, ..Default::default() }
    }

    fn schema(fields: Vec<FieldSchema>) -> CollectionSchema {
        let mut pk = field("id", DataType::Int64);
        pk.is_primary_key = true;
        CollectionSchema { fields: [vec![pk], fields].concat(), ..Default::default() }
    }

    #[test]
    fn versions_parse() {
        assert_eq!(Server::parse("v2.3.5"), Server::Milvus { major: 2, minor: 3 });
        assert_eq!(Server::parse("2.5.3-gpu"), Server::Milvus { major: 2, minor: 5 });
        assert_eq!(Server::parse("milvus_lite-3.2.2"), Server::Lite);
        assert_eq!(Server::parse(""), Server::Unknown);
        assert!(!Server::parse("v2.5.9").accepts_keys_into_autoid());
        assert!(Server::parse("v2.6.0").accepts_keys_into_autoid());
        assert!(Server::Lite.accepts_keys_into_autoid());
    }

    #[test]
    fn each_feature_is_refused_below_its_version_by_field_and_version_needed() {
        let v23 = Server::parse("v2.3.5");
        let v24 = Server::parse("v2.4.9");
        let v25 = Server::parse("v2.5.0");
        let v26 = Server::parse("v2.6.1");
        let reason = |s: &CollectionSchema, t| cannot_hold(s, t).map(|(f, ty, why)| format!("{f} {ty}: {why}"));

        let sparse = schema(vec![field("sp", DataType::SparseFloatVector)]);
        assert_eq!(reason(&sparse, v23).unwrap(), "sp SparseFloatVector: SparseFloatVector needs Milvus 2.4 or later");
        assert_eq!(reason(&sparse, v24), None);
        assert_eq!(reason(&sparse, Server::Lite), None);

        let two = schema(vec![field("a", DataType::FloatVector), field("b", DataType::FloatVector)]);
        assert_eq!(reason(&two, v23).unwrap(), "b FloatVector: more than one vector field needs Milvus 2.4 or later");
        assert_eq!(reason(&two, v24), None);

        let mut n = field("n", DataType::Int32);
        n.nullable = true;
        let mut d = field("d", DataType::VarChar);
        d.default_value = Some(ValueField::default());
        for s in [schema(vec![n]), schema(vec![d])] {
            assert!(reason(&s, v24).unwrap().contains("needs Milvus 2.5 or later"), "{:?}", reason(&s, v24));
            assert_eq!(reason(&s, v25), None);
        }

        for t in [DataType::Int8Vector, DataType::Geometry, DataType::Timestamptz] {
            let s = schema(vec![field("x", t)]);
            assert!(reason(&s, v25).unwrap().contains("needs Milvus 2.6 or later"));
            assert_eq!(reason(&s, v26), None);
        }
        for t in [DataType::BinaryVector, DataType::Float16Vector, DataType::BFloat16Vector, DataType::Int8Vector] {
            let s = schema(vec![field("x", t)]);
            assert!(reason(&s, Server::Lite).unwrap().starts_with(&format!("x {t:?}: Milvus Lite has no")));
        }
        assert_eq!(reason(&schema(vec![field("g", DataType::Geometry)]), Server::Lite), None);

        let mut bm = schema(vec![field("text", DataType::VarChar), field("bm", DataType::SparseFloatVector)]);
        bm.fields[2].is_function_output = true;
        bm.functions.push(FunctionSchema {
            name: "f".into(),
            r#type: FunctionType::Bm25 as i32,
            input_field_names: vec!["text".into()],
            output_field_names: vec!["bm".into()],
            ..Default::default()
        });
        assert_eq!(reason(&bm, v24).unwrap(), "bm SparseFloatVector: a BM25 function needs Milvus 2.5 or later (function \"f\")");
        assert_eq!(reason(&bm, v25), None);
        // Nothing is refused when the version cannot be read.
        assert_eq!(reason(&bm, Server::Unknown), None);
    }
}
