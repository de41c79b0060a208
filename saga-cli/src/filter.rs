//! Which sagas a listing shows: the filters `saga list` takes as flags and the dashboard's list
//! takes from its query string, checked the same way, each mistake named.

use std::time::{Duration, SystemTime};

use saga_runtime::store::SagaQuery;
use saga_runtime::SagaId;

/// The status names a filter accepts.
pub const STATUSES: [&str; 8] = [
    "pending",
    "running",
    "compensating",
    "completed",
    "compensated",
    "compensation_failed",
    "failed",
    "parked",
];

/// A listing's filters, as given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    pub status: Option<String>,
    pub saga_type: Option<String>,
    pub key: Option<String>,
    /// Only sagas created within this long.
    pub since: Option<Duration>,
    /// Only sagas created longer ago than this.
    pub until: Option<Duration>,
    /// Only sagas waiting on a durable timer.
    pub waiting: bool,
    pub after: Option<SagaId>,
    pub limit: usize,
}

impl Filter {
    /// The store query, or what is wrong with the filters.
    pub fn query(&self) -> Result<SagaQuery, String> {
        let mut query = SagaQuery::new().limit(self.limit.max(1));
        if let Some(status) = &self.status {
            if !STATUSES.contains(&status.as_str()) {
                return Err(format!(
                    "unknown status `{status}`: one of {}",
                    STATUSES.join(", ")
                ));
            }
            query = query.status(status.clone());
        }
        if let Some(saga_type) = &self.saga_type {
            query = query.saga_type(saga_type.clone());
        }
        if let Some(key) = &self.key {
            query = query.idempotency_key(key.clone());
        }
        if let (Some(since), Some(until)) = (self.since, self.until) {
            if until >= since {
                return Err(format!(
                    "an empty time range: created within {} but longer ago than {}",
                    crate::text::duration(since),
                    crate::text::duration(until)
                ));
            }
        }
        if self.since.is_some() || self.until.is_some() {
            let now = SystemTime::now();
            query = query.created(
                self.since.and_then(|age| now.checked_sub(age)),
                self.until.and_then(|age| now.checked_sub(age)),
            );
        }
        if self.waiting {
            query = query.waiting();
        }
        if let Some(after) = self.after {
            query = query.after(after);
        }
        Ok(query)
    }
}

/// An age like `30s`, `15m`, `2h` or `7d`.
pub fn parse_age(text: &str) -> Result<Duration, String> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let wrong = || format!("`{text}` is not an age like 30s, 15m, 2h or 7d");
    let number: u64 = number.parse().map_err(|_| wrong())?;
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        _ => return Err(wrong()),
    };
    Ok(Duration::from_secs(number.saturating_mul(seconds)))
}

/// A saga id.
pub fn parse_id(text: &str) -> Result<SagaId, String> {
    text.parse()
        .map_err(|_| format!("`{text}` is not a saga id (a UUID)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_and_their_mistakes() {
        assert_eq!(parse_age("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_age("2h"), Ok(Duration::from_secs(7_200)));
        assert_eq!(
            parse_age("2 hours"),
            Err("`2 hours` is not an age like 30s, 15m, 2h or 7d".into())
        );
        assert!(parse_age("h").is_err());
    }

    #[test]
    fn a_bad_status_and_an_empty_range_are_named() {
        let filter = Filter {
            status: Some("done".into()),
            ..Filter::default()
        };
        assert!(filter
            .query()
            .unwrap_err()
            .starts_with("unknown status `done`"));
        let filter = Filter {
            since: Some(Duration::from_secs(60)),
            until: Some(Duration::from_secs(3_600)),
            ..Filter::default()
        };
        assert!(filter
            .query()
            .unwrap_err()
            .starts_with("an empty time range"));
    }
}
