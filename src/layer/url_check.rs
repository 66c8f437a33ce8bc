//! The checks of configured URLs.

use crate::error::Error;

/// Checks that `value` is an absolute http(s) URL with a host, and https unless allowed.
pub(super) fn check_url(name: &str, value: &str, allow_http: bool) -> Result<(), Error> {
    let url = url::Url::parse(value)
        .map_err(|e| Error::config(format!("the {name} {value:?} is not an absolute URL: {e}")))?;
    match url.scheme() {
        "https" => {}
        "http" if allow_http => {}
        "http" => {
            return Err(Error::config(format!(
                "the {name} {value:?} uses plain http; use https, or call insecure_allow_http() for tests"
            )));
        }
        other => {
            return Err(Error::config(format!(
                "the {name} {value:?} has scheme {other:?}; use https"
            )));
        }
    }
    if url.host().is_none() {
        return Err(Error::config(format!("the {name} {value:?} has no host")));
    }
    Ok(())
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
}
