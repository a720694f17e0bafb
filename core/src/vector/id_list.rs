//! Record ids in one buffer, for the lists a segment or a loader keeps of
//! every record: a `String` each costs a header and a heap block per record
//! (about 40 bytes for a short id on wasm32, where a 20k-record shard's ids
//! would take a megabyte twice over during a bootstrap, in a heap that never
//! shrinks).

use std::fmt;

#[derive(Clone, Default, PartialEq, Eq)]
pub struct IdList {
    text: String,
    /// Where each id ends in `text`.
    ends: Vec<u32>,
}

impl IdList {
    /// An empty list with room for `ids` ids (their text grows as needed).
    pub fn with_capacity(ids: usize) -> Self {
        Self {
            text: String::new(),
            ends: Vec::with_capacity(ids),
        }
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    pub fn push(&mut self, id: &str) {
        self.text.push_str(id);
        // Ids are at most MAX_ID_BYTES and a list lives in one address space.
        self.ends.push(self.text.len() as u32);
    }

    /// Id `i`; panics past the end, like slice indexing.
    pub fn get(&self, i: usize) -> &str {
        let start = i.checked_sub(1).map_or(0, |before| self.ends[before]);
        &self.text[start as usize..self.ends[i] as usize]
    }

    pub fn iter(&self) -> Iter<'_> {
        Iter {
            list: self,
            next: 0,
        }
    }

    /// Heap bytes held.
    pub fn memory_bytes(&self) -> usize {
        self.text.capacity() + 4 * self.ends.capacity()
    }

    /// Frees spare capacity (a list filled by pushes keeps its last
    /// doubling's slack otherwise).
    pub fn shrink_to_fit(&mut self) {
        self.text.shrink_to_fit();
        self.ends.shrink_to_fit();
    }
}

impl<S: AsRef<str>> FromIterator<S> for IdList {
    fn from_iter<I: IntoIterator<Item = S>>(ids: I) -> Self {
        let ids = ids.into_iter();
        let mut list = Self::with_capacity(ids.size_hint().0);
        for id in ids {
            list.push(id.as_ref());
        }
        list
    }
}

/// The ids of an [`IdList`] in order.
#[derive(Clone, Debug)]
pub struct Iter<'a> {
    list: &'a IdList,
    next: usize,
}

impl<'a> Iterator for Iter<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        (self.next < self.list.len()).then(|| {
            self.next += 1;
            self.list.get(self.next - 1)
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.list.len() - self.next;
        (left, Some(left))
    }
}

impl ExactSizeIterator for Iter<'_> {}

impl<'a> IntoIterator for &'a IdList {
    type Item = &'a str;
    type IntoIter = Iter<'a>;

    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}

impl fmt::Debug for IdList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn holds_ids_in_order_including_empty_and_unicode_ones() {
        let list: IdList = ["a", "", "ünï", "d42"].into_iter().collect();
        assert_eq!(list.len(), 4);
        assert_eq!(list.get(0), "a");
        assert_eq!(list.get(1), "");
        assert_eq!(list.get(2), "ünï");
        assert_eq!(list.iter().collect::<Vec<_>>(), ["a", "", "ünï", "d42"]);
        assert_eq!(format!("{list:?}"), r#"["a", "", "ünï", "d42"]"#);
        assert!(IdList::default().is_empty());
    }
}
