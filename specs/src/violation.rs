//! What a broken property reports: which property (one of the names in the crate root) and
//! what was seen. Every check in this crate returns `Result<(), Violation>`.

use std::fmt;

/// A property that does not hold, with a human-readable account of the offending state.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Violation {
    /// The property's name, one of the constants in the crate root (e.g. [`crate::LOG_MATCHING`]).
    pub property: &'static str,
    /// What was seen: which servers, indices, terms and entries.
    pub detail: String,
}

impl Violation {
    #[must_use]
    pub fn new(property: &'static str, detail: impl Into<String>) -> Violation {
        Violation { property, detail: detail.into() }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} violated: {}", self.property, self.detail)
    }
}

impl std::error::Error for Violation {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_property_and_detail() {
        let v = Violation::new(crate::LOG_MATCHING, "n1 and n2 differ at i2");
        assert_eq!(v.to_string(), "log matching violated: n1 and n2 differ at i2");
    }
}
