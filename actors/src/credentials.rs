//! Credential fingerprints: a keyed hash of a session's credentials, the only form in
//! which credentials are kept after the container is created. Compared in constant time.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

/// The per-server secret key for fingerprints (random at start: fingerprints never leave
/// the process except as a short prefix for operators).
#[derive(Clone)]
pub struct FingerprintKey([u8; 32]);

impl FingerprintKey {
    pub fn random() -> Self {
        let mut key = [0u8; 32];
        key[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
        key[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
        FingerprintKey(key)
    }

    pub fn fingerprint(&self, api_key: Option<&str>, access_token: Option<&str>) -> Fingerprint {
        let mut mac = HmacSha256::new_from_slice(&self.0).expect("HMAC takes any key length");
        // Length-prefixed fields: ("ab", "c") and ("a", "bc") must differ.
        for field in [api_key, access_token] {
            match field {
                Some(v) => {
                    mac.update(&[1]);
                    mac.update(&(v.len() as u64).to_be_bytes());
                    mac.update(v.as_bytes());
                }
                None => mac.update(&[0]),
            }
        }
        Fingerprint(mac.finalize().into_bytes().into())
    }
}

#[derive(Clone, PartialEq, Eq)]
pub struct Fingerprint([u8; 32]);

impl Fingerprint {
    pub fn matches(&self, other: &Fingerprint) -> bool {
        self.0.ct_eq(&other.0).into()
    }

    /// A short prefix for operators (admin API, logs): enough to tell sessions apart.
    pub fn prefix(&self) -> String {
        hex::encode(&self.0[..4])
    }
}

impl std::fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Fingerprint({}…)", self.prefix())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_credentials_match_and_others_do_not() {
        let key = FingerprintKey::random();
        let a = key.fingerprint(Some("app.key:secret"), None);
        assert!(a.matches(&key.fingerprint(Some("app.key:secret"), None)));
        assert!(!a.matches(&key.fingerprint(Some("app.key:other"), None)));
        assert!(!a.matches(&key.fingerprint(None, Some("app.key:secret"))));
        assert!(!key
            .fingerprint(Some("ab"), Some("c"))
            .matches(&key.fingerprint(Some("a"), Some("bc"))));
    }

    #[test]
    fn keys_differ_between_servers() {
        let a = FingerprintKey::random().fingerprint(Some("k"), None);
        let b = FingerprintKey::random().fingerprint(Some("k"), None);
        assert!(!a.matches(&b));
    }

    #[test]
    fn debug_shows_only_a_prefix() {
        let fp = FingerprintKey::random().fingerprint(Some("secret"), None);
        assert_eq!(format!("{fp:?}").len(), "Fingerprint(…)".len() + 8);
    }
}
