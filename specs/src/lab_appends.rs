//! The Raft course's checks of a value built by clients' appends (`checkClntAppends` and
//! `checkConcurrentAppends`): client `c`'s `j`-th append adds the item `x c j y`. Used by the
//! simulator's scenarios and the runtime's lab tests alike.

/// `checkClntAppends`: each of `client`'s first `count` items is in `value` exactly once and
/// after the one before it (items of other clients, or later ones, are allowed).
///
/// # Errors
/// The course's words: "missing element", "duplicate element" or "wrong order", with the item
/// and the end of the value.
pub fn client_appends(client: usize, value: &str, count: u64) -> Result<(), String> {
    let mut last = None;
    for j in 0..count {
        let item = format!("x {client} {j} y");
        let first = value
            .find(&item)
            .ok_or_else(|| format!("client {client}: missing element {item} in Append result {}", tail(value)))?;
        if value.rfind(&item) != Some(first) {
            return Err(format!("client {client}: duplicate element {item} in Append result {}", tail(value)));
        }
        if last.is_some_and(|l| first <= l) {
            return Err(format!("client {client}: wrong order for element {item} in Append result {}", tail(value)));
        }
        last = Some(first);
    }
    Ok(())
}

/// `checkConcurrentAppends`: [`client_appends`] for every client, `counts[c]` items of client
/// `c`, in one shared value.
///
/// # Errors
/// As [`client_appends`], for the first client whose items are wrong.
pub fn concurrent_appends(value: &str, counts: &[u64]) -> Result<(), String> {
    counts.iter().enumerate().try_for_each(|(client, &count)| client_appends(client, value, count))
}

/// A long value shortened to its length and its last 60 characters.
fn tail(value: &str) -> String {
    let start = value.char_indices().rev().nth(59).map_or(0, |(i, _)| i);
    if start == 0 {
        return format!("{value:?}");
    }
    format!("({} bytes) ending {:?}", value.len(), &value[start..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_duplicate_and_reordered_items_are_caught() {
        assert_eq!(client_appends(1, "x 1 0 yx 0 0 yx 1 1 y", 2), Ok(()));
        assert!(client_appends(1, "x 1 0 y", 2).unwrap_err().contains("missing element x 1 1 y"));
        assert!(client_appends(1, "x 1 0 yx 1 0 y", 1).unwrap_err().contains("duplicate element x 1 0 y"));
        assert!(client_appends(1, "x 1 1 yx 1 0 y", 2).unwrap_err().contains("wrong order"));
        assert!(client_appends(1, "x 11 1 y", 0).is_ok());
        assert!(concurrent_appends("x 0 0 yx 1 0 y", &[1, 2])
            .unwrap_err()
            .contains("client 1: missing element x 1 1 y"));
    }

    #[test]
    fn a_long_value_is_shown_by_its_end() {
        let long = "x 0 0 y".repeat(100);
        let err = client_appends(0, &long, 1).unwrap_err();
        assert!(err.contains("(700 bytes) ending"), "{err}");
        assert!(err.len() < 200, "{err}");
    }
}
