//! A pre-flight walk over a Parquet column chunk's page headers.
//!
//! The `parquet` crate sizes its decompression buffer from each page header's
//! `uncompressed_page_size` (an i32) before it decompresses anything, so one corrupt header
//! can make it reserve up to 2 GiB. This walk reads just the headers (Thrift compact
//! protocol, `PageHeader` fields 2 and 3) and refuses a chunk whose pages declare more
//! uncompressed bytes than the decode budget allows, before the crate sees it. It also
//! notes the largest page and the dictionary's size, from which the reader bounds what the
//! chunk can decode to (a dictionary page lets a few bytes of indices repeat long values).

/// Why a walk stopped.
pub(super) type WalkError = String;

struct Thrift<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl Thrift<'_> {
    fn byte(&mut self) -> Result<u8, WalkError> {
        let b = *self
            .buf
            .get(self.pos)
            .ok_or("page header runs past the chunk")?;
        self.pos += 1;
        Ok(b)
    }

    fn varint(&mut self) -> Result<u64, WalkError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err("page header varint is too long".into())
    }

    fn zigzag(&mut self) -> Result<i64, WalkError> {
        let v = self.varint()?;
        Ok((v >> 1) as i64 ^ -((v & 1) as i64))
    }

    fn skip_bytes(&mut self, n: u64) -> Result<(), WalkError> {
        let end = (self.pos as u64).saturating_add(n);
        if end > self.buf.len() as u64 {
            return Err("page header runs past the chunk".into());
        }
        self.pos = end as usize;
        Ok(())
    }

    /// Skips one value of compact type `t`; `depth` bounds nesting on hostile input.
    fn skip(&mut self, t: u8, depth: u32) -> Result<(), WalkError> {
        if depth > 16 {
            return Err("page header nests too deeply".into());
        }
        match t {
            1 | 2 => Ok(()),
            3 => self.skip_bytes(1),
            4..=6 => self.varint().map(drop),
            7 => self.skip_bytes(8),
            8 => {
                let n = self.varint()?;
                self.skip_bytes(n)
            }
            9 | 10 => {
                let h = self.byte()?;
                let n = match h >> 4 {
                    15 => self.varint()?,
                    n => u64::from(n),
                };
                for _ in 0..n {
                    self.skip_element(h & 0x0f, depth + 1)?;
                }
                Ok(())
            }
            11 => {
                let n = self.varint()?;
                if n == 0 {
                    return Ok(());
                }
                let kv = self.byte()?;
                for _ in 0..n {
                    self.skip_element(kv >> 4, depth + 1)?;
                    self.skip_element(kv & 0x0f, depth + 1)?;
                }
                Ok(())
            }
            12 => self.skip_struct(depth + 1, |_, _, _| Ok(false)),
            t => Err(format!("page header has unknown Thrift type {t}")),
        }
    }

    /// Skips a list, set or map element: unlike struct fields, booleans there take a byte,
    /// so every element consumes input and a hostile count cannot spin.
    fn skip_element(&mut self, t: u8, depth: u32) -> Result<(), WalkError> {
        match t {
            1 | 2 => self.skip_bytes(1),
            t => self.skip(t, depth),
        }
    }

    /// Walks a struct's fields; `field(self, id, type)` reads a field it wants and returns
    /// `true`, or `false` to have it skipped.
    fn skip_struct(
        &mut self,
        depth: u32,
        mut field: impl FnMut(&mut Self, i64, u8) -> Result<bool, WalkError>,
    ) -> Result<(), WalkError> {
        let mut last = 0i64;
        loop {
            let h = self.byte()?;
            if h == 0 {
                return Ok(());
            }
            let t = h & 0x0f;
            let id = match h >> 4 {
                0 => self.zigzag()?,
                delta => last + i64::from(delta),
            };
            last = id;
            if !field(self, id, t)? {
                self.skip(t, depth)?;
            }
        }
    }
}

/// What a column chunk's page headers declare.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(super) struct Declared {
    /// Uncompressed bytes of all pages.
    pub total: u64,
    /// The largest page's uncompressed bytes: no single value can be longer.
    pub max_page: u64,
    /// Uncompressed bytes and entry count of the dictionary pages.
    pub dict_bytes: u64,
    pub dict_values: u64,
}

/// Walks the page headers of a column chunk, failing as soon as the uncompressed sizes they
/// declare exceed `budget`. `chunk` is the chunk's bytes.
pub(super) fn declared(chunk: &[u8], budget: u64) -> Result<Declared, WalkError> {
    let mut r = Thrift { buf: chunk, pos: 0 };
    let mut d = Declared::default();
    while r.pos < chunk.len() {
        let (mut uncompressed, mut compressed, mut dict) = (None, None, None);
        r.skip_struct(0, |r, id, t| match (id, t) {
            (2, 5) => {
                uncompressed = Some(r.zigzag()?);
                Ok(true)
            }
            (3, 5) => {
                compressed = Some(r.zigzag()?);
                Ok(true)
            }
            // dictionary_page_header { 1: i32 num_values, ... }
            (7, 12) => {
                r.skip_struct(1, |r, id, t| match (id, t) {
                    (1, 5) => {
                        dict = Some(r.zigzag()?);
                        Ok(true)
                    }
                    _ => Ok(false),
                })?;
                Ok(true)
            }
            _ => Ok(false),
        })?;
        let (Some(u), Some(c)) = (uncompressed, compressed) else {
            return Err("page header lacks its sizes".into());
        };
        if u < 0 || c < 0 || dict.is_some_and(|n| n < 0) {
            return Err(format!("page header declares sizes {u} and {c}"));
        }
        d.total = d.total.saturating_add(u as u64);
        d.max_page = d.max_page.max(u as u64);
        if let Some(n) = dict {
            d.dict_bytes = d.dict_bytes.saturating_add(u as u64);
            d.dict_values = d.dict_values.saturating_add(n as u64);
        }
        if d.total > budget {
            return Err(format!(
                "pages declare {} uncompressed bytes, more than the {budget} allowed",
                d.total
            ));
        }
        r.skip_bytes(c as u64)?;
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn varint(mut v: u64, out: &mut Vec<u8>) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }

    /// A page header (type, uncompressed, compressed, a nested data_page_header with a
    /// list and a map) followed by `compressed` data bytes.
    fn page(uncompressed: i64, compressed: usize) -> Vec<u8> {
        let mut b = vec![0x15, 0x00, 0x15];
        varint(((uncompressed << 1) ^ (uncompressed >> 63)) as u64, &mut b);
        b.push(0x15);
        varint((compressed as u64) << 1, &mut b);
        // field 5: struct { 1: i32 3, 2: list<bool> [true, false], 3: map<i32,bool> {} , 4: binary "ab" }
        b.extend_from_slice(&[
            0x2c, 0x15, 0x06, 0x19, 0x21, 0x01, 0x02, 0x1b, 0x00, 0x18, 0x02,
        ]);
        b.extend_from_slice(b"ab");
        b.extend_from_slice(&[0x00, 0x00]);
        b.extend(std::iter::repeat_n(7u8, compressed));
        b
    }

    #[test]
    fn sums_pages_and_refuses_oversized_claims() {
        let mut chunk = page(100, 5);
        chunk.extend(page(50, 0));
        assert_eq!(
            declared(&chunk, 1 << 20).map(|d| (d.total, d.max_page)),
            Ok((150, 100))
        );
        let huge = page(1 << 30, 3);
        assert!(declared(&huge, 1 << 20).unwrap_err().contains("more than"));
        assert_eq!(declared(&huge, 1 << 31).map(|d| d.total), Ok(1 << 30));
        assert!(declared(&page(-1, 0), 10).is_err());
        let cut = page(10, 8);
        assert!(declared(&cut[..cut.len() - 1], 100).is_err());
        // A list claiming 2^60 boolean elements ends at the chunk's end instead of spinning.
        let mut spin = vec![0x19, 0xf1];
        varint(1 << 60, &mut spin);
        assert!(declared(&spin, 100).is_err());
    }
}
