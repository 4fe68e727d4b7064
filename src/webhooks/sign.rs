//! The secrets of webhook endpoints: drawn, sealed for storage, and used to sign an event the
//! Standard Webhooks way.
//!
//! A secret is `whsec_` and the base64 of 24 random bytes; a signature is `v1,` and the base64
//! HMAC-SHA256 of `{webhook-id}.{webhook-timestamp}.{body}`, keyed with the secret's decoded
//! bytes, so the `standardwebhooks` libraries verify it unchanged. While a rotated-out secret
//! still signs, the header carries both signatures, separated by a space, and a receiver that
//! knows either accepts the event.
//!
//! Stored secrets are sealed with AES-256-GCM under `WEBHOOK_SECRET_KEY`, with the endpoint's
//! id as associated data (a sealed secret copied to another row does not open), so a database
//! dump alone cannot sign an event.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use rand::RngCore;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use sha2::Sha256;
use std::fmt;
use uuid::Uuid;

/// The prefix of every secret, as Standard Webhooks spells it.
pub const SECRET_PREFIX: &str = "whsec_";

/// Random bytes in a new secret (what Svix draws; the libraries take 24 to 64).
const SECRET_BYTES: usize = 24;

/// What a stored secret starts with: the sealing's version.
const SEALED_PREFIX: &str = "v1:";

/// A webhook secret in the clear: shown once to its owner, and used to sign. Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(…)")
    }
}

impl Secret {
    /// A new random secret.
    pub fn generate() -> Self {
        let mut bytes = [0u8; SECRET_BYTES];
        rand::rng().fill_bytes(&mut bytes);
        Self(format!("{SECRET_PREFIX}{}", STANDARD.encode(bytes)))
    }

    /// The secret as its owner sees it (`whsec_…`).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The HMAC key: the bytes the part after `whsec_` encodes.
    fn key(&self) -> Vec<u8> {
        let encoded = self.0.strip_prefix(SECRET_PREFIX).unwrap_or(&self.0);
        STANDARD
            .decode(encoded)
            .unwrap_or_else(|_| encoded.as_bytes().to_vec())
    }

    /// The `v1,` signature of one message.
    pub fn sign(&self, message_id: &str, timestamp: i64, body: &[u8]) -> String {
        #[expect(clippy::unwrap_used, reason = "HMAC takes a key of any length")]
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key()).unwrap();
        mac.update(message_id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
    }
}

/// The `webhook-signature` header: one signature per secret that signs now, space-separated.
pub fn signature_header(
    secrets: &[Secret],
    message_id: &str,
    timestamp: i64,
    body: &[u8],
) -> String {
    secrets
        .iter()
        .map(|s| s.sign(message_id, timestamp, body))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Seals and opens stored secrets with the key from `WEBHOOK_SECRET_KEY`.
#[derive(Clone)]
pub struct Sealer {
    key: std::sync::Arc<LessSafeKey>,
}

impl fmt::Debug for Sealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Sealer(…)")
    }
}

/// Why a stored secret could not be opened.
#[derive(Debug, thiserror::Error)]
#[error(
    "a webhook secret could not be opened: the database row was changed or WEBHOOK_SECRET_KEY is not the key it was sealed with"
)]
pub struct OpenError;

impl Sealer {
    /// A sealer for `key_base64` (32 bytes, base64), or an error saying what is wrong with it.
    pub fn new(key_base64: &str) -> Result<Self, String> {
        let bytes = STANDARD
            .decode(key_base64.trim())
            .map_err(|_| "is not base64 (make one with `openssl rand -base64 32`)".to_owned())?;
        if bytes.len() != 32 {
            return Err(format!(
                "decodes to {} bytes; it must be 32 (make one with `openssl rand -base64 32`)",
                bytes.len()
            ));
        }
        let key = UnboundKey::new(&AES_256_GCM, &bytes).map_err(|_| "is not an AES-256 key")?;
        Ok(Self {
            key: std::sync::Arc::new(LessSafeKey::new(key)),
        })
    }

    /// `secret` sealed for endpoint `endpoint`: `v1:` and the base64 of nonce, ciphertext and tag.
    pub fn seal(&self, endpoint: Uuid, secret: &Secret) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let mut data = secret.0.as_bytes().to_vec();
        #[expect(
            clippy::expect_used,
            reason = "sealing fails only for over-long inputs"
        )]
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(endpoint.as_bytes()),
                &mut data,
            )
            .expect("a secret is far below AES-GCM's limit");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&data);
        format!("{SEALED_PREFIX}{}", STANDARD.encode(out))
    }

    /// The secret sealed in `stored` for endpoint `endpoint`.
    pub fn open(&self, endpoint: Uuid, stored: &str) -> Result<Secret, OpenError> {
        let raw = stored
            .strip_prefix(SEALED_PREFIX)
            .and_then(|b| STANDARD.decode(b).ok())
            .ok_or(OpenError)?;
        if raw.len() < NONCE_LEN {
            return Err(OpenError);
        }
        let (nonce, sealed) = raw.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| OpenError)?;
        let mut data = sealed.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(endpoint.as_bytes()), &mut data)
            .map_err(|_| OpenError)?;
        String::from_utf8(plain.to_vec())
            .map(Secret)
            .map_err(|_| OpenError)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

    #[test]
    fn signs_the_standard_webhooks_example() {
        // The example of the Standard Webhooks specification's reference libraries.
        let secret = Secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into());
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            secret.sign("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn a_sealed_secret_opens_only_for_its_endpoint_and_key() {
        let sealer = Sealer::new(KEY).unwrap();
        let secret = Secret::generate();
        let endpoint = Uuid::now_v7();
        let stored = sealer.seal(endpoint, &secret);
        assert!(!stored.contains(secret.expose()));
        assert_eq!(sealer.open(endpoint, &stored).unwrap(), secret);
        assert!(sealer.open(Uuid::now_v7(), &stored).is_err());
        let other = Sealer::new(&STANDARD.encode([7u8; 32])).unwrap();
        assert!(other.open(endpoint, &stored).is_err());
    }

    #[test]
    fn a_bad_key_is_named() {
        assert!(Sealer::new("not base64!").unwrap_err().contains("base64"));
        assert!(Sealer::new("AAAA").unwrap_err().contains("3 bytes"));
        assert!(!format!("{:?}", Secret::generate()).contains(SECRET_PREFIX));
    }
}
