//! The managed cluster's name, as it appears in certificates and in OCM objects.

use std::borrow::Borrow;
use std::fmt;
use std::str::FromStr;

use crate::Error;

/// Maximum length of a DNS-1123 label.
const MAX_LEN: usize = 63;

/// A managed cluster's name: a DNS-1123 label (1 to 63 characters of lowercase ASCII letters,
/// digits and `-`, starting and ending with a letter or digit), the same rule Kubernetes applies
/// to namespace names, which OCM uses for a ManagedCluster's namespace on the hub.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClusterName(String);

impl ClusterName {
    /// Validates `name` and wraps it.
    pub fn new(name: impl Into<String>) -> Result<Self, Error> {
        let name = name.into();
        match validate(&name) {
            Ok(()) => Ok(Self(name)),
            Err(reason) => Err(Error::InvalidClusterName { name, reason }),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

fn validate(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("must not be empty");
    }
    if name.len() > MAX_LEN {
        return Err("must be at most 63 characters");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err("must consist of lowercase letters, digits and '-'");
    }
    if name.starts_with('-') || name.ends_with('-') {
        return Err("must start and end with a letter or digit");
    }
    Ok(())
}

impl FromStr for ClusterName {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl TryFrom<String> for ClusterName {
    type Error = Error;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::new(s)
    }
}

impl TryFrom<&str> for ClusterName {
    type Error = Error;

    fn try_from(s: &str) -> Result<Self, Self::Error> {
        Self::new(s)
    }
}

impl fmt::Display for ClusterName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for ClusterName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

// Lets maps keyed by ClusterName be queried with &str; sound because Hash/Eq/Ord are the
// String's.
impl Borrow<str> for ClusterName {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl From<ClusterName> for String {
    fn from(name: ClusterName) -> Self {
        name.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_dns_labels() {
        for ok in ["a", "0", "east-1", "a-b-c", "x".repeat(63).as_str()] {
            let name: ClusterName = ok.parse().unwrap();
            assert_eq!(name.as_str(), ok);
            assert_eq!(name.to_string(), ok);
        }
    }

    #[test]
    fn rejects_non_labels() {
        for bad in [
            "",
            "-a",
            "a-",
            "East",
            "a_b",
            "a.b",
            "a/b",
            "é",
            "a b",
            "x".repeat(64).as_str(),
        ] {
            let err = bad.parse::<ClusterName>().unwrap_err();
            assert!(
                matches!(err, Error::InvalidClusterName { ref name, .. } if name == bad),
                "{bad:?}: {err}"
            );
        }
    }
}
