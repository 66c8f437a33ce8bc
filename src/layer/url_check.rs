//! The checks of configured URLs.

use crate::error::Error;

/// Checks that `value` is an absolute http(s) URL with a host and no user info, and https
/// unless allowed. Messages never show user info (`scheme://user:password@…`).
pub(super) fn check_url(name: &str, value: &str, allow_http: bool) -> Result<(), Error> {
    let shown = without_user_info(value);
    let url = url::Url::parse(value)
        .map_err(|e| Error::config(format!("the {name} {shown:?} is not an absolute URL: {e}")))?;
    match url.scheme() {
        "https" => {}
        "http" if allow_http => {}
        "http" => {
            return Err(Error::config(format!(
                "the {name} {shown:?} uses plain http; use https, or call insecure_allow_http() for tests"
            )));
        }
        other => {
            return Err(Error::config(format!(
                "the {name} {shown:?} has scheme {other:?}; use https"
            )));
        }
    }
    if url.host().is_none() {
        return Err(Error::config(format!("the {name} {shown:?} has no host")));
    }
    // Credentials in a URL would be logged with it and sent on every call, beside the
    // client's own authentication.
    if !url.username().is_empty() || url.password().is_some() {
        return Err(Error::config(format!(
            "the {name} {shown:?} has user info; the client authenticates with its id and secret"
        )));
    }
    Ok(())
}

/// `value` with its user info (`scheme://user:password@`) replaced by `***`, for messages
/// that quote a configured URL (also those checked elsewhere, such as a `jwks_uri`).
pub(crate) fn without_user_info(value: &str) -> String {
    let (scheme, rest) = value.split_once("://").unwrap_or(("", value));
    // The authority ends at the first `/`, `?` or `#`; but in a URL that does not parse, a
    // password may hold one unescaped (and so end it early): then all up to the last `@` goes.
    let end = if url::Url::parse(value).is_ok() {
        rest.find(['/', '?', '#']).unwrap_or(rest.len())
    } else {
        rest.len()
    };
    match rest[..end].rfind('@') {
        Some(at) if value.contains("://") => format!("{scheme}://***{}", &rest[at..]),
        Some(at) => format!("***{}", &rest[at..]),
        None => value.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked() {
        assert!(check_url("issuer", "https://as.test", false).is_ok());
        let e = check_url("issuer", "http://as.test", false).unwrap_err();
        assert!(e.to_string().contains("insecure_allow_http"), "{e}");
        assert!(check_url("issuer", "http://as.test", true).is_ok());
        assert!(check_url("issuer", "as.test", true).is_err());
        assert!(check_url("issuer", "ftp://as.test", true).is_err());
    }

    #[test]
    fn user_info_is_refused_and_never_shown() {
        for url in [
            "https://rs:s3cret-pw@as.test/realms/a",
            "https://rs@as.test",
            "http://rs:s3cret-pw@as.test",
            "ftp://rs:s3cret-pw@as.test",
            "https://rs:s3cret-pw@/nohost",
            "https://rs:s3cret#pw@as.test/realms/a",
            "https://rs:s3cret?pw@as.test",
            "https://rs:s3cret/pw@as.test",
        ] {
            let e = check_url("issuer", url, false).unwrap_err().to_string();
            assert!(!e.contains("s3cret") && !e.contains("rs@"), "{e}");
        }
        let e = check_url("issuer", "https://rs:s3cret-pw@as.test/x", true).unwrap_err();
        assert!(
            e.to_string()
                .contains("\"https://***@as.test/x\" has user info"),
            "{e}"
        );
    }
}
