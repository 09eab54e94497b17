//! The one content hash hubforge uses: blake3 over length-prefixed parts.

/// blake3 of `domain` followed by each part with its length, as hex, so that
/// ("ab", "c") and ("a", "bc") differ. An empty domain adds nothing.
pub fn hash_parts<'a>(domain: &str, parts: impl IntoIterator<Item = &'a str>) -> String {
    let mut h = blake3::Hasher::new();
    h.update(domain.as_bytes());
    for p in parts {
        h.update(&(p.len() as u64).to_le_bytes());
        h.update(p.as_bytes());
    }
    h.finalize().to_hex().to_string()
}

#[cfg(test)]
mod tests {
    use super::hash_parts;

    #[test]
    fn parts_are_separated() {
        assert_ne!(hash_parts("", ["ab", "c"]), hash_parts("", ["a", "bc"]));
        assert_ne!(hash_parts("x", ["a"]), hash_parts("", ["a"]));
        assert_eq!(hash_parts("", ["a"]), hash_parts("", ["a"]));
    }
}
