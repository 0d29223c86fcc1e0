//! Which shard a hash key lands on: the open shards' hash key ranges, from `ListShards`.

use std::sync::Arc;

/// One open shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ShardRange {
    pub(crate) id: Arc<str>,
    pub(crate) start: u128,
    pub(crate) end: u128,
}

/// The open shards, sorted by the start of their range.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ShardMap {
    shards: Vec<ShardRange>,
}

impl ShardMap {
    /// A map of these shards; overlapping or empty ranges are refused (a map of closed and open
    /// shards mixed would predict wrongly).
    pub(crate) fn new(mut shards: Vec<ShardRange>) -> Result<Self, String> {
        shards.sort_by_key(|shard| shard.start);
        for pair in shards.windows(2) {
            if pair[1].start <= pair[0].end {
                return Err(format!(
                    "shards {} and {} have overlapping hash key ranges",
                    pair[0].id, pair[1].id
                ));
            }
        }
        if let Some(shard) = shards.iter().find(|shard| shard.start > shard.end) {
            return Err(format!("shard {} has an empty hash key range", shard.id));
        }
        Ok(Self { shards })
    }

    pub(crate) fn len(&self) -> usize {
        self.shards.len()
    }

    pub(crate) fn shards(&self) -> &[ShardRange] {
        &self.shards
    }

    /// The index of the shard whose range holds `hash`.
    pub(crate) fn lookup(&self, hash: u128) -> Option<usize> {
        let after = self.shards.partition_point(|shard| shard.start <= hash);
        let index = after.checked_sub(1)?;
        (hash <= self.shards[index].end).then_some(index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shard(id: &str, start: u128, end: u128) -> ShardRange {
        ShardRange {
            id: id.into(),
            start,
            end,
        }
    }

    #[test]
    fn finds_the_shard_of_a_hash() {
        let half = u128::MAX / 2;
        let map =
            ShardMap::new(vec![shard("b", half + 1, u128::MAX), shard("a", 0, half)]).unwrap();
        assert_eq!(map.lookup(0), Some(0));
        assert_eq!(map.lookup(half), Some(0));
        assert_eq!(map.lookup(half + 1), Some(1));
        assert_eq!(map.lookup(u128::MAX), Some(1));
        assert_eq!(&*map.shards()[1].id, "b");
        let gap = ShardMap::new(vec![shard("a", 10, 20)]).unwrap();
        assert_eq!(gap.lookup(5), None);
        assert_eq!(gap.lookup(21), None);
        assert_eq!(ShardMap::default().lookup(1), None);
        assert!(ShardMap::new(vec![shard("a", 0, 10), shard("b", 10, 20)]).is_err());
    }
}
