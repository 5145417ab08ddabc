//! Which shard (DML channel) of a collection a primary key belongs to, and the share of a
//! collection one ferry instance moves when `[source.wal] channels` splits a source across
//! instances.
//!
//! Milvus 2.3's proxy routes every insert, upsert and delete by primary key
//! (`typeutil.HashPK2Channels`): Int64 keys by murmur3 (x86, 32-bit, seed 0) of the key's
//! eight little-endian bytes with the top bit cleared, VarChar keys by the IEEE CRC-32 of
//! their first 100 bytes; either modulo the collection's shard count. Shard `i` is the
//! collection's `virtual_channel_names[i]`, carried by `physical_channel_names[i]`.
//! (Milvus 2.5 routes through a hash table instead; `tests/wal_read.rs` checks this
//! function against the real server's WAL.)
//!
//! A key therefore always lands on one channel: instances that each take a disjoint set of
//! channels never both write one key, so each can snapshot its keys and replay its channels
//! on its own schedule.

use super::expr::PkValue;

/// Milvus hashes at most this many bytes of a VarChar key.
const STRING_HASH_BYTES: usize = 100;

/// The shard of `pk` in a collection of `num_shards` shards.
pub fn shard_of(pk: &PkValue, num_shards: u32) -> u32 {
    let hash = match pk {
        PkValue::Int(v) => murmur3_32(&v.to_le_bytes(), 0) & 0x7fff_ffff,
        PkValue::Str(s) => {
            let b = s.as_bytes();
            crc32fast::hash(&b[..b.len().min(STRING_HASH_BYTES)])
        }
    };
    hash % num_shards.max(1)
}

/// MurmurHash3 x86 32-bit.
fn murmur3_32(data: &[u8], seed: u32) -> u32 {
    const C1: u32 = 0xcc9e_2d51;
    const C2: u32 = 0x1b87_3593;
    let mut h = seed;
    let mut blocks = data.chunks_exact(4);
    for b in &mut blocks {
        let mut k = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        k = k.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2);
        h ^= k;
        h = h.rotate_left(13).wrapping_mul(5).wrapping_add(0xe654_6b64);
    }
    let tail = blocks.remainder();
    if !tail.is_empty() {
        let mut k = 0u32;
        for (i, &byte) in tail.iter().enumerate() {
            k |= (byte as u32) << (8 * i);
        }
        h ^= k.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2);
    }
    h ^= data.len() as u32;
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}

/// The shards of one collection an instance moves (only when it does not move them all).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ShardFilter {
    pub num_shards: u32,
    /// Sorted shard indexes.
    pub keep: Vec<u32>,
    /// Their physical channels, in the same order (for messages).
    pub channels: Vec<String>,
}

impl ShardFilter {
    /// Whether `pk` is one of this instance's keys.
    pub fn keeps(&self, pk: &PkValue) -> bool {
        self.keep.binary_search(&shard_of(pk, self.num_shards)).is_ok()
    }

    /// "shards 0, 2 of 4 (by-dev-rootcoord-dml_3, by-dev-rootcoord-dml_5)".
    pub fn describe(&self) -> String {
        let keep: Vec<String> = self.keep.iter().map(|k| k.to_string()).collect();
        format!("shards {} of {} ({})", keep.join(", "), self.num_shards, self.channels.join(", "))
    }
}

/// The share of a collection whose shards are carried by `physical_channels` that an
/// instance reading `selected` channels moves: `Err(())` when it has no shard there,
/// `Ok(None)` when it has them all, otherwise the filter.
pub fn share(physical_channels: &[String], selected: &[String]) -> Result<Option<ShardFilter>, ()> {
    let keep: Vec<u32> = (0..physical_channels.len() as u32)
        .filter(|&i| selected.contains(&physical_channels[i as usize]))
        .collect();
    if keep.is_empty() {
        return Err(());
    }
    if keep.len() == physical_channels.len() {
        return Ok(None);
    }
    Ok(Some(ShardFilter {
        num_shards: physical_channels.len() as u32,
        channels: keep.iter().map(|&i| physical_channels[i as usize].clone()).collect(),
        keep,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur3_matches_reference_vectors() {
        // From the reference implementation (SMHasher) test vectors.
        assert_eq!(murmur3_32(b"", 0), 0);
        assert_eq!(murmur3_32(b"", 1), 0x514e_28b7);
        assert_eq!(murmur3_32(b"\xff\xff\xff\xff", 0), 0x7629_3b50);
        assert_eq!(murmur3_32(b"\x21\x43\x65\x87", 0), 0xf55b_516b);
        assert_eq!(murmur3_32(b"\x21\x43\x65", 0), 0x7e4a_8634);
        assert_eq!(murmur3_32(b"\x21\x43", 0), 0xa0f7_b07a);
        assert_eq!(murmur3_32(b"\x21", 0), 0x7266_1cf4);
        assert_eq!(murmur3_32(b"Hello, world!", 1234), 0xfaf6_cdb3);
    }

    #[test]
    fn string_keys_hash_their_first_100_bytes() {
        let long = "x".repeat(100);
        let longer = format!("{long}tail");
        for n in [2, 3, 16] {
            assert_eq!(shard_of(&PkValue::Str(long.clone()), n), shard_of(&PkValue::Str(longer.clone()), n));
        }
        assert_eq!(shard_of(&PkValue::Str("hello".into()), u32::MAX), 0x3610_a686 % u32::MAX);
    }

    #[test]
    fn every_key_lands_in_a_shard_and_keys_spread() {
        let mut seen = [0u32; 4];
        for i in 0..4000i64 {
            let s = shard_of(&PkValue::Int(i), 4);
            seen[s as usize] += 1;
        }
        assert!(seen.iter().all(|&n| n > 800), "{seen:?}");
        assert_eq!(shard_of(&PkValue::Int(7), 1), 0);
    }

    #[test]
    fn share_of_selected_channels() {
        let ch = |n: u32| format!("p-rootcoord-dml_{n}");
        let phys = vec![ch(3), ch(4)];
        assert_eq!(share(&phys, &[ch(0)]), Err(()));
        assert_eq!(share(&phys, &[ch(3), ch(4), ch(9)]), Ok(None));
        let f = share(&phys, &[ch(4)]).unwrap().unwrap();
        assert_eq!(f.keep, vec![1]);
        assert_eq!(f.describe(), "shards 1 of 2 (p-rootcoord-dml_4)");
        let mine = (0..1000).filter(|&i| f.keeps(&PkValue::Int(i))).count();
        let other = share(&phys, &[ch(3)]).unwrap().unwrap();
        let theirs = (0..1000).filter(|&i| other.keeps(&PkValue::Int(i))).count();
        assert_eq!(mine + theirs, 1000);
    }
}
