//! Request methods: which spellings are refused, and which route methods look like typos.
//!
//! See the [parent module](super) for the rules and why they exist.

use http::Method;

/// The methods of RFC 9110 §9 and RFC 5789 (`PATCH`): the ones every framework knows, and
/// that several of them (Werkzeug, Django, Symfony) upper-case before routing.
const STANDARD: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
];

/// The other methods of the IANA HTTP Method Registry (WebDAV, versioning, calendaring, …),
/// and `PURGE` (caches such as Varnish and nginx): accepted in routes as they are, never taken
/// for a typo.
const REGISTERED: [&str; 32] = [
    "ACL",
    "BASELINE-CONTROL",
    "BIND",
    "CHECKIN",
    "CHECKOUT",
    "COPY",
    "LABEL",
    "LINK",
    "LOCK",
    "MERGE",
    "MKACTIVITY",
    "MKCALENDAR",
    "MKCOL",
    "MKREDIRECTREF",
    "MKWORKSPACE",
    "MOVE",
    "ORDERPATCH",
    "PRI",
    "PROPFIND",
    "PROPPATCH",
    "QUERY",
    "REBIND",
    "REPORT",
    "SEARCH",
    "UNBIND",
    "UNCHECKOUT",
    "UNLINK",
    "UNLOCK",
    "UPDATE",
    "UPDATEREDIRECTREF",
    "VERSION-CONTROL",
    "PURGE",
];

/// Whether a request with `method` must be refused because it is a case variant (`delete`,
/// `Get`) of a standard method or of one of `listed` (the methods a map names, all upper
/// case): frameworks that upper-case methods would run that method's handler, while the
/// map, comparing bytes, would apply another rule.
pub(crate) fn is_case_variant(method: &Method, listed: &[Method]) -> bool {
    // The standard methods `http` parses are spelled in upper case (the usual requests: a
    // comparison of the variant, no look at the bytes).
    if *method == Method::GET
        || *method == Method::POST
        || *method == Method::HEAD
        || *method == Method::PUT
        || *method == Method::DELETE
        || *method == Method::PATCH
    {
        return false;
    }
    let name = method.as_str();
    if !name.bytes().any(|b| b.is_ascii_lowercase()) {
        return false;
    }
    let upper = name.to_ascii_uppercase();
    STANDARD.contains(&upper.as_str()) || listed.iter().any(|m| m.as_str() == upper)
}

/// Checks a method a route names, or says why it looks like a mistake: not upper case, or one
/// edit away from a standard or registered method (`GTE`, `DELTE`, `PSOT`, `PROPFIDN`). Other
/// extension methods (`PURGE`, `FROBNICATE`) are accepted. One changed letter in a name of four
/// letters or fewer is not taken for a typo: short words one letter apart are common
/// (`READ`/`HEAD`, `SET`/`GET`, `PUB`/`PUT`) and are more likely methods of their own.
pub(crate) fn check_route_method(method: &Method) -> Result<(), String> {
    let name = method.as_str();
    let upper = name.to_ascii_uppercase();
    let known = |n: &str| STANDARD.contains(&n) || REGISTERED.contains(&n);
    if name != upper {
        return Err(if known(&upper) {
            format!(
                "method `{name}` is a case variant of {upper}: methods are case-sensitive (RFC 9110 §9.1); write {upper}"
            )
        } else {
            format!(
                "method `{name}` is not upper case: write {upper} (methods are case-sensitive, RFC 9110 §9.1)"
            )
        });
    }
    if known(name) {
        return Ok(());
    }
    if let Some(close) = STANDARD
        .iter()
        .chain(REGISTERED.iter())
        .find(|k| looks_like_typo(name.as_bytes(), k.as_bytes()))
    {
        return Err(format!(
            "method `{name}` looks like a typo of {close}; write {close}"
        ));
    }
    Ok(())
}

/// Whether route method `a` looks like a typo of the known method `b`: one edit apart, where
/// a single changed letter only counts in names longer than four letters.
fn looks_like_typo(a: &[u8], b: &[u8]) -> bool {
    let substitution = a.len() == b.len() && a.iter().zip(b).filter(|(x, y)| x != y).count() == 1;
    one_edit_apart(a, b) && !(substitution && a.len() <= 4)
}

/// Whether `a` becomes `b` by one insertion, deletion, substitution or swap of two
/// neighbouring characters.
fn one_edit_apart(a: &[u8], b: &[u8]) -> bool {
    let (short, long) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    match long.len() - short.len() {
        0 => {
            let diffs: Vec<usize> = (0..a.len()).filter(|&i| a[i] != b[i]).collect();
            match diffs.as_slice() {
                [_] => true,
                [i, j] => *j == i + 1 && a[*i] == b[*j] && a[*j] == b[*i],
                _ => false,
            }
        }
        1 => {
            let prefix = short.iter().zip(long).take_while(|(x, y)| x == y).count();
            short[prefix..] == long[prefix + 1..]
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(name: &str) -> Method {
        Method::from_bytes(name.as_bytes()).unwrap()
    }

    #[test]
    fn one_edit() {
        for (a, b) in [
            ("GTE", "GET"),
            ("GETT", "GET"),
            ("GE", "GET"),
            ("SET", "GET"),
            ("DELTE", "DELETE"),
            ("PSOT", "POST"),
        ] {
            assert!(one_edit_apart(a.as_bytes(), b.as_bytes()), "{a} {b}");
        }
        for (a, b) in [
            ("GET", "GET"),
            ("TEG", "GET"),
            ("PURGE", "PUT"),
            ("", "GET"),
        ] {
            assert!(!one_edit_apart(a.as_bytes(), b.as_bytes()), "{a} {b}");
        }
    }

    #[test]
    fn route_methods() {
        for good in [
            "GET",
            "DELETE",
            "PROPFIND",
            "PURGE",
            "FROBNICATE",
            "M-SEARCH",
            // One letter from HEAD, GET, PUT, POST: short methods of their own.
            "READ",
            "SET",
            "PUB",
            "HOST",
        ] {
            assert_eq!(check_route_method(&m(good)), Ok(()), "{good}");
        }
        for (bad, hint) in [
            ("GTE", "typo of GET"),
            ("DELTE", "typo of DELETE"),
            ("POTS", "typo of POST"),
            ("PROPFIDN", "typo of PROPFIND"),
            ("GETT", "typo of GET"),
            ("HAED", "typo of HEAD"),
            ("PATHC", "typo of PATCH"),
            ("DELETR", "typo of DELETE"),
            ("delete", "write DELETE"),
            ("Get", "case variant of GET"),
            ("purge", "write PURGE"),
        ] {
            let e = check_route_method(&m(bad)).unwrap_err();
            assert!(e.contains(hint), "{bad}: {e}");
        }
    }

    #[test]
    fn request_case_variants() {
        let listed = [m("PURGE")];
        for bad in ["get", "Get", "dElEtE", "patch", "purge", "Purge"] {
            assert!(is_case_variant(&m(bad), &listed), "{bad}");
        }
        for fine in ["GET", "PURGE", "propfind", "frob", "Frob"] {
            assert!(!is_case_variant(&m(fine), &listed), "{fine}");
        }
    }
}
