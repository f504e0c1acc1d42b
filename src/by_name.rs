//! Providers by name in one sorted `Vec`: how the metrics and the status board list them. A
//! `BTreeMap` of 10 000 providers was 63 bytes a provider in half-full nodes (split as names
//! arrive in order), a sorted `Vec` 32; a lookup is a binary search, and an insertion in name
//! order (a configuration's start-up) appends. Removing or adding one provider on a reload
//! moves the entries after it: microseconds at 10 000.

use std::sync::Arc;

pub struct ByName<V>(Vec<(Arc<str>, V)>);

impl<V> Default for ByName<V> {
    fn default() -> Self {
        ByName(Vec::new())
    }
}

impl<V> ByName<V> {
    fn find(&self, name: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|(key, _)| (**key).cmp(name))
    }

    pub fn get(&self, name: &str) -> Option<&V> {
        let at = self.find(name).ok()?;
        self.0.get(at).map(|(_, value)| value)
    }

    /// Adds `name`, or replaces its value (handed back).
    pub fn insert(&mut self, name: Arc<str>, value: V) -> Option<V> {
        match self.find(&name) {
            Ok(at) => self
                .0
                .get_mut(at)
                .map(|(_, old)| std::mem::replace(old, value)),
            Err(at) => {
                self.0.insert(at, (name, value));
                None
            }
        }
    }

    pub fn remove(&mut self, name: &str) -> Option<V> {
        let at = self.find(name).ok()?;
        let (_, value) = self.0.remove(at);
        // A reload that removed most providers gives the room back.
        if self.0.len() < self.0.capacity() / 4 {
            self.0.shrink_to_fit();
        }
        Some(value)
    }

    /// Every entry, by name.
    pub fn iter(&self) -> impl Iterator<Item = (&Arc<str>, &V)> {
        self.0.iter().map(|(name, value)| (name, value))
    }

    /// Every value, by name.
    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.0.iter().map(|(_, value)| value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_names_in_order_whatever_the_order_of_insertion() {
        let mut map = ByName::default();
        for name in ["p2", "p10", "a", "p1", "p2"] {
            map.insert(Arc::from(name), name.len());
        }
        let names: Vec<&str> = map.iter().map(|(name, _)| &**name).collect();
        assert_eq!(names, ["a", "p1", "p10", "p2"]);
        assert_eq!(map.get("p10"), Some(&3));
        assert_eq!(map.get("p3"), None);
        assert_eq!(map.insert(Arc::from("a"), 9), Some(1));
        assert_eq!(map.remove("p1"), Some(2));
        assert_eq!(map.remove("p1"), None);
        assert_eq!(map.values().copied().collect::<Vec<_>>(), [9, 3, 2]);
    }
}
