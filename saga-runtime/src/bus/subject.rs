//! Subjects, filters and consumer names: what is valid, and which subjects a filter matches
//! (NATS's rules, so that both transports accept and refuse the same).

use super::{BusError, BusErrorKind};

/// Refuses a subject to publish to: empty tokens, whitespace or wildcards.
pub(crate) fn check_subject(subject: &str) -> Result<(), BusError> {
    check_tokens(subject, "subject", false)
}

/// Refuses a consumer's filter: as a subject, but `*` may stand for a token and `>` for the
/// last ones.
pub(crate) fn check_filter(filter: &str) -> Result<(), BusError> {
    check_tokens(filter, "filter", true)
}

fn check_tokens(text: &str, what: &str, wildcards: bool) -> Result<(), BusError> {
    let invalid = |why: &str| {
        Err(BusError::new(
            BusErrorKind::Invalid,
            format!("{what} `{text}` {why}"),
        ))
    };
    if text.is_empty() {
        return invalid("is empty");
    }
    let tokens: Vec<&str> = text.split('.').collect();
    for (i, token) in tokens.iter().enumerate() {
        if token.is_empty() {
            return invalid("has an empty token (two dots, or a dot at an end)");
        }
        if token.chars().any(char::is_whitespace) {
            return invalid("has whitespace");
        }
        let wildcard = *token == "*" || *token == ">";
        if !wildcard && (token.contains('*') || token.contains('>')) {
            return invalid("has `*` or `>` inside a token");
        }
        if wildcard && !wildcards {
            return invalid("has a wildcard: a message goes to one subject");
        }
        if *token == ">" && i + 1 != tokens.len() {
            return invalid("has `>` before its last token");
        }
    }
    Ok(())
}

/// Refuses a consumer name that is not letters, digits, `-` and `_`.
pub(crate) fn check_consumer(name: &str) -> Result<(), BusError> {
    let valid = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    match valid {
        true => Ok(()),
        false => Err(BusError::new(
            BusErrorKind::Invalid,
            format!("consumer name `{name}` must be letters, digits, `-` and `_`"),
        )),
    }
}

/// Whether `subject` matches `filter` (both checked).
pub(crate) fn matches(filter: &str, subject: &str) -> bool {
    let mut subject = subject.split('.');
    for token in filter.split('.') {
        match (token, subject.next()) {
            (">", Some(_)) => return true,
            ("*", Some(_)) => {}
            (token, Some(s)) if token == s => {}
            _ => return false,
        }
    }
    subject.next().is_none()
}

/// A name (a saga type's, a flow's) as one subject token and consumer name part: characters other
/// than letters, digits, `-` and `_` become `_`.
pub(crate) fn token_of(name: &str) -> String {
    name.chars()
        .map(
            |c| match c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                true => c,
                false => '_',
            },
        )
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_match_as_in_nats() {
        assert!(matches("orders.created", "orders.created"));
        assert!(!matches("orders.created", "orders.created.eu"));
        assert!(matches("orders.*", "orders.created"));
        assert!(!matches("orders.*", "orders.created.eu"));
        assert!(!matches("orders.*", "orders"));
        assert!(matches("orders.>", "orders.created.eu"));
        assert!(!matches("orders.>", "orders"));
        assert!(matches("*.created", "payments.created"));
        assert!(matches(">", "anything.at.all"));
    }

    #[test]
    fn invalid_subjects_filters_and_names_say_why() {
        let kind = |r: Result<(), BusError>| r.unwrap_err().to_string();
        assert_eq!(
            kind(check_subject("orders..created")),
            "invalid bus request: subject `orders..created` has an empty token (two dots, or a dot at an end)"
        );
        assert!(kind(check_subject("orders.*")).contains("has a wildcard"));
        assert!(kind(check_filter("orders.>.eu")).contains("`>` before its last token"));
        assert!(kind(check_filter("orders.cre*")).contains("inside a token"));
        assert!(kind(check_subject("")).contains("is empty"));
        assert!(kind(check_consumer("pay.ments")).contains("letters, digits"));
        assert!(check_filter("orders.*.eu").is_ok());
        assert!(check_consumer("payments_v2-eu").is_ok());
    }
}
