//! Boolean expressions ferry sends to Milvus. Milvus 2.3 deletes by expression only, so a
//! delete by primary keys becomes `pk in [...]`; VarChar keys are quoted as Milvus's
//! expression grammar reads string literals (Go-style escapes), so any key round-trips.

use super::data::PrimaryKeys;
use std::fmt::Write;

/// `name in [k1, k2, ...]` for the given keys.
pub fn pk_in(pk_field: &str, keys: &PrimaryKeys) -> String {
    let mut s = String::with_capacity(pk_field.len() + 8 + keys.byte_size() * 2);
    s.push_str(pk_field);
    s.push_str(" in [");
    match keys {
        PrimaryKeys::Int(v) => {
            for (i, k) in v.iter().enumerate() {
                if i > 0 {
                    s.push(',');
                }
                let _ = write!(s, "{k}");
            }
        }
        PrimaryKeys::Str(v) => {
            for (i, k) in v.iter().enumerate() {
                if i > 0 {
                    s.push(',');
                }
                push_quoted(&mut s, k);
            }
        }
    }
    s.push(']');
    s
}

/// `name > key` (key-ordered pagination).
pub fn pk_greater(pk_field: &str, key: &PkValue) -> String {
    let mut s = format!("{pk_field} > ");
    key.write_literal(&mut s);
    s
}

/// One primary-key value.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub enum PkValue {
    Int(i64),
    Str(String),
}

impl PkValue {
    /// Appends this key as an expression literal.
    pub fn write_literal(&self, s: &mut String) {
        match self {
            PkValue::Int(v) => {
                let _ = write!(s, "{v}");
            }
            PkValue::Str(v) => push_quoted(s, v),
        }
    }
}

impl PrimaryKeys {
    /// The key at row `i`.
    pub fn get(&self, i: usize) -> Option<PkValue> {
        match self {
            PrimaryKeys::Int(v) => v.get(i).map(|k| PkValue::Int(*k)),
            PrimaryKeys::Str(v) => v.get(i).map(|k| PkValue::Str(k.clone())),
        }
    }
}

/// Writes `v` as a double-quoted literal with Go escapes.
fn push_quoted(s: &mut String, v: &str) {
    s.push('"');
    for c in v.chars() {
        match c {
            '"' => s.push_str("\\\""),
            '\\' => s.push_str("\\\\"),
            '\n' => s.push_str("\\n"),
            '\r' => s.push_str("\\r"),
            '\t' => s.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(s, "\\u{:04x}", c as u32);
            }
            c => s.push(c),
        }
    }
    s.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn int_keys() {
        assert_eq!(pk_in("id", &PrimaryKeys::Int(vec![1, -2, 3])), "id in [1,-2,3]");
    }

    #[test]
    fn string_keys_are_escaped() {
        let keys = PrimaryKeys::Str(vec!["a\"b".into(), "c\\d".into(), "e\nf\u{1}".into()]);
        assert_eq!(
            pk_in("pk", &keys),
            r#"pk in ["a\"b","c\\d","e\nf\u0001"]"#
        );
    }

    #[test]
    fn greater_than() {
        assert_eq!(pk_greater("id", &PkValue::Int(7)), "id > 7");
        assert_eq!(pk_greater("k", &PkValue::Str("x\"".into())), r#"k > "x\"""#);
    }
}
