//! Signed download links: `/jobs/{id}/download?expires=…&sig=…` works without a header, for
//! one job, until its expiry.
//!
//! The signature is HMAC-SHA256 over the job id and the expiry with the server's secret
//! (`DOWNLOAD_URL_SECRET`), so a link cannot be moved to another job or extended. Without
//! the setting each process draws its own secret at start: links then stop working at a
//! restart and on other replicas, which is why fleets set it.

use crate::error::{AppError, AppResult, Code};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use hmac::{Hmac, KeyInit, Mac};
use rand::RngCore;
use sha2::Sha256;
use std::fmt;
use std::time::Duration;
use uuid::Uuid;

/// The CSV download's route, as the router and the OpenAPI document spell it; links and the
/// door read and write paths of this shape through [`download_path`] and [`download_job`].
pub const DOWNLOAD_ROUTE: &str = "/jobs/{id}/download";

/// The path of job `job_id`'s CSV download.
pub fn download_path(job_id: Uuid) -> String {
    DOWNLOAD_ROUTE.replace("{id}", &job_id.to_string())
}

/// The job whose download `path` is, if it is one.
pub fn download_job(path: &str) -> Option<Uuid> {
    let (before, after) = DOWNLOAD_ROUTE.split_once("{id}")?;
    let id = path.strip_prefix(before)?.strip_suffix(after)?;
    Uuid::parse_str(id).ok()
}

/// Signs and checks download links.
#[derive(Clone)]
pub struct LinkSigner {
    key: Vec<u8>,
    ttl: Duration,
}

/// Never print the secret.
impl fmt::Debug for LinkSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LinkSigner")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl LinkSigner {
    /// A signer with `secret`, or with a random one for this process alone.
    pub fn new(secret: Option<&str>, ttl: Duration) -> Self {
        let key = match secret {
            Some(secret) => secret.as_bytes().to_vec(),
            None => {
                let mut key = vec![0u8; 32];
                rand::rng().fill_bytes(&mut key);
                key
            }
        };
        Self { key, ttl }
    }

    /// How long a new link works.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    fn mac(&self, job_id: Uuid, expires: i64) -> Hmac<Sha256> {
        #[expect(clippy::unwrap_used, reason = "HMAC takes a key of any length")]
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).unwrap();
        // A purpose tag, so a signature made for something else later can never pass here.
        mac.update(b"favicon-finder download v1\0");
        mac.update(job_id.as_bytes());
        mac.update(&expires.to_be_bytes());
        mac
    }

    /// The query (`expires=…&sig=…`) of a link to job `job_id`'s CSV, made at `now`.
    pub fn query(&self, job_id: Uuid, now: DateTime<Utc>) -> String {
        let ttl = chrono::Duration::from_std(self.ttl).unwrap_or(chrono::Duration::minutes(15));
        let expires = (now + ttl).timestamp();
        let sig = URL_SAFE_NO_PAD.encode(self.mac(job_id, expires).finalize().into_bytes());
        format!("expires={expires}&sig={sig}")
    }

    /// The path and query of a link to job `job_id`'s CSV, made at `now`.
    pub fn link(&self, job_id: Uuid, now: DateTime<Utc>) -> String {
        format!("{}?{}", download_path(job_id), self.query(job_id, now))
    }

    /// Checks a link's `expires` and `sig` for job `job_id` at `now`: an altered link is
    /// `FORBIDDEN`, an authentic but expired one `LINK_EXPIRED` (both 403). The signature is
    /// compared in constant time.
    pub fn verify(
        &self,
        job_id: Uuid,
        expires: Option<&str>,
        sig: Option<&str>,
        now: DateTime<Utc>,
    ) -> AppResult<()> {
        let altered = || AppError::Forbidden {
            code: Code::Forbidden,
            message: "this download link is not valid for this job; ask for a new one".into(),
        };
        let (Some(expires), Some(sig)) = (expires, sig) else {
            return Err(altered());
        };
        let expires: i64 = expires.parse().map_err(|_| altered())?;
        let sig = URL_SAFE_NO_PAD.decode(sig).map_err(|_| altered())?;
        self.mac(job_id, expires)
            .verify_slice(&sig)
            .map_err(|_| altered())?;
        if now.timestamp() >= expires {
            return Err(AppError::Forbidden {
                code: Code::LinkExpired,
                message: "this download link has expired; ask for a new one".into(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(query: &str) -> (String, String) {
        let mut expires = String::new();
        let mut sig = String::new();
        for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
            match &*k {
                "expires" => expires = v.into_owned(),
                "sig" => sig = v.into_owned(),
                _ => {}
            }
        }
        (expires, sig)
    }

    #[test]
    fn a_download_path_names_its_job_and_nothing_else_does() {
        let job = Uuid::now_v7();
        let path = download_path(job);
        assert_eq!(path, format!("/jobs/{job}/download"));
        assert_eq!(download_job(&path), Some(job));
        let link = LinkSigner::new(None, Duration::from_secs(60)).link(job, Utc::now());
        assert!(link.starts_with(&format!("{path}?expires=")), "{link}");
        for other in [
            format!("/jobs/{job}"),
            format!("/jobs/{job}/results"),
            format!("/jobs/{job}/download/x"),
            format!("/x/jobs/{job}/download"),
            "/jobs/not-a-uuid/download".to_owned(),
            "/jobs//download".to_owned(),
        ] {
            assert_eq!(download_job(&other), None, "{other}");
        }
    }

    #[test]
    fn a_link_works_for_its_job_until_it_expires() {
        let signer = LinkSigner::new(Some("k".repeat(32).as_str()), Duration::from_secs(900));
        let job = Uuid::now_v7();
        let now = Utc::now();
        let (expires, sig) = parts(&signer.query(job, now));
        assert!(signer.verify(job, Some(&expires), Some(&sig), now).is_ok());
        let later = now + chrono::Duration::seconds(901);
        let err = signer
            .verify(job, Some(&expires), Some(&sig), later)
            .unwrap_err();
        assert_eq!(err.code(), Code::LinkExpired);
        let other = Uuid::now_v7();
        let err = signer
            .verify(other, Some(&expires), Some(&sig), now)
            .unwrap_err();
        assert_eq!(err.code(), Code::Forbidden);
        let extended = (expires.parse::<i64>().unwrap() + 3600).to_string();
        let err = signer
            .verify(job, Some(&extended), Some(&sig), later)
            .unwrap_err();
        assert_eq!(
            err.code(),
            Code::Forbidden,
            "a moved expiry is an altered link"
        );
        let other_secret = LinkSigner::new(None, Duration::from_secs(900));
        assert!(
            other_secret
                .verify(job, Some(&expires), Some(&sig), now)
                .is_err()
        );
    }
}
