//! Durations as people read them, for log lines and error messages.

use std::fmt;
use std::time::Duration;

/// A duration as a person reads it: `850ms`, `1.204s`, `30s`.
pub(crate) struct Human(pub(crate) Duration);

impl fmt::Display for Human {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.0;
        if d < Duration::from_millis(1) {
            write!(f, "{}µs", d.as_micros())
        } else if d < Duration::from_secs(1) {
            write!(f, "{}ms", d.as_millis())
        } else if d.subsec_millis() == 0 {
            write!(f, "{}s", d.as_secs())
        } else {
            write!(f, "{}.{:03}s", d.as_secs(), d.subsec_millis())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_well() {
        assert_eq!(Human(Duration::from_micros(5)).to_string(), "5µs");
        assert_eq!(Human(Duration::from_millis(850)).to_string(), "850ms");
        assert_eq!(Human(Duration::from_millis(1204)).to_string(), "1.204s");
        assert_eq!(Human(Duration::from_secs(30)).to_string(), "30s");
    }
}
