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
    if let Ok(mut parsed) = url::Url::parse(value) {
        if parsed.username().is_empty() && parsed.password().is_none() {
            return value.to_owned();
        }
        // The authority as `url` reads it: after the scheme and however many slashes (or
        // backslashes, for http and https: `https:///user:pw@host` has user info), up to
        // the first `/`, `?`, `#` or `\`; the user info is all of it to its last `@`.
        let (scheme, rest) = value.split_once(':').unwrap_or(("", value));
        let rest = rest.trim_start_matches(['/', '\\']);
        let end = rest.find(['/', '?', '#', '\\']).unwrap_or(rest.len());
        if let Some(at) = rest[..end].rfind('@') {
            let shown = format!("{scheme}://***{}", &rest[at..]);
            let shows = |part: &str| !part.is_empty() && shown.contains(part);
            if !shows(parsed.username()) && !parsed.password().is_some_and(shows) {
                return shown;
            }
        }
        // Otherwise the URL as `url` writes it, without its user info.
        if parsed.set_username("").is_ok() && parsed.set_password(None).is_ok() {
            let written = parsed.to_string();
            if let Some((scheme, rest)) = written.split_once("://") {
                return format!("{scheme}://***@{rest}");
            }
        }
        return format!("{scheme}://***");
    }
    // One that does not parse may hold a password with an unescaped `/`, `?` or `#`: all up
    // to its last `@` goes.
    match (value.split_once("://"), value.rfind('@')) {
        (Some((scheme, _)), Some(at)) if at > scheme.len() => {
            format!("{scheme}://***{}", &value[at..])
        }
        (_, Some(at)) => format!("***{}", &value[at..]),
        (_, None) => value.to_owned(),
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
            // `url` reads user info here too, whatever the slashes.
            "https:///rs:s3cret@as.test/x",
            "https:/rs:s3cret@as.test/x",
            "HTTPS:///rs:s3cret@as.test",
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
