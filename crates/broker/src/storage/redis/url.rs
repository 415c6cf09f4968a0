//! Redis URLs: the standalone, cluster and Sentinel forms, their seeds, and a Display form that
//! hides the password (so a URL can be logged).
//!
//! Why apart from the settings (`options`): each topology's URL form is parsed and taken apart
//! here, once, for the dialers (`dial`, `connection`) and for the start-up checks.

use std::fmt;

/// A Redis URL: `redis://[user:password@]host:port[/db]` (`rediss://` for TLS) for a standalone
/// Redis, or `redis+cluster://[user:password@]host:port,host:port,...` (`rediss+cluster://`) for a
/// Redis Cluster, given by seed nodes from which the topology is discovered, or
/// `redis+sentinel://[user:password@]host:port,host:port,.../<master-name>`
/// (`rediss+sentinel://`) for a master that Redis Sentinel manages (the credentials are used
/// with the sentinels and with the master alike). Its Debug and Display forms hide the
/// password, so it can be logged.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisUrl(String);

impl RedisUrl {
    /// Checks that `url` is one of the forms above and that redis-rs can parse it (each seed of
    /// a cluster URL). The error quotes the URL with its password hidden.
    pub fn parse(url: &str) -> Result<Self, String> {
        let shown = || Self(url.to_owned());
        let scheme = url.split_once("://").map(|(s, _)| s);
        match scheme {
            Some("redis" | "rediss") => {
                redis::parse_redis_url(url)
                    .ok_or_else(|| format!("{} is not a valid Redis URL", shown()))?;
            }
            Some("redis+sentinel" | "rediss+sentinel") => {
                let candidate = Self(url.to_owned());
                if candidate.sentinel_master().is_none() {
                    return Err(format!(
                        "{} names no master: redis+sentinel://host:port,.../<master-name>",
                        shown()
                    ));
                }
                let seeds = candidate.seeds();
                if seeds.iter().any(|s| s.ends_with("://") || s.ends_with('@')) {
                    return Err(format!("{} names an empty sentinel", shown()));
                }
                for seed in &seeds {
                    redis::parse_redis_url(seed).ok_or_else(|| {
                        format!("{} has a sentinel that is not host:port", shown())
                    })?;
                }
            }
            Some("redis+cluster" | "rediss+cluster") => {
                let candidate = Self(url.to_owned());
                let seeds = candidate.cluster_seeds();
                if seeds.iter().any(|s| s.ends_with("://") || s.ends_with('@')) {
                    return Err(format!("{} names an empty seed", shown()));
                }
                for seed in &seeds {
                    redis::parse_redis_url(seed)
                        .ok_or_else(|| format!("{} has a seed that is not host:port", shown()))?;
                }
            }
            _ => {
                return Err(format!(
                    "{} is not a redis://, rediss://, redis+cluster://, rediss+cluster://, \
                     redis+sentinel:// or rediss+sentinel:// URL",
                    shown()
                ));
            }
        }
        Ok(Self(url.to_owned()))
    }

    /// The URL with its password; for connecting only, never for logs.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// True for `rediss://`, `rediss+cluster://` and `rediss+sentinel://`.
    pub fn is_tls(&self) -> bool {
        self.0.starts_with("rediss")
    }

    /// True for `redis+sentinel://` and `rediss+sentinel://`.
    pub fn is_sentinel(&self) -> bool {
        self.0.starts_with("redis+sentinel://") || self.0.starts_with("rediss+sentinel://")
    }

    /// A sentinel URL's master name (its path); `None` for other URLs or an empty name.
    pub fn sentinel_master(&self) -> Option<&str> {
        if !self.is_sentinel() {
            return None;
        }
        let rest = self.0.split_once("://")?.1;
        let name = rest.split_once('/')?.1.trim_matches('/');
        (!name.is_empty()).then_some(name)
    }

    /// True for `redis+cluster://` and `rediss+cluster://`.
    pub fn is_cluster(&self) -> bool {
        self.0.starts_with("redis+cluster://") || self.0.starts_with("rediss+cluster://")
    }

    /// A cluster URL's seeds as standalone URLs (`redis://[user:password@]host:port`, with
    /// the credentials on each); empty for a standalone URL. For connecting only.
    pub fn cluster_seeds(&self) -> Vec<String> {
        if self.is_cluster() {
            self.seeds()
        } else {
            Vec::new()
        }
    }

    /// A sentinel URL's sentinels as standalone URLs (`redis://[user:password@]host:port`);
    /// empty for other URLs. For connecting only.
    pub fn sentinel_nodes(&self) -> Vec<String> {
        if self.is_sentinel() {
            self.seeds()
        } else {
            Vec::new()
        }
    }

    /// The comma-separated hosts of a cluster or sentinel URL, as standalone URLs.
    fn seeds(&self) -> Vec<String> {
        let Some((scheme, rest)) = self.0.split_once("://") else {
            return Vec::new();
        };
        let scheme = if scheme.starts_with("rediss") {
            "rediss"
        } else {
            "redis"
        };
        let rest = rest.split_once('/').map_or(rest, |(hosts, _)| hosts);
        let (userinfo, hosts) = match rest.rsplit_once('@') {
            Some((u, h)) => (format!("{u}@"), h),
            None => (String::new(), rest),
        };
        hosts
            .split(',')
            .map(|host| format!("{scheme}://{userinfo}{}", host.trim()))
            .collect()
    }

    fn redacted(&self) -> String {
        let Some((scheme, rest)) = self.0.split_once("://") else {
            return "<invalid url>".into();
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        match authority.rsplit_once('@') {
            Some((userinfo, host)) => {
                let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
                if userinfo.contains(':') {
                    format!("{scheme}://{user}:***@{host}{path}")
                } else {
                    format!("{scheme}://***@{host}{path}")
                }
            }
            None => self.0.clone(),
        }
    }
}

impl fmt::Display for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RedisUrl({})", self.redacted())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_show() {
        for (url, shown) in [
            ("redis://:s3cret@h:6379/0", "redis://:***@h:6379/0"),
            ("rediss://app:s3cret@h:6380", "rediss://app:***@h:6380"),
            ("redis://s3cret@h", "redis://***@h"),
            ("redis://h:6379", "redis://h:6379"),
        ] {
            let u = RedisUrl::parse(url).unwrap();
            assert_eq!(u.to_string(), shown);
            assert!(!format!("{u:?}").contains("s3cret"));
        }
        let err = RedisUrl::parse("http://u:s3cret@h").unwrap_err();
        assert!(!err.contains("s3cret"), "{err}");
    }

    #[test]
    fn cluster_urls_give_their_seeds_with_the_credentials_and_hide_the_password() {
        let u = RedisUrl::parse("rediss+cluster://app:s3cret@a:7000,b:7001/").unwrap();
        assert!(u.is_cluster() && u.is_tls());
        assert_eq!(
            u.cluster_seeds(),
            ["rediss://app:s3cret@a:7000", "rediss://app:s3cret@b:7001"]
        );
        assert_eq!(u.to_string(), "rediss+cluster://app:***@a:7000,b:7001/");
        let plain = RedisUrl::parse("redis+cluster://127.0.0.1:7000").unwrap();
        assert!(plain.is_cluster() && !plain.is_tls());
        assert!(
            RedisUrl::parse("redis://h:1")
                .unwrap()
                .cluster_seeds()
                .is_empty()
        );
        for bad in [
            "redis+cluster://",
            "redis+cluster://a:1,,b:2",
            "redis+cluster://u:pw@",
        ] {
            let err = RedisUrl::parse(bad).unwrap_err();
            assert!(!err.contains("pw"), "{err}");
        }
    }
}
