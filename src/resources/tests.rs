use http::{HeaderMap, HeaderValue, Method};

use super::path::PathSegment;
use super::*;

fn id(s: &str) -> ResourceRef {
    ResourceRef::Id(s.to_owned())
}

fn name(s: &str) -> ResourceRef {
    ResourceRef::Name(s.to_owned())
}

fn get(map: &ResourceMap, path: &str) -> Result<Resolution, PathError> {
    map.resolve_request(&Method::GET, path, &HeaderMap::new())
}

/// The resource a GET on `path` resolves to, or a short label for the other outcomes.
fn resource_of(map: &ResourceMap, path: &str) -> String {
    resource_for(map, &Method::GET, path)
}

/// As [`resource_of`], for any method.
fn resource_for(map: &ResourceMap, method: &Method, path: &str) -> String {
    match map.resolve_request(method, path, &HeaderMap::new()) {
        Ok(Resolution::Protected {
            resource: ResourceRef::Id(id),
            ..
        }) => id,
        Ok(Resolution::Protected {
            resource: ResourceRef::Name(name),
            ..
        }) => format!("name:{name}"),
        Ok(Resolution::Public) => "PUBLIC".to_owned(),
        Ok(Resolution::Unmapped) => "UNMAPPED".to_owned(),
        Ok(Resolution::Forbidden) => "FORBIDDEN".to_owned(),
        Ok(Resolution::MethodNotAllowed { allow, .. }) => {
            let allow: Vec<&str> = allow.iter().map(Method::as_str).collect();
            format!("405:{}", allow.join(","))
        }
        Err(e) => format!("ERR:{e:?}"),
    }
}

fn scopes_of(map: &ResourceMap, method: &Method, path: &str) -> Option<Vec<String>> {
    match map.resolve_request(method, path, &HeaderMap::new()) {
        Ok(Resolution::Protected { scopes, .. }) => Some(scopes),
        Ok(_) => None,
        Err(e) => panic!("{path}: {e}"),
    }
}

fn protect(template: &str, resource: &str) -> Route {
    Route::new(template)
        .resource_id(resource)
        .any_method(["read"])
}

/// A map shaped like the issue's example: public albums listing, protected album items and a
/// protected admin area.
fn albums_map() -> ResourceMap {
    let map = ResourceMap::new()
        .route(Route::public("/albums"))
        .route(protect("/albums/{id}", "album"))
        .route(protect("/admin", "admin"))
        .route(protect("/admin/*", "admin-area"))
        .route(Route::public("/*"));
    map.validate().unwrap();
    map
}

// ---------------------------------------------------------------------------------------------
// Normalisation

#[test]
fn canonical_form_decodes_only_unreserved_characters() {
    let path = normalize_path("/%41%62c/%7e%2D%2e%5f/x%3a%40%21%3d/%c3%A9/a%20b").unwrap();
    assert_eq!(path.as_str(), "/Abc/~-._/x%3A%40%21%3D/%C3%A9/a%20b");
    let decoded: Vec<&str> = path.segments().iter().map(PathSegment::decoded).collect();
    assert_eq!(decoded, ["Abc", "~-._", "x:@!=", "\u{e9}", "a b"]);
}

#[test]
fn literal_characters_that_need_escaping_are_spelled_as_escapes() {
    let literal = normalize_path("/caf\u{e9}/a b/\"q\"/{x}").unwrap();
    let escaped = normalize_path("/caf%C3%A9/a%20b/%22q%22/%7Bx%7D").unwrap();
    assert_eq!(literal.as_str(), "/caf%C3%A9/a%20b/%22q%22/%7Bx%7D");
    assert_eq!(literal, escaped);
    // Sub-delims, `:` and `@` stay literal.
    assert_eq!(
        normalize_path("/a!$&'()*+,=:@b").unwrap().as_str(),
        "/a!$&'()*+,=:@b"
    );
}

#[test]
fn escapes_next_to_hex_digits_and_sub_delims_beside_escapes() {
    // An escape followed by hex digits is one escape and two characters, unless it is `%25`.
    assert_eq!(normalize_path("/%41BC/%7e12").unwrap().as_str(), "/ABC/~12");
    assert_eq!(
        normalize_path("/%2541").map(|p| p.as_str().to_owned()),
        Err(PathError::DoubleEncoding)
    );
    // Sub-delims, `:` and `@` stay literal in a segment that has escapes as well.
    assert_eq!(
        normalize_path("/caf\u{e9}!$&'()*+,=:@").unwrap().as_str(),
        "/caf%C3%A9!$&'()*+,=:@"
    );
}

#[test]
fn verbatim_paths_and_escapes_are_told_apart() {
    // What the resolver's shortcuts rely on: a path received in canonical form is verbatim,
    // and a path has escapes when a segment's canonical spelling keeps one.
    for raw in ["/", "/albums/1", "/a!$&'()*+,=:@b"] {
        let path = normalize_path(raw).unwrap();
        assert!(path.is_verbatim() && !path.has_escapes(), "{raw}");
    }
    for raw in ["/albums//1", "/albums/1/", "/%41"] {
        let path = normalize_path(raw).unwrap();
        assert!(!path.is_verbatim() && !path.has_escapes(), "{raw}");
    }
    let path = normalize_path("/albums/a%20b").unwrap();
    assert!(!path.is_verbatim() && path.has_escapes());
    let escapes: Vec<bool> = path
        .segments()
        .iter()
        .map(PathSegment::has_escapes)
        .collect();
    assert_eq!(escapes, [false, true]);
}

#[test]
fn paths_are_equal_when_their_canonical_forms_are() {
    let canonical = normalize_path("/albums/1").unwrap();
    assert_eq!(normalize_path("/albums//%31/").unwrap(), canonical);
    assert_ne!(normalize_path("/albums/2").unwrap(), canonical);
    assert_ne!(normalize_path("/albums").unwrap(), canonical);
}

#[test]
fn empty_segments_and_trailing_slashes_are_dropped() {
    for raw in ["/albums/1", "/albums//1", "/albums/1/", "/albums///1///"] {
        let path = normalize_path(raw).unwrap();
        assert_eq!(path.as_str(), "/albums/1", "{raw}");
        assert_eq!(path.segments().len(), 2, "{raw}");
    }
    assert_eq!(normalize_path("/").unwrap().as_str(), "/");
    assert!(normalize_path("/").unwrap().segments().is_empty());
}

#[test]
fn a_path_that_starts_with_two_slashes_is_refused() {
    // A network-path reference to an upstream that resolves the target as a URI reference:
    // `//public/albums/1` is host `public`, path `/albums/1` to Node's WHATWG `URL` and to
    // Python's `urlsplit`. Refused before anything else is looked at.
    for raw in [
        "//",
        "//albums/1",
        "///albums///1///",
        "//public/albums/1",
        "//%2e%2e/x",
        "//a;b",
    ] {
        assert_eq!(normalize_path(raw), Err(PathError::NetworkPath), "{raw}");
    }
    let map = ResourceMap::new().route(Route::public("/public/*")).route(
        Route::new("/albums/{id}")
            .resource_id("album")
            .any_method(["view"]),
    );
    let headers = HeaderMap::new();
    for raw in ["//public/albums/1", "//albums/1"] {
        for method in [Method::GET, Method::POST, Method::OPTIONS] {
            assert_eq!(
                map.resolve_request(&method, raw, &headers),
                Err(PathError::NetworkPath),
                "{method} {raw}"
            );
        }
    }
}

#[test]
fn canonical_paths_are_borrowed_not_copied() {
    for raw in ["/albums/1", "/a!$&'()*+,=:@b/~x-y_z.q", "/"] {
        assert!(normalize_path(raw).unwrap().is_borrowed(), "{raw}");
    }
    for raw in ["/albums//1", "/albums/1/", "/%41", "/a b", "/caf\u{e9}"] {
        let path = normalize_path(raw).unwrap();
        assert!(!path.is_borrowed(), "{raw}");
    }
    // The fast path refuses dot segments like the slow one.
    assert_eq!(normalize_path("/a/./b"), Err(PathError::DotSegment));
    assert_eq!(normalize_path("/a/.."), Err(PathError::DotSegment));
}

#[test]
fn refused_spellings() {
    let cases: &[(&str, PathError)] = &[
        ("", PathError::NotAbsolute),
        ("*", PathError::NotAbsolute),
        ("albums/1", PathError::NotAbsolute),
        ("/albums/../admin", PathError::DotSegment),
        ("/albums/./1", PathError::DotSegment),
        ("/..", PathError::DotSegment),
        ("/albums/%2e%2e/admin", PathError::DotSegment),
        ("/albums/%2E%2E/admin", PathError::DotSegment),
        ("/albums/.%2E/admin", PathError::DotSegment),
        ("/albums/%2e./admin", PathError::DotSegment),
        ("/albums/%2E/1", PathError::DotSegment),
        ("/albums/1/..", PathError::DotSegment),
        ("/albums%2F..%2Fadmin", PathError::EncodedSlash),
        ("/albums%2fadmin", PathError::EncodedSlash),
        ("/albums\\..\\admin", PathError::Backslash),
        ("/albums%5C1", PathError::Backslash),
        ("/albums%5c1", PathError::Backslash),
        ("/admin;jsessionid=1", PathError::Semicolon),
        ("/albums/..;/admin", PathError::Semicolon),
        ("/admin%3B", PathError::Semicolon),
        ("/admin%00", PathError::ControlCharacter),
        ("/admin%0d%0a", PathError::ControlCharacter),
        ("/admin%7F", PathError::ControlCharacter),
        ("/admin\u{1}", PathError::ControlCharacter),
        ("/admin\t", PathError::ControlCharacter),
        ("/albums/%zz", PathError::InvalidEscape),
        ("/albums/%4", PathError::InvalidEscape),
        ("/albums/%", PathError::InvalidEscape),
        ("/albums/%4g", PathError::InvalidEscape),
        ("/albums/%%41", PathError::InvalidEscape),
        ("/albums/%252e%252e/admin", PathError::DoubleEncoding),
        ("/albums/%2541", PathError::DoubleEncoding),
        ("/albums?x", PathError::InvalidCharacter),
        ("/albums#x", PathError::InvalidCharacter),
        ("/admin%3F.png", PathError::InvalidCharacter),
        ("/admin%3f", PathError::InvalidCharacter),
        ("/admin%23x", PathError::InvalidCharacter),
        ("/albums/%FF", PathError::InvalidUtf8),
        ("/albums/%C3", PathError::InvalidUtf8),
    ];
    for (raw, expected) in cases {
        assert_eq!(normalize_path(raw), Err(*expected), "{raw:?}");
    }
}

#[test]
fn double_encoding_with_escaped_hex_digits_is_refused() {
    // `%25` followed by the *escapes* of two hex digits (or one literal, one escaped) decodes
    // once to `%2e` and twice to `.`: the same double encoding as `%252e`, which an upstream
    // that decodes twice turns into a dot segment (`/albums/../admin`).
    for raw in [
        "/albums/%25%32%65%25%32%65/admin",
        "/albums/%252%65%252%65/admin",
        "/albums/%25%32e%25%32e/admin",
        "/albums/%25%34%31",
    ] {
        assert_eq!(
            normalize_path(raw),
            Err(PathError::DoubleEncoding),
            "{raw:?}"
        );
    }
}

#[test]
fn a_lone_encoded_percent_is_kept() {
    let path = normalize_path("/files/100%25").unwrap();
    assert_eq!(path.as_str(), "/files/100%25");
    assert_eq!(path.segments()[1].decoded(), "100%");
    assert_eq!(
        normalize_path("/files/%25zz").unwrap().segments()[1].decoded(),
        "%zz"
    );
}

#[test]
fn dots_inside_segments_are_fine() {
    assert_eq!(
        normalize_path("/a/.../b.c/.d").unwrap().as_str(),
        "/a/.../b.c/.d"
    );
}

// ---------------------------------------------------------------------------------------------
// Spellings from the issue: each gets the protected rule or a refusal, never a weaker rule

#[test]
fn issue_spellings_never_reach_a_weaker_rule() {
    let map = albums_map();
    assert_eq!(resource_of(&map, "/albums"), "PUBLIC");
    assert_eq!(resource_of(&map, "/albums/1"), "album");
    assert_eq!(resource_of(&map, "/admin"), "admin");
    assert_eq!(resource_of(&map, "/elsewhere"), "PUBLIC");

    // Case variants of literals would reach the public `/*` on a case-sensitive router.
    assert_eq!(resource_of(&map, "/Albums/1"), "ERR:LetterCase");
    assert_eq!(resource_of(&map, "/ALBUMS/1"), "ERR:LetterCase");
    assert_eq!(resource_of(&map, "//albums/1"), "ERR:NetworkPath");
    assert_eq!(resource_of(&map, "/albums//1"), "album");
    assert_eq!(resource_of(&map, "/albums/1/"), "album");
    assert_eq!(resource_of(&map, "/%41dmin"), "ERR:LetterCase");
    assert_eq!(resource_of(&map, "/%61dmin"), "admin");
    assert_eq!(resource_of(&map, "/ADMIN/"), "ERR:LetterCase");
    assert_eq!(resource_of(&map, "/Admin/users"), "ERR:LetterCase");
    assert_eq!(resource_of(&map, "/admin//users/"), "admin-area");
    assert_eq!(resource_of(&map, "//admin/users/"), "ERR:NetworkPath");
    assert_eq!(resource_of(&map, "/albums/../admin"), "ERR:DotSegment");
    assert_eq!(resource_of(&map, "/albums/%2e%2e/admin"), "ERR:DotSegment");
    assert_eq!(
        resource_of(&map, "/albums%2F..%2Fadmin"),
        "ERR:EncodedSlash"
    );
    assert_eq!(resource_of(&map, "/admin;x=1"), "ERR:Semicolon");
    assert_eq!(resource_of(&map, "/albums/%zz"), "ERR:InvalidEscape");
}

#[test]
fn params_keep_the_request_spelling_decoded() {
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = std::sync::Arc::clone(&seen);
    let map = ResourceMap::new().route(Route::new("/Users/{user}/files/{file}").resolver(
        move |req: &RequestInfo<'_>| {
            record
                .lock()
                .unwrap()
                .push((req.path.to_owned(), req.params.to_vec()));
            Resolution::Public
        },
    ));
    map.validate().unwrap();
    assert_eq!(
        get(&map, "/Users//Alice%40Example.org/files/my%20doc%2Etxt/").unwrap(),
        Resolution::Public
    );
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].0, "/Users/Alice%40Example.org/files/my%20doc.txt");
    assert_eq!(
        seen[0].1,
        [
            ("user".to_owned(), "Alice@Example.org".to_owned()),
            ("file".to_owned(), "my doc.txt".to_owned())
        ]
    );
}

#[test]
fn escaped_literals_that_select_another_route_are_ambiguous() {
    let map = ResourceMap::new()
        .route(Route::public("/files/{name}"))
        .route(protect("/files/a!b", "bang"));
    map.validate().unwrap();
    assert_eq!(resource_of(&map, "/files/a!b"), "bang");
    assert_eq!(resource_of(&map, "/files/a%21b"), "ERR:Ambiguous");
    // An escape that does not change the selected route is fine.
    assert_eq!(resource_of(&map, "/files/a%20b"), "PUBLIC");

    // A literal that itself needs an escape matches both spellings of the request.
    let map = ResourceMap::new()
        .route(Route::public("/{name}"))
        .route(protect("/caf\u{e9}", "cafe"))
        .route(protect("/a%21b", "bang"));
    map.validate().unwrap();
    assert_eq!(resource_of(&map, "/caf%C3%A9"), "cafe");
    assert_eq!(resource_of(&map, "/caf%c3%a9"), "cafe");
    assert_eq!(resource_of(&map, "/CAF%C3%A9"), "ERR:LetterCase");
    // The template's own spelling selects it either way; the literal `!` selects the public
    // route as sent but the protected one once decoded.
    assert_eq!(resource_of(&map, "/a%21b"), "bang");
    assert_eq!(resource_of(&map, "/a!b"), "ERR:Ambiguous");
    assert_eq!(resource_of(&map, "/other"), "PUBLIC");
}

// ---------------------------------------------------------------------------------------------
// Precedence and wildcards

#[test]
fn literal_beats_param_beats_wildcard() {
    let map = ResourceMap::new()
        .route(protect("/*", "root-wild"))
        .route(protect("/albums/*", "albums-wild"))
        .route(protect("/albums/{id}", "album"))
        .route(protect("/albums/new", "new"))
        .route(protect("/albums/{id}/photos/{photo}", "photo"))
        .route(protect("/albums/{id}/photos/*", "photos-wild"))
        .route(protect("/albums/{id}/{sub}/cover", "cover"))
        .route(protect("/albums/new/photos/{photo}", "new-photo"));
    map.validate().unwrap();
    assert_eq!(resource_of(&map, "/albums/new"), "new");
    assert_eq!(resource_of(&map, "/albums/7"), "album");
    // A `*` matching nothing wins here, but axum's router would run another route.
    assert_eq!(resource_of(&map, "/albums"), "ERR:AsReceived");
    assert_eq!(resource_of(&map, "/albums/7/photos"), "ERR:AsReceived");
    assert_eq!(resource_of(&map, "/albums/7/photos/3"), "photo");
    assert_eq!(resource_of(&map, "/albums/new/photos/3"), "new-photo");
    assert_eq!(resource_of(&map, "/albums/7/photos/3/raw"), "photos-wild");
    assert_eq!(resource_of(&map, "/albums/7/x/cover"), "cover");
    // `/albums/{id}/photos/{photo}` and `/albums/{id}/{sub}/cover` both match: the literal
    // `photos` at the third position decides.
    assert_eq!(resource_of(&map, "/albums/7/photos/cover"), "photo");
    assert_eq!(resource_of(&map, "/"), "root-wild");
    assert_eq!(resource_of(&map, "/other/deep/path"), "root-wild");
}

#[test]
fn precedence_does_not_depend_on_insertion_order() {
    let routes = [
        protect("/a/{x}", "a-param"),
        protect("/{y}/b", "param-b"),
        protect("/a/*", "a-wild"),
        protect("/a/b/*", "ab-wild"),
        protect("/{z}/*", "param-wild"),
    ];
    let expectations = [
        ("/a/b", "ERR:AsReceived"), // `/a/b/*` (literal `b`) here, `/a/{x}` on axum
        ("/c/b", "param-b"),        // only one non-wildcard matches
        ("/a/b/c", "ab-wild"),      // more matching literal segments
        // `/a/*` matches nothing; axum runs `/{z}` when it serves that bare prefix.
        ("/a", "ERR:AsReceived"),
        ("/c/d/e", "param-wild"),
        ("/a/c/d", "a-wild"), // literal beats param at the first segment
    ];
    for reverse in [false, true] {
        let mut ordered = routes.to_vec();
        if reverse {
            ordered.reverse();
        }
        let map = ordered
            .into_iter()
            .fold(ResourceMap::new(), ResourceMap::route);
        map.validate().unwrap();
        for (path, expected) in expectations {
            assert_eq!(
                resource_of(&map, path),
                expected,
                "{path} (reversed: {reverse})"
            );
        }
    }
}

/// Finding: for `GET /albums/1` the layer chose the public `/{p0}/{p1}` (any template without
/// `*` first) while axum's router runs the protected `/albums/{*rest}`: literal beats
/// `{param}` beats `*` segment by segment, as matchit tries them.
#[test]
fn an_earlier_literal_beats_a_later_one_even_before_a_wildcard() {
    let map = ResourceMap::new()
        .route(protect("/a/*", "a-wild"))
        .route(protect("/{x}/b", "param-b"));
    assert_eq!(resource_of(&map, "/a/b"), "a-wild");
    assert_eq!(resource_of(&map, "/a/c"), "a-wild");
    assert_eq!(resource_of(&map, "/c/b"), "param-b");

    let map = ResourceMap::new()
        .route(Route::public("/{p0}/{p1}"))
        .route(protect("/albums/*", "albums"));
    map.validate().unwrap();
    assert_eq!(resource_of(&map, "/albums/1"), "albums");
    assert_eq!(resource_of(&map, "/photos/1"), "PUBLIC");
}

/// Finding: `/admin/*` matched `/admin` (as Spring's `/admin/**` does) and decided it
/// publicly, while axum's `/admin/{*rest}` needs a segment and its router runs the protected
/// `/{*rest}`.
#[test]
fn a_wildcard_matching_nothing_is_checked_against_the_other_routes() {
    // Another route with another rule would run on axum: refused.
    let map = ResourceMap::new()
        .route(Route::public("/admin/*"))
        .route(protect("/*", "root"));
    map.validate().unwrap();
    assert_eq!(resource_of(&map, "/admin"), "ERR:AsReceived");
    assert_eq!(resource_of(&map, "/admin/x"), "PUBLIC");
    let map = ResourceMap::new()
        .route(protect("/admin/*", "admin"))
        .route(protect("/{p}", "param"));
    assert_eq!(resource_of(&map, "/admin"), "ERR:AsReceived");
    // Nothing else matches, the same rule, or a public one: decided by `/admin/*`.
    for other in [
        None,
        Some(protect("/{p}", "admin")),
        Some(protect("/*", "admin")),
        Some(Route::public("/*")),
    ] {
        let map = ResourceMap::new().route(protect("/admin/*", "admin"));
        let map = other.into_iter().fold(map, ResourceMap::route);
        map.validate().unwrap();
        assert_eq!(resource_of(&map, "/admin"), "admin");
    }
}

/// Finding: `/%61lbums` and `/~me` were decided as `/albums` and the literal `/%7Eme`, while
/// axum's router matches the path as received and ran the protected `/{*rest}`.
#[test]
fn escapes_of_unreserved_characters_are_checked_as_received() {
    let map = ResourceMap::new()
        .route(Route::public("/albums"))
        .route(Route::public("/%7Eme"))
        .route(protect("/*", "root"));
    map.validate().unwrap();
    assert_eq!(resource_of(&map, "/albums"), "PUBLIC");
    assert_eq!(resource_of(&map, "/%61lbums"), "ERR:AsReceived");
    assert_eq!(resource_of(&map, "/%7Eme"), "PUBLIC");
    assert_eq!(resource_of(&map, "/%7eme"), "ERR:AsReceived");
    assert_eq!(resource_of(&map, "/~me"), "ERR:AsReceived");
    // The spelling as received selects a public rule: the stricter one decides.
    let map = ResourceMap::new()
        .route(protect("/albums", "albums"))
        .route(Route::public("/{p}"));
    assert_eq!(resource_of(&map, "/%61lbums"), "albums");
}

/// Finding: `/albums/albums/` was decided as `/albums/albums`, while axum's router runs
/// `/{*rest}` for it.
#[test]
fn trailing_slashes_are_checked_as_received() {
    let map = ResourceMap::new()
        .route(Route::public("/albums/albums"))
        .route(protect("/*", "root"));
    map.validate().unwrap();
    assert_eq!(resource_of(&map, "/albums/albums"), "PUBLIC");
    assert_eq!(resource_of(&map, "/albums/albums/"), "ERR:AsReceived");
    // Trailing slashes keep working where the rule does not change.
    let map = ResourceMap::new()
        .route(protect("/albums/{id}", "album"))
        .route(protect("/static/*", "static"));
    assert_eq!(resource_of(&map, "/albums/1/"), "album");
    assert_eq!(resource_of(&map, "/static/"), "static");
    assert_eq!(resource_of(&map, "/static/a/"), "static");
    let map = map.route(Route::public("/*"));
    assert_eq!(resource_of(&map, "/albums/1/"), "album");
}

/// Finding: `//albums/1` was decided as `/albums/1` by a public `/{p0}/{p1}`, while axum's
/// router lets `{p0}` take the empty first segment and runs the protected
/// `/{p0}/albums/{p2}`. (A leading `//` is now refused outright; an empty segment further in
/// is checked as received.)
#[test]
fn empty_segments_are_checked_as_received() {
    let maps = [
        // A leading empty segment is refused before any route is looked at; matchit gives
        // `{p2}` no empty last segment: `/x/albums/` is the public `/x/albums`.
        (
            vec![
                Route::public("/{p0}/{p1}"),
                protect("/{p0}/albums/{p2}", "albums"),
            ],
            vec![
                ("/x/albums/1", "albums"),
                ("/albums/1", "PUBLIC"),
                ("//albums/1", "ERR:NetworkPath"),
                ("/x/albums/", "PUBLIC"),
            ],
        ),
        // The same, one segment further in.
        (
            vec![
                Route::public("/{p0}/{p1}/{p2}"),
                protect("/{p0}/{p1}/albums/{p3}", "albums"),
            ],
            vec![
                ("/x/y/albums/1", "albums"),
                ("/x/albums/1", "PUBLIC"),
                ("/x//albums/1", "ERR:AsReceived"),
            ],
        ),
        // Unmapped here, but a route on axum's router.
        (
            vec![protect("/{a}/{b}", "ab")],
            vec![
                ("/x", "UNMAPPED"),
                ("//x", "ERR:NetworkPath"),
                ("/x//", "UNMAPPED"),
            ],
        ),
        (
            vec![protect("/{a}/{b}/{c}", "abc")],
            vec![("/x/y", "UNMAPPED"), ("/x//y", "ERR:AsReceived")],
        ),
    ];
    for (routes, cases) in maps {
        let map = routes
            .into_iter()
            .fold(ResourceMap::new(), ResourceMap::route);
        map.validate().unwrap();
        for (path, want) in cases {
            assert_eq!(resource_of(&map, path), want, "{path}");
        }
    }
}

#[test]
fn wildcard_matches_bare_prefix_and_captures_rest() {
    let map =
        ResourceMap::new().route(Route::new("/static/*").resolver(|req: &RequestInfo<'_>| {
            Resolution::protected(
                ResourceRef::Name(format!("static:{}", req.param("*").unwrap_or("<none>"))),
                ["read"],
            )
        }));
    map.validate().unwrap();
    assert_eq!(resource_of(&map, "/static"), "name:static:");
    assert_eq!(resource_of(&map, "/static/"), "name:static:");
    assert_eq!(resource_of(&map, "/static/a//b%20c/"), "name:static:a/b c");
    assert_eq!(resource_of(&map, "/staticx"), "UNMAPPED");
    assert_eq!(resource_of(&map, "/"), "UNMAPPED");
}

#[test]
fn root_template_matches_only_root() {
    let map = ResourceMap::new().route(protect("/", "root"));
    map.validate().unwrap();
    assert_eq!(resource_of(&map, "/"), "root");
    assert_eq!(resource_of(&map, "//"), "ERR:NetworkPath");
    assert_eq!(resource_of(&map, "/x"), "UNMAPPED");
}

#[test]
fn param_needs_exactly_one_segment() {
    let map = ResourceMap::new().route(protect("/albums/{id}", "album"));
    assert_eq!(resource_of(&map, "/albums"), "UNMAPPED");
    assert_eq!(resource_of(&map, "/albums/"), "UNMAPPED");
    assert_eq!(resource_of(&map, "/albums/1/2"), "UNMAPPED");
}

// ---------------------------------------------------------------------------------------------
// Scopes per method

#[test]
fn scopes_per_method_with_head_any_and_method_as_scope() {
    let map = ResourceMap::new()
        .route(
            Route::new("/invoices/{id}")
                .resource_id("R")
                .scopes(Method::GET, ["read"])
                .scopes(Method::POST, ["write", "write", "audit"]),
        )
        .route(
            Route::new("/reports")
                .resource_id("reports")
                .scopes(Method::GET, ["view"])
                .any_method(["manage"]),
        )
        .route(Route::new("/raw").resource_id("raw").method_as_scope())
        .route(
            Route::new("/mixed")
                .resource_id("mixed")
                .scopes(Method::PUT, ["put-scope"])
                .method_as_scope(),
        )
        .route(
            Route::new("/anyfirst")
                .resource_id("anyfirst")
                .any_method(["any"])
                .method_as_scope(),
        );
    map.validate().unwrap();
    let s = |m: Method, p: &str| scopes_of(&map, &m, p);

    assert_eq!(s(Method::GET, "/invoices/42").unwrap(), ["read"]);
    assert_eq!(s(Method::HEAD, "/invoices/42").unwrap(), ["read"]);
    assert_eq!(s(Method::POST, "/invoices/42").unwrap(), ["write", "audit"]);
    assert_eq!(s(Method::DELETE, "/invoices/42"), None);
    assert_eq!(
        map.resolve_request(&Method::DELETE, "/invoices/42", &HeaderMap::new()),
        Ok(Resolution::MethodNotAllowed {
            allow: vec![Method::GET, Method::HEAD, Method::POST],
            enforcement: None
        })
    );

    assert_eq!(s(Method::GET, "/reports").unwrap(), ["view"]);
    assert_eq!(s(Method::HEAD, "/reports").unwrap(), ["view"]);
    assert_eq!(s(Method::DELETE, "/reports").unwrap(), ["manage"]);

    assert_eq!(s(Method::GET, "/raw").unwrap(), ["GET"]);
    assert_eq!(s(Method::HEAD, "/raw").unwrap(), ["HEAD"]);
    let purge = Method::from_bytes(b"PURGE").unwrap();
    assert_eq!(s(purge, "/raw").unwrap(), ["PURGE"]);

    assert_eq!(s(Method::PUT, "/mixed").unwrap(), ["put-scope"]);
    assert_eq!(s(Method::PATCH, "/mixed").unwrap(), ["PATCH"]);
    assert_eq!(s(Method::PATCH, "/anyfirst").unwrap(), ["any"]);
}

/// Finding: `delete` missed the `DELETE` entry and fell to `any_method` (or unmapped) while
/// Werkzeug, Django and Symfony run the DELETE handler.
#[test]
fn case_variants_of_known_methods_are_refused() {
    let purge = Method::from_bytes(b"PURGE").unwrap();
    let map = ResourceMap::new().route(
        Route::new("/albums/{id}")
            .resource_id("album")
            .scopes(Method::DELETE, ["delete"])
            .scopes(purge.clone(), ["purge"])
            .any_method(["view"]),
    );
    map.validate().unwrap();
    let resolve = |m: &str| {
        let method = Method::from_bytes(m.as_bytes()).unwrap();
        map.resolve_request(&method, "/albums/1", &HeaderMap::new())
    };
    for variant in [
        "delete", "Delete", "gEt", "put", "Post", "head", "options", "patch", "trace", "connect",
        "purge", "Purge",
    ] {
        assert_eq!(resolve(variant), Err(PathError::MethodCase), "{variant}");
        let method = Method::from_bytes(variant.as_bytes()).unwrap();
        let headers = HeaderMap::new();
        let info = RequestInfo::new(&method, "/albums/1", &headers, &[]);
        assert_eq!(map.resolve(&info), Resolution::Unmapped, "{variant}");
    }
    // The exact spellings, and extension methods, go through the map.
    assert_eq!(
        scopes_of(&map, &Method::DELETE, "/albums/1").unwrap(),
        ["delete"]
    );
    assert_eq!(scopes_of(&map, &purge, "/albums/1").unwrap(), ["purge"]);
    for other in ["PROPFIND", "propfind", "Frob"] {
        let method = Method::from_bytes(other.as_bytes()).unwrap();
        assert_eq!(
            scopes_of(&map, &method, "/albums/1").unwrap(),
            ["view"],
            "{other}"
        );
    }
}

#[test]
fn head_with_its_own_entry_does_not_use_get() {
    let map = ResourceMap::new().route(
        Route::new("/x")
            .resource_id("x")
            .scopes(Method::GET, ["read"])
            .scopes(Method::HEAD, ["peek"]),
    );
    assert_eq!(scopes_of(&map, &Method::HEAD, "/x").unwrap(), ["peek"]);
}

#[test]
fn scopes_for_a_method_can_be_replaced() {
    let map = ResourceMap::new().route(
        Route::new("/x")
            .resource_id("x")
            .scopes(Method::GET, ["old"])
            .scopes(Method::GET, ["new"]),
    );
    assert_eq!(scopes_of(&map, &Method::GET, "/x").unwrap(), ["new"]);
}

#[test]
fn protected_carries_scope_mode_enforcement_and_resource() {
    let map = ResourceMap::new()
        .route(
            Route::new("/a")
                .declare(ResourceDecl::new("alpha", ["r"]))
                .any_method(["r"])
                .scope_mode(ScopeMode::Any)
                .enforcement(EnforcementMode::Disabled),
        )
        .route(protect("/b", "beta"));
    assert_eq!(
        get(&map, "/a").unwrap(),
        Resolution::Protected {
            resource: name("alpha"),
            scopes: vec!["r".to_owned()],
            scope_mode: ScopeMode::Any,
            enforcement: Some(EnforcementMode::Disabled),
        }
    );
    assert_eq!(
        get(&map, "/b").unwrap(),
        Resolution::Protected {
            resource: id("beta"),
            scopes: vec!["read".to_owned()],
            scope_mode: ScopeMode::All,
            enforcement: None,
        }
    );
}

/// Finding: `POST /albums/1` (the route lists GET, PUT and DELETE) was unmapped, so
/// `Unmapped::Allow` let it through with no token. `unmapped` now concerns only paths no route
/// matches.
#[test]
fn methods_a_matched_route_does_not_list_are_not_allowed() {
    let map = ResourceMap::new()
        .route(
            Route::new("/albums/{id}")
                .resource_id("album")
                .scopes(Method::GET, ["view"])
                .scopes(Method::PUT, ["edit"])
                .scopes(Method::DELETE, ["delete"]),
        )
        .route(
            Route::new("/reports")
                .resource_id("reports")
                .scopes(Method::PUT, ["edit"])
                .enforcement(EnforcementMode::Permissive),
        )
        .route(protect("/any", "any"))
        .route(Route::new("/raw").resource_id("raw").method_as_scope());
    map.validate().unwrap();
    let resolve = |method: &Method, path| map.resolve_request(method, path, &HeaderMap::new());
    for method in [Method::POST, Method::PATCH, Method::OPTIONS] {
        assert_eq!(
            resolve(&method, "/albums/1"),
            Ok(Resolution::MethodNotAllowed {
                allow: vec![Method::GET, Method::HEAD, Method::PUT, Method::DELETE],
                enforcement: None,
            }),
            "{method}"
        );
    }
    // No `HEAD` without `GET`; the route's enforcement mode comes along.
    assert_eq!(
        resolve(&Method::GET, "/reports"),
        Ok(Resolution::MethodNotAllowed {
            allow: vec![Method::PUT],
            enforcement: Some(EnforcementMode::Permissive),
        })
    );
    // Routes taking every method never answer 405; unmatched paths stay unmapped.
    assert_eq!(scopes_of(&map, &Method::POST, "/any").unwrap(), ["read"]);
    assert_eq!(scopes_of(&map, &Method::POST, "/raw").unwrap(), ["POST"]);
    assert_eq!(
        resolve(&Method::POST, "/elsewhere"),
        Ok(Resolution::Unmapped)
    );
}

/// Finding: a public route was public for every method, so `DELETE /albums/featured` passed
/// with no token and reached `/albums/{id}`'s handler on routers that fall through on a
/// method mismatch.
#[test]
fn public_routes_pass_safe_methods_and_hand_the_others_on() {
    let map = ResourceMap::new()
        .route(Route::public("/albums/featured"))
        .route(
            Route::new("/albums/{id}")
                .resource_id("album")
                .scopes(Method::GET, ["view"])
                .scopes(Method::DELETE, ["delete"]),
        )
        .route(Route::public("/health"))
        .route(Route::public("/hooks/*").public_methods([Method::POST]));
    map.validate().unwrap();
    let resolve = |method: Method, path| map.resolve_request(&method, path, &HeaderMap::new());
    for method in [Method::GET, Method::HEAD, Method::OPTIONS] {
        assert_eq!(
            resolve(method.clone(), "/albums/featured"),
            Ok(Resolution::Public)
        );
        assert_eq!(resolve(method, "/HEALTH/"), Err(PathError::LetterCase));
    }
    assert_eq!(resolve(Method::GET, "/health//"), Ok(Resolution::Public));
    assert_eq!(
        resolve(Method::GET, "//health/"),
        Err(PathError::NetworkPath)
    );
    // Decided under the protected route that also matches.
    assert_eq!(
        resolve(Method::DELETE, "/albums/featured"),
        Ok(Resolution::protected(id("album"), ["delete"]))
    );
    // Nothing else takes POST: refused, with the methods of every route matching there.
    assert_eq!(
        resolve(Method::POST, "/albums/featured"),
        Ok(Resolution::MethodNotAllowed {
            allow: vec![Method::GET, Method::HEAD, Method::OPTIONS, Method::DELETE],
            enforcement: None,
        })
    );
    assert_eq!(
        resolve(Method::DELETE, "/health"),
        Ok(Resolution::MethodNotAllowed {
            allow: vec![Method::GET, Method::HEAD, Method::OPTIONS],
            enforcement: None,
        })
    );
    // Widened by naming methods.
    assert_eq!(
        resolve(Method::POST, "/hooks/build"),
        Ok(Resolution::Public)
    );
    assert_eq!(
        resolve(Method::PUT, "/hooks/build"),
        Ok(Resolution::MethodNotAllowed {
            allow: vec![Method::GET, Method::HEAD, Method::OPTIONS, Method::POST],
            enforcement: None,
        })
    );

    // Two protected routes with different rules could take it: no one rule covers both.
    let map = ResourceMap::new()
        .route(Route::public("/albums/featured"))
        .route(protect("/albums/{id}", "album"))
        .route(protect("/albums/*", "albums-admin"))
        .route(Route::public("/*").public_methods([Method::DELETE]));
    map.validate().unwrap();
    let resolve = |method: Method, path| map.resolve_request(&method, path, &HeaderMap::new());
    assert_eq!(
        resolve(Method::GET, "/albums/featured"),
        Ok(Resolution::Public)
    );
    assert_eq!(
        resolve(Method::DELETE, "/albums/featured"),
        Err(PathError::Ambiguous)
    );
    // A public candidate does not weaken a protected one.
    let map = ResourceMap::new()
        .route(Route::public("/albums/featured"))
        .route(protect("/albums/{id}", "album"))
        .route(Route::public("/*").public_methods([Method::DELETE]));
    let resolve = |method: Method, path| map.resolve_request(&method, path, &HeaderMap::new());
    assert_eq!(
        resolve(Method::DELETE, "/albums/featured"),
        Ok(Resolution::protected(id("album"), ["read"]))
    );
    assert_eq!(resolve(Method::DELETE, "/other"), Ok(Resolution::Public));
}

#[test]
fn protected_routes_can_name_public_methods() {
    let map = ResourceMap::new().route(
        Route::new("/albums/{id}")
            .resource_id("album")
            .scopes(Method::PUT, ["edit"])
            .public_methods([Method::OPTIONS, Method::GET]),
    );
    map.validate().unwrap();
    let resolve = |method: Method| map.resolve_request(&method, "/albums/1", &HeaderMap::new());
    for method in [Method::OPTIONS, Method::GET, Method::HEAD] {
        assert_eq!(resolve(method), Ok(Resolution::Public));
    }
    assert_eq!(
        resolve(Method::PUT),
        Ok(Resolution::protected(id("album"), ["edit"]))
    );
    assert_eq!(
        resolve(Method::DELETE),
        Ok(Resolution::MethodNotAllowed {
            allow: vec![Method::OPTIONS, Method::GET, Method::HEAD, Method::PUT],
            enforcement: None,
        })
    );
    let both = ResourceMap::new().route(
        Route::new("/a")
            .resource_id("a")
            .scopes(Method::POST, ["w"])
            .public_methods([Method::POST]),
    );
    assert_eq!(
        both.validate(),
        Err(ResourceMapError::PublicAndProtectedMethod {
            template: "/a".to_owned(),
            method: "POST".to_owned()
        })
    );
    let typo = ResourceMap::new()
        .route(Route::public("/a").public_methods([Method::from_bytes(b"PSOT").unwrap()]));
    assert!(matches!(
        typo.validate(),
        Err(ResourceMapError::InvalidMethod { .. })
    ));
}

/// Finding: `/albums/FEATURED` was public here (literal `/albums/featured`, matched ignoring
/// case) but reached the protected `/albums/{id}` handler on a case-sensitive router.
#[test]
fn paths_whose_rule_depends_on_letter_case_are_refused() {
    let map = ResourceMap::new()
        .route(Route::public("/albums/featured"))
        .route(protect("/albums/{id}", "album"));
    map.validate().unwrap();
    assert_eq!(resource_of(&map, "/albums/featured"), "PUBLIC");
    assert_eq!(resource_of(&map, "/albums/FEATURED"), "ERR:LetterCase");
    assert_eq!(resource_of(&map, "/albums/Featured"), "ERR:LetterCase");
    assert_eq!(resource_of(&map, "/albums/7"), "album");
    // No route at all on a case-sensitive router: refused as well.
    assert_eq!(resource_of(&map, "/Albums/7"), "ERR:LetterCase");
    // Parameters never depend on case.
    assert_eq!(resource_of(&map, "/albums/ABC"), "album");

    // When a case-sensitive router would apply the same rule, the request is decided.
    let map = ResourceMap::new()
        .route(protect("/a/{x}", "same"))
        .route(protect("/{y}/{x}", "same"))
        .route(protect("/b/{x}", "b"))
        .route(protect("/{y}/c", "other"));
    map.validate().unwrap();
    assert_eq!(resource_of(&map, "/A/1"), "same");
    assert_eq!(resource_of(&map, "/B/1"), "ERR:LetterCase");
    assert_eq!(resource_of(&map, "/a/C"), "same");
    assert_eq!(resource_of(&map, "/A/c"), "ERR:LetterCase");
}

/// What the layer's builder reads to refuse spellings in permissive mode (some route may be
/// enforcing) and route overrides under a disabled layer.
#[test]
fn routes_that_may_enforce_are_known() {
    let enforcing = protect("/strict", "s").enforcement(EnforcementMode::Enforcing);
    let permissive = protect("/lax", "l").enforcement(EnforcementMode::Permissive);
    let off = protect("/off", "o").enforcement(EnforcementMode::Disabled);
    let resolved = Route::new("/r").resolver(|_: &RequestInfo<'_>| Resolution::Public);

    let plain = ResourceMap::new()
        .route(protect("/a", "a"))
        .route(off.clone());
    assert!(!plain.may_enforce());
    assert_eq!(plain.enforcement_override(), None);
    let lax = ResourceMap::new().route(off).route(permissive);
    assert!(!lax.may_enforce());
    assert_eq!(lax.enforcement_override(), Some("/lax"));
    assert!(ResourceMap::new().route(enforcing).may_enforce());
    assert!(ResourceMap::new().route(resolved).may_enforce());
}

#[test]
fn empty_map_is_unmapped() {
    assert_eq!(get(&ResourceMap::new(), "/x"), Ok(Resolution::Unmapped));
    assert_eq!(
        get(&ResourceMap::new(), "/x/../y"),
        Err(PathError::DotSegment)
    );
}

// ---------------------------------------------------------------------------------------------
// Resolvers

#[test]
fn route_resolver_takes_precedence_and_is_returned_as_is() {
    let map = ResourceMap::new().route(
        Route::new("/albums/{id}")
            .resource_id("ignored")
            .any_method(["ignored"])
            .resolver(|req: &RequestInfo<'_>| match req.param("id") {
                Some("0") => Resolution::Unmapped,
                Some("pub") => Resolution::Public,
                Some(id) => Resolution::Protected {
                    resource: ResourceRef::Id(format!("album-{id}")),
                    scopes: vec![req.method.as_str().to_ascii_lowercase()],
                    scope_mode: ScopeMode::Any,
                    enforcement: Some(EnforcementMode::Permissive),
                },
                None => Resolution::Public,
            }),
    );
    map.validate().unwrap();
    assert_eq!(get(&map, "/albums/0"), Ok(Resolution::Unmapped));
    assert_eq!(get(&map, "/albums/pub"), Ok(Resolution::Public));
    assert_eq!(
        map.resolve_request(&Method::PUT, "/albums/7", &HeaderMap::new()),
        Ok(Resolution::Protected {
            resource: id("album-7"),
            scopes: vec!["put".to_owned()],
            scope_mode: ScopeMode::Any,
            enforcement: Some(EnforcementMode::Permissive),
        })
    );
}

#[test]
fn route_resolver_sees_headers_and_method() {
    let map = ResourceMap::new().route(Route::new("/t/*").resolver(|req: &RequestInfo<'_>| {
        match req.headers.get("x-tenant").and_then(|v| v.to_str().ok()) {
            Some(tenant) if *req.method == Method::GET => {
                Resolution::protected(ResourceRef::Name(tenant.to_owned()), ["read"])
            }
            _ => Resolution::Unmapped,
        }
    }));
    let mut headers = HeaderMap::new();
    headers.insert("x-tenant", HeaderValue::from_static("acme"));
    assert_eq!(
        map.resolve_request(&Method::GET, "/t/x", &headers),
        Ok(Resolution::protected(name("acme"), ["read"]))
    );
    assert_eq!(
        map.resolve_request(&Method::POST, "/t/x", &headers),
        Ok(Resolution::Unmapped)
    );
    assert_eq!(
        map.resolve_request(&Method::GET, "/t/x", &HeaderMap::new()),
        Ok(Resolution::Unmapped)
    );
}

#[test]
fn map_as_a_resolver_and_closure_as_a_whole_resolver() {
    fn assert_resolver(resolver: &dyn ResourceResolver, path: &str, expected: &Resolution) {
        let headers = HeaderMap::new();
        let info = RequestInfo::new(&Method::GET, path, &headers, &[]);
        assert_eq!(&resolver.resolve(&info), expected, "{path}");
    }
    let map = albums_map();
    assert_resolver(
        &map,
        "/albums/1",
        &Resolution::protected(id("album"), ["read"]),
    );
    assert_resolver(
        &map,
        "/albums//1/",
        &Resolution::protected(id("album"), ["read"]),
    );
    assert_resolver(&map, "//albums/1", &Resolution::Unmapped);
    assert_resolver(&map, "/Albums/1", &Resolution::Unmapped);
    // Refused spellings become unmapped through the trait, never a weaker rule.
    assert_resolver(&map, "/albums/../admin", &Resolution::Unmapped);
    assert_resolver(&map, "/admin;x", &Resolution::Unmapped);

    let closure = |req: &RequestInfo<'_>| {
        if req.path.starts_with("/open") {
            Resolution::Public
        } else {
            Resolution::Unmapped
        }
    };
    assert_resolver(&closure, "/open/x", &Resolution::Public);
    assert_resolver(&closure, "/closed", &Resolution::Unmapped);
    let boxed: Arc<dyn ResourceResolver> = Arc::new(map);
    assert_resolver(
        boxed.as_ref(),
        "/admin/x",
        &Resolution::protected(id("admin-area"), ["read"]),
    );
}

// ---------------------------------------------------------------------------------------------
// Validation

fn template_error(template: &str) -> Option<String> {
    match ResourceMap::new().route(protect(template, "r")).validate() {
        Ok(()) => None,
        Err(ResourceMapError::InvalidTemplate {
            template: t,
            reason,
        }) => {
            assert_eq!(t, template);
            Some(reason)
        }
        Err(other) => panic!("{template}: unexpected {other:?}"),
    }
}

#[test]
fn template_errors() {
    for bad in [
        "",
        "albums/{id}",
        "*",
        "/albums/{id",
        "/albums/id}",
        "/albums/x{id}",
        "/albums/{id}x",
        "/albums/{}",
        "/albums/{a b}",
        "/albums/{{id}}",
        "/albums/{id}/{id}",
        "/*/albums",
        "/albums/*/x",
        "/albums/x*",
        "/albums/*.jpg",
        "/albums/../admin",
        "/albums/%2e",
        "/albums/a%2Fb",
        "/albums;x",
        "/albums/%zz",
        "/albums\\x",
    ] {
        assert!(template_error(bad).is_some(), "{bad:?} should be refused");
    }
    for good in [
        "/",
        "/*",
        "/albums",
        "/albums/",
        "/albums//{id}",
        "/albums/{album_id}/photos/{photo-id}/*",
        "/v1/things:search",
        "/%41lbums",
        "/caf\u{e9}",
    ] {
        assert_eq!(template_error(good), None, "{good:?} should be accepted");
    }
    assert!(
        template_error("/albums/{id}/{id}")
            .unwrap()
            .contains("twice")
    );
}

/// Finding: `/albums/:id` (axum 0.7 syntax) was taken as a literal segment, so the route
/// protected nothing real and `/albums/1` fell to the unmapped rule.
#[test]
fn other_routers_syntax_is_refused_with_a_hint() {
    for (bad, hint) in [
        ("/albums/:id", "use {id} instead"),
        ("/albums/:id/photos", "use {id} instead"),
        ("/albums/:", "use {name} instead"),
        ("/static/*rest", "a trailing `*`"),
        ("/static/{*rest}", "a trailing `*`"),
        ("/albums/<id>", "use {id} instead"),
        ("/albums/<int:id>", "use {id} instead"),
    ] {
        let reason = template_error(bad).unwrap_or_else(|| panic!("{bad} accepted"));
        assert!(reason.contains(hint), "{bad}: {reason}");
    }
    // A colon inside a segment is an ordinary literal (Google-style custom methods).
    assert_eq!(template_error("/v1/things:batchGet"), None);
}

/// Finding: `GTE` was accepted as a method, so the route never mapped GET.
#[test]
fn route_methods_that_look_like_mistakes_are_refused() {
    let method = |name: &str| Method::from_bytes(name.as_bytes()).unwrap();
    for (bad, hint) in [
        ("GTE", "typo of GET"),
        ("DELTE", "typo of DELETE"),
        ("delete", "write DELETE"),
        ("Post", "write POST"),
        ("purge", "write PURGE"),
    ] {
        let map = ResourceMap::new().route(
            Route::new("/albums/{id}")
                .resource_id("album")
                .scopes(method(bad), ["view"]),
        );
        match map.validate() {
            Err(ResourceMapError::InvalidMethod {
                template,
                method,
                reason,
            }) => {
                assert_eq!((template.as_str(), method.as_str()), ("/albums/{id}", bad));
                assert!(reason.contains(hint), "{bad}: {reason}");
            }
            other => panic!("{bad}: {other:?}"),
        }
    }
    for good in ["GET", "PROPFIND", "PURGE", "FROBNICATE"] {
        let map = ResourceMap::new().route(
            Route::new("/albums/{id}")
                .resource_id("album")
                .scopes(method(good), ["view"]),
        );
        assert_eq!(map.validate(), Ok(()), "{good}");
    }
}

#[test]
fn duplicate_routes_are_refused() {
    let duplicates = [
        ("/a/{x}", "/a/{y}"),
        ("/albums", "/Albums"),
        ("/albums", "/albums/"),
        ("/albums", "//albums"),
        ("/%41", "/a"),
        ("/a!b", "/a%21b"),
        ("/static/*", "/STATIC/*"),
        ("/{a}/*", "/{b}/*"),
    ];
    for (first, second) in duplicates {
        let map = ResourceMap::new()
            .route(protect(first, "one"))
            .route(Route::public(second));
        assert_eq!(
            map.validate(),
            Err(ResourceMapError::DuplicateRoute {
                first: first.to_owned(),
                second: second.to_owned()
            }),
            "{first} / {second}"
        );
    }
    let distinct = [
        ("/a/{x}", "/a/*"),
        ("/a", "/a/*"),
        ("/a/{x}", "/{x}/a"),
        ("/a/b", "/a/c"),
    ];
    for (first, second) in distinct {
        let map = ResourceMap::new()
            .route(protect(first, "one"))
            .route(protect(second, "two"));
        assert_eq!(map.validate(), Ok(()), "{first} / {second}");
    }
}

#[test]
fn route_configuration_errors() {
    let err = |route: Route| ResourceMap::new().route(route).validate().unwrap_err();
    assert!(matches!(
        err(Route::new("/a").any_method(["read"])),
        ResourceMapError::MissingResource { .. }
    ));
    assert!(matches!(
        err(Route::new("/a").resource_id("a")),
        ResourceMapError::NoScopes { .. }
    ));
    assert!(matches!(
        err(Route::new("/a")
            .resource_id("a")
            .scopes(Method::GET, Vec::<String>::new())),
        ResourceMapError::EmptyScope { .. }
    ));
    assert!(matches!(
        err(Route::new("/a").resource_id("a").any_method([""])),
        ResourceMapError::EmptyScope { .. }
    ));
    assert!(matches!(
        err(Route::public("/a").resource_id("a")),
        ResourceMapError::PublicRouteWithRules { .. }
    ));
    assert!(matches!(
        err(Route::public("/a").any_method(["read"])),
        ResourceMapError::PublicRouteWithRules { .. }
    ));
    assert!(matches!(
        err(Route::public("/a").resolver(|_: &RequestInfo<'_>| Resolution::Public)),
        ResourceMapError::PublicRouteWithRules { .. }
    ));
    assert!(matches!(
        err(Route::new("/a")
            .declare(ResourceDecl::new("", ["r"]))
            .any_method(["r"])),
        ResourceMapError::InvalidDeclaration { .. }
    ));
    assert!(matches!(
        err(Route::new("/a")
            .declare(ResourceDecl::new("a", Vec::<String>::new()))
            .method_as_scope()),
        ResourceMapError::InvalidDeclaration { .. }
    ));
    // A resolver stands in for resource and scopes.
    let with_resolver = Route::new("/a").resolver(|_: &RequestInfo<'_>| Resolution::Unmapped);
    assert_eq!(ResourceMap::new().route(with_resolver).validate(), Ok(()));
}

#[test]
fn scopes_must_be_declared_by_the_declared_resource() {
    let decl = ResourceDecl::new("albums", ["view", "edit"]);
    let ok = ResourceMap::new().route(
        Route::new("/albums/{id}")
            .declare(decl.clone())
            .scopes(Method::GET, ["view"])
            .any_method(["edit"]),
    );
    assert_eq!(ok.validate(), Ok(()));

    let own = ResourceMap::new().route(
        Route::new("/albums/{id}")
            .declare(decl.clone())
            .scopes(Method::DELETE, ["delete"]),
    );
    assert_eq!(
        own.validate(),
        Err(ResourceMapError::UndeclaredScope {
            template: "/albums/{id}".to_owned(),
            scope: "delete".to_owned(),
            resource: "albums".to_owned(),
        })
    );

    // A route naming the resource, added before or after the declaring route.
    let by_name = Route::new("/gallery/{id}")
        .resource_name("albums")
        .any_method(["share"]);
    let declaring = Route::new("/albums/{id}")
        .declare(decl)
        .any_method(["view"]);
    for map in [
        ResourceMap::new()
            .route(by_name.clone())
            .route(declaring.clone()),
        ResourceMap::new().route(declaring).route(by_name),
    ] {
        assert!(
            matches!(
                map.validate(),
                Err(ResourceMapError::UndeclaredScope { ref scope, .. }) if scope == "share"
            ),
            "{:?}",
            map.validate()
        );
    }
}

#[test]
fn declared_deduplicates_and_refuses_conflicts() {
    let albums = ResourceDecl::new("albums", ["view"]).with_type("urn:album");
    let photos = ResourceDecl::new("photos", ["view"]);
    let map = ResourceMap::new()
        .route(
            Route::new("/albums/{id}")
                .declare(albums.clone())
                .any_method(["view"]),
        )
        .route(
            Route::new("/photos/{id}")
                .declare(photos.clone())
                .any_method(["view"]),
        )
        .route(
            Route::new("/albums")
                .declare(albums.clone())
                .any_method(["view"]),
        )
        .route(protect("/other", "x"));
    assert_eq!(map.validate(), Ok(()));
    assert_eq!(map.declared(), [albums.clone(), photos]);

    let conflicting = map.route(
        Route::new("/old-albums")
            .declare(albums.with_description("different"))
            .any_method(["view"]),
    );
    assert_eq!(
        conflicting.validate(),
        Err(ResourceMapError::ConflictingDeclaration {
            name: "albums".to_owned()
        })
    );
}

#[test]
fn later_resource_replaces_declaration() {
    let map = ResourceMap::new().route(
        Route::new("/a")
            .declare(ResourceDecl::new("alpha", ["r"]))
            .resource_id("registered-elsewhere")
            .any_method(["r"]),
    );
    assert!(map.declared().is_empty());
    assert_eq!(
        get(&map, "/a"),
        Ok(Resolution::protected(id("registered-elsewhere"), ["r"]))
    );
}

#[test]
fn an_invalid_map_resolves_nothing() {
    // The broken route would have been the more specific (protected) one: resolving with it
    // skipped would hand its paths to the public wildcard.
    let map = ResourceMap::new()
        .route(Route::public("/*"))
        .route(protect("/admin/{id", "admin"));
    assert!(map.validate().is_err());
    assert_eq!(get(&map, "/admin/x"), Ok(Resolution::Unmapped));
    assert_eq!(get(&map, "/anything"), Ok(Resolution::Unmapped));
    assert_eq!(get(&map, "/admin/../x"), Err(PathError::DotSegment));
}

#[test]
fn validate_reports_the_first_problem() {
    let map = ResourceMap::new()
        .route(Route::new("/a").any_method(["r"]))
        .route(protect("/b/{", "b"));
    assert!(matches!(
        map.validate(),
        Err(ResourceMapError::MissingResource { .. })
    ));
}

#[test]
fn decl_serialises_as_a_resource_description() {
    let minimal = serde_json::to_value(ResourceDecl::new("albums", ["view"])).unwrap();
    assert_eq!(
        minimal,
        serde_json::json!({"name": "albums", "resource_scopes": ["view"]})
    );
    let full = ResourceDecl::new("albums", ["view", "edit"])
        .with_type("urn:photoz:album")
        .with_description("Albums")
        .with_icon_uri("https://photoz.test/icon.png")
        .with_owner("alice");
    assert_eq!(
        serde_json::to_value(full).unwrap(),
        serde_json::json!({
            "name": "albums",
            "type": "urn:photoz:album",
            "description": "Albums",
            "icon_uri": "https://photoz.test/icon.png",
            "resource_scopes": ["view", "edit"],
            "owner": "alice",
        })
    );
}

#[test]
fn route_debug_does_not_need_resolver_debug() {
    let route = Route::new("/a").resolver(|_: &RequestInfo<'_>| Resolution::Public);
    let debug = format!("{route:?}");
    assert!(
        debug.contains("\"/a\"") && debug.contains("<resolver>"),
        "{debug}"
    );
}

#[test]
fn http_uri_paths_normalise() {
    // What the layer actually receives: `Uri::path()` of parsed request targets.
    for (target, expected) in [
        ("/Albums//1/?q=%2e%2e", Ok("/Albums/1")),
        ("http://h.test/a/%2e%2e/b?x", Err(PathError::DotSegment)),
        ("http://h.test", Ok("/")),
        ("/a/%7B%7d", Ok("/a/%7B%7D")),
    ] {
        let uri: http::Uri = target.parse().unwrap();
        assert_eq!(
            normalize_path(uri.path())
                .as_ref()
                .map(NormalizedPath::as_str),
            expected.as_ref().map(|s| *s),
            "{target}"
        );
    }
}

#[test]
fn request_info_debug_hides_header_values() {
    let mut headers = HeaderMap::new();
    headers.insert(
        http::header::AUTHORIZATION,
        HeaderValue::from_static("Bearer rpt-s3cr3t"),
    );
    let params = [("id".to_owned(), "7".to_owned())];
    let info = RequestInfo::new(&Method::GET, "/albums/7", &headers, &params);
    let debug = format!("{info:?}");
    assert!(!debug.contains("s3cr3t"), "{debug}");
    assert!(
        debug.contains("authorization") && debug.contains("/albums/7") && debug.contains("\"7\""),
        "{debug}"
    );
}

// ---------------------------------------------------------------------------------------------
// Rules of the resolver that the mutation sweep found no test for (docs/testing.md)

/// Behind a public route that does not take the method, the routes it falls through to
/// decide; with an escape in the path, the decoded path must select the same rule, and here
/// it does.
#[test]
fn a_method_falling_through_with_an_escape_in_the_path() {
    let map = ResourceMap::new()
        .route(Route::public("/docs/{page}"))
        .route(protect("/docs/*", "docs"));
    map.validate().unwrap();
    for path in ["/docs/a%20b", "/docs/ab"] {
        assert_eq!(resource_for(&map, &Method::POST, path), "docs", "{path}");
        assert_eq!(resource_of(&map, path), "PUBLIC", "{path}");
    }
}

/// Two routes a method falls through to that apply the same rule: whichever handler the
/// upstream runs, the decision holds.
#[test]
fn routes_a_method_falls_through_to_may_agree() {
    let map = ResourceMap::new()
        .route(Route::public("/x/{id}"))
        .route(protect("/x/*", "r"))
        .route(protect("/{a}/{b}", "r"));
    map.validate().unwrap();
    assert_eq!(resource_for(&map, &Method::POST, "/x/1"), "r");
}

/// `POST /admin`: the public `/admin` does not take it, so `/admin/*` matching nothing
/// decides here, but axum's router does not match `/admin/{*rest}` for `/admin` and runs the
/// `/admin` handler: refused, although the path is received in canonical form.
#[test]
fn a_method_that_falls_through_is_checked_as_received() {
    let map = ResourceMap::new()
        .route(Route::public("/admin"))
        .route(protect("/admin/*", "admin-area"));
    map.validate().unwrap();
    assert_eq!(
        resource_for(&map, &Method::POST, "/admin"),
        "ERR:AsReceived"
    );
    assert_eq!(resource_of(&map, "/admin"), "PUBLIC");
}

/// A `*` route whose bare prefix is the path joins the routes checked as received only when
/// it would beat the route matched there; on a tie, the route of its own wins. (A literal
/// written with an escape makes every path be checked as received.)
#[test]
fn a_bare_wildcard_counts_only_when_it_beats_the_received_match() {
    let tie = ResourceMap::new()
        .route(protect("/admin", "admin"))
        .route(protect("/admin/*", "admin-area"))
        .route(protect("/%62/x", "b"));
    tie.validate().unwrap();
    assert_eq!(resource_of(&tie, "/admin"), "admin");
    // Here `/%61dmin` decides, but as received only `/{p}` matches `/admin`, and the bare
    // `/admin/*` beats it, with another rule.
    let beats = ResourceMap::new()
        .route(protect("/%61dmin", "x"))
        .route(protect("/admin/*", "admin-area"))
        .route(Route::public("/{p}"));
    beats.validate().unwrap();
    assert_eq!(resource_of(&beats, "/admin"), "ERR:AsReceived");
    assert_eq!(resource_of(&beats, "/other"), "PUBLIC");
}

/// The literal routes' way (a request whose path is a template without parameters, byte for
/// byte) answers what the full resolution answers, in maps mixing literal, parameter,
/// wildcard and public routes, in every case and spelling, for every method.
#[test]
fn literal_routes_resolve_as_the_full_resolution_does() {
    use proptest::prelude::*;

    const TEMPLATES: &[&str] = &[
        "/", "/a", "/A", "/a/b", "/hello", "/{p}", "/a/{p}", "/a/*", "/*", "/hello/*", "/%61",
        "/a/b/c", "/~x", "/h%65llo",
    ];
    const PATHS: &[&str] = &[
        "/", "/a", "/A", "/a/b", "/A/b", "/hello", "/HELLO", "/a/", "//a", "/a/b/c", "/%61", "/x",
        "/a/x", "/hello/x", "/~x", "/%7Ex", "/a/./b", "/h%65llo",
    ];
    // Protected for every method, for GET only, public, public for GET beside protected POST.
    let route =
        (0..TEMPLATES.len(), 0..4_u8).prop_map(|(t, kind)| random_route(TEMPLATES, t, kind));
    let literal_ways = quick_ways_agree(route, 1..6, PATHS, |map, method, path| {
        map.takes_literal_way(method, path)
    });
    // The literal routes' way was taken, and not only a few times.
    assert!(literal_ways > 2_000, "{literal_ways}");
}

/// Route `t` of `templates` of one of six kinds: 0 protected for every method, 1 protected
/// for GET only, 2 public, 3 public for GET beside protected POST, 4 protected and pushing a
/// claim from the path, 5 decided by a resolver.
fn random_route(templates: &[&str], t: usize, kind: u8) -> Route {
    let template = templates[t];
    match kind {
        0 => Route::new(template)
            .resource_id(format!("r{t}"))
            .any_method(["read"]),
        1 => Route::new(template)
            .resource_id(format!("g{t}"))
            .scopes(Method::GET, ["view"]),
        2 => Route::public(template),
        3 => Route::new(template)
            .resource_id(format!("p{t}"))
            .public_methods([Method::GET])
            .scopes(Method::POST, ["write"]),
        4 => Route::new(template)
            .resource_id(format!("c{t}"))
            .any_method(["read"])
            .push_claims(
                PushedClaims::new()
                    .claim("id", "{request.path['p']}")
                    .expect("a valid claim"),
            ),
        _ => Route::new(template).resolver(|info: &RequestInfo<'_>| {
            Resolution::protected(ResourceRef::Id(format!("v{}", info.path)), ["read"])
        }),
    }
}

/// Resolves every path of `paths` with GET, HEAD, POST and DELETE both ways, the map's own
/// (`resolve_raw`, with its quick ways) and in full, on 2,000 random maps of `sizes` routes
/// drawn from `route`, and fails on the first disagreement; returns how many resolutions
/// `took_way` says took the quick way under test.
fn quick_ways_agree(
    route: impl proptest::strategy::Strategy<Value = Route>,
    sizes: std::ops::Range<usize>,
    paths: &[&str],
    took_way: impl Fn(&ResourceMap, &Method, &str) -> bool,
) -> u32 {
    use proptest::prop_assert_eq;
    use proptest::test_runner::{Config, TestRunner};

    let mut runner = TestRunner::new(Config {
        cases: 2_000,
        ..Config::default()
    });
    let methods = [Method::GET, Method::HEAD, Method::POST, Method::DELETE];
    let ways = std::cell::Cell::new(0_u32);
    runner
        .run(&proptest::collection::vec(route, sizes), |routes| {
            let map = routes
                .into_iter()
                .fold(ResourceMap::new(), ResourceMap::route);
            let headers = HeaderMap::new();
            for path in paths {
                for method in &methods {
                    ways.set(ways.get() + u32::from(took_way(&map, method, path)));
                    prop_assert_eq!(
                        map.resolve_raw(method, path, &headers),
                        map.resolve_in_full(method, path, &headers),
                        "{} {}",
                        method,
                        path
                    );
                }
            }
            Ok(())
        })
        .unwrap();
    ways.get()
}

/// The plain paths' way (a path in canonical form of plain bytes, whose best route decides
/// without cross-checks) answers what the full resolution answers, in maps mixing literal,
/// parameter, wildcard, public, pushing and resolver routes, for paths in every case and
/// spelling, for every method.
#[test]
fn plain_paths_resolve_as_the_full_resolution_does() {
    use proptest::prelude::*;

    const TEMPLATES: &[&str] = &[
        "/",
        "/a",
        "/A",
        "/a/b",
        "/{p}",
        "/a/{p}",
        "/A/{q}",
        "/{p}/b",
        "/{p}/{q}",
        "/a/*",
        "/*",
        "/a/{p}/*",
        "/{p}/b/*",
        "/a/b/c",
        "/a/{p}/c",
        "/~x/{p}",
        "/x:y/{p}",
        "/%61/{p}",
        "/h%65llo/{p}",
        "/{p}/{q}/{r}",
        "/a%21/{p}",
    ];
    const PATHS: &[&str] = &[
        "/",
        "/a",
        "/A",
        "/a/b",
        "/A/b",
        "/a/B",
        "/a/1",
        "/A/1",
        "/1/b",
        "/1/B",
        "/1/2",
        "/a/b/c",
        "/a/1/c",
        "/a/1/C",
        "/A/1/c",
        "/a/b/c/d",
        "/x/y/z/w",
        "/~x/1",
        "/x:y/1",
        "/X:Y/1",
        "/a/",
        "//a",
        "/a//b",
        "/a/./b",
        "/a/../b",
        "/./a",
        "/..",
        "/a/%31",
        "/%61/1",
        "/hello/1",
        "/a/b%20c",
        "/a/1;x",
        "/a/1/2/3/4/5/6/7/8/9/10/11/12/13/14/15/16",
        "/a/b/c/d/e/f/g/h/i/j/k/l/m/n/o/p/q",
        "/a/@!$&'()*+,=-._~",
        "/a!/1",
        "/a%21/1",
    ];
    // Every kind of `random_route`, pushed claims and resolvers included.
    let route =
        (0..TEMPLATES.len(), 0..6_u8).prop_map(|(t, kind)| random_route(TEMPLATES, t, kind));
    let plain_ways = quick_ways_agree(route, 1..7, PATHS, |map, method, path| {
        map.takes_plain_way(method, path)
    });
    // The plain paths' way was taken, and not only a few times.
    assert!(plain_ways > 20_000, "{plain_ways}");
}

/// `plain_segments` splits exactly the paths `normalize_path` finds verbatim without escapes,
/// into the same segments.
#[test]
fn plain_segments_agree_with_the_normalisation() {
    use super::path::PLAIN_SEGMENTS;
    let long = "/s".repeat(PLAIN_SEGMENTS);
    let too_long = "/s".repeat(PLAIN_SEGMENTS + 1);
    for raw in [
        "/",
        "",
        "a",
        "/a",
        "/a/b",
        "/A/b/",
        "//a",
        "/a//b",
        "/a/./b",
        "/a/..",
        "/.",
        "/..",
        "/...",
        "/.a",
        "/a.",
        "/%61",
        "/a%20b",
        "/a b",
        "/a;b",
        "/a\\b",
        "/é",
        "/a?b",
        "/a#b",
        "/~x/@/:/!$&'()*+,=",
        "/a\u{7f}",
        long.as_str(),
        too_long.as_str(),
    ] {
        plain_segments_agree(raw);
    }
}

/// Paths of `count` segments drawn from `segment`, ending in a slash with probability
/// `trailing`.
fn random_path<T: AsRef<str> + std::fmt::Debug>(
    segment: impl proptest::strategy::Strategy<Value = T>,
    count: std::ops::Range<usize>,
    trailing: f64,
) -> impl proptest::strategy::Strategy<Value = String> {
    use proptest::strategy::Strategy;
    (
        proptest::collection::vec(segment, count),
        proptest::bool::weighted(trailing),
    )
        .prop_map(|(segments, trailing)| {
            let segments: Vec<&str> = segments.iter().map(AsRef::as_ref).collect();
            let mut path = format!("/{}", segments.join("/"));
            if trailing {
                path.push('/');
            }
            path
        })
}

/// [`plain_segments_agree_with_the_normalisation`] on random paths: mostly plain ones (1 to 20
/// segments of 1 to 11 plain bytes, dots included, so that the eight-byte words the split
/// reads hold slashes at every position and paths run to several words), some with a `.` or
/// `..` segment, an empty segment, a trailing slash or a byte that is not plain.
#[test]
fn plain_segments_agree_on_random_paths() {
    use proptest::strategy::Strategy;
    use proptest::test_runner::{Config, TestRunner};
    let plain = proptest::sample::select(vec!['a', 'Z', '7', '.', '-', '~', '@', ':', '!']);
    let segment = proptest::prop_oneof![
        12 => proptest::collection::vec(plain, 1..12).prop_map(String::from_iter),
        1 => proptest::sample::select(vec![".", "..", "", "%2F", "a b"]).prop_map(str::to_owned),
    ];
    let path = random_path(segment, 1..21, 0.1);
    let mut runner = TestRunner::new(Config {
        cases: 20_000,
        ..Config::default()
    });
    let split = std::cell::Cell::new(0_u32);
    runner
        .run(&path, |raw| {
            split.set(split.get() + u32::from(plain_segments_agree(&raw)));
            Ok(())
        })
        .unwrap();
    // Most paths were split (and compared), not refused before the split.
    assert!(split.get() > 5_000, "{}", split.get());
}

/// `plain_segments` splits `raw` when, and as, `normalize_path` finds it verbatim without
/// escapes, unless it has too many segments. Whether it split it.
fn plain_segments_agree(raw: &str) -> bool {
    use super::path::{PLAIN_SEGMENTS, plain_segments};
    let mut spare = [""; PLAIN_SEGMENTS];
    let plain = plain_segments(raw, &mut spare).map(<[&str]>::to_vec);
    let full = normalize_path(raw)
        .ok()
        .filter(|p| p.is_verbatim() && !p.has_escapes());
    match (&plain, &full) {
        (Some(plain), Some(full)) => {
            let segments: Vec<&str> = full.segments().iter().map(|s| s.canonical()).collect();
            assert_eq!(plain, &segments, "{raw:?}");
        }
        (None, Some(full)) => {
            assert!(full.segments().len() > PLAIN_SEGMENTS, "{raw:?} is plain");
        }
        (Some(_), None) => panic!("{raw:?} is not plain"),
        (None, None) => {}
    }
    plain.is_some()
}

/// `Template::matches_plain` answers, in one pass, what `matches` answers under the layer's
/// own view and under exact case.
#[test]
fn matching_plain_segments_in_one_pass() {
    let templates = [
        "/", "/a", "/A/b", "/a/{p}", "/{p}/B", "/a/*", "/*", "/a/{p}/*", "/x:y/~z",
    ];
    let paths: [&[&str]; 9] = [
        &[],
        &["a"],
        &["A"],
        &["a", "b"],
        &["A", "B"],
        &["a", "b", "c"],
        &["q", "B"],
        &["q", "b"],
        &["X:Y", "~z"],
    ];
    for source in templates {
        let template = Template::parse(source).unwrap();
        for path in paths {
            let canonical = template.matches(path, Lens::CANONICAL);
            let exact = template.matches(path, Lens::EXACT_CASE);
            assert_eq!(
                template.matches_plain(path),
                canonical.then_some(exact),
                "{source} {path:?}"
            );
        }
    }
}

/// The quick ways against the full resolution and against axum's router: on random maps
/// mixing literal routes (case variants, one of 17 segments), parameters, wildcards, public
/// routes (one letting an extension method through), pushed claims, resolvers and routes with
/// their own `HEAD` and `any_method`, and random spellings of the request (escapes, dot and
/// empty segments, case, a trailing slash, `;`, non-ASCII, up to 19 segments) with standard,
/// extension and case-variant methods, `resolve_raw` answers what the full resolution answers;
/// and whenever a quick way answers, matchit (axum's router, given the same templates) runs
/// the route the layer decided by, or none when the layer found none. Release builds, where the
/// `debug_assert` in `resolve_raw` is off, run it too.
#[cfg(feature = "axum")]
#[test]
fn quick_ways_agree_with_the_full_resolution_and_with_matchit() {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};

    const LONG: &str = "/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a";
    const LONG_WILD: &str = "/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/*";
    const TEMPLATES: &[&str] = &[
        "/",
        "/a",
        "/A",
        "/a/b",
        "/A/B",
        "/a/B",
        "/ab",
        "/{p}",
        "/a/{p}",
        "/A/{q}",
        "/{p}/b",
        "/{p}/B",
        "/{p}/{q}",
        "/a/*",
        "/A/*",
        "/*",
        "/a/{p}/*",
        "/{p}/b/*",
        "/a/b/c",
        "/a/{p}/c",
        "/x:y/{p}",
        "/ab/{p}",
        "/a/b/*",
        "/{p}/{q}/{r}",
        "/~x",
        "/1/*",
        LONG,
        LONG_WILD,
    ];
    const SEGMENTS: &[&str] = &[
        "a",
        "a",
        "a",
        "A",
        "b",
        "B",
        "c",
        "ab",
        "aB",
        "x:y",
        "X:Y",
        "1",
        "q",
        "~x",
        "@!$&'()*+,=",
        "%61",
        "%41",
        "a%20b",
        "%C3%A9",
        "é",
        ".",
        "..",
        "",
        "a;b",
        "%3B",
        "%2F",
        "%252e",
    ];
    let purge = Method::from_bytes(b"PURGE").unwrap();
    let route = (0..TEMPLATES.len(), 0..8_u8).prop_map(move |(t, kind)| match kind {
        6 => Route::new(TEMPLATES[t])
            .resource_id(format!("h{t}"))
            .scopes(Method::GET, ["view"])
            .scopes(Method::HEAD, ["head"])
            .any_method(["admin"])
            .public_methods([Method::OPTIONS]),
        7 => Route::public(TEMPLATES[t]).public_methods([purge.clone()]),
        kind => random_route(TEMPLATES, t, kind),
    });
    let path = random_path(proptest::sample::select(SEGMENTS), 0..20, 0.15);
    let fixed = [
        "/",
        LONG,
        "/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a",
        "/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a",
        "/A/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a",
        "/a/b",
        "/A/B",
        "/a/B",
        "/ab",
        "/a",
        "/A",
        "/1",
        "/~x",
    ];
    let methods: Vec<Method> = [
        "GET", "HEAD", "POST", "DELETE", "OPTIONS", "PURGE", "PROPFIND", "get", "Head", "purge",
    ]
    .iter()
    .map(|m| Method::from_bytes(m.as_bytes()).unwrap())
    .collect();
    let mut runner = TestRunner::new(Config {
        cases: 1_000,
        ..Config::default()
    });
    let (literal, plain, checked) = (
        std::cell::Cell::new(0_u32),
        std::cell::Cell::new(0_u32),
        std::cell::Cell::new(0_u32),
    );
    runner
        .run(
            &(
                proptest::collection::vec(route, 1..7),
                proptest::collection::vec(path, 1..40),
            ),
            |(routes, paths)| {
                let map = routes
                    .into_iter()
                    .fold(ResourceMap::new(), ResourceMap::route);
                let mut router = matchit::Router::new();
                let mut axum_ok = map.validate().is_ok();
                for (index, entry) in map.entries.iter().enumerate() {
                    let t = entry.route.template.as_str();
                    let axum_path = match t.strip_suffix('*') {
                        Some(prefix) => format!("{prefix}{{*rest}}"),
                        None => t.to_owned(),
                    };
                    axum_ok &= router.insert(axum_path, index).is_ok();
                }
                let headers = HeaderMap::new();
                for path in paths.iter().map(String::as_str).chain(fixed) {
                    for method in &methods {
                        let quick_literal = map.takes_literal_way(method, path);
                        let quick_plain = map.takes_plain_way(method, path);
                        literal.set(literal.get() + u32::from(quick_literal));
                        plain.set(plain.get() + u32::from(quick_plain));
                        let raw = map.resolve_raw(method, path, &headers);
                        prop_assert_eq!(
                            &raw,
                            &map.resolve_in_full(method, path, &headers),
                            "{} {}",
                            method,
                            path
                        );
                        if !(axum_ok && (quick_literal || quick_plain)) {
                            continue;
                        }
                        let Ok(resolved) = raw else { continue };
                        let axum = router.at(path).ok().map(|m| *m.value);
                        checked.set(checked.get() + 1);
                        if resolved == Resolved::Unmapped {
                            prop_assert_eq!(axum, None, "{} {}", method, path);
                        } else {
                            prop_assert_eq!(
                                axum,
                                map.deciding_route(&Method::GET, path),
                                "{} {}",
                                method,
                                path
                            );
                        }
                    }
                }
                Ok(())
            },
        )
        .unwrap();
    eprintln!(
        "literal way {}, plain way {}, checked against matchit {}",
        literal.get(),
        plain.get(),
        checked.get()
    );
    assert!(literal.get() > 1_000 && plain.get() > 10_000 && checked.get() > 10_000);
}
