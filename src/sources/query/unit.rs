//! Work units of a bulk copy and the query expressions that page through them.
//!
//! A unit is one partition (or the whole collection for partition-key collections), split
//! further into `key_splits` residue classes of an Int64 key (`pk % n == i`) so one large
//! partition still reads in parallel. Each unit pages by primary key (`pk > last`), never by
//! offset, so a page costs the same at the end of a collection as at its start.

/// One independently resumable slice of a collection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unit {
    /// Partition read and written, `None` for partition-key collections.
    pub partition: Option<String>,
    /// `(i, n)`: keys with `pk % n == ±i`; `(0, 1)` is every key.
    pub split: (u32, u32),
}

impl Unit {
    /// A stable name for state keys and logs.
    pub fn key(&self) -> String {
        format!(
            "{}#{}of{}",
            self.partition.as_deref().unwrap_or("*"),
            self.split.0,
            self.split.1
        )
    }

    /// The key-split filter (empty for a whole partition).
    pub fn filter(&self, pk_field: &str) -> String {
        let (i, n) = self.split;
        match (i, n) {
            (_, 0 | 1) => String::new(),
            (0, n) => format!("{pk_field} % {n} == 0"),
            // Milvus's % truncates like C, so negative keys leave -i.
            (i, n) => format!("({pk_field} % {n} == {i} || {pk_field} % {n} == -{i})"),
        }
    }
}

/// The units of a collection.
pub fn units(partitions: &[String], partition_key: bool, int_pk: bool, key_splits: u32) -> Vec<Unit> {
    let n = if int_pk { key_splits.max(1) } else { 1 };
    let parts: Vec<Option<String>> = if partition_key {
        vec![None]
    } else {
        partitions.iter().cloned().map(Some).collect()
    };
    parts
        .into_iter()
        .flat_map(|p| (0..n).map(move |i| Unit { partition: p.clone(), split: (i, n) }))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters() {
        let u = Unit { partition: None, split: (0, 1) };
        assert_eq!(u.filter("id"), "");
        let u = Unit { partition: None, split: (2, 4) };
        assert_eq!(u.filter("id"), "(id % 4 == 2 || id % 4 == -2)");
        let u = Unit { partition: Some("p".into()), split: (0, 4) };
        assert_eq!(u.filter("id"), "id % 4 == 0");
        assert_eq!(u.key(), "p#0of4");
    }

    #[test]
    fn units_cover_partitions_and_splits() {
        let p = vec!["_default".to_string(), "a".to_string()];
        assert_eq!(units(&p, false, true, 3).len(), 6);
        assert_eq!(units(&p, false, false, 3).len(), 2);
        let pk = units(&p, true, true, 2);
        assert_eq!(pk.len(), 2);
        assert!(pk.iter().all(|u| u.partition.is_none()));
    }
}
