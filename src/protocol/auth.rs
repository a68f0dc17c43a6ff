//! The auth frame: parsing, the checks of docs/protocol.md (credentials, JWT expiry) and
//! the environment policy. No client variable reaches a container without passing here.

use std::collections::BTreeMap;
use std::fmt;

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use serde_json::{Map, Value};
use uuid::Uuid;

use super::close::Close;
use super::truncate_at_char;

/// Default upper bound of the auth frame, in bytes.
pub const DEFAULT_MAX_AUTH_FRAME: usize = 64 * 1024;

/// The first client frame, as sent. Empty strings are stored as `None`.
#[derive(Clone, PartialEq, Default)]
pub struct AuthFrame {
    pub api_key: Option<String>,
    pub access_token: Option<String>,
    pub environment_variables: BTreeMap<String, String>,
    pub session_id: Option<String>,
    pub ci_auth_token: Option<String>,
    pub client: Option<String>,
    /// The client asks for its session's resource use (`usage` control messages).
    pub usage: bool,
}

// Hand-written so that logging a frame by mistake never leaks a credential or an env value.
impl fmt::Debug for AuthFrame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthFrame")
            .field("api_key", &redacted(&self.api_key))
            .field("access_token", &redacted(&self.access_token))
            .field(
                "environment_variables",
                &self.environment_variables.keys().collect::<Vec<_>>(),
            )
            .field("session_id", &redacted(&self.session_id))
            .field("ci_auth_token", &redacted(&self.ci_auth_token))
            .field("client", &self.client)
            .field("usage", &self.usage)
            .finish()
    }
}

fn redacted(value: &Option<String>) -> Option<&'static str> {
    value.as_ref().map(|_| "<redacted>")
}

/// Parses the auth frame: over `max_len` bytes is 1009, anything but a JSON object with
/// correctly typed known fields is 4008. Unknown fields are ignored.
pub fn parse_auth_frame(bytes: &[u8], max_len: usize) -> Result<AuthFrame, Close> {
    if bytes.len() > max_len {
        return Err(Close::too_big());
    }
    let Ok(Value::Object(mut obj)) = serde_json::from_slice::<Value>(bytes) else {
        return Err(Close::invalid_auth());
    };
    // `type` is legacy ("auth") and ignored, but a wrong type still marks a malformed frame.
    optional_string(&mut obj, "type")?;
    Ok(AuthFrame {
        api_key: optional_string(&mut obj, "apiKey")?,
        access_token: optional_string(&mut obj, "accessToken")?,
        environment_variables: string_map(&mut obj, "environmentVariables")?,
        session_id: optional_string(&mut obj, "sessionId")?,
        ci_auth_token: optional_string(&mut obj, "ciAuthToken")?,
        client: optional_string(&mut obj, "client")?,
        usage: optional_bool(&mut obj, "usage")?,
    })
}

/// A boolean field, null/absent as false; any other type is a malformed frame.
fn optional_bool(obj: &mut Map<String, Value>, key: &str) -> Result<bool, Close> {
    match obj.remove(key) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(b),
        Some(_) => Err(Close::invalid_auth()),
    }
}

/// A string field, or null/absent/empty as `None`; any other type is a malformed frame.
fn optional_string(obj: &mut Map<String, Value>, key: &str) -> Result<Option<String>, Close> {
    match obj.remove(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(Close::invalid_auth()),
    }
}

fn string_map(obj: &mut Map<String, Value>, key: &str) -> Result<BTreeMap<String, String>, Close> {
    match obj.remove(key) {
        None | Some(Value::Null) => Ok(BTreeMap::new()),
        Some(Value::Object(map)) => map
            .into_iter()
            .map(|(name, value)| match value {
                Value::String(value) => Ok((name, value)),
                _ => Err(Close::invalid_auth()),
            })
            .collect(),
        Some(_) => Err(Close::invalid_auth()),
    }
}

/// Which client environment variables may reach the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthPolicy {
    /// `apiKey` or `accessToken` must be present (the original server's behaviour).
    pub require_credentials: bool,
    pub env_allow_names: Vec<String>,
    pub env_allow_prefixes: Vec<String>,
    /// Longest accepted value, in bytes.
    pub env_max_value_len: usize,
    /// Most variables accepted; the rest are rejected.
    pub env_max_vars: usize,
}

impl Default for AuthPolicy {
    fn default() -> Self {
        AuthPolicy {
            require_credentials: false,
            env_allow_names: [
                "ABLY_WEB_CLI_MODE",
                "PS1",
                "TERM",
                "LANG",
                "COLUMNS",
                "LINES",
            ]
            .map(String::from)
            .to_vec(),
            env_allow_prefixes: vec!["ABLY_".to_owned()],
            env_max_value_len: 1024,
            env_max_vars: 64,
        }
    }
}

/// The auth frame after the checks of docs/protocol.md, ready for session setup.
#[derive(Clone, PartialEq, Default)]
pub struct ValidatedAuth {
    pub api_key: Option<String>,
    pub access_token: Option<String>,
    /// Accepted client variables, sorted by name.
    pub env: Vec<(String, String)>,
    /// Names dropped by the filter, for the audit log (never their values).
    pub rejected_env: Vec<String>,
    /// The resume target, if the frame carried a well-formed one.
    pub session_id: Option<Uuid>,
    /// The frame asked to resume with an id that is not a UUID: answer 4002, since it names
    /// a session that cannot exist (the client then starts a new one).
    pub resume_requested_invalid: bool,
    /// Passed through; only meaningful when the server is configured to check it.
    pub ci_auth_token: Option<String>,
    /// The client said who it is, so it does not need the output handshake line.
    pub announces_client: bool,
    /// The client's self-description, cut to 64 bytes, for the audit log.
    pub client: Option<String>,
    /// The client asked for `usage` control messages.
    pub usage: bool,
}

impl fmt::Debug for ValidatedAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ValidatedAuth")
            .field("api_key", &redacted(&self.api_key))
            .field("access_token", &redacted(&self.access_token))
            .field(
                "env",
                &self.env.iter().map(|(name, _)| name).collect::<Vec<_>>(),
            )
            .field("rejected_env", &self.rejected_env)
            .field("session_id", &self.session_id.map(|_| "<redacted>"))
            .field("resume_requested_invalid", &self.resume_requested_invalid)
            .field("ci_auth_token", &redacted(&self.ci_auth_token))
            .field("announces_client", &self.announces_client)
            .field("client", &self.client)
            .field("usage", &self.usage)
            .finish()
    }
}

const MAX_CLIENT_LABEL: usize = 64;

/// Applies, in the order of docs/protocol.md: required credentials (4001), an expired JWT
/// access token (4001), then the environment filter (which drops, never fails).
pub fn validate_auth(
    frame: AuthFrame,
    policy: &AuthPolicy,
    now_unix: i64,
) -> Result<ValidatedAuth, Close> {
    if policy.require_credentials && frame.api_key.is_none() && frame.access_token.is_none() {
        return Err(Close::missing_credentials());
    }
    if let Some(token) = &frame.access_token {
        if jwt_expired(token, now_unix) {
            return Err(Close::expired_token());
        }
    }

    let mut env = Vec::new();
    let mut rejected_env = Vec::new();
    for (name, value) in frame.environment_variables {
        let acceptable = env_name_allowed(&name, policy)
            && value.len() <= policy.env_max_value_len
            && !value.contains('\0')
            && env.len() < policy.env_max_vars;
        if acceptable {
            env.push((name, value));
        } else {
            rejected_env.push(name);
        }
    }

    let (session_id, resume_requested_invalid) = match &frame.session_id {
        None => (None, false),
        Some(id) => match Uuid::try_parse(id) {
            Ok(uuid) => (Some(uuid), false),
            Err(_) => (None, true),
        },
    };
    let client = frame.client.map(|mut label| {
        truncate_at_char(&mut label, MAX_CLIENT_LABEL);
        label
    });

    Ok(ValidatedAuth {
        api_key: frame.api_key,
        access_token: frame.access_token,
        env,
        rejected_env,
        session_id,
        resume_requested_invalid,
        ci_auth_token: frame.ci_auth_token,
        announces_client: client.is_some(),
        client,
        usage: frame.usage,
    })
}

/// Names that change what runs before or inside the shell (loader, shell start-up files,
/// interpreter hooks) or that would overwrite the credentials: refused whatever the
/// allowlist says, so a broad configured prefix cannot let them through.
const NEVER_ACCEPTED: &[&str] = &[
    "BASH_ENV",
    "ENV",
    "NODE_OPTIONS",
    "NODE_PATH",
    "PATH",
    "HOME",
    "SHELL",
    "USER",
    "IFS",
    "PS4",
    "PROMPT_COMMAND",
    "RUBYOPT",
    "RUBYLIB",
    "PERLLIB",
    "SHELLOPTS",
    "BASHOPTS",
    "CDPATH",
    "GLOBIGNORE",
    "GLIBC_TUNABLES",
    "GCONV_PATH",
    "LOCPATH",
    "HOSTALIASES",
    "JAVA_TOOL_OPTIONS",
    "_JAVA_OPTIONS",
    "ABLY_API_KEY",
    "ABLY_ACCESS_TOKEN",
];
const NEVER_ACCEPTED_PREFIXES: &[&str] = &["LD_", "DYLD_", "PYTHON", "PERL5", "BASH_FUNC_"];

fn env_name_allowed(name: &str, policy: &AuthPolicy) -> bool {
    if !is_env_name(name) {
        return false;
    }
    // Case-insensitive on purpose: refusing `path` too costs nothing.
    let upper = name.to_ascii_uppercase();
    if NEVER_ACCEPTED.contains(&upper.as_str())
        || NEVER_ACCEPTED_PREFIXES
            .iter()
            .any(|prefix| upper.starts_with(prefix))
    {
        return false;
    }
    policy.env_allow_names.iter().any(|allowed| allowed == name)
        || policy
            .env_allow_prefixes
            .iter()
            .any(|prefix| name.len() > prefix.len() && name.starts_with(prefix.as_str()))
}

/// `[A-Za-z_][A-Za-z0-9_]*`
fn is_env_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// True if `token` is a three-part JWT whose payload has a numeric `exp` at or before
/// `now_unix`. The signature is not checked (the server does not verify credentials); a
/// token that is not a JWT, or has no numeric `exp`, is not expired.
pub fn jwt_expired(token: &str, now_unix: i64) -> bool {
    let mut parts = token.split('.');
    let (Some(_header), Some(payload), Some(_signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let Some(json) = base64url_decode(payload) else {
        return false;
    };
    match serde_json::from_slice::<Value>(&json) {
        Ok(Value::Object(claims)) => match claims.get("exp").and_then(Value::as_f64) {
            // i64 -> f64 rounds above 2^53 s, which no clock reaches.
            Some(exp) => exp <= now_unix as f64,
            None => false,
        },
        _ => false,
    }
}

/// Base64url without padding. Trailing `=`, the standard alphabet and stray bits after the
/// last byte are tolerated: the server only reads `exp`, it does not verify the token.
fn base64url_decode(text: &str) -> Option<Vec<u8>> {
    const LENIENT_URL_SAFE: GeneralPurpose = GeneralPurpose::new(
        &alphabet::URL_SAFE,
        GeneralPurposeConfig::new()
            .with_decode_padding_mode(DecodePaddingMode::RequireNone)
            .with_decode_allow_trailing_bits(true),
    );
    let text = text
        .trim_end_matches('=')
        .replace('+', "-")
        .replace('/', "_");
    LENIENT_URL_SAFE.decode(text).ok()
}

#[cfg(test)]
mod tests;
