//! `[cache.shared]` and `admin_token_env`: the keys of a fleet of replicas, checked at their
//! line.

use std::ops::Range;

use toml::Spanned;
use tower_uma::token::ClientSecret;

use super::raw::RawShared;
use super::resolve::Resolver;
use super::{ConfigError, DEFAULT_SHARED_TIMEOUT, SharedCacheConfig};

/// The shortest fleet secret accepted, in bytes (tower-uma's `MIN_SECRET_LEN`).
const MIN_SHARED_SECRET: usize = 32;
/// The shortest admin token accepted, in bytes.
const MIN_ADMIN_TOKEN: usize = 16;

/// `url` with the user and password of its authority (`scheme://user:password@host/…`)
/// replaced by `***`, for logs and errors.
pub(crate) fn redact_url(url: &str) -> String {
    tower_uma::error::url_without_user_info(url)
}

/// How an error names the environment variable `name` of a `*_env` key: quoted when it looks
/// like one (capitals, digits and `_`, as variables are named), otherwise not at all, since a
/// secret written where its variable's name belongs would be printed with the error.
pub(super) fn env_name(name: &str) -> String {
    let conventional = name.bytes().next().is_some_and(|b| !b.is_ascii_digit())
        && name
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
    if conventional {
        format!("`{name}`")
    } else {
        "named there (not shown: it is not written like a variable's name, LIKE_THIS; is it \
         the secret itself?)"
            .to_owned()
    }
}

impl<E: Fn(&str) -> Option<String>> Resolver<'_, E> {
    /// The value of the environment variable named at `name`, at least `min` bytes long.
    fn env_secret(
        &self,
        key: &str,
        name: &Spanned<String>,
        min: usize,
    ) -> Result<ClientSecret, ConfigError> {
        let var = name.get_ref();
        let shown = env_name(var);
        match (self.env)(var) {
            None => Err(self.at(
                name.span(),
                format!("`{key}`: the environment variable {shown} is not set"),
            )),
            Some(v) if v.len() < min => Err(self.at(
                name.span(),
                format!(
                    "`{key}`: the environment variable {shown} holds {} bytes; at least {min} are \
                     needed (e.g. `openssl rand -hex {}`)",
                    v.len(),
                    min.div_ceil(2)
                ),
            )),
            Some(v) => Ok(ClientSecret::new(v)),
        }
    }

    /// `admin_token_env`: the bearer secret of `POST /admin/revoke`.
    pub(super) fn resolve_admin_token(
        &self,
        raw: Option<&Spanned<String>>,
    ) -> Result<Option<ClientSecret>, ConfigError> {
        raw.map(|name| self.env_secret("admin_token_env", name, MIN_ADMIN_TOKEN))
            .transpose()
    }

    /// `[cache.shared]`: refused when this build has no Redis support.
    pub(super) fn resolve_shared(
        &self,
        raw: Option<&Spanned<RawShared>>,
    ) -> Result<Option<SharedCacheConfig>, ConfigError> {
        let Some(raw) = raw else { return Ok(None) };
        if !cfg!(feature = "redis") {
            return Err(self.at(
                raw.span(),
                "[cache.shared] needs an uma-proxy built with the feature `redis` \
                 (cargo build -p uma-proxy --features redis)"
                    .to_owned(),
            ));
        }
        let r = raw.get_ref();
        let url = r.url.get_ref();
        if !(url.starts_with("redis://") || url.starts_with("redis+unix://")) {
            return Err(self.at(
                r.url.span(),
                format!(
                    "[cache.shared] `url`: {:?} is not a redis:// URL",
                    redact_url(url)
                ),
            ));
        }
        let secret = self.env_secret("secret_env", &r.secret_env, MIN_SHARED_SECRET)?;
        let timeout = match &r.timeout {
            Some(d) => self.positive(d, "timeout")?,
            None => DEFAULT_SHARED_TIMEOUT,
        };
        let channel = match &r.channel {
            Some(c) if c.get_ref().is_empty() => {
                return Err(self.at(c.span(), "[cache.shared] `channel` is empty".to_owned()));
            }
            Some(c) => c.get_ref().clone(),
            None => "tower-uma:revocations".to_owned(),
        };
        let config = SharedCacheConfig {
            url: url.clone(),
            secret,
            timeout,
            channel,
        };
        self.check_shared(&config, r.url.span())?;
        Ok(Some(config))
    }

    #[cfg(feature = "redis")]
    fn check_shared(
        &self,
        config: &SharedCacheConfig,
        at: Range<usize>,
    ) -> Result<(), ConfigError> {
        config
            .build()
            .map(drop)
            .map_err(|e| self.at(at, format!("[cache.shared] {e}")))
    }

    #[cfg(not(feature = "redis"))]
    #[allow(
        clippy::unused_self,
        reason = "the same call with and without the feature"
    )]
    fn check_shared(&self, _: &SharedCacheConfig, _: Range<usize>) -> Result<(), ConfigError> {
        Ok(())
    }
}
