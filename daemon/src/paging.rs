//! Pages of a book in key order, for peers that page through it with a cursor
//! (`ListBook`, `ListProfiles`).

/// The items whose key is above `after` (all of them with `None`), the `limit` smallest
/// keys of those, in ascending key order. Linear in the items, plus the page's sort: a
/// peer asking page after page does not make the book sort itself whole each time.
pub(crate) fn page_after<K: Ord + Copy, V>(
    items: impl Iterator<Item = (K, V)>,
    after: Option<K>,
    limit: usize,
) -> Vec<(K, V)> {
    let mut above: Vec<(K, V)> = items
        .filter(|(key, _)| after.is_none_or(|after| *key > after))
        .collect();
    if above.len() > limit {
        if limit == 0 {
            return Vec::new();
        }
        above.select_nth_unstable_by(limit - 1, |a, b| a.0.cmp(&b.0));
        above.truncate(limit);
    }
    above.sort_unstable_by_key(|a| a.0);
    above
}

#[cfg(test)]
mod tests {
    use super::page_after;

    #[test]
    fn pages_walk_every_key_once_in_order() {
        let keys = [17u32, 3, 42, 8, 23, 1, 99, 5, 64, 30];
        let mut seen = Vec::new();
        let mut after = None;
        loop {
            let page = page_after(keys.iter().map(|&k| (k, ())), after, 3);
            assert!(page.len() <= 3);
            let Some(&(last, ())) = page.last() else {
                break;
            };
            seen.extend(page.iter().map(|&(k, ())| k));
            after = Some(last);
        }
        let mut sorted = keys.to_vec();
        sorted.sort_unstable();
        assert_eq!(seen, sorted);
        assert!(page_after(keys.iter().map(|&k| (k, ())), Some(99), 3).is_empty());
        assert!(page_after(keys.iter().map(|&k| (k, ())), None, 0).is_empty());
        assert_eq!(
            page_after(keys.iter().map(|&k| (k, ())), Some(4), 2),
            [(5, ()), (8, ())]
        );
    }
}
