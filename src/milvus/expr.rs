//! Boolean expressions ferry sends to Milvus. Milvus 2.3 deletes by expression only, so a
//! delete by primary keys becomes `pk in [...]`; VarChar keys are quoted as Milvus's
//! expression grammar reads string literals (Go-style escapes), so any key round-trips.

use super::data::PrimaryKeys;
use std::fmt::Write;

/// `name in [k1, k2, ...]` for the given keys.
///
/// `i64::MIN` cannot be written as a literal: Milvus's expression parser reads
/// `-9223372036854775808` as the negation of `9223372036854775808`, which overflows
/// ("strconv.ParseInt: value out of range", Milvus 2.3.5). It is written as the constant
/// `-9223372036854775807 - 1`, which the parser folds: the expression stays a term list, so a
/// delete needs no loaded collection (a range or `or` expression would).
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
                write_int(&mut s, *k);
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

/// An Int64 literal Milvus can parse (see [`pk_in`] for `i64::MIN`).
fn write_int(s: &mut String, k: i64) {
    if k == i64::MIN {
        let _ = write!(s, "{} - 1", i64::MIN + 1);
    } else {
        let _ = write!(s, "{k}");
    }
}

/// `name > key` (key-ordered pagination); after `i64::MIN` (which has no plain literal, see
/// [`pk_in`]) it is `name >= -9223372036854775807`.
pub fn pk_greater(pk_field: &str, key: &PkValue) -> String {
    if *key == PkValue::Int(i64::MIN) {
        return format!("{pk_field} >= {}", i64::MIN + 1);
    }
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
            PkValue::Int(v) => write_int(s, *v),
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

    /// Milvus cannot parse the literal of `i64::MIN`: expressions never contain it.
    #[test]
    fn i64_min_is_never_a_literal() {
        let min = i64::MIN.to_string();
        assert_eq!(pk_in("id", &PrimaryKeys::Int(vec![i64::MIN])), "id in [-9223372036854775807 - 1]");
        let e = pk_in("id", &PrimaryKeys::Int(vec![1, i64::MIN, i64::MAX]));
        assert_eq!(e, "id in [1,-9223372036854775807 - 1,9223372036854775807]");
        assert!(!e.contains(&min));
        assert_eq!(pk_greater("id", &PkValue::Int(i64::MIN)), "id >= -9223372036854775807");
        assert_eq!(pk_greater("id", &PkValue::Int(i64::MIN + 1)), "id > -9223372036854775807");
    }

    #[test]
    fn greater_than() {
        assert_eq!(pk_greater("id", &PkValue::Int(7)), "id > 7");
        assert_eq!(pk_greater("k", &PkValue::Str("x\"".into())), r#"k > "x\"""#);
    }
}
